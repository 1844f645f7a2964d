"""Ray fan-out: connect, pack units into chunks of about `chunk_target_s`, keep a bounded
window of chunks in flight, consume results in completion order and store each chunk as it
finishes.

Why chunks: a point of the fast simulator can take well under a second, and one Ray task per
replicate would spend a visible share of the CPUs on scheduling. A chunk's size comes from a
cost estimate, sim.duration_s x workload.threads per replicate, times a seconds-per-unit rate
measured from the results so far (the first window runs one point per chunk to calibrate it).
Chunks also shrink near the end so the last ones spread over every CPU.

Failure model: a task whose worker or node dies is retried by Ray (`ray.max_retries`); a
replicate whose backend raises becomes a failed row with the error and the sweep goes on
(`retry_exceptions=False`: a deterministic simulation error would only fail again).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import core
from core.metrics import METRIC_COLUMNS
from sweep.errors import SweepError
from sweep.grid import Point, Unit

# Wall seconds of one replicate per unit of `unit_cost` (a simulated or measured second)
# before anything is measured; only the first window of chunks and the dry run use it.
# sim: the main job's 1-second points take about 0.3 s each on the 2-CPU development
# machine (benchmarks/engine.py's presets run at 0.13-0.8); kernel: the run's own duration
# plus compile and setup.
PRIOR_S_PER_COST = {"sim": 0.3, "kernel": 1.2}
PRIOR_DEFAULT = 0.1
# Longest error message kept in a failed row.
MAX_ERROR_CHARS = 4000
# Environment variables forwarded to workers (the synthetic backend's knobs).
FORWARDED_ENV_PREFIX = "SWEEP_SYNTHETIC_"


def unit_cost(params: core.Params, backend: str = "sim") -> float:
    """Relative cost of one replicate: its simulated (or, on the kernel, measured) seconds.
    The simulator's events per simulated second hardly grow with threads, its runs being
    bound by simulated I/O and locks (benchmarks/engine.py, model 4.4.0: 0.13-0.19 wall s
    per simulated s from 64 to 500 threads of file_thrash, 0.8 for seed_swapin)."""
    return max(params.sim.duration_s, 1e-3)


# -- connecting -----------------------------------------------------------------------------
@dataclass
class Cluster:
    address: str | None  # None: embedded local Ray
    cpus: int
    kernel_runners: int


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a `host:port` GCS address (brackets of an IPv6 host dropped)."""
    host, sep, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if sep and port.isdigit() else None


def _check_reachable(address: str, timeout_s: float) -> None:
    target = _host_port(address)
    if target is None:
        raise SweepError(f"ray.address={address!r}: expected host:port (the GCS address that "
                         "`ray start --head` prints), 'auto' or ray://host:port")
    host, port = target
    try:
        with socket.create_connection(target, timeout=timeout_s):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise SweepError(f"ray.address={address}: cannot reach {host}:{port} within "
                         f"{timeout_s:g} s ({reason}); is `ray start --head` running there?"
                         ) from None


def check_address(address: str | None, timeout_s: float) -> None:
    """Reject a dashboard URL or an unreachable GCS address before anything runs."""
    if address is None:
        return
    if address.startswith(("http://", "https://")):
        raise SweepError(f"ray.address={address}: that is a dashboard (HTTP) address; "
                         "use the GCS address host:6379 that `ray start --head` prints, "
                         "or 'auto' on a cluster node")
    if not address.startswith(("auto", "ray://", "local")):
        _check_reachable(address, timeout_s)


def local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Where `ray start` (Ray 2.59 and later) leaves the token of a cluster it starts with token
# authentication, the default for clusters started on this machine.
TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def use_cluster_token() -> None:
    """A driver joining by address uses a token only with RAY_AUTH_MODE=token (Ray 2.60
    still defaults to disabled there, while `ray start` enables it): with no mode set and
    a token at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), use it."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    if (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or TOKEN_FILE.is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"


def check_auth(address: str, timeout_s: float) -> None:
    """Ask the cluster's GCS one question before ray.init, so that a refused token is one
    line naming the cause instead of Ray retrying and printing the refusal for a minute."""
    if address == "auto" or address.startswith("ray://"):
        return
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray: ray.init reports what it reports
        return
    try:
        GcsClient(address=address).internal_kv_get(b"faultsim-auth-check", None,
                                                    timeout=timeout_s)
    except AuthenticationError:
        mode = os.environ.get("RAY_AUTH_MODE", "disabled")
        raise SweepError(
            f"ray.address={address}: the cluster refused this driver's authentication "
            f"(RAY_AUTH_MODE={mode}): it runs with token authentication; copy the head's "
            "~/.ray/auth_token here or set RAY_AUTH_TOKEN to it") from None
    except Exception:  # noqa: BLE001  anything else: let ray.init say it
        return


def ray_messages_to_stderr() -> None:
    """Ray's driver prints what it hears from the cluster's error channel (a task retried
    because its node died, a worker killed for memory) to stdout, as "(raylet) ..." lines
    from a thread ray.init starts (ray._private.worker.listen_error_messages; no setting
    turns it off, log_to_driver only covers the workers' own output). stdout is the sweep's:
    those lines go to stderr, with the rest of Ray's messages. If this Ray has no such
    function (a private API), its lines stay where Ray puts them."""
    try:
        from ray._private import worker
    except ImportError:
        return
    orig = getattr(worker, "print_to_stdstream", None)
    if orig is None or getattr(orig, "sweep_to_stderr", False):
        return

    def to_stderr(data: dict, ignore_prefix: bool) -> None:
        orig({**data, "is_err": True}, ignore_prefix)
    to_stderr.sweep_to_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


def connect(address: str | None, num_cpus: int | None, timeout_s: float,
            backend: str = "sim") -> Cluster:
    """ray.init: embedded local Ray, or join the cluster at `address` / RAY_ADDRESS."""
    import ray

    ray_messages_to_stderr()

    address = address or os.environ.get("RAY_ADDRESS") or None
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}
    runtime_env = {"env_vars": env} if env else None
    common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
    if address is None:
        n = num_cpus or local_cpus()
        # A stray RAY_ADDRESS="" must not make ray.init look for a cluster.
        os.environ.pop("RAY_ADDRESS", None)
        # This machine may run kernel points, one at a time (see sweep/kernel_backend.py).
        resources = {"kernel_runner": 1.0} if backend == "kernel" else None
        # address="local": a new embedded instance even if `ray start` left one running here
        # (ray.init() would join that one, with its size and its code).
        ray.init(address="local", num_cpus=n, resources=resources, runtime_env=runtime_env,
                 **common)
    else:
        check_address(address, timeout_s)
        use_cluster_token()
        check_auth(address, timeout_s)
        try:
            ray.init(address=address, runtime_env=runtime_env, **common)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SweepError(f"ray.address={address}: cannot join the cluster: {first}"
                             ) from None
    res = ray.cluster_resources()
    return Cluster(address=address, cpus=int(res.get("CPU", 0)),
                   kernel_runners=int(res.get("kernel_runner", 0)))


# -- the task -------------------------------------------------------------------------------
def _first_line(text: str, limit: int = 500) -> str:
    text = text.strip()
    return (text.splitlines()[0] if text else "")[:limit]


def run_chunk(backend_name: str, items: Sequence[tuple[str, dict, list[tuple[int, int]]]]
              ) -> list[dict]:
    """Run every replicate of a chunk; rows carry status, error, node id and wall time."""
    from sweep.backend import get_backend

    node_id = None
    try:
        import ray
        # Outside Ray (python -m sweep.point, unit tests), get_runtime_context() would start
        # a local Ray instance of its own and leave it running.
        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001
        pass
    backend = get_backend(backend_name)
    if backend_name == "sim":
        # Load (or compile) the simulator before the clock starts: point_wall_s is the
        # simulation's time, not the process's first-call cost.
        from sweep.backend import warm_simulator
        warm_simulator(list(dict.fromkeys(d.get("workload", {}).get("name")
                                          for _, d, _ in items)))
    rows: list[dict] = []
    for phash, params_dict, reps in items:
        seeds = [s for _, s in reps]
        t0, c0 = time.perf_counter(), time.process_time()
        outcomes = _run_seeds(backend, params_dict, seeds)
        if len(seeds) > 1 and all(isinstance(o, BaseException) for o in outcomes):
            # The batch failed as a whole: run replicate by replicate so one bad seed does
            # not take the others' rows with it.
            outcomes = [_run_seeds(backend, params_dict, [s])[0] for s in seeds]
        wall = (time.perf_counter() - t0) / max(len(seeds), 1)
        cpu = (time.process_time() - c0) / max(len(seeds), 1)
        for (rep, seed), out in zip(reps, outcomes):
            if isinstance(out, BaseException):
                # The whole message (numba's typing errors put the detail below line one).
                row = {**dict.fromkeys(METRIC_COLUMNS), "status": "failed",
                       "error_type": type(out).__name__,
                       "error": str(out).strip()[:MAX_ERROR_CHARS] or type(out).__name__}
            else:
                row = {**out, "status": "ok", "error_type": None, "error": None}
            row.update(point_hash=phash, replicate=rep, seed=seed, node_id=node_id,
                       point_wall_s=wall, point_cpu_s=cpu)
            rows.append(row)
    return rows


def _run_seeds(backend, params_dict: dict, seeds: list[int]) -> list[dict | BaseException]:
    """The backend's rows for `seeds`, or the exception it raised in place of every row."""
    try:
        params = core.Params.from_dict(params_dict)
        results = backend(params, seeds)
        if len(results) != len(seeds):
            raise RuntimeError(f"backend returned {len(results)} rows for {len(seeds)} seeds")
        return list(results)
    except Exception as e:  # noqa: BLE001  a failing point is data, not the end of the sweep
        return [e] * len(seeds)


# -- the driver loop ------------------------------------------------------------------------
class ChunkPlanner:
    """Greedy packing of pending units into chunks of about `target_s` estimated seconds."""

    def __init__(self, units: Sequence[Unit], points: dict[str, Point], target_s: float,
                 cpus: int, backend: str = "sim"):
        self.backend = backend
        self.points = points
        # Longest first (stable, so a point's replicates stay together): the last chunks to
        # finish are the cheap ones, which shortens the tail when the CPUs run out of work.
        self.pending: deque[Unit] = deque(sorted(units, key=lambda u: -self.cost(u)))
        self.pending_cost = sum(self.cost(u) for u in units)
        self.target_s = target_s
        self.cpus = max(cpus, 1)
        self.cost_done = 0.0
        self.wall_done = 0.0
        self.calibrated = False

    def rate(self) -> float:
        if self.cost_done > 0:
            return self.wall_done / self.cost_done
        return PRIOR_S_PER_COST.get(self.backend, PRIOR_DEFAULT)

    def observe(self, cost: float, wall: float) -> None:
        self.cost_done += cost
        self.wall_done += wall
        self.calibrated = True

    def cost(self, u: Unit) -> float:
        return unit_cost(self.points[u.point_hash].params, self.backend)

    def next_chunk(self) -> list[Unit]:
        if not self.pending:
            return []
        if not self.calibrated:
            # One point's replicates per chunk until something has been measured.
            first = self.pending[0].point_hash
            chunk = []
            while self.pending and self.pending[0].point_hash == first:
                chunk.append(self._pop())
            return chunk
        rate = self.rate()
        remaining = self.pending_cost * rate
        target = max(min(self.target_s, remaining / (2 * self.cpus)), 0.0)
        chunk, est = [], 0.0
        while self.pending and (not chunk or est + self.cost(self.pending[0]) * rate <= target):
            u = self._pop()
            chunk.append(u)
            est += self.cost(u) * rate
        return chunk

    def _pop(self) -> Unit:
        u = self.pending.popleft()
        self.pending_cost -= self.cost(u)
        return u


class ClusterLost(SweepError):
    """The cluster's head stopped answering mid-sweep (exit status 3)."""


class HeadWatch:
    """Checks every few seconds that the head's GCS port still accepts connections; after
    LOST_AFTER_S without it the sweep stops with one line, instead of Ray retrying for a
    minute and ending the driver with its own error."""
    EVERY_S = 2.0
    LOST_AFTER_S = 10.0

    def __init__(self, address: str):
        self.address = address
        self.target = _host_port(address)
        self.last = time.monotonic()
        self.down_since: float | None = None

    def check(self) -> None:
        now = time.monotonic()
        if self.target is None or now - self.last < self.EVERY_S:
            return
        self.last = now
        try:
            with socket.create_connection(self.target, timeout=1.0):
                self.down_since = None
        except OSError:
            self.down_since = self.down_since or now
            if now - self.down_since >= self.LOST_AFTER_S:
                raise ClusterLost(f"ray.address={self.address}: the cluster's head stopped "
                                  f"answering {now - self.down_since:.0f} s ago; finished "
                                  "chunks are in the store: restart the cluster and run the "
                                  "same command to resume") from None


def compute(units: Sequence[Unit], points: dict[str, Point], backend: str,
            cluster: Cluster, chunk_target_s: float, in_flight_per_cpu: int,
            max_retries: int, on_rows: Callable[[list[dict]], None]) -> None:
    """Run `units` on Ray; call `on_rows(rows)` for each chunk, in completion order."""
    import ray

    options: dict[str, Any] = {"num_cpus": 1, "max_retries": max_retries,
                               "retry_exceptions": False}
    slots = cluster.cpus
    if backend == "kernel":
        # One kernel point per node at a time: the C workloads own the whole machine.
        options["resources"] = {"kernel_runner": 1}
        slots = cluster.kernel_runners
        if slots < 1:
            raise SweepError("backend=kernel: no node of the cluster offers the "
                             "'kernel_runner' resource (ray start --resources="
                             "'{\"kernel_runner\": 1}')")
    task = ray.remote(run_chunk).options(**options)
    planner = ChunkPlanner(units, points, chunk_target_s, slots, backend)
    window = max(1, in_flight_per_cpu * max(slots, 1))
    in_flight: dict[Any, tuple[list[Unit], float]] = {}

    def submit() -> None:
        chunk = planner.next_chunk()
        items: list[tuple[str, dict, list[tuple[int, int]]]] = []
        for u in chunk:
            if items and items[-1][0] == u.point_hash:
                items[-1][2].append((u.replicate, u.seed))
            else:
                items.append((u.point_hash, points[u.point_hash].params.to_dict(),
                              [(u.replicate, u.seed)]))
        in_flight[task.remote(backend, items)] = (chunk, time.monotonic())

    watch = HeadWatch(cluster.address) if cluster.address else None
    while planner.pending or in_flight:
        while planner.pending and len(in_flight) < window:
            submit()
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
        if watch is not None:
            watch.check()
        for ref in ready:
            chunk, _t = in_flight.pop(ref)
            try:
                rows = ray.get(ref)
            except Exception as e:  # noqa: BLE001  lost beyond max_retries, or a bug in run_chunk
                cause = getattr(e, "cause", None) or e
                msg = _first_line(str(cause)) or type(cause).__name__
                rows = [{"point_hash": u.point_hash, "replicate": u.replicate, "seed": u.seed,
                         "status": "failed", "error_type": type(cause).__name__, "error": msg,
                         "node_id": None, "point_wall_s": None} for u in chunk]
                print(f"sweep: chunk of {len(chunk)} replicates failed: "
                      f"{type(cause).__name__}: {msg}", file=sys.stderr)
            ok_wall = [r["point_wall_s"] for r in rows if r.get("point_wall_s")]
            if ok_wall:
                planner.observe(sum(planner.cost(u) for u in chunk), sum(ok_wall))
            on_rows(rows)
