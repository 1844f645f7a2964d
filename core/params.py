"""Parameters of one simulation: frozen, typed, validated.

`Params` groups the knobs of docs/model.md the way the Hydra tree groups them (machine,
workload, policy, memcg, device, costs, model, sim); the dotted axis keys of a grid
(`machine.cores`, `memcg.high_mb`, ...) are exactly these attribute paths. A bad value raises
`ParamError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import Any

from core import costs
from core.costs import FOLIO_BATCH_SIZE, Costs

POLICIES = ("baseline", "vma_retry", "vma_retry_uptodate", "retry_hard", "hold_vma_io",
            "mmap_lock_only", "hold_file_vma_io")
WORKLOADS = ("file_thrash", "swapin", "app_launch", "fork_stall")
FORK_LOCKS = ("all", "cow")
SWAP_DEVICES = ("zram", "disk")
LRUS = ("mglru", "classic")
PINNINGS = ("none", "round_robin")

PAGE_KB = 4

# app_launch's mappings (core/workloads/app_launch.py explains them): name, MB, share of
# it in the page cache at the start (-1: workload.app_cached_pct), share of the file
# accesses (per mille). The anon heap (APP_HEAP_MB) follows them.
APP_OBJECTS = (
    ("boot image + framework oat", 48, 100, 300),
    ("shared libraries", 16, 100, 150),
    ("app code (odex/vdex)", 24, -1, 300),
    ("base.apk (dex, resources)", 32, -1, 250),
)
APP_HEAP_MB = 64
# x86-64 with 4-level paging gives a process 128 TiB of user address space.
ADDRESS_SPACE_MB = 128 * 1024 * 1024


def fork_modelled_vmas(w: WorkloadParams) -> int:
    """fork_stall's VMAs with a row of their own (core/workloads/fork_stall.py lays them out):
    the app's file objects, its heap, the background file and the mappers' regions."""
    return len(APP_OBJECTS) + 2 + w.app_mappers


class ParamError(ValueError):
    """A parameter outside its allowed range: one line naming field, value and range."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field_name}={value!r}: {allowed}")


@dataclass(frozen=True)
class MachineParams:
    cores: int = 256
    # `none`: one global FIFO run queue; `round_robin`: thread t is pinned to core t % cores.
    pinning: str = "none"
    # EEVDF base slice 0.75 ms x (1 + ilog2(min(ncpus, 8))) = 3 ms on any machine >= 8 CPUs.
    sched_slice_us: float = 3000.0
    lru: str = "mglru"
    fault_around_kb: int = 64
    # ioretry_noise.c: one spinner per core, busy then asleep, above worker priority.
    noise: bool = False
    noise_busy_us: float = 500.0
    noise_sleep_us: float = 500.0
    # Run-to-run jitter a real machine has (core/sched.py; sizes and sources in
    # docs/calibration.md): the scheduler tick takes costs.tick_ns of CPU every 1/HZ on a
    # busy CPU, at a phase drawn per CPU; a wake-up's latency is lognormal around
    # costs.wakeup_latency_ns (its median) with sigma `wakeup_sigma`; a CPU burst's cost
    # varies with cache misses, a mean-preserving lognormal factor with sigma `cost_sigma`.
    # False: none of them, every seed the same timing (the mechanism tests use this).
    jitter: bool = True
    wakeup_sigma: float = 0.3
    cost_sigma: float = 0.3

    def __post_init__(self) -> None:
        check_machine(self)


@dataclass(frozen=True)
class WorkloadParams:
    name: str = "file_thrash"
    # file_thrash: worker threads, one file each; app_launch: threads running an access
    # trace; swapin: unused (its threads are `writers` + `readers`).
    threads: int = 500
    file_mb: int = 16
    open_close: bool = False
    # swapin (the series' swap test): one private anon VMA of anon_mb, written once before
    # time 0; `writers` loop MADV_PAGEOUT over it, `readers` loop reading a byte per page.
    writers: int = 5
    readers: int = 5
    anon_mb: int = 100
    # app_launch (core/workloads/app_launch.py documents the layout; the preset each value).
    app_touches: int = 6000         # accesses in each worker's trace
    app_run_pages: int = 8          # mean length of a sequential run of pages
    app_anon_pct: int = 20          # share of accesses to the anon heap
    app_cached_pct: int = 50        # share of the app's own file pages cached at start
    app_mappers: int = 3            # threads cycling mmap / mprotect / munmap
    app_map_period_us: float = 2000.0
    app_map_kb: int = 1024          # size each mapper maps and unmaps per cycle
    app_work_us: float = 20.0       # CPU work between two accesses of a trace
    # fork_stall (core/workloads/fork_stall.py; app_launch's process, running, plus):
    fork_vmas: int = 8000           # VMAs of the process dup_mmap walks
    fork_period_ms: float = 100.0   # fork() every this long after the last one returned
    fork_anon_pct: int = 50         # share of the unmodelled VMAs that are anon with anon_vma
    fork_anon_rss_mb: int = 128     # mapped anon memory in them: PTEs dup_mmap copies
    fork_bg_threads: int = 4        # background threads in the throttled blkcg
    fork_bg_shared: bool = False    # their cold file is MAP_SHARED read-only, not MAP_PRIVATE
    fork_bg_pos_pct: int = 25       # where it lies in address order (% of the VMAs before it)

    def __post_init__(self) -> None:
        check_workload(self)


@dataclass(frozen=True)
class PolicyParams:
    name: str = "baseline"
    # Which VMAs fork's dup_mmap write-locks: `all` (v7.0) or `cow`, only is_cow_mapping()
    # ones (the review thread's proposal, in David Hildenbrand's form).
    fork_lock: str = "all"

    def __post_init__(self) -> None:
        check_policy(self)


@dataclass(frozen=True)
class MemcgParams:
    # 0 means no limit ("max" in cgroup v2).
    high_mb: int = 0
    max_mb: int = 0
    swap_max_mb: int = 0

    def __post_init__(self) -> None:
        check_memcg(self)


@dataclass(frozen=True)
class DeviceParams:
    # Sparse (ftruncate'd) files: holes are zero-filled on the faulting CPU, no device I/O.
    sparse: bool = True
    io_median_us: float = 100.0
    io_sigma: float = 0.5
    queue_depth: int = 64
    # read_ahead_kb of the backing device: 128 is the kernel default (VM_READAHEAD_PAGES).
    ra_kb: int = 128
    # mapping_large_folio_support of the files' filesystem (ext4 regular files since 6.16,
    # xfs since 5.18): readahead allocates folios of up to PMD order (page_cache_ra_order).
    # False: every page-cache folio is one page (tmpfs without huge=, older ext4).
    large_folios: bool = True
    # Swap device: `zram` (SWP_SYNCHRONOUS_IO, compression on the calling CPU) or `disk`
    # (asynchronous through the block device above).
    swap: str = "zram"
    # swapin_readahead window on `disk`: 1 << vm.page-cluster (3 by default).
    swap_ra_pages: int = 8
    # The service time's heavy tail (core/blockdev.py): io_tail_pct % of requests take a
    # Pareto time, P(t > x) = (io_tail_us / x) ** io_tail_alpha, instead of the lognormal.
    io_tail_pct: float = 0.0
    io_tail_us: float = 2000.0
    io_tail_alpha: float = 1.5
    # blk-throttle io.max of the throttled group (fork_stall's background threads): read
    # MB/s (rbps / 2**20) and read IOs/s; 0 is "max", no limit.
    throttle_read_mbps: float = 0.0
    throttle_read_iops: int = 0

    def __post_init__(self) -> None:
        check_device(self)


@dataclass(frozen=True)
class ModelParams:
    """Model-only switches for ablation studies (issue 5: each mechanism off in turn). No
    kernel has these knobs: True is what the kernel does, False switches the mechanism off.
    """
    # CPUs spinning on lru_lock with interrupts off acknowledge a TLB-flush IPI only once
    # they turn interrupts back on (False: at once).
    tlb_late_ack: bool = True
    # try_charge_memcg runs the over-high handler inside the charge path once the debt
    # passes MEMCG_CHARGE_BATCH (False: only on return to user, holding no lock).
    inkernel_high_handler: bool = True
    # rwsem lock stealing: a woken writer takes the lock itself, readers steal a free lock,
    # writers spin on a running owner (False: the lock is granted to the first waiter at
    # release, FIFO, nobody steals or spins).
    rwsem_steal_spin: bool = True


@dataclass(frozen=True)
class SimParams:
    duration_s: float = 2.0
    warmup_s: float = 0.5
    # Safety net against a run that never ends; hitting it is reported, not hidden.
    max_events: int = 2_000_000_000

    def __post_init__(self) -> None:
        check_sim(self)


@dataclass(frozen=True)
class Params:
    machine: MachineParams = field(default_factory=MachineParams)
    workload: WorkloadParams = field(default_factory=WorkloadParams)
    policy: PolicyParams = field(default_factory=PolicyParams)
    memcg: MemcgParams = field(default_factory=MemcgParams)
    device: DeviceParams = field(default_factory=DeviceParams)
    costs: Costs = field(default_factory=Costs)
    model: ModelParams = field(default_factory=ModelParams)
    sim: SimParams = field(default_factory=SimParams)

    def __post_init__(self) -> None:
        check_across(self)       # each group checked itself when it was built

    # -- conversions ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None = None) -> Params:
        """Build from a nested dict ({'machine': {'cores': 8}, ...}); unknown keys raise."""
        d = dict(d or {})
        groups = {}
        for f in fields(cls):
            groups[f.name] = build_group(f.name, d.pop(f.name, None) or {})
        if d:
            k = min(d)
            raise ParamError(k, d[k], "unknown group; valid groups: "
                             + ", ".join(f.name for f in fields(cls)))
        return cls(**groups)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        # Every field of every group is a scalar: a shallow copy is dataclasses.asdict's
        # result, without its deep copy of each value (a sweep builds one per point).
        return {g: group_dict(getattr(self, g)) for g in _field_names(Params)}

    def with_(self, **dotted: Any) -> Params:
        """Copy with dotted overrides: p.with_(**{'machine.cores': 8})."""
        d = self.to_dict()
        for key, value in dotted.items():
            group, _, name = key.partition(".")
            if group not in d or name not in d[group]:
                raise ParamError(key, value, "unknown parameter")
            d[group][name] = value
        return Params.from_dict(d)

    # -- derived sizes in pages ----------------------------------------------------------
    @property
    def file_pages(self) -> int:
        return self.workload.file_mb * 1024 // PAGE_KB

    @property
    def anon_pages(self) -> int:
        return self.workload.anon_mb * 1024 // PAGE_KB

    @property
    def swap_max_pages(self) -> int:
        return self.memcg.swap_max_mb * 1024 // PAGE_KB

    @property
    def ra_pages(self) -> int:
        return max(1, self.device.ra_kb // PAGE_KB)

    @property
    def fault_around_pages(self) -> int:
        return max(1, self.machine.fault_around_kb // PAGE_KB)

    @property
    def memory_high_pages(self) -> int:
        return self.memcg.high_mb * 1024 // PAGE_KB

    @property
    def memory_max_pages(self) -> int:
        return self.memcg.max_mb * 1024 // PAGE_KB

    @property
    def kmem_pages(self) -> int:
        """Kernel memory file_thrash's process charges to its memcg when the run starts,
        besides the page cache, in pages: each thread's kernel stack (THREAD_SIZE,
        accounted to the memcg) and task_struct, each file's inode and dentry and the
        struct file and VMA of its mapping (slab caches created SLAB_ACCOUNT), and each
        file's page-cache xarray nodes (XA_FLAGS_ACCOUNT), which stay allocated while the
        file's slots hold folios or shadows. Page tables are
        not here: they are charged at the first fault of each 2 MB range and uncharged at
        munmap (core.mm.pte_alloc_pages, free_pgtables). 0 for other workloads (their
        stacks and xarray nodes are not charged yet)."""
        if self.workload.name != "file_thrash":
            return 0
        n = self.file_pages
        nodes, level = 0, n
        while True:
            level = -(-level // costs.XA_CHUNK_SLOTS)
            nodes += level
            if level <= 1:
                break
        slab_bytes = self.workload.threads * (nodes * costs.XA_NODE_BYTES
                                              + costs.TASK_STRUCT_BYTES
                                              + costs.FILE_OBJS_BYTES)
        slab_pages = -(-slab_bytes // (PAGE_KB * 1024))
        return self.workload.threads * costs.THREAD_SIZE_PAGES + slab_pages


def group_class(group: str) -> type:
    """The dataclass of one group of Params ('machine' -> MachineParams)."""
    return _group_classes()[group]


@functools.cache
def _group_classes() -> dict[str, type]:
    return {f.name: f.default_factory for f in fields(Params)}  # type: ignore[misc]


def group_dict(sub: Any) -> dict[str, Any]:
    """One group's values by field name (a shallow copy: every field is a scalar)."""
    return {name: getattr(sub, name) for name in _field_names(type(sub))}


def build_group(group: str, sub: dict[str, Any]) -> Any:
    """One group of Params from its dict (missing keys take their defaults), its values
    coerced and checked; unknown keys raise."""
    sub_cls = group_class(group)
    specs = _field_specs(sub_cls)
    for k in sub:
        if k not in specs:
            raise ParamError(f"{group}.{k}", sub[k],
                             f"unknown key; valid keys: {', '.join(sorted(specs))}")
    return sub_cls(**{k: _coerce(sub_cls, k, v) for k, v in sub.items()})


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


@functools.cache
def _field_specs(cls: type) -> dict[str, tuple[str, type | None]]:
    """Field name -> (type name, the Python type it must be, None if any)."""
    out = {}
    for f in fields(cls):
        tname = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out[f.name] = (tname, _TYPES.get(tname))
    return out


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Accept ints for float fields (YAML writes 3000 for 3000.0); reject the wrong type."""
    tname, expect = _field_specs(cls)[name]
    if type(value) is expect:
        return value
    if tname == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tname == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if expect is not None and (not isinstance(value, expect)
                               or (expect is int and isinstance(value, bool))):
        group = cls.__name__.replace("Params", "").lower()
        raise ParamError(f"{group}.{name}", value, f"must be of type {tname}")
    return value


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ParamError(name, value, allowed)


def validate(p: Params) -> None:
    """Raise ParamError for the first value outside its range (docs/model.md): every
    group's own checks, then those across groups. A group checks itself when it is built
    (`__post_init__`) and Params checks across groups when it is built, so any Params is
    valid; this runs all of them again."""
    check_machine(p.machine)
    check_workload(p.workload)
    check_policy(p.policy)
    check_memcg(p.memcg)
    check_device(p.device)
    check_sim(p.sim)
    check_costs(p.costs)
    check_across(p)


def check_machine(m: MachineParams) -> None:
    _check(1 <= m.cores <= 4096, "machine.cores", m.cores, "allowed 1..4096")
    _check(m.pinning in PINNINGS, "machine.pinning", m.pinning, f"one of {PINNINGS}")
    _check(m.sched_slice_us > 0, "machine.sched_slice_us", m.sched_slice_us, "must be > 0")
    _check(m.lru in LRUS, "machine.lru", m.lru, f"one of {LRUS}")
    _check(4 <= m.fault_around_kb <= 2048 and m.fault_around_kb % 4 == 0,
           "machine.fault_around_kb", m.fault_around_kb, "a multiple of 4 in 4..2048")
    _check(m.noise_busy_us >= 0, "machine.noise_busy_us", m.noise_busy_us, "must be >= 0")
    _check(m.noise_sleep_us > 0, "machine.noise_sleep_us", m.noise_sleep_us, "must be > 0")
    _check(0 <= m.wakeup_sigma <= 2, "machine.wakeup_sigma", m.wakeup_sigma, "allowed 0..2")
    _check(0 <= m.cost_sigma <= 2, "machine.cost_sigma", m.cost_sigma, "allowed 0..2")


def check_workload(w: WorkloadParams) -> None:
    _check(w.name in WORKLOADS, "workload.name", w.name, f"one of {WORKLOADS}")
    _check(1 <= w.threads <= 100_000, "workload.threads", w.threads, "allowed 1..100000")
    _check(w.file_mb >= 1, "workload.file_mb", w.file_mb, "must be >= 1")
    _check(w.file_mb <= ADDRESS_SPACE_MB, "workload.file_mb", w.file_mb,
           f"a file mapping must fit the 128 TiB address space (<= {ADDRESS_SPACE_MB})")
    _check(w.writers >= 0, "workload.writers", w.writers, "must be >= 0")
    _check(w.readers >= 0, "workload.readers", w.readers, "must be >= 0")
    if w.name == "swapin":
        _check(w.writers + w.readers >= 1, "workload.readers", w.readers,
               "swapin needs writers + readers >= 1")
    _check(1 <= w.anon_mb <= ADDRESS_SPACE_MB, "workload.anon_mb", w.anon_mb,
           f"allowed 1..{ADDRESS_SPACE_MB}")
    _check(w.app_touches >= 1, "workload.app_touches", w.app_touches, "must be >= 1")
    _check(w.app_run_pages >= 1, "workload.app_run_pages", w.app_run_pages, "must be >= 1")
    _check(0 <= w.app_anon_pct <= 100, "workload.app_anon_pct", w.app_anon_pct,
           "a percentage 0..100")
    _check(0 <= w.app_cached_pct <= 100, "workload.app_cached_pct", w.app_cached_pct,
           "a percentage 0..100")
    _check(w.app_work_us >= 0, "workload.app_work_us", w.app_work_us, "must be >= 0")
    _check(w.app_mappers >= 0, "workload.app_mappers", w.app_mappers, "must be >= 0")
    _check(w.app_map_period_us > 0, "workload.app_map_period_us", w.app_map_period_us,
           "must be > 0")
    _check(4 <= w.app_map_kb <= 65536 and w.app_map_kb % 4 == 0, "workload.app_map_kb",
           w.app_map_kb, "a multiple of 4 in 4..65536")
    _check(64 <= w.fork_vmas <= 1_000_000, "workload.fork_vmas", w.fork_vmas,
           "allowed 64..1000000")
    _check(w.fork_period_ms > 0, "workload.fork_period_ms", w.fork_period_ms, "must be > 0")
    _check(0 <= w.fork_anon_pct <= 100, "workload.fork_anon_pct", w.fork_anon_pct,
           "a percentage 0..100")
    _check(0 <= w.fork_anon_rss_mb <= ADDRESS_SPACE_MB, "workload.fork_anon_rss_mb",
           w.fork_anon_rss_mb, f"allowed 0..{ADDRESS_SPACE_MB}")
    _check(0 <= w.fork_bg_pos_pct <= 100, "workload.fork_bg_pos_pct", w.fork_bg_pos_pct,
           "a percentage 0..100")
    _check(0 <= w.fork_bg_threads <= 10_000, "workload.fork_bg_threads", w.fork_bg_threads,
           "allowed 0..10000")


def check_policy(pol: PolicyParams) -> None:
    _check(pol.name in POLICIES, "policy.name", pol.name, f"one of {POLICIES}")
    _check(pol.fork_lock in FORK_LOCKS, "policy.fork_lock", pol.fork_lock,
           f"one of {FORK_LOCKS}")


def check_memcg(mc: MemcgParams) -> None:
    _check(mc.high_mb >= 0, "memcg.high_mb", mc.high_mb, "must be >= 0 (0 = no limit)")
    _check(mc.max_mb >= 0, "memcg.max_mb", mc.max_mb, "must be >= 0 (0 = no limit)")
    _check(mc.swap_max_mb >= 0, "memcg.swap_max_mb", mc.swap_max_mb, "must be >= 0")
    if mc.max_mb and mc.high_mb:
        _check(mc.max_mb >= mc.high_mb, "memcg.max_mb", mc.max_mb,
               f"must be >= memcg.high_mb ({mc.high_mb})")


def check_device(d: DeviceParams) -> None:
    _check(d.swap in SWAP_DEVICES, "device.swap", d.swap, f"one of {SWAP_DEVICES}")
    _check(1 <= d.swap_ra_pages <= 256, "device.swap_ra_pages", d.swap_ra_pages,
           "allowed 1..256")
    _check(d.io_median_us >= 0, "device.io_median_us", d.io_median_us, "must be >= 0")
    _check(d.io_sigma >= 0, "device.io_sigma", d.io_sigma, "must be >= 0")
    _check(1 <= d.queue_depth <= 65536, "device.queue_depth", d.queue_depth,
           "allowed 1..65536")
    _check(4 <= d.ra_kb <= 16384 and d.ra_kb % 4 == 0, "device.ra_kb", d.ra_kb,
           "a multiple of 4 in 4..16384")
    _check(0 <= d.io_tail_pct <= 100, "device.io_tail_pct", d.io_tail_pct, "a percentage 0..100")
    _check(d.io_tail_us > 0, "device.io_tail_us", d.io_tail_us, "must be > 0")
    _check(d.io_tail_alpha >= 0.5, "device.io_tail_alpha", d.io_tail_alpha,
           "must be >= 0.5 (a smaller shape has no useful scale)")
    _check(d.throttle_read_mbps >= 0, "device.throttle_read_mbps", d.throttle_read_mbps,
           "must be >= 0 (0 = no limit)")
    _check(d.throttle_read_iops >= 0, "device.throttle_read_iops", d.throttle_read_iops,
           "must be >= 0 (0 = no limit)")


def check_sim(s: SimParams) -> None:
    _check(s.duration_s > 0, "sim.duration_s", s.duration_s, "must be > 0")
    _check(s.warmup_s >= 0, "sim.warmup_s", s.warmup_s, "must be >= 0")
    _check(s.max_events >= 1, "sim.max_events", s.max_events, "must be >= 1")


def check_costs(c: Costs) -> None:
    for name in _field_names(Costs):
        v = getattr(c, name)
        _check(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"costs.{name}", v,
               "must be an integer >= 0")
    _check(1 <= c.lru_add_batch <= FOLIO_BATCH_SIZE, "costs.lru_add_batch",
           c.lru_add_batch, f"must be 1..{FOLIO_BATCH_SIZE} (FOLIO_BATCH_SIZE)")
    _check(c.aging_walk_chunk_pages >= 1, "costs.aging_walk_chunk_pages",
           c.aging_walk_chunk_pages, "must be >= 1")


def check_across(p: Params) -> None:
    """The checks that read more than one group."""
    m, w, mc = p.machine, p.workload, p.memcg
    if w.name in ("app_launch", "fork_stall") and (mc.max_mb or mc.high_mb):
        # The warm page cache is charged to the app's memcg at the start: it must fit.
        warm = sum(mb * (w.app_cached_pct if c < 0 else c) // 100
                   for _, mb, c, _ in APP_OBJECTS)
        lim = min(x for x in (mc.max_mb, mc.high_mb) if x)
        _check(lim >= warm + 16, "memcg.high_mb" if lim == mc.high_mb else "memcg.max_mb",
               lim, f"app_launch starts with {warm} MB of warm page cache charged to the "
               f"memcg: the limit must be >= {warm + 16} MB")
    if w.name != "file_thrash" and (mc.max_mb or mc.high_mb):
        # Anon folios sit on their own list, which memcg reclaim does not scan here: with
        # swap allowed, the kernel would swap them out under the limit; that is not built.
        _check(mc.swap_max_mb == 0, "memcg.swap_max_mb", mc.swap_max_mb,
               f"must be 0 when {w.name} runs under a memory limit (reclaim of anon "
               "memory by memcg pressure is not modelled; MADV_PAGEOUT is)")
    if w.name == "fork_stall":
        modelled = fork_modelled_vmas(w)
        _check(w.fork_vmas > 2 * modelled, "workload.fork_vmas", w.fork_vmas,
               f"must be > {2 * modelled}: the process's {modelled} modelled VMAs sit "
               "among the others")
    if mc.max_mb:
        # Reclaim needs room for every CPU's charge stock and in-flight readahead windows,
        # and for the kernel memory charged when the run starts.
        kmem_mb = -(-p.kmem_pages * PAGE_KB // 1024)
        floor_mb = max(4, (m.cores * 64 * PAGE_KB) // 1024 // 4, kmem_mb + 2)
        _check(mc.max_mb >= floor_mb, "memcg.max_mb", mc.max_mb,
               f"must be >= {floor_mb} MB for {m.cores} cores and {kmem_mb} MB of kernel "
               f"memory (charge stocks alone are 64 pages per CPU)")
