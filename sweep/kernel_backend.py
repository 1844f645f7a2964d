"""The `kernel` backend: run a point's workload as a real program on the running Linux kernel.

Where the `sim` backend asks the model (`core.simulate`), this backend compiles the workload
of docs/model.md, Workloads as a small C program (`kernel_workloads/*.c`), runs it for the point's
duration on this machine, and turns what the kernel counted into the same row: every column
of `core.metrics.METRIC_COLUMNS`, None where the kernel cannot measure it (the `mmap_lock`
wait histograms, fault latencies, the model's internals), plus `kernel_release`, `lru`,
`read_ahead_kb`, `cores_used`, `params_ignored` and `backend='kernel'`.

Counters come from `/proc/vmstat`, read when the program reports the end of its warmup and
again when it exits. **/proc/vmstat is system-wide**: the deltas include every other process
on the machine (and the runner itself), so run kernel points on a quiet machine, one at a
time per machine. The retry counters (`retry_mmap_drop`, `retry_io_miss`, from the patch
series) and the per-VMA lock counters (`vma_lock_*`, CONFIG_PER_VMA_LOCK_STATS) exist only on
kernels built with them; elsewhere their columns are None.

Timing: the program runs `sim.duration_s` seconds in total; the first `sim.warmup_s` of them
(setup, first-touch of the page cache) are not measured, so `rounds`, `wall_s`, `sim_time_s`
and the vmstat deltas cover the last `duration_s - warmup_s` seconds. `throughput_rounds_s`
is rounds per measured wall second. A run is not deterministic: the seed is ignored.

What the kernel backend cannot set is reported, not faked: this backend never changes kernel
settings, so `device.ra_kb`, `machine.lru` and `machine.fault_around_kb` are whatever the
machine has (`read_ahead_kb`, `lru` columns), `device.large_folios` is whatever the work
directory's filesystem supports (ext4 and xfs regular files have large folios on 6.16+),
`device.io_*` come from the real device, and
`machine.cores` above the CPUs available is capped (`cores_used`); `params_ignored` lists
every such mismatch. `policy.name` must be `baseline` (the installed kernel's own fault
path) unless FAULTSIM_KERNEL_POLICY names the policy the running kernel carries.

memcg: with `memcg.high_mb` or `memcg.max_mb` > 0 the program runs in a fresh memory cgroup
created below the runner's own (cgroup v2: memory.high, memory.max, memory.swap.max;
v1: memory.limit_in_bytes and memory.memsw.limit_in_bytes when present), entered before the
program does anything (it waits on `--start-fd`), removed afterwards whatever happens. No
permission, or cgroup v2's "no internal processes" rule, raises `KernelBackendError`.

Ray: kernel points must only run on nodes meant to be measured, and only one at a time per
node (vmstat is system-wide, and two points would share the CPUs). Such a node advertises
one unit of the custom resource `kernel_runner`
(`ray start --resources='{"kernel_runner": 1}'`, or `ray.init(resources=
advertise_resources())` for a local embedded cluster); the sweep requests `kernel_runner: 1`
per kernel task (`ray_task_options()`), so Ray places kernel tasks only there, serially.

Measured on the development machine (Linux 6.18.44, 2 CPUs, virtio disk with read_ahead_kb
8192, classic LRU, no swap): see kernel_workloads/README.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.metrics import METRIC_COLUMNS
from sweep import resources

if TYPE_CHECKING:
    import polars as pl

BACKEND = "kernel"
KERNEL_RESOURCE = "kernel_runner"
WORKLOAD_DIR = resources.WORKLOAD_DIR
WORKLOADS = ("file_thrash", "swapin")
CFLAGS = ("-O2", "-pthread")
PAGE_SIZE = 4096
MIB = 1 << 20

# Extra columns this backend adds to the METRIC_COLUMNS of every row.
EXTRA_COLUMNS = ["backend", "kernel_release", "lru", "read_ahead_kb", "cores_used",
                 "params_ignored", "memcg_path", "pgpgin_pages", "loadavg_1m_before",
                 "vmstat_delta", "kmem_peak_mb"]

# vm events that exist only on patched or debug kernels: None when /proc/vmstat lacks them.
OPTIONAL_COUNTERS = ("retry_mmap_drop", "retry_io_miss", "vma_lock_success", "vma_lock_abort",
                     "vma_lock_retry", "vma_lock_miss")
# Reclaim by who reclaimed; pgsteal_anon/pgsteal_file split the same pages by type, so only
# one of the two families may be summed.
PGSTEAL_BY_RECLAIMER = ("pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged",
                        "pgsteal_proactive")
PGSCAN_BY_RECLAIMER = ("pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged",
                       "pgscan_proactive")

# Time allowed beyond the run for process start, file setup and exit; with --no-sparse the
# setup writes every file once, at a pessimistic 50 MB/s.
STARTUP_SLACK_S = 30.0
SETUP_WRITE_MB_S = 50.0
# After SIGTERM the program stops at the next 256-page check and cleans up its files.
TERM_GRACE_S = 10.0


class KernelBackendError(RuntimeError):
    """A point the kernel backend cannot run here: one line saying why (no compiler, no
    permission for a cgroup, a program that failed). The sweep records it as a failed row."""


# ---- Ray placement -------------------------------------------------------------------------

def advertise_resources() -> dict[str, float]:
    """The custom resources a node that may run kernel points advertises:
    `ray.init(resources=advertise_resources())` or
    `ray start --resources='{"kernel_runner": 1}'`. One unit: one kernel point at a time."""
    return {KERNEL_RESOURCE: 1.0}


def ray_task_options() -> dict[str, Any]:
    """Options for `ray.remote(...).options(**ray_task_options())` on a kernel-point task."""
    return {"resources": {KERNEL_RESOURCE: 1.0}}


# ---- compiling the workloads ---------------------------------------------------------------

def find_compiler() -> str | None:
    """The system C compiler: $CC if set, else `cc`, else `gcc`; None if there is none."""
    for name in ([os.environ["CC"]] if os.environ.get("CC") else []) + ["cc", "gcc"]:
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_root() -> Path:
    """Where compiled workloads live: $FAULTSIM_CACHE_DIR, else $XDG_CACHE_HOME/faultsim,
    else ~/.cache/faultsim; binaries go under kernel_workloads/<source sha256[:16]>/."""
    if os.environ.get("FAULTSIM_CACHE_DIR"):
        base = Path(os.environ["FAULTSIM_CACHE_DIR"])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "faultsim"
    return base / "kernel_workloads"


def compile_workload(name: str, *, cache_dir: Path | None = None,
                     compiler: str | None = None) -> Path:
    """Path of the compiled `kernel_workloads/<name>.c`, compiling it on first use.

    The binary is cached under a key made of the source's, the folder's headers' and the flags'
    sha256, so an edited source or header recompiles and an unchanged one is reused by every process. Concurrent callers are
    safe: each compiles to its own temp file in the cache directory and renames it into place
    (atomic on one filesystem); the last rename wins with an identical binary.
    Raises KernelBackendError for an unknown workload, a missing compiler or a failed build.
    """
    src = WORKLOAD_DIR / f"{name}.c"
    if name not in WORKLOADS or not src.is_file():
        raise KernelBackendError(f"unknown kernel workload {name!r}: one of {WORKLOADS} "
                                 f"(sources in {WORKLOAD_DIR})")
    # The headers of the folder are part of every program: an edited header recompiles too.
    headers = b"".join(h.read_bytes() for h in sorted(WORKLOAD_DIR.glob("*.h")))
    digest = hashlib.sha256(src.read_bytes() + headers
                            + "\0".join(CFLAGS).encode()).hexdigest()[:16]
    out_dir = (cache_dir if cache_dir is not None else cache_root()) / digest
    out = out_dir / name
    if out.is_file() and os.access(out, os.X_OK):
        return out
    cc = compiler or find_compiler()
    if cc is None:
        raise KernelBackendError("no C compiler found (tried $CC, cc, gcc): install gcc to "
                                 "run kernel points")
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
    os.close(fd)
    try:
        proc = subprocess.run([cc, *CFLAGS, "-o", tmp, str(src)], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["(no output)"])[0]
            raise KernelBackendError(f"compiling {src.name} with {cc} failed: {first}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except FileNotFoundError as e:
        raise KernelBackendError(f"C compiler {cc!r} not runnable: {e}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return out


# ---- what this machine is ------------------------------------------------------------------

def read_vmstat(path: str | Path = "/proc/vmstat") -> dict[str, int]:
    """/proc/vmstat as {name: value}."""
    counters: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        name, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            counters[name] = int(value)
    return counters


def kernel_release() -> str:
    return platform.release()


def lru_kind(path: str | Path = "/sys/kernel/mm/lru_gen/enabled") -> str:
    """'mglru' if the multi-gen LRU is enabled (any bit of lru_gen/enabled set), else
    'classic' (also when the kernel was built without CONFIG_LRU_GEN: no such file)."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return "classic"
    try:
        return "mglru" if int(text, 0) != 0 else "classic"
    except ValueError:
        return "mglru" if text not in ("", "0", "n", "N") else "classic"


def read_ahead_kb(directory: str | Path, sys_dev_block: str | Path = "/sys/dev/block"
                  ) -> int | None:
    """read_ahead_kb of the block device holding `directory`: the device's own queue, or its
    parent disk's when it is a partition. None for filesystems with no block device behind
    them (tmpfs, overlay, btrfs subvolumes with anonymous device numbers)."""
    st_dev = os.stat(directory).st_dev
    node = Path(sys_dev_block) / f"{os.major(st_dev)}:{os.minor(st_dev)}"
    if os.major(st_dev) == 0 or not node.exists():
        return None
    real = node.resolve()
    for cand in (real / "queue" / "read_ahead_kb", real.parent / "queue" / "read_ahead_kb"):
        with contextlib.suppress(OSError, ValueError):
            return int(cand.read_text().strip())
    return None


def cpus_available() -> int:
    return len(os.sched_getaffinity(0))


# ---- memory cgroups ------------------------------------------------------------------------

@dataclass(frozen=True)
class CgroupParent:
    """Where a point's memory cgroup is created: `path` (a directory in cgroupfs, normally the
    runner's own cgroup) and the hierarchy `version` (1 or 2)."""
    path: Path
    version: int


def find_cgroup_parent(proc_self_cgroup: str | Path = "/proc/self/cgroup",
                       mountinfo: str | Path = "/proc/self/mountinfo") -> CgroupParent:
    """The runner's own memory cgroup: the v2 unified hierarchy if it has the memory
    controller, else the v1 memory hierarchy. Raises KernelBackendError if neither."""
    lines = Path(proc_self_cgroup).read_text().splitlines()
    own: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            own[c] = path
    mounts = []
    for line in Path(mountinfo).read_text().splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        if len(f) >= 5 and len(r) >= 3:
            mounts.append((f[3], f[4], r[0], r[2].split(",")))  # root, point, fstype, opts
    for root, point, fstype, opts in mounts:
        if (fstype == "cgroup2" and "" in own
                and "memory" in _read_words(Path(point) / "cgroup.controllers")):
            return CgroupParent(_mount_path(point, root, own[""]), 2)
    for root, point, fstype, opts in mounts:
        if fstype == "cgroup" and "memory" in opts and "memory" in own:
            return CgroupParent(_mount_path(point, root, own["memory"]), 1)
    raise KernelBackendError("no memory cgroup controller mounted (neither cgroup v2 with "
                             "memory nor a v1 memory hierarchy): cannot apply memcg limits")


def _mount_path(point: str, mount_root: str, cgroup_path: str) -> Path:
    rel = os.path.relpath(cgroup_path, mount_root) if mount_root != "/" else cgroup_path
    rel = rel.lstrip("/")
    return Path(point) if rel in ("", ".") else Path(point) / rel


def _read_words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _remove_cgroup_dir(path: Path) -> None:
    """rmdir a cgroup; the kernel refuses while the exiting child is still being released,
    so retry briefly. (A test can swap this out to clean a fake tree of plain files.)"""
    for attempt in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if attempt == 49:
                raise KernelBackendError(f"cannot remove memory cgroup {path} ({e.strerror}); "
                                         f"remove it by hand (rmdir)") from None
            time.sleep(0.02)


@contextlib.contextmanager
def point_memcg(high_mb: int, max_mb: int, swap_max_mb: int,
                parent: CgroupParent) -> Iterator[Path]:
    """A fresh memory cgroup below `parent` with the point's limits; removed on exit.

    v2: memory.high, memory.max ("max" for 0 = no limit), memory.swap.max (the point's
    swap_max_mb, 0 = anon pages cannot be swapped, as MemorySwapMax=0 in the seed test); the
    parent must delegate the memory controller (it is enabled in its cgroup.subtree_control if
    needed, which the kernel refuses while the parent itself has processes: the "no internal
    processes" rule). v1 has no memory.high: memory.limit_in_bytes gets max_mb, or high_mb when
    only that is set; memory.memsw.limit_in_bytes (if present) gets limit + swap_max_mb.
    """
    path = parent.path / f"faultsim-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        if parent.version == 2:
            ctl = parent.path / "cgroup.subtree_control"
            if ctl.exists() and "memory" not in _read_words(ctl):
                try:
                    _write(ctl, "+memory")
                except OSError as e:
                    raise KernelBackendError(
                        f"cannot enable the memory controller for children of {parent.path} "
                        f"({e.strerror}): cgroup v2 allows it only in a cgroup with no "
                        f"processes of its own; run the runner in a leaf below a delegated "
                        f"cgroup") from None
        path.mkdir()
    except KernelBackendError:
        raise
    except OSError as e:
        raise KernelBackendError(f"cannot create memory cgroup {path} ({e.strerror}): kernel "
                                 f"points with memcg limits need root or a delegated "
                                 f"cgroup") from None
    try:
        try:
            if parent.version == 2:
                _write(path / "memory.high", str(high_mb * MIB) if high_mb else "max")
                _write(path / "memory.max", str(max_mb * MIB) if max_mb else "max")
                if (path / "memory.swap.max").exists():  # absent without swap accounting
                    _write(path / "memory.swap.max", str(swap_max_mb * MIB))
            else:
                limit_mb = max_mb or high_mb
                _write(path / "memory.limit_in_bytes", str(limit_mb * MIB))
                if (path / "memory.memsw.limit_in_bytes").exists():
                    _write(path / "memory.memsw.limit_in_bytes",
                           str((limit_mb + swap_max_mb) * MIB))
        except OSError as e:
            raise KernelBackendError(f"cannot set limits on memory cgroup {path} "
                                     f"({e.strerror})") from None
        yield path
    finally:
        _remove_cgroup_dir(path)


# What _memcg_figures reads from a point's cgroup (all None without a memcg).
MEMCG_FIGURES = ("peak_usage_mb", "max_reclaim", "kmem_peak_mb")


def _memcg_figures(path: Path, version: int) -> dict[str, float | None]:
    """peak_usage_mb, max_reclaim (times the limit was hit) and, on cgroup v1,
    kmem_peak_mb (memory.kmem.max_usage_in_bytes: the kernel memory charged, at its peak)
    of a finished point's cgroup."""
    out: dict[str, float | None] = dict.fromkeys(MEMCG_FIGURES)
    if version == 1:
        with contextlib.suppress(OSError, ValueError):
            out["kmem_peak_mb"] = int((path / "memory.kmem.max_usage_in_bytes")
                                      .read_text().split()[0]) / MIB
    peak_file, events_key = (("memory.peak", "max") if version == 2
                             else ("memory.max_usage_in_bytes", None))
    with contextlib.suppress(OSError, ValueError):
        out["peak_usage_mb"] = int((path / peak_file).read_text().split()[0]) / MIB
    with contextlib.suppress(OSError, ValueError):
        if version == 2:
            events = dict(line.split() for line in
                          (path / "memory.events").read_text().splitlines())
            out["max_reclaim"] = int(events[events_key])
        else:
            out["max_reclaim"] = int((path / "memory.failcnt").read_text().strip())
    return out


# ---- running a program ---------------------------------------------------------------------

@dataclass
class RunResult:
    report: dict[str, Any]          # the program's final JSON line
    vmstat_before: dict[str, int]   # at its warm line
    vmstat_after: dict[str, int]    # after it exited
    memcg: dict[str, float | None]  # _memcg_figures (None values without a memcg)
    memcg_path: str | None


def run_program(argv: Sequence[str], *, timeout_s: float, cgroup: Path | None = None,
                cgroup_version: int = 2, vmstat_path: str | Path = "/proc/vmstat"
                ) -> RunResult:
    """Run a workload program: hold it at --start-fd until it is in `cgroup` (if any),
    snapshot vmstat at its `{"event": "warm"}` line (or at start if it prints none) and
    after it exits, return its final JSON line. The program is killed and reaped whatever
    happens (timeout, KeyboardInterrupt), before a caller removes its cgroup."""
    with tempfile.TemporaryFile() as stderr_f:
        return _run_program(argv, stderr_f, timeout_s, cgroup, cgroup_version, vmstat_path)


def _run_program(argv: Sequence[str], stderr_f: Any, timeout_s: float, cgroup: Path | None,
                 cgroup_version: int, vmstat_path: str | Path) -> RunResult:
    start_r, start_w = os.pipe()
    proc = None
    try:
        proc = subprocess.Popen([*argv, "--start-fd", str(start_r)], pass_fds=(start_r,),
                                stdout=subprocess.PIPE, stderr=stderr_f, text=True,
                                start_new_session=True)
        os.close(start_r)
        start_r = -1
        if cgroup is not None:
            try:
                _write(cgroup / "cgroup.procs", str(proc.pid))
            except OSError as e:
                raise KernelBackendError(f"cannot move the workload into {cgroup} "
                                         f"({e.strerror})") from None
        before = read_vmstat(vmstat_path)
        os.write(start_w, b"g")
        os.close(start_w)
        start_w = -1
        lines = _read_lines(proc, timeout_s, vmstat_path)
        try:
            proc.wait(timeout=TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            raise KernelBackendError(f"{Path(argv[0]).name} closed its output but did not "
                                     f"exit within {TERM_GRACE_S:.0f} s; stopped it") from None
        after = read_vmstat(vmstat_path)
        memcg = (_memcg_figures(cgroup, cgroup_version) if cgroup is not None
                 else dict.fromkeys(MEMCG_FIGURES))
        report = None
        for text, snapshot in lines:
            if snapshot:
                before = snapshot
            elif text.strip():
                with contextlib.suppress(json.JSONDecodeError):
                    report = json.loads(text)
        stderr_f.seek(0)
        err = stderr_f.read().decode(errors="replace").strip()
        if proc.returncode != 0 or report is None:
            why = (err.splitlines() or [f"exit status {proc.returncode}"])[-1]
            if report is not None and report.get("error"):
                why = report["error"]
            raise KernelBackendError(f"{Path(argv[0]).name} failed: {why}")
        return RunResult(report, before, after, memcg, str(cgroup) if cgroup else None)
    finally:
        for fd in (start_r, start_w):
            if fd >= 0:
                os.close(fd)
        if proc is not None and proc.poll() is None:
            _stop(proc)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()


def _read_lines(proc: subprocess.Popen, timeout_s: float, vmstat_path: str | Path
                ) -> list[tuple[str, dict[str, int] | None]]:
    """Read the program's stdout to EOF; a warm line is replaced by a vmstat snapshot taken
    the moment it arrives. Timeout: SIGTERM (it cleans up), then SIGKILL; raises."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    out: list[tuple[str, dict[str, int] | None]] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _stop(proc)
                raise KernelBackendError(f"workload did not finish within {timeout_s:.0f} s; "
                                         f"stopped it")
            if not sel.select(timeout=min(left, 1.0)):
                continue
            line = proc.stdout.readline()
            if not line:
                return out
            if line.startswith('{"event": "warm"'):
                out.append((line, read_vmstat(vmstat_path)))
            else:
                out.append((line, None))
    finally:
        sel.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the program (it stops at its next check and removes its files), SIGKILL it
    after TERM_GRACE_S, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


# ---- one point -----------------------------------------------------------------------------

def run_point(params: Any, seed: int, *, work_dir: str | Path | None = None,
              cgroup_parent: CgroupParent | None = None,
              cache_dir: Path | None = None) -> dict[str, Any]:
    """Run one point on this machine's kernel and return its row (see the module docstring).

    `params` is a `core.Params`; `seed` is ignored (a real run is not reproducible).
    `work_dir` is where file_thrash puts its files (default: $TMPDIR or /tmp);
    `cgroup_parent` overrides where a memcg point's cgroup goes (default: the runner's own
    memory cgroup, found in /proc/self/cgroup), so tests can aim it at a fake tree.
    Raises KernelBackendError for anything the sweep should record as a failed point.
    """
    del seed
    workload = params.workload.name
    if workload not in WORKLOADS:
        raise KernelBackendError(f"workload.name={workload!r}: the kernel backend runs "
                                 f"{WORKLOADS}")
    policy = params.policy.name
    kernel_policy = os.environ.get("FAULTSIM_KERNEL_POLICY", "baseline")
    if policy != kernel_policy:
        raise KernelBackendError(
            f"policy.name={policy!r}: the kernel backend runs the installed kernel's fault "
            f"path, taken to be {kernel_policy!r} (set FAULTSIM_KERNEL_POLICY if this kernel "
            f"carries another policy)")
    total_s = float(params.sim.duration_s)
    warmup_s = float(params.sim.warmup_s)
    if warmup_s >= total_s:
        raise KernelBackendError(f"sim.warmup_s={warmup_s} must be < sim.duration_s="
                                 f"{total_s}: the kernel backend measures the rest of the run")
    work_dir = Path(work_dir or os.environ.get("TMPDIR") or "/tmp")
    avail = cpus_available()
    cores = min(params.machine.cores, avail)

    binary = compile_workload(workload, cache_dir=cache_dir)
    if workload == "file_thrash":
        w = params.workload
        argv = [str(binary), "--threads", str(w.threads), "--file-mb", str(w.file_mb),
                "--duration-s", repr(total_s), "--warmup-s", repr(warmup_s),
                "--dir", str(work_dir), "--cpus", str(cores)]
        if w.open_close:
            argv.append("--open-close")
        if params.machine.noise:
            argv += ["--noise", "--noise-busy-us", repr(params.machine.noise_busy_us),
                     "--noise-sleep-us", repr(params.machine.noise_sleep_us)]
        if not params.device.sparse:
            argv.append("--no-sparse")
        setup_s = 0.0 if params.device.sparse else w.threads * w.file_mb / SETUP_WRITE_MB_S
    else:  # swapin
        w = params.workload
        argv = [str(binary), "--mb", str(w.anon_mb), "--writers", str(w.writers),
                "--readers", str(w.readers), "--duration-s", repr(total_s)]
        setup_s = 0.0
    timeout_s = total_s + setup_s + STARTUP_SLACK_S

    # Other work on the machine shares its CPUs and its /proc/vmstat: record how busy it was
    # when the measurement started, so a row taken on a loaded machine can be recognised.
    loadavg_before = os.getloadavg()[0]
    mc = params.memcg
    with contextlib.ExitStack() as stack:
        cgroup = None
        version = 2
        if mc.high_mb > 0 or mc.max_mb > 0:
            parent = cgroup_parent or find_cgroup_parent()
            version = parent.version
            cgroup = stack.enter_context(point_memcg(mc.high_mb, mc.max_mb, mc.swap_max_mb,
                                                     parent))
        result = run_program(argv, timeout_s=timeout_s, cgroup=cgroup,
                             cgroup_version=version)

    row = kernel_row(result, params=params, work_dir=work_dir)
    row["loadavg_1m_before"] = loadavg_before
    if workload == "swapin" and "swapin_rounds" in result.report:
        # swapin has no warm line: its window is the whole run.
        row["wall_s"] = row["sim_time_s"] = result.report.get("wall_s")
    return row


def kernel_row(result: RunResult, *, params: Any, work_dir: Path) -> dict[str, Any]:
    """The row of one run: every METRIC_COLUMNS column (None where unmeasurable) plus the
    EXTRA_COLUMNS."""
    rep = result.report
    before, after = result.vmstat_before, result.vmstat_after

    def delta(name: str) -> int | None:
        if name in before and name in after:
            return after[name] - before[name]
        return None

    def delta_sum(names: Sequence[str]) -> int | None:
        ds = [d for d in (delta(n) for n in names) if d is not None]
        return sum(ds) if ds else None

    row: dict[str, Any] = {c: None for c in METRIC_COLUMNS}
    wall = rep.get("wall_s")
    rounds = rep.get("rounds")
    row["wall_s"] = row["sim_time_s"] = wall
    row["pageout_rounds"] = rep.get("pageout_rounds")
    row["swapin_rounds"] = rep.get("swapin_rounds")
    if rounds is not None:
        row["rounds"] = rounds
        row["throughput_rounds_s"] = rounds / wall if wall else None
    row["pgfault"] = delta("pgfault")
    row["pgmajfault"] = delta("pgmajfault")
    row["refaults"] = delta("workingset_refault_file")
    row["workingset_activate"] = delta("workingset_activate_file")
    row["pgactivate"] = delta("pgactivate")
    row["pgdeactivate"] = delta("pgdeactivate")
    for name in OPTIONAL_COUNTERS:
        row[name] = delta(name)
    if "pgsteal_anon" in after and "pgsteal_file" in after:
        row["pages_reclaimed"] = delta_sum(("pgsteal_anon", "pgsteal_file"))
    else:
        row["pages_reclaimed"] = delta_sum(PGSTEAL_BY_RECLAIMER)
    row["pgscan"] = delta_sum(PGSCAN_BY_RECLAIMER)
    pgpgin_kb = delta("pgpgin")
    pgpgin_pages = pgpgin_kb // (PAGE_SIZE // 1024) if pgpgin_kb is not None else None
    # Device reads: the same thing as the model's pages_read only when files have real data.
    row["pages_read"] = pgpgin_pages if not params.device.sparse else None
    drop, miss = row["retry_mmap_drop"], row["retry_io_miss"]
    if drop is not None and miss is not None:
        row["miss_drop_pct"] = 100.0 * miss / drop if drop else None
    if rounds:
        row["drops_per_round"] = drop / rounds if drop is not None else None
        row["misses_per_round"] = miss / rounds if miss is not None else None
    row["peak_usage_mb"] = result.memcg.get("peak_usage_mb")
    row["max_reclaim"] = result.memcg.get("max_reclaim")

    lru = lru_kind()
    ra = read_ahead_kb(work_dir)
    cores_used = rep.get("cores_used")
    ignored = []
    if params.machine.cores != cores_used:
        ignored.append(f"machine.cores={params.machine.cores}->{cores_used}")
    if params.machine.lru != lru:
        ignored.append(f"machine.lru={params.machine.lru}->{lru}")
    if ra is not None and params.device.ra_kb != ra:
        ignored.append(f"device.ra_kb={params.device.ra_kb}->{ra}")
    if ra is None:
        ignored.append("device.ra_kb (no block device behind the work dir)")
    if not params.device.large_folios:
        ignored.append("device.large_folios=False->the filesystem's own")
    row.update({
        "backend": BACKEND,
        "kernel_release": kernel_release(),
        "lru": lru,
        "read_ahead_kb": ra,
        "cores_used": cores_used,
        "params_ignored": "; ".join(ignored) or None,
        "memcg_path": result.memcg_path,
        "pgpgin_pages": pgpgin_pages,
        "kmem_peak_mb": result.memcg.get("kmem_peak_mb"),
        # every /proc/vmstat counter that moved, for what the row's columns do not name
        # (pgactivate, pgdeactivate, pgrotated, ...): JSON, system-wide like the rest
        "vmstat_delta": json.dumps({k: after[k] - before[k] for k in sorted(after)
                                    if k in before and after[k] != before[k]}),
    })
    return row


# ---- comparing the backends ----------------------------------------------------------------

# Metrics compared, in table order; per-round ones are derived from the totals first.
COMPARED_METRICS = ["rounds", "throughput_rounds_s", "pgfault_per_round",
                    "pgmajfault_per_round", "pgfault", "pgmajfault", "retry_mmap_drop",
                    "retry_io_miss", "drops_per_round", "misses_per_round", "miss_drop_pct", "vma_lock_success", "vma_lock_abort",
                    "vma_lock_retry", "vma_lock_miss", "refaults", "workingset_activate",
                    "pgactivate", "pgdeactivate", "pages_reclaimed"]


def sim_vs_real_table(points: pl.DataFrame, axis_columns: list[str]) -> pl.DataFrame:
    """Simulated against measured, one row per (point, metric) present on both backends.

    `points`: rows of both backends (a `backend` column, 'sim' or 'kernel'), the axis
    columns, and metric columns; failed rows (non-null `error`, or `status` other than
    'ok', where those columns exist) are left out. Pass `policy` among `axis_columns` when
    the frame holds several policies (a run dir's points.parquet always has that column). Replicates are averaged per backend and point. A metric appears for a point
    only where the kernel measured it (so the retry counters only on kernels that have
    them). Columns: the axes (without `backend`), `metric`, `simulated`, `measured`,
    `ratio` = simulated / measured (None when measured is 0), `n_sim`, `n_kernel`; sorted
    by the axes, then the metric order of COMPARED_METRICS.
    """
    import polars as pl

    axes = [a for a in axis_columns if a != "backend"]
    df = points
    if "error" in df.columns:
        df = df.filter(pl.col("error").is_null())
    if "status" in df.columns:
        df = df.filter(pl.col("status") == "ok")
    df = df.filter(pl.col("backend").is_in(["sim", "kernel"]))
    per_round = {"pgfault_per_round": "pgfault", "pgmajfault_per_round": "pgmajfault"}
    derived = [(pl.col(src).cast(pl.Float64) / pl.col("rounds").cast(pl.Float64)).alias(name)
               for name, src in per_round.items()
               if src in df.columns and "rounds" in df.columns]
    df = df.with_columns(derived)
    metrics = [m for m in COMPARED_METRICS if m in df.columns]
    means = (df.lazy()
             .group_by([*axes, "backend"])
             .agg([pl.col(m).cast(pl.Float64).mean().alias(m) for m in metrics]
                  + [pl.len().alias("n")])
             .unpivot(index=[*axes, "backend", "n"], on=metrics, variable_name="metric")
             .collect())
    sim = means.filter(pl.col("backend") == "sim").select(
        *axes, "metric", pl.col("value").alias("simulated"), pl.col("n").alias("n_sim"))
    real = means.filter(pl.col("backend") == "kernel").select(
        *axes, "metric", pl.col("value").alias("measured"), pl.col("n").alias("n_kernel"))
    order = pl.DataFrame({"metric": metrics, "_order": list(range(len(metrics)))})
    return (sim.join(real, on=[*axes, "metric"], how="inner", nulls_equal=True)
            .filter(pl.col("measured").is_not_null())
            .with_columns(pl.when(pl.col("measured") != 0)
                          .then(pl.col("simulated") / pl.col("measured"))
                          .otherwise(None).alias("ratio"))
            .join(order, on="metric", how="left")
            .sort([*axes, "_order"])
            .select(*axes, "metric", "simulated", "measured", "ratio", "n_sim", "n_kernel"))

