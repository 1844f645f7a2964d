"""One sweep from a resolved config: plan, look up the store, compute the missing, write the
run dir.

Order matters for the user: everything that can be wrong with the request (grid keys, zip
lengths, parameter ranges, backend, cluster address) is checked before the first row is
computed or the first file written, and reported as one SweepError line.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import secrets
import shutil
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

import core
from core.metrics import METRIC_COLUMNS
from sweep import aggregate as agg
from sweep.backend import BACKENDS, check_backend
from sweep.cli import CONF_DIR
from sweep.config import GridConfig, OutputConfig, RayConfig, SweepConfig
from sweep import resources
from sweep.errors import SweepError
from sweep.limits import (
    check_free_space,
    check_grid_name,
    check_memory,
    check_output_root,
    default_budget_gb,
)
from sweep.grid import (
    POLICY_KEY,
    SCENARIO_KEY,
    Point,
    Unit,
    expand,
    flatten_axes,
    nearest,
    units_of,
    valid_keys,
)
from sweep.progress import Progress
from sweep.runner import check_address, compute, connect
from sweep.store import STORE_SCHEMA, PointStore

# The longest run a grid may ask for without sweep.allow_large.
MAX_SIM_S = 86_400
# Written when a run has points on both the sim and the kernel backend.
SIM_VS_REAL = "sim_vs_real.csv"
PARAM_GROUPS = ("machine", "workload", "policy", "memcg", "device", "costs", "model", "sim")


def base_params(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """The nested parameter dict of the config (every group of core.Params)."""
    return {g: dict(OmegaConf.to_container(cfg[g], resolve=True)) for g in PARAM_GROUPS}


def scenario_params() -> dict[str, dict[str, dict[str, Any]]]:
    """Every preset of conf/scenario/ as the nested parameter values it sets (for a grid's
    `scenario` axis). A preset may set only core.Params groups."""
    out = {}
    for path in sorted((Path(CONF_DIR) / "scenario").glob("*.yaml")):
        values = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
        values.pop("defaults", None)
        bad = sorted(set(values) - set(PARAM_GROUPS))
        if bad:
            raise SweepError(f"{path}: a scenario used as a grid axis may set only "
                             f"{', '.join(PARAM_GROUPS)}; it sets {', '.join(bad)}")
        out[path.stem] = values
    return out


def original_cwd() -> Path:
    try:
        from hydra.utils import get_original_cwd
        return Path(get_original_cwd())
    except Exception:  # noqa: BLE001  not under @hydra.main (tests calling run_sweep directly)
        return Path.cwd()


def output_root(cfg: DictConfig) -> Path:
    root = Path(cfg.output.root)
    return root if root.is_absolute() else original_cwd() / root


def axis_columns(points: list[Point]) -> list[str]:
    """Output columns of the grid's axes: dotted keys, policy.name becoming `policy`."""
    return [k for k in points[0].axes if k != POLICY_KEY]


def task_overrides() -> list[str]:
    """The command line's overrides (empty where Hydra did not start this process)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        return list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001  not under @hydra.main (tests calling plan directly)
        return []


def command_line_keys(overrides: list[str]) -> list[str]:
    """The parameter keys the command line sets: `group.key=value`, and every key of a
    group option chosen there (`machine=server64`). A scenario chosen there (`scenario=`)
    sets none: its values stay below a grid's axes."""
    keys: list[str] = []
    for o in overrides:
        key, eq, _ = o.partition("=")
        key = key.lstrip("+~")
        if not eq:
            continue
        group = key.partition(".")[0]
        if group not in PARAM_GROUPS:
            continue
        if "." in key:
            keys.append(key)
            continue
        path = Path(CONF_DIR) / group / f"{o.partition('=')[2]}.yaml"
        values = OmegaConf.to_container(OmegaConf.load(path)) if path.exists() else {}
        keys += [f"{group}.{k}" for k in (values or {}) if k != "defaults"]
    return list(dict.fromkeys(keys))


def pin_axes(axes: dict[str, Any], zips: list[list[str]], pinned: dict[str, Any],
             say=print) -> tuple[dict[str, Any], list[list[str]]]:
    """A command-line value for a key the grid has as an axis replaces that axis (and takes
    the key out of its zip group); `say` gets one line per replaced axis."""
    axes = dict(axes)
    for k, v in pinned.items():
        if k in axes and list(axes[k]) != [v]:
            say(f"{k}={v} (command line) replaces the grid's axis {k} {list(axes[k])}")
            axes[k] = [v]
    zips = [[k for k in z if k not in pinned] for z in zips]
    return axes, [z for z in zips if len(z) >= 2]


def plan(cfg: DictConfig, overrides: list[str] | None = None,
         ) -> tuple[str, list[Point], list[Unit]]:
    if cfg.get("grid") is None:
        avail = ", ".join(sorted(p.stem for p in (Path(CONF_DIR) / "grid").glob("*.yaml")))
        raise SweepError(f"no grid given: add +grid=<name> (one of {avail})")
    g = cfg.grid
    # `+key=value` slips past the schema (Hydra lets an append add a key); catch it here.
    grid_keys = [f.name for f in dataclasses.fields(GridConfig)]
    for k in g:
        if k not in grid_keys:
            raise SweepError(f"unknown grid key 'grid.{k}'{nearest(str(k), grid_keys)}")
    known = valid_keys() + [f"{grp}.{f.name}" for grp, schema in
                            [("ray", RayConfig), ("sweep", SweepConfig), ("output", OutputConfig)]
                            for f in dataclasses.fields(schema)]
    sections = [*base_params(cfg).items(),
                *((grp, cfg[grp]) for grp in ("ray", "sweep", "output"))]
    for k in (f"{grp}.{name}" for grp, sub in sections for name in sub):
        if k not in known:
            raise SweepError(f"unknown config key '{k}'{nearest(k, known)}")
    if OmegaConf.is_missing(g, "name"):
        raise SweepError("grid.name is missing: a grid file must set name (its results dir)")
    replicates, root_seed = replicates_of(cfg), int(cfg.seed)
    if not cfg.sweep.chunk_target_s > 0:
        raise SweepError(f"sweep.chunk_target_s={cfg.sweep.chunk_target_s}: must be > 0")
    if cfg.sweep.in_flight_per_cpu < 1:
        raise SweepError(f"sweep.in_flight_per_cpu={cfg.sweep.in_flight_per_cpu}: must be >= 1")
    if cfg.ray.num_cpus is not None and cfg.ray.num_cpus < 1:
        raise SweepError(f"ray.num_cpus={cfg.ray.num_cpus}: must be >= 1")
    if cfg.ray.max_retries < 0:
        raise SweepError(f"ray.max_retries={cfg.ray.max_retries}: must be >= 0")
    axes = flatten_axes(OmegaConf.to_container(g.axes, resolve=True))
    zips = OmegaConf.to_container(g.zip, resolve=True)
    base = base_params(cfg)
    keys = command_line_keys(task_overrides() if overrides is None else overrides)
    pinned = {k: base[k.partition(".")[0]][k.partition(".")[2]] for k in keys}
    notes: list[str] = []  # said once the plan is valid (an error is one line)
    axes, zips = pin_axes(axes, zips, pinned, say=notes.append)
    excl = OmegaConf.to_container(g.exclude, resolve=True)
    if cfg.backend not in BACKENDS:
        check_backend(cfg.backend)  # the one-line error naming the backends
    check_grid_name(str(g.name))
    allow_large = bool(cfg.sweep.allow_large)
    points = expand(base, axes, zips, excl, backend=cfg.backend,
                    scenarios=scenario_params() if SCENARIO_KEY in axes else None,
                    pinned=pinned, allow_large=allow_large)
    budget = cfg.sweep.max_point_mem_gb
    budget = default_budget_gb() if budget is None else float(budget)

    def where(p: Point) -> str:
        return "point (" + (", ".join(f"{k}={v}" for k, v in p.axes.items()) or "the point") + ")"
    for p in points:
        if p.backend == "sim":
            check_memory(p.params, budget, lambda: where(p))
        if p.params.sim.duration_s > MAX_SIM_S and not allow_large:
            raise SweepError(f"{where(p)}: sim.duration_s={p.params.sim.duration_s:g} is "
                             f"over a simulated day ({MAX_SIM_S} s): write "
                             "sweep.allow_large=true if you mean it")
    for b in backends_of(points):
        check_backend(b)
    check_address(cfg.ray.address or os.environ.get("RAY_ADDRESS") or None,
                  float(cfg.ray.connect_timeout_s))
    for note in notes:
        print(note, file=sys.stderr)
    return str(g.name), points, units_of(points, replicates, root_seed)


def replicates_of(cfg: DictConfig, default: int | None = None) -> int:
    """Replicates per point: the command line's `replicates=N`, else the grid's
    `replicates` (or `default` where there is no grid: sweep.point's 1). Checks the root
    seed too, both being one-line errors."""
    n = cfg.replicates
    if n is None:
        n = cfg.grid.replicates if cfg.get("grid") is not None else default
    n = int(n)
    if n < 1:
        raise SweepError(f"replicates={n}: must be >= 1")
    if int(cfg.seed) < 0:
        raise SweepError(f"seed={cfg.seed}: must be >= 0")
    return n


def backends_of(points: list[Point]) -> list[str]:
    """The backends a grid's points run on, in first-seen order."""
    return list(dict.fromkeys(p.backend for p in points))


def ray_backend(points: list[Point]) -> str:
    """The backend that decides how Ray is set up: `kernel` if any point needs a kernel
    runner (the embedded local Ray then advertises one), else the points' backend."""
    backends = backends_of(points)
    return "kernel" if "kernel" in backends else backends[0]


def run_sweep(cfg: DictConfig) -> int:
    """The whole sweep; returns the exit status (1 if any replicate failed)."""
    grid_name, points, units = plan(cfg)
    by_hash = {p.point_hash: p for p in points}
    root = output_root(cfg)
    if not cfg.sweep.dry_run:
        check_output_root(root)
    store = PointStore(root)
    done = stored = store.done([u.key for u in units])
    if cfg.sweep.remeasure:
        # The newer rows supersede the stored ones (the index's newest entry wins).
        done = {k for k in done if by_hash[k[0]].backend != "kernel"}
    todo = [u for u in units if u.key not in done]
    label = f"sweep {grid_name}"

    backends = backends_of(points)
    if cfg.sweep.dry_run:
        print(dry_run_text(cfg, label, points, units, todo, done, store, by_hash))
        return 0
    check_free_space(root, len(todo), len(units))

    if todo:
        cluster = connect(cfg.ray.address, cfg.ray.num_cpus, float(cfg.ray.connect_timeout_s),
                          ray_backend(points))
        # ray.init installs its own SIGTERM handler (a stack dump, then exit 1): ours again,
        # so that a terminated sweep stops like an interrupted one (sweep.cli.guarded).
        import signal

        from sweep.cli import _on_sigterm
        signal.signal(signal.SIGTERM, _on_sigterm)
        where = cluster.address or "local Ray"
        print(f"{label}: {len(points)} points, {len(units)} runs, {len(done)} cached, "
              f"{len(todo)} to compute on {where} ({cluster.cpus} CPUs)", file=sys.stderr)
        progress = Progress(len(todo), len(done), float(cfg.sweep.progress_interval_s), label)
        meta = {"model_version": core.MODEL_VERSION}
        params_json = {h: _params_json(p) for h, p in by_hash.items()}

        def on_rows(rows: list[dict]) -> None:
            for r in rows:
                r.update(meta, backend=by_hash[r["point_hash"]].backend,
                         params_json=params_json[r["point_hash"]])
            store.append(rows)
            n_failed = sum(r["status"] != "ok" for r in rows)
            progress.update(len(rows) - n_failed, n_failed)

        def compute_all(units_now: list[Unit]) -> None:
            # One backend after the other, never side by side: a kernel point measures the
            # whole machine (vmstat is system-wide), so simulations must not share its CPUs.
            for b in backends:
                mine = [u for u in units_now if by_hash[u.point_hash].backend == b]
                if mine:
                    compute(mine, by_hash, b, cluster, float(cfg.sweep.chunk_target_s),
                            int(cfg.sweep.in_flight_per_cpu), int(cfg.ray.max_retries),
                            on_rows)

        try:
            # After connecting (a wrong address is told at once, not after the compile),
            # before the first task (the workers then load the engines from the cache).
            compile_once(label, sim_workloads(todo, by_hash))
            # Runs another sweep on this store is computing are waited for, not computed
            # twice; if that sweep dies, its runs are taken over.
            theirs = set(store.claim([u.key for u in todo]))
            if theirs:
                print(f"{label}: {len(theirs)} runs are being computed by another sweep on "
                      f"this store; waiting for them", file=sys.stderr)
            # A sweep that finished runs of ours between our plan and our claim has released
            # its claims by now, but committed its rows first: they are not computed again
            # (rows stored before the plan are the ones sweep.remeasure recomputes).
            store.refresh()
            late = store.done([u.key for u in todo if u.key not in theirs]) - stored
            if late:
                progress.update(len(late), 0)
            compute_all([u for u in todo if u.key not in theirs and u.key not in late])
            waiting = [u for u in todo if u.key in theirs]
            while waiting:
                store.refresh()
                finished = store.done([u.key for u in waiting])
                waiting = [u for u in waiting if u.key not in finished]
                still = set(store.claim([u.key for u in waiting]))
                taken = [u for u in waiting if u.key not in still]
                if taken:
                    compute_all(taken)
                if finished:
                    progress.update(len(finished), 0)
                waiting = [u for u in waiting if u.key in still]
                if waiting:
                    time.sleep(1.0)
        finally:
            store.release()
            progress.close()
            import ray
            ray.shutdown()
    else:
        print(f"{label}: all {len(units)} runs already in {store.dir}; nothing to compute",
              file=sys.stderr)

    report_failed = []

    def report(partial: Path, final: Path) -> None:
        if not (cfg.output.report and importlib.util.find_spec("sweep.report") is not None):
            return
        try:
            importlib.import_module("sweep.report").write_report(partial, shown_as=final)
        except Exception:  # noqa: BLE001  a broken report must not hide the results
            traceback.print_exc()
            print("sweep: sweep/report.py failed; results above are complete",
                  file=sys.stderr)
            report_failed.append(True)

    try:
        run_dir = write_run_dir(cfg, root, grid_name, points, units, store,
                                n_cached=len(done), before_publish=report)
    except OSError as e:
        raise SweepError(f"cannot write the run directory under {root / grid_name} "
                         f"({e.strerror or e}): every computed row is in {store.dir}; free "
                         "space and run the same command to write it") from None
    n_failed = pl.read_parquet(run_dir / "points.parquet", columns=["status"]).filter(
        pl.col("status") != "ok").height
    print(f"{label}: wrote {run_dir}" + (f" ({n_failed} failed runs)" if n_failed else ""))
    return 1 if n_failed or report_failed else 0


# Measured on the 2-core development machine: a cold compile of one workload's engine.
COMPILE_S = "about a minute per workload on one core"


def sim_workloads(todo: list[Unit], by_hash: dict[str, Point]) -> list[str]:
    """The workloads of the runs to compute on the simulator, in first-seen order: the
    engines to compile (core.engine.ENGINES)."""
    return list(dict.fromkeys(by_hash[u.point_hash].params.workload.name for u in todo
                              if by_hash[u.point_hash].backend == "sim"))


def compile_once(label: str, workloads: list[str]) -> None:
    """Compile the workloads' engines in this process before the first task reaches a Ray
    worker, so that the workers load them from numba's cache instead of each compiling them
    at once (core/_jitcache.py keys the cache by core's sources); say so, since nothing
    else moves meanwhile. Workers on other machines still compile on their own."""
    from sweep.backend import jit_cache_warm, warm_simulator
    if jit_cache_warm(workloads):                 # none to compile, or all compiled
        return
    print(f"{label}: compiling the simulator for {', '.join(workloads)} (first run of this "
          f"version of core/ on this machine, {COMPILE_S}; cached afterwards)",
          file=sys.stderr, flush=True)
    took = warm_simulator(workloads)
    print(f"{label}: compiled in {took:.0f} s", file=sys.stderr, flush=True)


# The most points a dry run lists one by one.
DRY_RUN_ROWS = 60


def dry_run_text(cfg: DictConfig, label: str, points: list[Point], units: list[Unit],
                 todo: list[Unit], done: set, store: PointStore,
                 by_hash: dict[str, Point]) -> str:
    """The plan: the points (their varying axes), how many runs are stored, and a time
    estimate from this machine's measured speed where the store has it."""
    from sweep.runner import unit_cost
    backends = backends_of(points)
    varying = [k for k in points[0].axes if len({p.axes[k] for p in points}) > 1]
    head = [*[k for k in varying if k != POLICY_KEY], "policy"]
    lines = [f"{label}: {len(points)} points x {replicates_of(cfg)} replicates = "
             f"{len(units)} runs; {len(done)} already in {store.dir}; {len(todo)} to compute",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points[:DRY_RUN_ROWS]:
        cells = [str(p.axes[k]) for k in head if k != "policy"] + [p.params.policy.name]
        lines.append("| " + " | ".join(cells) + " |")
    if len(points) > DRY_RUN_ROWS:
        lines.append(f"... and {len(points) - DRY_RUN_ROWS} more points")
    lines.append("")
    # Wall seconds per simulated second, per backend, from the stored runs of this output
    # root; the same points' own runs first.
    walls = store.measured_walls()
    for b in backends:
        mine = [u for u in todo if by_hash[u.point_hash].backend == b]
        if not mine:
            continue
        cluster_desc, slots = _cluster_desc(cfg, b, ray_backend(points))
        same = [walls[u.point_hash] for u in mine if u.point_hash in walls]
        rates = [w / unit_cost(by_hash[h].params, b) for h, w in walls.items()
                 if h in by_hash and by_hash[h].backend == b]
        what = f"{len(rates)} stored points of this grid"
        if not rates:
            rates = [w / c for w, c in store.measured_rates(b)]
            what = f"{len(rates)} stored runs"
        if len(same) == len(mine):
            seconds, basis = sum(same), f"the stored runs of these {len(mine)} points"
        elif rates:
            rate = sorted(rates)[len(rates) // 2]
            seconds = sum(walls.get(u.point_hash) or unit_cost(by_hash[u.point_hash].params, b)
                          * rate for u in mine)
            basis = (f"this machine's median speed over {what} (within about 3x: speed "
                     "varies between workloads)")
        else:
            from sweep.runner import PRIOR_DEFAULT, PRIOR_S_PER_COST
            prior = PRIOR_S_PER_COST.get(b, PRIOR_DEFAULT)
            seconds = sum(unit_cost(by_hash[u.point_hash].params, b) for u in mine) * prior
            basis = (f"a prior of {prior:g} wall s per simulated s, nothing measured here "
                     "yet (within about 3x)")
        t = seconds / max(slots, 1)
        took = f"{t:.0f} s" if t < 120 else f"{t / 60:.1f} min"
        lines.append(f"{b}: {len(mine)} runs, about {took} on {slots} slots ({cluster_desc}), "
                     f"from {basis}")
    if not todo:
        lines.append("every run is in the store: nothing to compute")
    workloads = sim_workloads(todo, by_hash)
    if workloads:
        from sweep.backend import jit_cache_warm
        if not jit_cache_warm(workloads):
            lines.append(f"plus compiling the simulator first ({COMPILE_S})")
    return "\n".join(lines)


def _params_json(p: Point) -> str:
    from sweep.grid import canonical_json
    return canonical_json(p.params.to_dict())


def _cluster_desc(cfg: DictConfig, backend: str, connect_as: str) -> tuple[str, int]:
    """Where the sweep would run, and how many tasks of `backend` at a time (CPUs, or
    kernel runners)."""
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if not address:
        from sweep.runner import local_cpus
        cpus = cfg.ray.num_cpus or local_cpus()
        slots = 1 if backend == "kernel" else cpus
        return f"local Ray with {cpus} CPUs", slots
    cluster = connect(address, None, float(cfg.ray.connect_timeout_s), connect_as)
    import ray
    ray.shutdown()
    slots = cluster.kernel_runners if backend == "kernel" else cluster.cpus
    return (f"cluster {address} with {cluster.cpus} CPUs, {cluster.kernel_runners} kernel "
            "runners"), slots


# What stands in config.yaml for a parameter a grid axis sets point by point.
AXIS_MARK = "(grid axis: see grid.axes)"


def config_as_run(cfg: DictConfig, points: list[Point]) -> str:
    """The resolved config as the run used it: grid.axes as expanded (after the command
    line replaced any axis, presets of a scenario axis named), and every parameter an axis
    sets marked as such instead of a default no point ran with."""
    c = OmegaConf.to_container(cfg, resolve=True)
    axes: dict[str, list] = {}
    for p in points:
        for k, v in p.axes.items():
            vals = axes.setdefault(k, [])
            if v not in vals:
                vals.append(v)
    if c.get("grid") is not None:
        c["grid"]["axes"] = axes
        c["grid"]["zip"] = [z for z in c["grid"].get("zip") or [] if all(k in axes for k in z)]
    for k in axes:
        group, _, name = k.partition(".")
        if group in PARAM_GROUPS and name in c.get(group, {}):
            c[group][name] = AXIS_MARK
    return OmegaConf.to_yaml(OmegaConf.create(c))


def run_info(cfg: DictConfig, grid_name: str, n_points: int, n_units: int,
             n_cached: int) -> dict[str, Any]:
    """run.json: what produced this run (code, packages, model, machine, command)."""
    import platform
    import subprocess
    from importlib import metadata

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=resources.SOURCE_ROOT, capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
        return out

    packages = {}
    for name in ("ray", "numpy", "numba", "polars", "hydra-core", "matplotlib", "tqdm"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "grid": grid_name, "points": n_points, "runs": n_units, "from_store": n_cached,
        "root_seed": int(cfg.seed), "replicates": replicates_of(cfg),
        "model_version": core.MODEL_VERSION,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(), "packages": packages,
        "host": platform.node(), "kernel": platform.release(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "command": sys.argv,
        "written_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def write_run_dir(cfg: DictConfig, root: Path, grid_name: str, points: list[Point],
                  units: list[Unit], store: PointStore, n_cached: int,
                  before_publish=None) -> Path:
    """The run directory, complete or absent: written under a hidden temporary name
    (`.<run id>.partial`), `before_publish(partial, final)` (the report) run on it, then
    renamed into place, and `latest` moved last. If writing fails (OSError), this run's
    partial directory is removed and the error raised; a leftover `.partial` is an
    interrupted run's, never a result."""
    grid_dir = root / grid_name
    run_id = new_run_id()
    final = grid_dir / run_id
    run_dir = grid_dir / f".{run_id}.partial"
    run_dir.mkdir(parents=True)
    try:
        _write_run_files(cfg, run_dir, grid_name, points, units, store, n_cached)
        if before_publish is not None:
            before_publish(run_dir, final)
        os.rename(run_dir, final)
    except OSError:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    latest = grid_dir / "latest"
    tmp = grid_dir / f".latest-{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(final.name, tmp)
    os.replace(tmp, latest)
    return final


def _write_run_files(cfg: DictConfig, run_dir: Path, grid_name: str, points: list[Point],
                     units: list[Unit], store: PointStore, n_cached: int) -> None:
    """Every file of a run directory (but the report) into `run_dir`."""
    axes = axis_columns(points)
    by_hash = {p.point_hash: p for p in points}
    meta_cols: dict[str, list] = {"point_hash": [], "replicate": []}
    meta_cols.update({a: [] for a in axes})
    meta_cols["policy"] = []
    for u in units:
        p = by_hash[u.point_hash]
        meta_cols["point_hash"].append(u.point_hash)
        meta_cols["replicate"].append(u.replicate)
        for a in axes:
            meta_cols[a].append(p.axes[a])
        meta_cols["policy"].append(p.params.policy.name)
    meta = pl.LazyFrame(meta_cols, strict=False).with_columns(pl.col("replicate").cast(pl.Int64))
    stored = store.rows([u.key for u in units])
    tail = [c for c in STORE_SCHEMA if c not in ("point_hash", "replicate", "seed")
            and c not in METRIC_COLUMNS and c not in axes]
    points_path = run_dir / "points.parquet"
    (meta.join(stored, on=["point_hash", "replicate"], how="left")
     .with_columns(pl.col("status").fill_null("missing"))
     .with_columns(stalled=agg.STALLED)
     .select([*axes, "policy", "seed", "replicate", "point_hash", *METRIC_COLUMNS, *tail,
              "stalled"])
     .pipe(agg._sorted, axes, ["point_hash", "replicate"])
     .collect()
     .write_parquet(points_path))
    agg.aggregate(points_path, axes).write_csv(run_dir / "aggregate.csv")
    agg.compare(points_path, axes).write_csv(run_dir / "compare.csv")
    agg.histograms(points_path, axes).write_csv(run_dir / "histograms.csv")
    (run_dir / "config.yaml").write_text(config_as_run(cfg, points))
    (run_dir / "run.json").write_text(json.dumps(run_info(cfg, grid_name, len(points),
                                                          len(units), n_cached), indent=1))
    failed = (pl.scan_parquet(points_path).filter(pl.col("status") != "ok")
              .select([*axes, "policy", "replicate", "error_type", "error"]).collect())
    svr = None
    if {"sim", "kernel"} <= set(backends_of(points)):
        from sweep.kernel_backend import sim_vs_real_table
        svr = sim_vs_real_table(pl.read_parquet(points_path), [*axes, "policy"])
        svr.write_csv(run_dir / SIM_VS_REAL)
    (run_dir / "summary.md").write_text(
        agg.summary(run_dir, grid_name, axes, len(points), len(units), n_cached, failed,
                    sim_vs_real=svr))
