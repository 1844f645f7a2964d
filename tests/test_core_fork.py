"""fork's dup_mmap, blk-throttle and the device's heavy tail (issue 18), on tiny fork_stall
states played event by event: exact outcomes.

The process: one foreground worker, no mappers, one background thread (blkcg 1), the
forking thread; 64 VMAs, of which the six objects are modelled. The background thread is
made to fault page 0 of its cold file by hand, so the test knows which I/O is in flight.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from _sim_util import counter, drive_until, on_core, start, step_event

import core
from core import blockdev, engine, mm
from core import metrics as M
from core.fault import fault_begin
from core.simulator import build_state
from core.state import (
    EV_THROTL,
    EV_TIME,
    F_LOCK_VMA,
    FORK_LOCK_ALL,
    G_HEAP_N,
    G_IDLE_LIST,
    G_IDLE_N,
    G_IO_INFLIGHT,
    G_MM_CPUS,
    G_NOW,
    K_FILE_PAGES,
    K_FORK_BASE,
    K_FORK_BULK_NS,
    K_FORK_RULE,
    K_FORK_VMAS,
    K_IO_COMPLETE,
    K_IO_MEDIAN_NS,
    K_IO_XFER,
    K_PTE_INSTALL,
    K_TLB_BASE,
    K_TLB_PER_CPU,
    K_WAKEUP,
    T_BLKCG,
    T_PAGE,
    T_PC,
    T_STATE,
    T_W_RUN,
    TS_BLOCKED,
    V_FLAGS,
    V_POS,
    V_READERS,
    V_WRITE_LOCKED,
    V_WRITER,
    VM_MAYWRITE,
    VM_SHARED,
    W_FS_BG,
    W_FS_FORK,
)
from core.workloads.fork_stall import BG_OBJ

FORK = {
    "machine": {"cores": 4, "fault_around_kb": 4, "jitter": False},
    "costs": {"cacheline_transfer_ns": 0},
    "workload": {"name": "fork_stall", "threads": 1, "app_mappers": 0, "fork_bg_threads": 1,
                 "fork_vmas": 64, "fork_anon_rss_mb": 0},
    "device": {"sparse": False, "io_median_us": 1000.0, "io_sigma": 0.0, "ra_kb": 4},
    "sim": {"duration_s": 1.0, "warmup_s": 0.0},
}
BG, FORKER = 1, 2          # thread ids: worker 0, background 1, forker 2


def _fork_state(policy, fork_lock="all", bg_shared=False, **device):
    d = copy.deepcopy(FORK)
    d["policy"] = {"name": policy, "fork_lock": fork_lock}
    d["workload"]["fork_bg_shared"] = bg_shared
    d["device"].update(device)
    p = core.Params.from_dict(d)
    return p, build_state(p)


def _bg_faults_page0(S):
    """The background thread's fault on page 0 of its cold file, up to the read's submit."""
    c = int(S.g[G_IDLE_LIST + S.g[G_IDLE_N] - 1])
    on_core(S, BG, c)
    S.t[BG, T_PAGE] = 0
    S.t[BG, T_W_RUN] = 1
    fault_begin(S, BG, 0, W_FS_BG)
    S.t[BG, T_PC] = F_LOCK_VMA
    engine.thread_step(S, BG)
    drive_until(S, lambda S: S.g[G_IO_INFLIGHT] == 1)


def _fork_now(S):
    S.t[FORKER, T_PC] = W_FS_FORK
    start(S, [FORKER])


def _expected_fork_ns(S):
    """copy_process, the unmodelled VMAs at their average, each modelled VMA's copy, the
    TLB flush: a fork that waits for nothing."""
    n_v = S.vma.shape[0]
    ns = int(S.k[K_FORK_BASE]) + (int(S.k[K_FORK_VMAS]) - n_v) * int(S.k[K_FORK_BULK_NS])
    ns += sum(int(mm.copy_vma_ns(S, v)) for v in range(n_v))
    return ns + int(S.k[K_TLB_BASE] + S.g[G_MM_CPUS] * S.k[K_TLB_PER_CPU])


@pytest.mark.parametrize("policy", ["hold_vma_io", "hold_file_vma_io", "vma_retry"])
def test_fork_waits_for_a_reader_asleep_on_io(policy):
    """dup_mmap write-locks every VMA: under hold_vma_io (and approach 3, for a file VMA)
    the background reader sleeps on its read holding the VMA lock, so the fork waits in
    vma_start_write for the read, holding mmap_lock; under vma_retry the reader dropped the
    lock for the I/O and the fork goes through."""
    _, S = _fork_state(policy)
    _bg_faults_page0(S)
    t_submit = int(S.g[G_NOW])
    holds = policy != "vma_retry"
    assert S.vma[BG_OBJ, V_READERS] == int(holds)
    mm_cpus_before = int(S.g[G_MM_CPUS])
    _fork_now(S)
    if not holds:
        drive_until(S, lambda S: counter(S, M.FORKS) == 1)
        assert S.g[G_IO_INFLIGHT] == 1                      # the read is still in flight
        assert counter(S, M.VMA_WRITER_WAIT_NS) == 0
        assert S.g[G_MM_CPUS] == mm_cpus_before + 1
        # the wake-up of the forker, then its bursts: nothing else
        assert counter(S, M.FORK_NS) == _expected_fork_ns(S)
        assert S.vma[:, V_WRITE_LOCKED].sum() == 0          # mmap_write_unlock ended them
        return
    drive_until(S, lambda S: S.vma[BG_OBJ, V_WRITER] == FORKER)
    t_wait = int(S.g[G_NOW])
    assert S.t[FORKER, T_STATE] == TS_BLOCKED
    pos = S.vma[:, V_POS]
    before = pos < pos[BG_OBJ]                               # in address order
    assert S.vma[before, V_WRITE_LOCKED].all() and before.sum() > 0
    assert not S.vma[pos > pos[BG_OBJ], V_WRITE_LOCKED].any()
    assert counter(S, M.FORKS) == 0
    drive_until(S, lambda S: counter(S, M.FORKS) == 1)
    # the writer waited for the read, the reader's wake-up and its PTE install
    service = int(S.k[K_IO_MEDIAN_NS] + S.k[K_IO_XFER] + S.k[K_IO_COMPLETE])
    wait = counter(S, M.VMA_WRITER_WAIT_MAX_NS)
    assert t_wait + wait == t_submit + service + int(S.k[K_WAKEUP] + S.k[K_PTE_INSTALL])
    # the fork: its own work, the wait and its wake-up from it
    assert counter(S, M.FORK_NS) == _expected_fork_ns(S) + wait + int(S.k[K_WAKEUP])
    assert S.vma[:, V_WRITE_LOCKED].sum() == 0


@pytest.mark.parametrize("shared,waits", [(True, False), (False, True)])
def test_cow_fork_rule_skips_shared_file_vmas(shared, waits):
    """Under the review's rule (is_cow_mapping) dup_mmap leaves a MAP_SHARED read-only
    file VMA unlocked, so a reader holding it across I/O does not stall the fork; a
    MAP_PRIVATE file VMA is a COW mapping and is still locked."""
    _, S = _fork_state("hold_vma_io", fork_lock="cow", bg_shared=shared)
    assert S.k[K_FORK_RULE] != FORK_LOCK_ALL
    _bg_faults_page0(S)
    assert S.vma[BG_OBJ, V_READERS] == 1
    _fork_now(S)
    drive_until(S, lambda S: counter(S, M.FORKS) == 1 or S.vma[BG_OBJ, V_WRITER] == FORKER)
    assert (S.vma[BG_OBJ, V_WRITER] == FORKER) == waits
    if not waits:
        assert S.g[G_IO_INFLIGHT] == 1
        assert counter(S, M.VMA_WRITER_WAIT_NS) == 0
        assert counter(S, M.FORK_NS) == _expected_fork_ns(S)


def test_is_cow_mapping_and_the_rule():
    _, S = _fork_state("baseline", fork_lock="cow")
    assert mm.is_cow_mapping(VM_MAYWRITE)
    assert not mm.is_cow_mapping(VM_SHARED | VM_MAYWRITE)
    assert not mm.is_cow_mapping(0)                        # MAP_SHARED of a read-only fd
    # the apk (object 3) is a read-only shared mapping; code, heap and the private
    # background file are COW mappings
    assert [bool(mm.dup_mmap_locks(S, v)) for v in range(6)] == [True, True, True, False,
                                                                  True, True]
    _, S = _fork_state("baseline", fork_lock="all")
    assert all(mm.dup_mmap_locks(S, v) for v in range(6))
    assert int(S.vma[3, V_FLAGS]) == 0


def _throttled_state(mbps=1.0, iops=0):
    _, S = _fork_state("baseline", throttle_read_mbps=mbps, throttle_read_iops=iops)
    S.g[G_NOW] = 1_000_000_000
    return S


def _throttle_events(S):
    return sorted(int(S.ev[i, EV_TIME]) for i in range(int(S.g[G_HEAP_N]))
                  if S.ev[i, 2] == EV_THROTL)


def test_throttled_read_waits_for_its_budget():
    """io.max rbps of 1 MiB/s: a 128 KiB read costs 125 ms of budget. The idle group has one
    throtl_slice (100 ms) of credit, so its first read waits 25 ms and the next one 125 ms
    more; a thread of the root group is not throttled."""
    S = _throttled_state(mbps=1.0)
    t0 = int(S.g[G_NOW])
    cost = 32 * 4096 * 1_000_000_000 // 2**20
    assert cost == 125_000_000
    blockdev.submit_read(S, BG_OBJ * int(S.k[K_FILE_PAGES]), 32, BG)
    blockdev.submit_read(S, BG_OBJ * int(S.k[K_FILE_PAGES]) + 32, 32, BG)
    assert S.g[G_IO_INFLIGHT] == 0
    assert _throttle_events(S) == [t0 - 100_000_000 + cost, t0 - 100_000_000 + 2 * cost]
    step_event(S)                          # the first leaves the throttle for the device
    assert S.g[G_NOW] == t0 + 25_000_000 and S.g[G_IO_INFLIGHT] == 1
    assert S.t[0, T_BLKCG] == 0
    blockdev.submit_read(S, 0, 32, 0)                      # the worker, root group: at once
    assert S.g[G_IO_INFLIGHT] == 2


def test_throttled_iops():
    """riops 10: 100 ms per read whatever its size, after the slice's credit."""
    S = _throttled_state(mbps=0.0, iops=10)
    t0 = int(S.g[G_NOW])
    for i in range(3):
        blockdev.submit_read(S, BG_OBJ * int(S.k[K_FILE_PAGES]) + i, 1, BG)
    assert S.g[G_IO_INFLIGHT] == 1                         # the slice's credit: one at once
    assert _throttle_events(S) == [t0 + 100_000_000, t0 + 200_000_000]


def test_heavy_tail_is_pareto():
    """io_tail_pct 100: every service time is a Pareto draw above io_tail_us, its median
    io_tail_us * 2 ** (1 / alpha) (plus the transfer and completion)."""
    _, S = _fork_state("baseline", io_tail_pct=100.0, io_tail_us=2000.0, io_tail_alpha=1.5)
    extra = int(S.k[K_IO_XFER] + S.k[K_IO_COMPLETE])
    draws = np.array([blockdev._service_ns(S, 1) - extra for _ in range(4000)])
    assert draws.min() >= 2_000_000
    med = float(np.median(draws))
    assert abs(med / (2_000_000 * 2 ** (1 / 1.5)) - 1) < 0.08   # 4000 draws: ~3% s.e.


def test_fork_stall_runs_and_reports():
    """A short fork_stall run: forks happen and the row carries their latencies."""
    d = copy.deepcopy(FORK)
    d["workload"].update({"threads": 2, "fork_period_ms": 20.0})
    d["policy"] = {"name": "hold_vma_io"}
    d["sim"] = {"duration_s": 0.3, "warmup_s": 0.05}
    row = core.simulate(core.Params.from_dict(d), 1)
    assert row["forks"] >= 3
    assert row["fork_latency_p50_ms"] <= row["fork_latency_p99_ms"]
    assert row["fork_latency_max_ms"] >= row["fork_latency_avg_ms"] > 0
    assert row["rounds"] >= 0 and row["launch_ms"] is None
