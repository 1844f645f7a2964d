"""Params -> arrays -> engine.run -> the flat row of docs/model.md, What a row reports."""

from __future__ import annotations

import contextlib
import gc
import time

import numpy as np

from core import metrics as M
from core.engine import ENGINE_IDS, run
from core.params import POLICIES, Params
from core.state import (
    FORK_LOCK_ALL,
    FORK_LOCK_COW,
    G_AGE_HIST,
    G_BG_LAT_HIST,
    G_COUNTERS,
    G_EVENTS,
    G_FORK_HIST,
    G_HIST_READ,
    G_HIST_WRITE,
    G_LAT_HIST,
    G_LAUNCH_NS,
    G_NOW,
    G_OOM,
    G_PEAK_USAGE,
    G_RETRY_HIST,
    G_STOP,
    G_USAGE,
    G_WARM_COUNTERS,
    G_WARM_HIST,
    K_ABL_INKERNEL_HIGH,
    K_ABL_RWSEM_STEAL,
    K_ABL_TLB_LATE_ACK,
    K_ADD_TO_SWAP,
    K_AGING_BASE,
    K_AGING_CHUNK,
    K_AGING_PTE,
    K_CHARGE,
    K_CORES,
    K_ENGINE,
    K_COST_SIGMA_PPM,
    K_CTX_SWITCH,
    K_END_NS,
    K_FA_PAGE,
    K_FA_PAGES,
    K_FAULT_ENTRY,
    K_FILE_PAGES,
    K_FOLIO_ALLOC,
    K_FORK_ANON_VMA,
    K_FORK_BASE,
    K_FORK_FILE_VMA,
    K_FORK_PTE,
    K_FORK_RULE,
    K_FREE_PGTABLES,
    K_HIGH,
    K_HZ,
    K_IO_COMPLETE,
    K_IO_MEDIAN_NS,
    K_IO_SIGMA_PPM,
    K_IO_TAIL_ALPHA_PPM,
    K_IO_TAIL_NS,
    K_IO_TAIL_PPM,
    K_IO_XFER,
    K_JITTER,
    K_LARGE_FOLIOS,
    K_LINE_NS,
    K_LRU,
    K_LRU_ADD_BATCH,
    K_LRU_OP,
    K_LRU_PER_FOLIO,
    K_MAX,
    K_MAX_EVENTS,
    K_MMAP,
    K_MPROTECT,
    K_MUNMAP_GATHER,
    K_N_FILES,
    K_NOISE,
    K_NOISE_BUSY_NS,
    K_NOISE_SLEEP_NS,
    K_OPEN_CLOSE,
    K_OPEN_CLOSE_NS,
    K_PINNING,
    K_POLICY,
    K_PTE_BATCH,
    K_PTE_INSTALL,
    K_QUEUE_DEPTH,
    K_RA_PAGES,
    K_RA_SUBMIT,
    K_RC_EVICT,
    K_RC_RMAP,
    K_RC_SCAN,
    K_SLICE_NS,
    K_SPARSE,
    K_SWAP_DEV,
    K_SWAP_MAX,
    K_SWAP_RA,
    K_SWAP_WRITE_SUBMIT,
    K_THREADS,
    K_THROTL_BPS,
    K_THROTL_IOPS,
    K_THROTL_SLICE_NS,
    K_TICK_NS,
    K_TICK_PERIOD_NS,
    K_TLB_BASE,
    K_TLB_PER_CPU,
    K_TOUCH,
    K_WAKEUP,
    K_WAKEUP_SIGMA_PPM,
    K_WARMUP_NS,
    K_ZAP_PTE,
    K_ZERO_FILL,
    K_ZRAM_COMP,
    K_ZRAM_DECOMP,
    LAT_BINS,
    LRU_CLASSIC,
    LRU_MGLRU,
    N_K,
    SWAP_DISK,
    SWAP_ZRAM,
    T_ROUNDS,
    T_WARM_ROUNDS,
    make_state,
)
from core.workloads import app_launch, fork_stall, swapin

# Timer frequency of the modelled kernel: a jiffy is 4 ms (CONFIG_HZ_250, the x86 and
# Android default); it sets the memory.high penalty granularity.
HZ = 250
# block/blk-throttle.c DFL_THROTL_SLICE (HZ / 10): the depth of the throttle's budget.
THROTL_SLICE_NS = 100_000_000


def constants(p: Params) -> np.ndarray:
    """The int64 constant vector `k` the compiled code reads (times in ns)."""
    k = np.zeros(N_K, np.int64)
    c = p.costs
    k[K_ENGINE] = ENGINE_IDS[p.workload.name]
    k[K_THREADS] = p.workload.threads
    k[K_CORES] = p.machine.cores
    k[K_FILE_PAGES] = p.file_pages
    k[K_N_FILES] = p.workload.threads
    k[K_POLICY] = POLICIES.index(p.policy.name)
    k[K_LRU] = LRU_MGLRU if p.machine.lru == "mglru" else LRU_CLASSIC
    k[K_PINNING] = 1 if p.machine.pinning == "round_robin" else 0
    k[K_SLICE_NS] = int(p.machine.sched_slice_us * 1000)
    k[K_FA_PAGES] = p.fault_around_pages
    k[K_RA_PAGES] = p.ra_pages
    k[K_HIGH] = p.memory_high_pages
    k[K_MAX] = p.memory_max_pages
    k[K_SPARSE] = int(p.device.sparse)
    k[K_LARGE_FOLIOS] = int(p.device.large_folios)
    k[K_PTE_BATCH] = c.pte_batch_ns
    k[K_IO_MEDIAN_NS] = int(p.device.io_median_us * 1000)
    k[K_IO_SIGMA_PPM] = int(p.device.io_sigma * 1e6)
    k[K_QUEUE_DEPTH] = p.device.queue_depth
    k[K_OPEN_CLOSE] = int(p.workload.open_close)
    k[K_NOISE] = int(p.machine.noise)
    k[K_NOISE_BUSY_NS] = int(p.machine.noise_busy_us * 1000)
    k[K_NOISE_SLEEP_NS] = int(p.machine.noise_sleep_us * 1000)
    k[K_END_NS] = int(p.sim.duration_s * 1e9)
    k[K_WARMUP_NS] = int(p.sim.warmup_s * 1e9)
    k[K_MAX_EVENTS] = p.sim.max_events
    k[K_HZ] = HZ
    k[K_TOUCH] = c.touch_ns
    k[K_FAULT_ENTRY] = c.fault_entry_ns
    k[K_PTE_INSTALL] = c.pte_install_ns
    k[K_FA_PAGE] = c.fault_around_page_ns
    k[K_FOLIO_ALLOC] = c.folio_alloc_ns
    k[K_ZERO_FILL] = c.zero_fill_ns
    k[K_RA_SUBMIT] = c.readahead_submit_ns
    k[K_IO_XFER] = c.io_transfer_ns_per_page
    k[K_IO_COMPLETE] = c.io_complete_ns
    k[K_WAKEUP] = c.wakeup_latency_ns
    k[K_LRU_OP] = c.lru_lock_op_ns
    k[K_LRU_PER_FOLIO] = c.lru_lock_per_folio_ns
    k[K_LRU_ADD_BATCH] = c.lru_add_batch
    k[K_RC_SCAN] = c.reclaim_scan_ns
    k[K_RC_EVICT] = c.reclaim_evict_ns
    k[K_RC_RMAP] = c.reclaim_rmap_ns
    k[K_AGING_PTE] = c.aging_walk_pte_ns
    k[K_AGING_CHUNK] = c.aging_walk_chunk_pages
    k[K_AGING_BASE] = c.aging_base_ns
    k[K_MMAP] = c.mmap_ns
    k[K_MUNMAP_GATHER] = c.munmap_gather_ns
    k[K_ZAP_PTE] = c.zap_pte_ns
    k[K_FREE_PGTABLES] = c.free_pgtables_ns
    k[K_TLB_BASE] = c.tlb_flush_base_ns
    k[K_TLB_PER_CPU] = c.tlb_flush_per_cpu_ns
    k[K_OPEN_CLOSE_NS] = c.open_close_ns
    k[K_CHARGE] = c.charge_ns
    k[K_CTX_SWITCH] = c.ctx_switch_ns
    w = p.workload
    k[K_SWAP_DEV] = SWAP_ZRAM if p.device.swap == "zram" else SWAP_DISK
    k[K_SWAP_MAX] = p.swap_max_pages
    k[K_SWAP_RA] = p.device.swap_ra_pages
    k[K_ZRAM_COMP] = c.zram_compress_ns
    k[K_ZRAM_DECOMP] = c.zram_decompress_ns
    k[K_ADD_TO_SWAP] = c.add_to_swap_ns
    k[K_SWAP_WRITE_SUBMIT] = c.swap_write_submit_ns
    k[K_MPROTECT] = c.mprotect_ns
    k[K_ABL_TLB_LATE_ACK] = int(p.model.tlb_late_ack)
    k[K_JITTER] = int(p.machine.jitter)
    k[K_WAKEUP_SIGMA_PPM] = round(p.machine.wakeup_sigma * 1e6)
    k[K_COST_SIGMA_PPM] = round(p.machine.cost_sigma * 1e6)
    k[K_TICK_NS] = c.tick_ns
    k[K_LINE_NS] = c.cacheline_transfer_ns
    k[K_TICK_PERIOD_NS] = 1_000_000_000 // HZ
    k[K_ABL_INKERNEL_HIGH] = int(p.model.inkernel_high_handler)
    k[K_ABL_RWSEM_STEAL] = int(p.model.rwsem_steal_spin)
    d = p.device
    k[K_IO_TAIL_PPM] = round(d.io_tail_pct * 10_000)
    k[K_IO_TAIL_NS] = int(d.io_tail_us * 1000)
    k[K_IO_TAIL_ALPHA_PPM] = round(d.io_tail_alpha * 1e6)
    k[K_THROTL_BPS] = int(d.throttle_read_mbps * 2**20)
    k[K_THROTL_IOPS] = d.throttle_read_iops
    k[K_THROTL_SLICE_NS] = THROTL_SLICE_NS
    k[K_FORK_RULE] = FORK_LOCK_COW if p.policy.fork_lock == "cow" else FORK_LOCK_ALL
    k[K_FORK_BASE] = c.fork_base_ns
    k[K_FORK_ANON_VMA] = c.fork_anon_vma_ns
    k[K_FORK_FILE_VMA] = c.fork_file_vma_ns
    k[K_FORK_PTE] = c.fork_pte_ns
    if w.name == "swapin":
        swapin.constants(p, k)
    elif w.name == "app_launch":
        app_launch.constants(p, k)
    elif w.name == "fork_stall":
        fork_stall.constants(p, k)
    return k


def build_state(p: Params):
    """The arrays of one run, in the state the workload starts from."""
    k = constants(p)
    n = int(k[K_THREADS])
    w = p.workload.name
    if w == "file_thrash":
        S = make_state(k, n_threads=n, n_cores=p.machine.cores, n_pages=n * p.file_pages,
                       n_files=n, file_pages=p.file_pages, n_vmas=n)
        # Kernel stacks, page tables and xarray nodes, charged before anything runs.
        S.g[G_USAGE] = S.g[G_PEAK_USAGE] = p.kmem_pages
        return S
    if w == "swapin":
        return swapin.build_state(p, k)
    if w == "fork_stall":
        return fork_stall.build_state(p, k)
    return app_launch.build_state(p, k)


def _latency_percentile(hist: np.ndarray, q: float) -> float | None:
    """Percentile from the 1/8-octave histogram, at the bin's geometric middle (us)."""
    total = int(hist.sum())
    if total == 0:
        return None
    rank = q * total
    acc = np.cumsum(hist)
    b = int(np.searchsorted(acc, rank, side="left"))
    if b == 0:
        return 0.032
    lo = 64.0 * 2.0 ** ((b - 1) / 8.0)
    return lo * 2.0 ** (1 / 16.0) / 1000.0


def _run_length_columns(S, wl: str, workers: int) -> dict:
    """min_thread_rounds: the fewest rounds a thread completed after warm-up (file_thrash,
    swapin; fork_stall: traces of a foreground worker); short_run: 1 when that is below
    MIN_ROUNDS_PER_THREAD, or (app_launch) when the launch did not finish within the run."""
    if wl == "app_launch":
        return {"min_thread_rounds": None, "short_run": int(S.g[G_LAUNCH_NS] < 0)}
    done = S.t[:, T_ROUNDS] - S.t[:, T_WARM_ROUNDS]
    if wl == "fork_stall":
        done = done[:workers]                     # its foreground workers' traces
    least = int(done.min()) if len(done) else 0
    return {"min_thread_rounds": least, "short_run": int(least < M.MIN_ROUNDS_PER_THREAD)}


def _thread_time_columns(c, rounds: int) -> dict:
    """Shares of the workers' time after warm-up by TT_* class (exited threads left out),
    and the seconds one thread takes per round."""
    tt = c[M.THREAD_TIME0:M.THREAD_TIME0 + len(M.TIME_PCT_COLUMNS)].astype(np.float64)
    total = tt.sum()
    out = {name: (100.0 * tt[i] / total if total > 0 else None)
           for i, name in enumerate(M.TIME_PCT_COLUMNS)}
    out["round_s_per_thread"] = total / 1e9 / rounds if rounds else None
    return out


def _fork_columns(p: Params, S, c) -> dict:
    """fork_stall's fork() latencies (entry to return) and its background threads' fault
    latency; None for other workloads."""
    if p.workload.name != "fork_stall":
        return {}
    fork = S.g[G_FORK_HIST:G_FORK_HIST + LAT_BINS]
    bg = S.g[G_BG_LAT_HIST:G_BG_LAT_HIST + LAT_BINS]
    n = int(c[M.FORKS])
    p50, p99 = _latency_percentile(fork, 0.50), _latency_percentile(fork, 0.99)
    return {
        "forks": n,
        "fork_latency_p50_ms": p50 / 1000 if p50 is not None else None,
        "fork_latency_p99_ms": p99 / 1000 if p99 is not None else None,
        "fork_latency_max_ms": c[M.FORK_NS_MAX] / 1e6 if n else None,
        "fork_latency_avg_ms": c[M.FORK_NS] / 1e6 / n if n else None,
        "bg_fault_latency_p99_us": _latency_percentile(bg, 0.99),
    }


def row_from_state(p: Params, S, wall_s: float) -> dict:
    g = S.g
    counters = g[G_COUNTERS:G_COUNTERS + M.N_COUNTERS]
    c = counters - g[G_WARM_COUNTERS:G_WARM_COUNTERS + M.N_COUNTERS]
    c[M.PEAK_USAGE_PAGES] = counters[M.PEAK_USAGE_PAGES]
    c[M.VMA_WRITER_WAIT_MAX_NS] = counters[M.VMA_WRITER_WAIT_MAX_NS]
    c[M.FORK_NS_MAX] = counters[M.FORK_NS_MAX]
    hr = g[G_HIST_READ:G_HIST_READ + 8] - g[G_WARM_HIST:G_WARM_HIST + 8]
    hw = g[G_HIST_WRITE:G_HIST_WRITE + 8] - g[G_WARM_HIST + 8:G_WARM_HIST + 16]
    lat = g[G_LAT_HIST:G_LAT_HIST + LAT_BINS]
    retry = g[G_RETRY_HIST:G_RETRY_HIST + LAT_BINS]
    age = g[G_AGE_HIST:G_AGE_HIST + LAT_BINS]
    sim_time_s = max(0.0, S.g[G_NOW] / 1e9 - p.sim.warmup_s)
    events = int(S.g[G_EVENTS])
    wl = p.workload.name
    rounds = int(c[M.SWAPIN_ROUNDS]) if wl == "swapin" else int(c[M.ROUNDS])
    drops = int(c[M.RETRY_MMAP_DROP])
    misses = int(c[M.RETRY_IO_MISS])
    rc, wc = int(c[M.MMAP_READ_COUNT]), int(c[M.MMAP_WRITE_COUNT])
    row: dict = {name: None for name in M.METRIC_COLUMNS}
    row.update({
        "rounds": rounds,
        **_run_length_columns(S, wl, p.workload.threads),
        "pageout_rounds": int(c[M.PAGEOUT_ROUNDS]) if wl == "swapin" else None,
        "swapin_rounds": int(c[M.SWAPIN_ROUNDS]) if wl == "swapin" else None,
        "launch_ms": (S.g[G_LAUNCH_NS] / 1e6 if S.g[G_LAUNCH_NS] >= 0 else None)
        if wl == "app_launch" else None,
        "pswpin": int(c[M.PSWPIN]),
        "pswpout": int(c[M.PSWPOUT]),
        "swapcache_busy": int(c[M.SWAPCACHE_BUSY]),
        "pageout_locked_skip": int(c[M.PAGEOUT_LOCKED_SKIP]),
        "reclaim_no_progress": int(c[M.RECLAIM_NO_PROGRESS]),
        "pgactivate": int(c[M.PGACTIVATE]),
        "pgdeactivate": int(c[M.PGDEACTIVATE]),
        "throughput_rounds_s": rounds / sim_time_s if sim_time_s > 0 else None,
        "pgfault": int(c[M.PGFAULT]),
        "pgmajfault": int(c[M.PGMAJFAULT]),
        "retry_mmap_drop": drops,
        "retry_io_miss": misses,
        "miss_drop_pct": 100.0 * misses / drops if drops else None,
        "vma_lock_success": int(c[M.VMA_LOCK_SUCCESS]),
        "vma_lock_abort": int(c[M.VMA_LOCK_ABORT]),
        "vma_lock_retry": int(c[M.VMA_LOCK_RETRY]),
        "vma_lock_miss": int(c[M.VMA_LOCK_MISS]),
        "pages_read": int(c[M.PAGES_READ]),
        "pages_reclaimed": int(c[M.PAGES_RECLAIMED]),
        "refaults": int(c[M.REFAULTS]),
        "workingset_activate": int(c[M.WORKINGSET_ACTIVATE]),
        "high_throttle_ms": c[M.HIGH_THROTTLE_NS] / 1e6,
        "peak_usage_mb": c[M.PEAK_USAGE_PAGES] * 4 / 1024,
        "mmap_read_count": rc,
        "mmap_read_wait_total_us": c[M.MMAP_READ_WAIT_NS] / 1e3,
        "mmap_read_wait_avg_us": c[M.MMAP_READ_WAIT_NS] / 1e3 / rc if rc else None,
        "mmap_write_count": wc,
        "mmap_write_wait_total_us": c[M.MMAP_WRITE_WAIT_NS] / 1e3,
        "mmap_write_wait_avg_us": c[M.MMAP_WRITE_WAIT_NS] / 1e3 / wc if wc else None,
        "vma_writer_wait_max_us": c[M.VMA_WRITER_WAIT_MAX_NS] / 1e3,
        **_fork_columns(p, S, c),
        "vma_writer_wait_total_us": c[M.VMA_WRITER_WAIT_NS] / 1e3,
        "fault_latency_p50_us": _latency_percentile(lat, 0.50),
        "fault_latency_p99_us": _latency_percentile(lat, 0.99),
        "drops_per_round": drops / rounds if rounds else None,
        "misses_per_round": misses / rounds if rounds else None,
        "pgscan": int(c[M.PGSCAN]),
        "ra_truncated": int(c[M.RA_TRUNCATED]),
        "max_reclaim": int(c[M.MAX_RECLAIM]),
        "high_reclaim_inkernel": int(c[M.HIGH_RECLAIM_INKERNEL]),
        "lru_lock_wait_total_us": c[M.LRU_LOCK_WAIT_NS] / 1e3,
        "aging_runs": int(c[M.AGING_RUNS]),
        "retry_delay_p50_us": _latency_percentile(retry, 0.50),
        "retry_delay_p99_us": _latency_percentile(retry, 0.99),
        "evict_age_p1_us": _latency_percentile(age, 0.01),
        "evict_age_p10_us": _latency_percentile(age, 0.10),
        "evict_age_p50_us": _latency_percentile(age, 0.50),
        **_thread_time_columns(c, rounds),
        "sim_time_s": sim_time_s,
        "events": events,
        "wall_s": wall_s,
        "events_per_s": events / wall_s if wall_s > 0 else None,
    })
    for i in range(M.N_HIST):
        row[f"mmap_read_hist_{i}"] = int(hr[i])
        row[f"mmap_write_hist_{i}"] = int(hw[i])
    for key, value in row.items():
        if isinstance(value, np.floating):
            row[key] = float(value)
        elif isinstance(value, np.integer):
            row[key] = int(value)
    if S.g[G_STOP]:
        raise RuntimeError(f"sim.max_events={p.sim.max_events} reached at "
                           f"t={S.g[G_NOW] / 1e9:.3f} s before sim.duration_s")
    row["memcg_oom"] = int(S.g[G_OOM])
    return row


@contextlib.contextmanager
def no_cyclic_gc():
    """Python's cyclic collector off for the block. The first call of `run` in a process
    without a warm cache compiles the simulator: numba's typing and lowering make some
    millions of short-lived objects, and collecting them took about a fifth of the compile
    (one core here, 2026-12-03: 107 s with the collector, 85 s without; peak RSS 0.6 GB
    against 1.4 GB, returned when the compile ends). A run itself makes no Python objects."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def simulate(params: Params, seed: int) -> dict:
    """One replicate: the flat row of docs/model.md, What a row reports (see core.metrics)."""
    if not isinstance(params, Params):
        raise TypeError("simulate() takes a core.Params")
    S = build_state(params)
    t0 = time.perf_counter()
    with no_cyclic_gc():
        run(S, np.int64(seed & 0x7FFFFFFF))
    return row_from_state(params, S, time.perf_counter() - t0)


def simulate_batch(params: Params, seeds) -> list[dict]:
    return [simulate(params, int(s)) for s in seeds]
