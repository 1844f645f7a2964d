"""Mechanism-level tests of the fault simulator (core/): tiny hand-built states, exact outcomes.

The njit functions are called directly from Python on a `State` built by
`core.simulator.build_state`; numba compiles each entry point once and caches it. Threads that
call a blocking primitive are first put "on a core" by hand (`_on_core`), exactly as the
scheduler would have left them. Scripted runs drive the engine's event loop one event at a time
(`_step_event` mirrors `core.engine.run`) so a test can stop at a precise point.
No test asserts a wall-clock time.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from _sim_util import counter as _counter
from _sim_util import drive_until as _drive_until
from _sim_util import lru_list as _list
from _sim_util import on_core as _on_core
from _sim_util import start as _start
from _sim_util import step_event as _step_event

import core
from core import (
    Params,
    engine,
    fault,
    hist,
    lru,
    memcg,
    mm,
    pagecache,
    readahead,
    rwsem,
    sched,
    vma,
    vmscan,
)
from core import metrics as M
from core import state as st
from core.simulator import build_state
from core.state import (
    C_IRQOFF,
    C_RAN_MM,
    C_STOCK,
    F_END,
    F_FOLIO_LOCK,
    F_HANDLE,
    F_LOCK_VMA,
    F_LOCKED,
    FAULT_FLAG_ALLOW_RETRY,
    FAULT_FLAG_TRIED,
    FAULT_FLAG_VMA_LOCK,
    FL_VMA,
    G_AGE_HIST,
    G_COUNTERS,
    G_GEN_PAGES,
    G_HIST_READ,
    G_HIST_WRITE,
    G_IDLE_LIST,
    G_IDLE_N,
    G_IO_INFLIGHT,
    G_LAT_HIST,
    G_LRU_SIZE,
    G_LRU_TAIL,
    G_MAX_SEQ,
    G_MIN_SEQ,
    G_NONRESIDENT_AGE,
    G_NOW,
    G_OOM,
    G_PEAK_USAGE,
    G_RETRY_HIST,
    G_RW_HANDOFF,
    G_RW_QHEAD,
    G_RW_QLEN,
    G_RW_QTAIL,
    G_RW_READERS,
    G_RW_WOKEN,
    G_RW_WRITER,
    G_STOP,
    G_USAGE,
    G_WS_SNAPSHOT,
    K_ENGINE,
    K_FA_PAGE,
    K_FILE_PAGES,
    K_HIGH,
    K_IO_COMPLETE,
    K_IO_MEDIAN_NS,
    K_IO_XFER,
    K_MAX,
    K_PTE_INSTALL,
    K_RC_EVICT,
    K_RC_RMAP,
    K_RC_SCAN,
    K_WAKEUP,
    K_ZAP_PTE,
    LAT_BINS,
    LIST_ACTIVE,
    LIST_INACTIVE,
    LOCK_MMAP,
    LOCK_NONE,
    LOCK_VMA,
    M_DOWNGRADE,
    NO_LIST,
    P_ADDED_NS,
    P_FLAGS,
    P_GEN,
    P_LIST,
    P_NEXT,
    P_NR,
    P_PREV,
    P_REFS,
    P_SHADOW,
    PG_ACTIVE,
    PG_ISOLATED,
    PG_LOCKED,
    PG_LRU,
    PG_PRESENT,
    PG_READAHEAD,
    PG_REFERENCED,
    PG_UPTODATE,
    PG_WORKINGSET,
    PTE_PRESENT,
    PTE_YOUNG,
    RW_READ,
    RW_WRITE,
    SW_FAULT,
    T_CORE,
    T_DEBT,
    T_F_FLAGS,
    T_F_FPIN,
    T_F_LOCK,
    T_F_PAGE,
    T_FOLIO_RELOCK,
    T_PC,
    T_R_BATCH0,
    T_R_BATCH_N,
    T_R_BUDGET,
    T_R_DELTA,
    T_R_RECLAIMED,
    T_R_RETRIED,
    T_ROUNDS,
    T_RW_RELOCK,
    T_RW_WANT,
    T_SP,
    T_STACK0,
    T_STATE,
    T_VMA,
    T_WAIT_NEXT,
    TS_BLOCKED,
    TS_EXITED,
    TS_RUNNING,
    TS_SPINNING,
    V_ATTACHED,
    V_FILE,
    V_PTE0,
    V_READERS,
    V_WRITE_LOCKED,
    V_WRITER,
    W_AL_DONE,
    W_TOUCH,
)

# ---- helpers ----------------------------------------------------------------------------------

BASE = {
    # Exact timings: no tick, no lognormal costs or wake-ups (machine.jitter has its own
    # tests in test_core_jitter.py).
    "machine": {"cores": 4, "fault_around_kb": 64, "jitter": False},
    # and no cache-line transfers on lock words (their own test in test_core_jitter.py)
    "costs": {"cacheline_transfer_ns": 0},
    "workload": {"threads": 4, "file_mb": 1},
    "sim": {"duration_s": 1.0, "warmup_s": 0.0},
}


def _params(**groups) -> Params:
    d = copy.deepcopy(BASE)
    for g, sub in groups.items():
        d.setdefault(g, {}).update(sub)
    return Params.from_dict(d)


def _state(**groups):
    p = _params(**groups)
    return p, build_state(p)


def _all_on_cores(S, n):
    for tid in range(n):
        _on_core(S, tid, tid)


def _rw_queue(S):
    out = []
    tid = int(S.g[G_RW_QHEAD])
    while tid >= 0:
        out.append(tid)
        tid = int(S.t[tid, T_WAIT_NEXT])
    return out


# ---- 1. mmap_lock rwsem -----------------------------------------------------------------------

@pytest.mark.parametrize("ns,bucket", [
    (0, 0), (999, 0), (1000, 1), (9_999, 1), (10_000, 2), (99_999, 2), (100_000, 3),
    (1_000_000, 4), (10_000_000, 5), (100_000_000, 6), (999_999_999, 6),
    (1_000_000_000, 7), (10**12, 7),
])
def test_wait_bucket_edges(ns, bucket):
    assert rwsem.wait_bucket(ns) == bucket


def test_rwsem_reader_queues_behind_waiting_writer():
    _, S = _state()
    _all_on_cores(S, 4)
    assert rwsem.down_read(S, 0, 111)                    # fast path: reader holds
    assert not rwsem.down_write(S, 1, 222)               # writer waits for the reader
    assert not rwsem.down_read(S, 2, 333)                # reader queues behind the writer
    assert S.g[G_RW_READERS] == 1 and S.g[G_RW_WRITER] == -1
    assert _rw_queue(S) == [1, 2] and S.g[G_RW_QLEN] == 2 and S.g[G_RW_QTAIL] == 2
    assert S.t[1, T_RW_WANT] == RW_WRITE and S.t[2, T_RW_WANT] == RW_READ
    assert S.t[1, T_STATE] == TS_BLOCKED and S.t[2, T_STATE] == TS_BLOCKED
    assert S.t[1, T_PC] == 222 and S.t[2, T_PC] == 333
    # trylock fails while anyone waits, even though only readers hold the lock
    assert not rwsem.down_read_trylock(S)
    # only the fast-path acquisition is counted so far
    assert _counter(S, M.MMAP_READ_COUNT) == 1
    assert _counter(S, M.MMAP_WRITE_COUNT) == 0
    assert S.g[G_HIST_READ] == 1 and S.g[G_HIST_READ + 1:G_HIST_READ + 8].sum() == 0

    # the reader leaves: the writer (head) is woken, and takes the lock alone when it runs;
    # the reader stays queued
    S.g[G_NOW] = 50_000
    rwsem.up_read(S)
    assert S.g[G_RW_WRITER] == -1 and S.t[1, T_RW_RELOCK] == 1 and S.g[G_RW_WOKEN] == 1
    assert S.t[1, T_STATE] == TS_RUNNING                 # woken onto an idle core
    assert _rw_queue(S) == [2] and not rwsem.down_read_trylock(S)
    assert rwsem.rwsem_relock_write(S, 1)
    assert S.g[G_RW_WRITER] == 1 and S.g[G_RW_READERS] == 0 and S.g[G_RW_WOKEN] == -1
    assert _rw_queue(S) == [2]
    assert _counter(S, M.MMAP_WRITE_COUNT) == 1
    assert _counter(S, M.MMAP_WRITE_WAIT_NS) == 50_000
    assert S.g[G_HIST_WRITE + 2] == 1                    # 50 us -> [10, 100) us
    assert S.g[G_HIST_WRITE:G_HIST_WRITE + 8].sum() == 1

    S.g[G_NOW] = 60_000
    rwsem.up_write(S, 1)
    assert S.g[G_RW_WRITER] == -1 and S.g[G_RW_READERS] == 1
    assert _rw_queue(S) == [] and S.g[G_RW_QLEN] == 0 and S.g[G_RW_QTAIL] == -1
    assert _counter(S, M.MMAP_READ_COUNT) == 2
    assert _counter(S, M.MMAP_READ_WAIT_NS) == 60_000
    assert S.g[G_HIST_READ + 2] == 1


def test_rwsem_release_wakes_all_queued_readers_skipping_writer():
    _, S = _state()
    _all_on_cores(S, 4)
    assert rwsem.down_write(S, 0, 100)
    S.t[0, T_STATE] = TS_BLOCKED         # the owner sleeps: writers queue instead of spinning
    assert not rwsem.down_read(S, 1, 101)
    assert not rwsem.down_write(S, 2, 102)
    assert not rwsem.down_read(S, 3, 103)
    assert _rw_queue(S) == [1, 2, 3]
    assert not rwsem.down_read_trylock(S)                # writer holds

    S.g[G_NOW] = 5_000
    rwsem.up_write(S, 0)
    # reader at the head: every queued reader comes in, the writer between them stays
    assert S.g[G_RW_READERS] == 2 and S.g[G_RW_WRITER] == -1
    assert _rw_queue(S) == [2] and S.g[G_RW_QLEN] == 1
    assert S.g[G_RW_QHEAD] == 2 and S.g[G_RW_QTAIL] == 2 and S.t[2, T_WAIT_NEXT] == -1
    assert S.t[1, T_STATE] == TS_RUNNING and S.t[3, T_STATE] == TS_RUNNING
    assert S.t[2, T_STATE] == TS_BLOCKED
    assert S.t[1, T_PC] == 101 and S.t[3, T_PC] == 103
    assert _counter(S, M.MMAP_READ_COUNT) == 2
    assert _counter(S, M.MMAP_READ_WAIT_NS) == 10_000
    assert S.g[G_HIST_READ + 1] == 2                     # 5 us each -> [1, 10) us
    # still a waiter: trylock fails although only readers hold it
    assert not rwsem.down_read_trylock(S)

    S.g[G_NOW] = 1_000_000
    rwsem.up_read(S)
    assert S.g[G_RW_WRITER] == -1 and S.g[G_RW_READERS] == 1   # one reader still in
    assert _rw_queue(S) == [2]
    S.g[G_NOW] = 2_000_000
    rwsem.up_read(S)
    assert S.t[2, T_RW_RELOCK] == 1 and rwsem.rwsem_relock_write(S, 2)
    assert S.g[G_RW_WRITER] == 2 and S.g[G_RW_READERS] == 0
    assert _rw_queue(S) == [] and S.g[G_RW_QHEAD] == -1 and S.g[G_RW_QTAIL] == -1
    assert S.t[2, T_PC] == 102
    assert _counter(S, M.MMAP_WRITE_COUNT) == 2
    assert _counter(S, M.MMAP_WRITE_WAIT_NS) == 2_000_000
    hw = S.g[G_HIST_WRITE:G_HIST_WRITE + 8]
    assert list(hw) == [1, 0, 0, 0, 1, 0, 0, 0]          # 0 us and 2000 us
    hr = S.g[G_HIST_READ:G_HIST_READ + 8]
    assert list(hr) == [0, 2, 0, 0, 0, 0, 0, 0]

    rwsem.up_write(S, 2)
    assert S.g[G_RW_WRITER] == -1
    assert rwsem.down_read_trylock(S)                    # free and nobody waits
    assert _counter(S, M.MMAP_READ_COUNT) == 3 and S.g[G_HIST_READ] == 1


def test_rwsem_downgrade_lets_queued_readers_in():
    _, S = _state()
    _all_on_cores(S, 4)
    assert rwsem.down_write(S, 0, 100)
    assert not rwsem.down_read(S, 1, 101)
    assert not rwsem.down_write(S, 2, 102)
    assert not rwsem.down_read(S, 3, 103)
    S.g[G_NOW] = 20_000
    rwsem.downgrade_write(S, 0)
    assert S.g[G_RW_WRITER] == -1
    assert S.g[G_RW_READERS] == 3                        # the downgrader plus two readers
    assert _rw_queue(S) == [2]
    assert S.t[1, T_STATE] == TS_RUNNING and S.t[3, T_STATE] == TS_RUNNING
    assert _counter(S, M.MMAP_READ_COUNT) == 2
    assert _counter(S, M.MMAP_READ_WAIT_NS) == 40_000
    # the writer gets it once all three readers are gone
    for left in (2, 1):
        rwsem.up_read(S)
        assert S.g[G_RW_READERS] == left and S.g[G_RW_WRITER] == -1
    rwsem.up_read(S)
    assert S.g[G_RW_WRITER] == -1 and S.t[2, T_RW_RELOCK] == 1
    assert rwsem.rwsem_relock_write(S, 2)
    assert S.g[G_RW_WRITER] == 2 and S.g[G_RW_READERS] == 0


def test_rwsem_reader_steals_from_woken_writer_until_handoff():
    """rwsem_down_read_slowpath steals a free lock from a woken writer that has not run
    yet; the writer sleeps again, and once it has waited RWSEM_WAIT_TIMEOUT (4 ms) it sets
    the handoff bit: readers queue, and the next release hands it the lock."""
    _, S = _state(machine={"cores": 8}, workload={"threads": 8, "file_mb": 1})
    _all_on_cores(S, 8)
    assert rwsem.down_write(S, 0, 100)
    S.t[0, T_STATE] = TS_BLOCKED         # the owner sleeps: writer 1 queues, no spinning
    assert not rwsem.down_write(S, 1, 101)
    rwsem.up_write(S, 0)                                 # writer 1 woken, not granted
    assert S.t[1, T_RW_RELOCK] == 1 and S.g[G_RW_WRITER] == -1 and S.g[G_RW_WOKEN] == 1
    assert rwsem.down_read(S, 2, 102)                    # steals the free lock
    assert S.g[G_RW_READERS] == 1 and _rw_queue(S) == []
    assert not rwsem.rwsem_relock_write(S, 1)            # the writer runs: taken, sleeps
    assert S.t[1, T_STATE] == TS_BLOCKED and not S.g[G_RW_HANDOFF]
    assert _rw_queue(S) == [1] and S.g[G_RW_WOKEN] == -1  # first waiter again
    assert not rwsem.down_read(S, 3, 103)                # readers hold it: queue
    assert _rw_queue(S) == [1, 3]
    S.g[G_NOW] = 1_000_000
    rwsem.up_read(S)                                     # reader 2 leaves: wake the writer
    assert S.t[1, T_RW_RELOCK] == 1 and _rw_queue(S) == [3]
    S.g[G_NOW] = 5_000_000
    assert rwsem.down_read(S, 4, 104)                    # another steal before it runs
    assert not rwsem.rwsem_relock_write(S, 1)            # 5 ms waited: handoff set
    assert S.g[G_RW_HANDOFF] == 1
    assert not rwsem.down_read(S, 5, 105)                # no stealing with handoff set
    assert _rw_queue(S) == [1, 3, 5]
    S.g[G_NOW] = 6_000_000
    rwsem.up_read(S)                                     # direct handoff to writer 1
    assert S.g[G_RW_WRITER] == 1 and not S.g[G_RW_HANDOFF]
    assert _rw_queue(S) == [3, 5] and S.t[1, T_RW_RELOCK] == 0
    assert _counter(S, M.MMAP_WRITE_WAIT_NS) == 6_000_000   # enqueued at t=0
    assert _counter(S, M.MMAP_READ_COUNT) == 2              # the two steals, no wait


def test_rwsem_writer_steals_from_woken_writer_until_handoff():
    """A writer finding the lock free with a woken writer not yet run takes it
    (rwsem_optimistic_spin, no owner: rwsem_try_write_lock_unqueued); the woken writer
    sleeps again, sets the handoff bit once it has waited 4 ms, and then gets the lock
    from the next release while later writers queue."""
    _, S = _state(machine={"cores": 8}, workload={"threads": 8, "file_mb": 1})
    _all_on_cores(S, 8)
    assert rwsem.down_write(S, 0, 100)
    S.t[0, T_STATE] = TS_BLOCKED         # the owner sleeps: writer 1 queues, no spinning
    assert not rwsem.down_write(S, 1, 101)
    S.g[G_NOW] = 1_000_000
    rwsem.up_write(S, 0)                                 # writer 1 woken, not granted
    assert S.g[G_RW_WOKEN] == 1 and S.g[G_RW_WRITER] == -1
    assert rwsem.down_write(S, 2, 102)                   # steals the free lock
    assert S.g[G_RW_WRITER] == 2
    S.g[G_NOW] = 2_000_000
    assert not rwsem.rwsem_relock_write(S, 1)            # 2 ms waited: no handoff yet
    assert not S.g[G_RW_HANDOFF] and _rw_queue(S) == [1]
    S.g[G_NOW] = 3_000_000
    rwsem.up_write(S, 2)
    assert S.g[G_RW_WOKEN] == 1
    assert rwsem.down_write(S, 3, 103)                   # steals again
    S.g[G_NOW] = 5_000_000
    assert not rwsem.rwsem_relock_write(S, 1)            # 5 ms waited: handoff set
    assert S.g[G_RW_HANDOFF] == 1
    assert not rwsem.down_write(S, 4, 104)               # no stealing, no spinning now
    assert _rw_queue(S) == [1, 4] and S.t[4, T_STATE] == TS_BLOCKED
    S.g[G_NOW] = 6_000_000
    rwsem.up_write(S, 3)                                 # direct handoff to writer 1
    assert S.g[G_RW_WRITER] == 1 and not S.g[G_RW_HANDOFF] and _rw_queue(S) == [4]
    assert _counter(S, M.MMAP_WRITE_COUNT) == 4          # 0, the two steals, then 1
    assert _counter(S, M.MMAP_WRITE_WAIT_NS) == 6_000_000   # writer 1, queued at t=0


def test_rwsem_writer_spins_on_running_owner():
    """rwsem_optimistic_spin: a writer spins (keeping its CPU) while the owner writer runs,
    and takes the lock at release ahead of the queued waiters; spinners queue when the
    owner sleeps; a waiter passed over for 4 ms sets the handoff bit."""
    _, S = _state(machine={"cores": 8}, workload={"threads": 8, "file_mb": 1})
    _all_on_cores(S, 8)
    assert rwsem.down_write(S, 0, 100)                   # thread 0 runs, owning it
    assert not rwsem.down_write(S, 1, 101)
    assert S.t[1, T_STATE] == TS_SPINNING and S.t[1, T_CORE] == 1
    assert not rwsem.down_read(S, 2, 102)                # readers still queue
    assert _rw_queue(S) == [2]
    S.g[G_NOW] = 3_000
    rwsem.up_write(S, 0)                                 # the spinner's cmpxchg wins
    assert S.g[G_RW_WRITER] == 1 and S.t[1, T_STATE] == TS_RUNNING and S.t[1, T_PC] == 101
    assert _rw_queue(S) == [2] and S.t[2, T_STATE] == TS_BLOCKED
    assert _counter(S, M.MMAP_WRITE_WAIT_NS) == 3_000
    assert not rwsem.down_write(S, 3, 103)               # spins on writer 1
    assert S.t[3, T_STATE] == TS_SPINNING
    rwsem.rwsem_owner_sleeps(S)                          # writer 1 goes to sleep owning it
    S.t[1, T_STATE] = TS_BLOCKED                         # (as vma_start_write then does)
    assert S.t[3, T_STATE] == TS_BLOCKED and _rw_queue(S) == [2, 3]
    assert not rwsem.down_write(S, 4, 104)               # owner not running: it queues
    assert S.t[4, T_STATE] == TS_BLOCKED and _rw_queue(S) == [2, 3, 4]
    S.t[1, T_STATE] = TS_RUNNING                         # writer 1 runs again
    assert not rwsem.down_write(S, 5, 105)
    assert S.t[5, T_STATE] == TS_SPINNING
    S.g[G_NOW] = 5_000_000                               # reader 2 has waited 5 ms
    rwsem.up_write(S, 1)
    assert S.g[G_RW_WRITER] == 5 and S.g[G_RW_HANDOFF] == 1
    assert not rwsem.down_write(S, 6, 106)               # handoff pending: no spinning
    assert S.t[6, T_STATE] == TS_BLOCKED and _rw_queue(S) == [2, 3, 4, 6]
    rwsem.up_write(S, 5)                                 # reader 2 at the head gets it
    assert S.g[G_RW_READERS] == 1 and not S.g[G_RW_HANDOFF]
    assert _rw_queue(S) == [3, 4, 6]


def test_rwsem_invariants_raise():
    _, S = _state()
    _all_on_cores(S, 4)
    with pytest.raises(RuntimeError, match="up_read without readers"):
        rwsem.up_read(S)
    assert rwsem.down_write(S, 0, 100)
    with pytest.raises(RuntimeError, match="not the owner"):
        rwsem.up_write(S, 1)
    with pytest.raises(RuntimeError, match="not the owner"):
        rwsem.downgrade_write(S, 1)


# ---- 2. per-VMA lock --------------------------------------------------------------------------

def test_lock_vma_under_rcu_fails_when_detached_write_locked_or_writer_waits():
    _, S = _state()
    _all_on_cores(S, 4)
    assert not vma.lock_vma_under_rcu(S, -1)             # no VMA
    assert not vma.lock_vma_under_rcu(S, 0)              # not attached (initial state)
    assert S.vma[0, V_READERS] == 0
    S.vma[0, V_ATTACHED] = 1
    S.vma[0, V_WRITE_LOCKED] = 1
    assert not vma.lock_vma_under_rcu(S, 0)              # write-locked
    assert S.vma[0, V_READERS] == 0
    vma.vma_write_unlock(S, 0)
    assert vma.lock_vma_under_rcu(S, 0)
    assert vma.lock_vma_under_rcu(S, 0)
    assert S.vma[0, V_READERS] == 2

    S.g[G_NOW] = 1_000
    assert not vma.vma_start_write(S, 1, 0, 777)         # readers present: sleeps
    assert S.vma[0, V_WRITER] == 1 and S.t[1, T_STATE] == TS_BLOCKED
    assert S.vma[0, V_WRITE_LOCKED] == 0
    assert not vma.lock_vma_under_rcu(S, 0)              # a writer waits: new readers fail
    assert S.vma[0, V_READERS] == 2

    S.g[G_NOW] = 4_000
    vma.vma_end_read(S, 0)
    assert S.vma[0, V_WRITER] == 1 and S.vma[0, V_WRITE_LOCKED] == 0
    assert S.t[1, T_STATE] == TS_BLOCKED
    assert _counter(S, M.VMA_WRITER_WAIT_NS) == 0
    S.g[G_NOW] = 8_000
    vma.vma_end_read(S, 0)                               # the last reader hands over
    assert S.vma[0, V_READERS] == 0
    assert S.vma[0, V_WRITE_LOCKED] == 1 and S.vma[0, V_WRITER] == -1
    assert S.t[1, T_STATE] == TS_RUNNING and S.t[1, T_PC] == 777
    assert _counter(S, M.VMA_WRITER_WAIT_NS) == 7_000
    assert _counter(S, M.VMA_WRITER_WAIT_MAX_NS) == 7_000
    assert not vma.lock_vma_under_rcu(S, 0)              # write-locked

    # mmap_write_unlock: readers again; a shorter second wait adds to the sum, not the max
    vma.vma_write_unlock(S, 0)
    assert vma.lock_vma_under_rcu(S, 0)
    S.g[G_NOW] = 10_000
    assert not vma.vma_start_write(S, 2, 0, 778)
    S.g[G_NOW] = 13_000
    vma.vma_end_read(S, 0)
    assert S.vma[0, V_WRITE_LOCKED] == 1 and S.t[2, T_PC] == 778
    assert _counter(S, M.VMA_WRITER_WAIT_NS) == 10_000
    assert _counter(S, M.VMA_WRITER_WAIT_MAX_NS) == 7_000

    # no readers: write-locked at once, a zero wait
    vma.vma_write_unlock(S, 0)
    assert vma.vma_start_write(S, 3, 0, 779)
    assert S.vma[0, V_WRITE_LOCKED] == 1 and S.t[3, T_STATE] == TS_RUNNING
    assert _counter(S, M.VMA_WRITER_WAIT_NS) == 10_000
    with pytest.raises(RuntimeError, match="without a reader"):
        vma.vma_end_read(S, 0)


# ---- 3. hold_vma_io ---------------------------------------------------------------------------

def _io_params(policy):
    return {
        "machine": {"cores": 2, "fault_around_kb": 4},
        "workload": {"threads": 2, "file_mb": 1},
        "policy": {"name": policy},
        "device": {"sparse": False, "io_median_us": 1000.0, "io_sigma": 0.0, "ra_kb": 4},
    }


@pytest.mark.parametrize("policy", ["hold_vma_io", "hold_file_vma_io", "baseline"])
def test_maybe_unlock_mmap_for_io(policy):
    _, S = _state(policy={"name": policy})
    S.vma[0, V_ATTACHED] = 1
    S.t[0, T_VMA] = 0
    assert vma.lock_vma_under_rcu(S, 0)
    S.t[0, T_F_LOCK] = LOCK_VMA
    S.t[0, T_F_FLAGS] = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_VMA_LOCK
    S.t[0, T_F_FPIN] = 0
    fault.maybe_unlock_mmap_for_io(S, 0)
    if policy != "baseline":                 # a file fault keeps its VMA lock for the I/O
        assert S.vma[0, V_READERS] == 1 and S.t[0, T_F_LOCK] == LOCK_VMA
        assert S.t[0, T_F_FPIN] == 0
    else:
        assert S.vma[0, V_READERS] == 0 and S.t[0, T_F_LOCK] == LOCK_NONE
        assert S.t[0, T_F_FPIN] == 1
    # mmap_lock is dropped on a first try under every policy (hold_vma_io keeps only the VMA
    # lock) ...
    _, S = _state(policy={"name": policy})
    assert rwsem.down_read(S, 0, 0)
    S.t[0, T_F_LOCK] = LOCK_MMAP
    S.t[0, T_F_FLAGS] = FAULT_FLAG_ALLOW_RETRY
    fault.maybe_unlock_mmap_for_io(S, 0)
    assert S.g[G_RW_READERS] == 0 and S.t[0, T_F_FPIN] == 1
    # ... and never on a TRIED attempt
    assert rwsem.down_read(S, 0, 0)
    S.t[0, T_F_LOCK] = LOCK_MMAP
    S.t[0, T_F_FPIN] = 0
    S.t[0, T_F_FLAGS] = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_TRIED
    fault.maybe_unlock_mmap_for_io(S, 0)
    assert S.g[G_RW_READERS] == 1 and S.t[0, T_F_FPIN] == 0


@pytest.mark.parametrize("policy", ["hold_vma_io", "baseline"])
def test_vma_lock_held_across_io(policy):
    _, S = _state(**_io_params(policy))
    _start(S, [0])                                       # thread 1 stays out: the writer
    _drive_until(S, lambda S: S.g[G_IO_INFLIGHT] == 1)
    t_submit = int(S.g[G_NOW])
    assert S.pg[0, P_FLAGS] & (PG_PRESENT | PG_LOCKED) == PG_PRESENT | PG_LOCKED
    assert not S.pg[0, P_FLAGS] & PG_UPTODATE
    c = int(S.g[G_IDLE_LIST + S.g[G_IDLE_N] - 1])
    _on_core(S, 1, c)
    if policy == "baseline":
        # the fault dropped the VMA lock for the I/O: a writer gets in at once
        assert S.vma[0, V_READERS] == 0 and S.t[0, T_F_LOCK] == LOCK_NONE
        assert vma.vma_start_write(S, 1, 0, M_DOWNGRADE)
        assert S.vma[0, V_WRITE_LOCKED] == 1
        assert _counter(S, M.VMA_WRITER_WAIT_NS) == 0
        return
    assert S.vma[0, V_READERS] == 1 and S.t[0, T_F_LOCK] == LOCK_VMA
    assert not vma.vma_start_write(S, 1, 0, M_DOWNGRADE)  # munmap's writer waits for the I/O
    assert not vma.lock_vma_under_rcu(S, 0)
    _drive_until(S, lambda S: S.vma[0, V_WRITE_LOCKED] == 1)
    assert S.vma[0, V_READERS] == 0 and S.vma[0, V_WRITER] == -1
    assert _counter(S, M.PAGES_READ) == 1
    assert _counter(S, M.VMA_LOCK_SUCCESS) == 1 and _counter(S, M.RETRY_MMAP_DROP) == 0
    # the writer waited for: the I/O, the faulting thread's wake-up, its PTE install
    service = S.k[K_IO_MEDIAN_NS] + S.k[K_IO_XFER] + S.k[K_IO_COMPLETE]
    wait = int(S.g[G_NOW]) - t_submit
    assert wait == service + S.k[K_WAKEUP] + S.k[K_PTE_INSTALL]
    assert _counter(S, M.VMA_WRITER_WAIT_NS) == wait
    assert _counter(S, M.VMA_WRITER_WAIT_MAX_NS) == wait
    assert S.t[1, T_PC] == M_DOWNGRADE


# ---- 4. fault-around --------------------------------------------------------------------------

def test_filemap_map_pages_skips_unmappable_folios():
    _, S = _state(machine={"fault_around_kb": 64})      # a 16-page window
    U = PG_PRESENT | PG_UPTODATE
    flags = {
        15: U,                       # outside the window
        16: 0,                       # absent
        17: U,                       # mapped
        18: U | PG_LOCKED,           # locked: trylock fails
        19: PG_PRESENT,              # not uptodate (being read)
        20: U | PG_READAHEAD,        # left for a real fault
        # isolated by reclaim (the faulting page): mapped all the same, next_uptodate_folio
        # (v7.0-rc3) has no LRU check; shrink_folio_list then finds it mapped and young
        21: U | PG_ISOLATED,
        22: U,                       # its PTE is already present
        23: PG_UPTODATE,             # not in the page cache
        32: U,                       # outside the window
    }
    for i in range(24, 32):
        flags[i] = U | PG_REFERENCED | PG_ACTIVE | PG_LRU
    for i, fl in flags.items():
        S.pg[i, P_FLAGS] = fl
    S.vma[0, V_PTE0 + 22] = PTE_PRESENT
    cost, mapped = pagecache.filemap_map_pages(S, 0, 0, 21)
    ptes = S.vma[0, V_PTE0:V_PTE0 + S.k[K_FILE_PAGES]]
    got = {i for i in range(S.k[K_FILE_PAGES]) if ptes[i] & PTE_PRESENT}
    assert got == {17, 21, 22} | set(range(24, 32))
    assert all(ptes[i] == PTE_PRESENT | PTE_YOUNG for i in [17, 21, *range(24, 32)])
    assert ptes[22] == PTE_PRESENT                       # an existing PTE is left alone
    assert mapped
    assert cost == 16 * S.k[K_FA_PAGE] + 10 * S.k[K_PTE_INSTALL]
    # folio flags are untouched by mapping
    assert all(S.pg[i, P_FLAGS] == fl for i, fl in flags.items())

    # the faulting page already mapped in the window: nothing new, reported mapped
    cost, mapped = pagecache.filemap_map_pages(S, 0, 0, 24)
    assert mapped and cost == 16 * S.k[K_FA_PAGE]
    # a mappable faulting page gets mapped; the window is aligned down to 16 pages
    S.pg[42, P_FLAGS] = U
    cost, mapped = pagecache.filemap_map_pages(S, 0, 0, 42)
    assert mapped and cost == 16 * S.k[K_FA_PAGE] + 2 * S.k[K_PTE_INSTALL]   # 32 and 42
    assert [i for i in range(32, 48) if S.vma[0, V_PTE0 + i]] == [32, 42]
    # the window is clipped at the end of the file
    n = int(S.k[K_FILE_PAGES])
    S.pg[n - 1, P_FLAGS] = U
    cost, mapped = pagecache.filemap_map_pages(S, 0, 0, n - 1)
    assert mapped and cost == 16 * S.k[K_FA_PAGE] + S.k[K_PTE_INSTALL]


# ---- 5. reclaim -------------------------------------------------------------------------------

def _reclaim_state(lru_name, file_mb=1):
    _, S = _state(machine={"lru": lru_name, "cores": 1},
                  workload={"threads": 1, "file_mb": file_mb})
    _on_core(S, 0, 0)
    S.vma[0, V_ATTACHED] = 1
    S.t[0, T_VMA] = 0
    S.file[0, FL_VMA] = 0
    return S


def _exit_after_reclaim(S):
    """Thread 0 reclaims 32 pages, then exits through app_launch's W_AL_DONE: a step of
    app_launch's engine, which the state is run with."""
    S.k[K_ENGINE] = engine.ENGINE_IDS["app_launch"]
    vmscan.start_reclaim(S, 0, 32, W_AL_DONE)


def test_reclaim_classic_evicts_unmapped_before_mapped_referenced():
    S = _reclaim_state("classic")
    U = PG_PRESENT | PG_UPTODATE
    A, B, C = 0, 1, 2        # unmapped clean, mapped young, locked (A at the tail)
    for p, fl in ((A, U), (B, U), (C, U | PG_LOCKED)):
        S.pg[p, P_FLAGS] = fl
        lru.lruvec_add_folio(S, p, False)
    S.vma[0, V_PTE0 + B] = PTE_PRESENT | PTE_YOUNG
    S.g[G_USAGE] = 3
    assert _list(S, LIST_INACTIVE) == [C, B, A]
    assert S.g[G_LRU_TAIL + LIST_INACTIVE] == A

    S.t[0, T_R_BUDGET] = 10
    assert vmscan.isolate_folios(S, 0) == 3
    assert S.t[0, T_R_BATCH_N] == 3
    assert list(S.t[0, T_R_BATCH0:T_R_BATCH0 + 3]) == [A, B, C]   # tail first
    assert S.t[0, T_R_BUDGET] == 7 and _counter(S, M.PGSCAN) == 3
    assert S.g[G_LRU_SIZE + LIST_INACTIVE] == 0
    for p in (A, B, C):
        assert S.pg[p, P_FLAGS] & PG_ISOLATED and not S.pg[p, P_FLAGS] & PG_LRU
        assert S.pg[p, P_LIST] == NO_LIST

    cost = vmscan.shrink_folio_list(S, 0)
    assert cost == 3 * S.k[K_RC_SCAN] + S.k[K_RC_RMAP] + S.k[K_RC_EVICT]
    # A evicted: out of the page cache, a shadow left, uncharged
    # shadow: eviction stamp x 2 + PG_workingset
    # (the stamp is read before the eviction ages the nonresident clock)
    assert S.pg[A, P_FLAGS] == 0 and S.pg[A, P_SHADOW] == 0 and S.g[G_NONRESIDENT_AGE] == 1
    assert S.g[G_USAGE] == 2
    assert _counter(S, M.PAGES_RECLAIMED) == 1 and S.t[0, T_R_RECLAIMED] == 1
    # B kept: referenced once (not yet active), its young bit consumed, still mapped
    assert S.pg[B, P_FLAGS] == U | PG_ISOLATED | PG_REFERENCED
    assert S.vma[0, V_PTE0 + B] == PTE_PRESENT
    assert S.pg[B, P_SHADOW] == -1
    # C kept untouched
    assert S.pg[C, P_FLAGS] == U | PG_LOCKED | PG_ISOLATED
    assert S.t[0, T_R_BATCH_N] == 2
    assert list(S.t[0, T_R_BATCH0:T_R_BATCH0 + 2]) == [B, C]

    assert vmscan.move_folios_to_lru(S, 0, 0) == 2
    assert _list(S, LIST_INACTIVE) == [C, B]
    assert S.pg[B, P_FLAGS] == U | PG_LRU | PG_REFERENCED
    assert S.pg[C, P_FLAGS] == U | PG_LOCKED | PG_LRU

    # second pass, B accessed again: referenced twice -> activated; C still locked
    S.vma[0, V_PTE0 + B] = PTE_PRESENT | PTE_YOUNG
    S.t[0, T_R_BUDGET] = 10
    assert vmscan.isolate_folios(S, 0) == 2
    vmscan.shrink_folio_list(S, 0)
    assert S.t[0, T_R_BATCH_N] == 2 and _counter(S, M.PAGES_RECLAIMED) == 1
    vmscan.move_folios_to_lru(S, 0, 0)
    assert _list(S, LIST_ACTIVE) == [B] and _list(S, LIST_INACTIVE) == [C]
    assert S.pg[B, P_FLAGS] & PG_ACTIVE
    assert S.g[G_NONRESIDENT_AGE] == 2      # putting back an activated folio ages the clock

    # deactivated with its young bit gone, B is unmapped and evicted; C unlocked goes too
    S.pg[C, P_FLAGS] &= ~PG_LOCKED
    assert vmscan.shrink_active_list(S, 32) == 1
    assert _list(S, LIST_INACTIVE) == [B, C]
    S.t[0, T_R_BUDGET] = 10
    vmscan.isolate_folios(S, 0)
    cost = vmscan.shrink_folio_list(S, 0)
    assert S.t[0, T_R_BATCH_N] == 0
    assert S.vma[0, V_PTE0 + B] == 0                     # try_to_unmap
    assert S.pg[B, P_FLAGS] == 0 and S.pg[C, P_FLAGS] == 0
    # C (tail) first; B went through the active list, so it was evicted PG_workingset
    assert (S.pg[C, P_SHADOW], S.pg[B, P_SHADOW]) == (2 * 2, 3 * 2 + 1)
    assert S.g[G_USAGE] == 0 and _counter(S, M.PAGES_RECLAIMED) == 3
    assert cost == 2 * S.k[K_RC_SCAN] + 2 * S.k[K_RC_RMAP] + 2 * S.k[K_RC_EVICT]


def test_reclaim_mglru_look_around_promotes_young_folio():
    S = _reclaim_state("mglru")
    U = PG_PRESENT | PG_UPTODATE
    A, B, C = 0, 1, 5        # unmapped clean (tail), mapped young, mapped young neighbour
    for p in (A, B, C):
        S.pg[p, P_FLAGS] = U
        lru.lruvec_add_folio(S, p, False)
    S.vma[0, V_PTE0 + B] = PTE_PRESENT | PTE_YOUNG
    S.vma[0, V_PTE0 + C] = PTE_PRESENT | PTE_YOUNG
    S.g[G_USAGE] = 3
    # clean file folios enter at max_seq - 3, clamped to min_seq = 0
    assert (S.g[G_MIN_SEQ], S.g[G_MAX_SEQ]) == (0, 2)
    assert _list(S, 0) == [C, B, A] and all(S.pg[p, P_GEN] == 0 for p in (A, B, C))
    assert list(S.g[G_GEN_PAGES:G_GEN_PAGES + 4]) == [3, 0, 0, 0]

    S.t[0, T_R_BUDGET] = 2
    assert vmscan.isolate_folios(S, 0) == 2
    assert list(S.t[0, T_R_BATCH0:T_R_BATCH0 + 2]) == [A, B]
    cost = vmscan.shrink_folio_list(S, 0)
    assert cost == (2 * S.k[K_RC_SCAN] + S.k[K_RC_EVICT] + S.k[K_RC_RMAP]
                    + vmscan.MIN_LRU_BATCH * 8)
    # A evicted with min_seq as its shadow
    assert S.pg[A, P_FLAGS] == 0 and S.pg[A, P_SHADOW] == 0 and S.g[G_USAGE] == 2
    assert _counter(S, M.PAGES_RECLAIMED) == 1
    # B kept and marked active; look-around cleared both young bits and promoted C
    assert S.t[0, T_R_BATCH_N] == 1 and S.t[0, T_R_BATCH0] == B
    assert S.pg[B, P_FLAGS] == U | PG_ISOLATED | PG_ACTIVE
    assert S.vma[0, V_PTE0 + B] == PTE_PRESENT and S.vma[0, V_PTE0 + C] == PTE_PRESENT
    assert S.pg[C, P_GEN] == 2 and _list(S, 0) == [C]   # promoted in the flags only
    assert list(S.g[G_GEN_PAGES:G_GEN_PAGES + 4]) == [0, 0, 1, 0]

    assert vmscan.move_folios_to_lru(S, 0, 0) == 1
    # a rejected folio never goes back to the oldest generation: max_seq - 1, at the tail
    assert S.pg[B, P_GEN] == 1 and _list(S, 1) == [B]
    assert S.pg[B, P_FLAGS] == U | PG_LRU                # PG_active consumed by the add
    assert list(S.g[G_GEN_PAGES:G_GEN_PAGES + 4]) == [0, 1, 1, 0]

    # next isolation sorts C to its generation instead of isolating it; scan_folios
    # returns 0 (nothing isolated, scan limit not reached), then evict_folios' own
    # try_to_inc_min_seq advances min_seq past the empty generation
    S.t[0, T_R_BUDGET] = 10
    assert vmscan.isolate_folios(S, 0) == 1
    assert S.t[0, T_R_BATCH_N] == 0 and S.t[0, T_R_DELTA] == 0
    assert _list(S, 0) == [] and _list(S, 2) == [C] and S.pg[C, P_FLAGS] & PG_LRU
    assert (S.g[G_MIN_SEQ], S.g[G_MAX_SEQ]) == (0, 2)
    assert lru.try_to_inc_min_seq(S)
    assert (S.g[G_MIN_SEQ], S.g[G_MAX_SEQ]) == (1, 2)
    assert S.pg[B, P_FLAGS] & PG_PRESENT and S.pg[C, P_FLAGS] & PG_PRESENT
    assert _counter(S, M.PGSCAN) == 3


# policy of evict_folios' second pass: (first-pass state of folio A, evicted in the retry)
EVICT_RETRY = {
    "locked": (PG_LOCKED, True),           # a read in flight, done before the retry
    "mapped_young": (-1, False),           # referenced: activated, never retried
}


@pytest.mark.parametrize("case", sorted(EVICT_RETRY))
def test_mglru_evict_folios_second_pass(case):
    """v7.0-rc3 evict_folios: after shrink_folio_list, a rejected folio that is not active,
    mapped, dirty or under writeback is shrunk once more after the others went back
    (skip_retry). A folio locked in the first pass (here its read completes meanwhile) is
    evicted on the retry; a mapped young one is activated and put back, not retried. The
    classic LRU has no such pass."""
    flag, evicted = EVICT_RETRY[case]
    S = _reclaim_state("mglru")
    U = PG_PRESENT | PG_UPTODATE
    A, B = 0, 1
    for p in (A, B):
        S.pg[p, P_FLAGS] = U
        lru.lruvec_add_folio(S, p, False)
    S.g[G_USAGE] = 2
    if flag == PG_LOCKED:
        S.pg[A, P_FLAGS] |= PG_LOCKED
    else:
        S.vma[0, V_PTE0 + A] = PTE_PRESENT | PTE_YOUNG
    S.t[0, T_R_BUDGET] = 2
    assert vmscan.isolate_folios(S, 0) == 2
    vmscan.shrink_folio_list(S, 0)
    assert _counter(S, M.PAGES_RECLAIMED) == 1 and S.pg[B, P_FLAGS] == 0   # B went at once
    assert S.t[0, T_R_BATCH_N] == 1 and S.t[0, T_R_BATCH0] == A
    S.pg[A, P_FLAGS] &= ~PG_LOCKED                       # the read completed
    # the putback under lru_lock keeps A for the retry (or puts it back)
    assert lru.spin_lock_irq_lru(S, 0, 0)
    assert not vmscan.step(S, 0, st.RC_PUTBACK_LOCKED)
    assert S.t[0, T_R_BATCH_N] == (1 if evicted else 0)
    assert vmscan.step(S, 0, st.RC_PUTBACK_DONE)
    if not evicted:
        assert S.pg[A, P_FLAGS] & PG_LRU and S.pg[A, P_GEN] == 1   # back, max_seq - 1
        assert S.t[0, T_R_RETRIED] == 0
        return
    assert S.t[0, T_PC] == st.RC_SHRINK_RETRY and S.t[0, T_R_RETRIED] == 1
    assert not vmscan.step(S, 0, st.RC_SHRINK_RETRY)
    assert S.pg[A, P_FLAGS] == 0 and _counter(S, M.PAGES_RECLAIMED) == 2
    assert S.t[0, T_R_BATCH_N] == 0 and S.g[G_USAGE] == 0
    assert vmscan.step(S, 0, st.RC_PUTBACK)             # nothing left: the next batch
    assert S.t[0, T_PC] in (st.RC_ISOLATE, st.RC_PRIORITY)


def test_classic_reclaim_has_no_second_pass():
    S = _reclaim_state("classic")
    S.pg[0, P_FLAGS] = PG_PRESENT | PG_UPTODATE | PG_LOCKED
    lru.lruvec_add_folio(S, 0, False)
    S.g[G_USAGE] = 1
    S.t[0, T_R_BUDGET] = 1
    assert vmscan.isolate_folios(S, 0) == 1
    vmscan.shrink_folio_list(S, 0)
    S.pg[0, P_FLAGS] &= ~PG_LOCKED
    assert lru.spin_lock_irq_lru(S, 0, 0)
    vmscan.step(S, 0, st.RC_PUTBACK_LOCKED)
    assert S.t[0, T_R_BATCH_N] == 0 and S.pg[0, P_FLAGS] & PG_LRU     # back on the list
    vmscan.step(S, 0, st.RC_PUTBACK_DONE)
    assert S.t[0, T_PC] != st.RC_SHRINK_RETRY and _counter(S, M.PAGES_RECLAIMED) == 0


def _mglru_cold_folios(S, n, min_seq):
    """n unmapped, clean, uptodate folios in generation min_seq (the oldest), charged."""
    S.g[G_MIN_SEQ] = min_seq
    for p in range(n):
        S.pg[p, P_FLAGS] = PG_PRESENT | PG_UPTODATE
        lru.lruvec_add_folio(S, p, False)
    S.g[G_USAGE] = n


def test_mglru_get_nr_to_scan_ages_below_default_priority_only():
    """6.14+ aging feedback: aging is due at three generations or fewer; at DEF_PRIORITY
    the reclaimer scans anyway (nothing, with two), below it ages instead of scanning."""
    S = _reclaim_state("mglru", file_mb=16)
    _mglru_cold_folios(S, 4096, 0)
    assert (S.g[G_MIN_SEQ], S.g[G_MAX_SEQ]) == (0, 2)                   # three generations
    assert vmscan.should_run_aging(S) == (True, 4096)
    assert vmscan.get_nr_to_scan(S, vmscan.DEF_PRIORITY) == 1           # 4096 >> 12
    assert vmscan.get_nr_to_scan(S, 11) == vmscan.AGE_INSTEAD
    S.g[G_MAX_SEQ] = 3                                                  # four generations
    assert vmscan.should_run_aging(S) == (False, 4096)
    assert vmscan.get_nr_to_scan(S, 11) == 2 and vmscan.get_nr_to_scan(S, 0) == 4096
    S.g[G_MAX_SEQ] = 1                                                  # two generations
    assert vmscan.should_run_aging(S) == (True, 0)
    assert vmscan.get_nr_to_scan(S, vmscan.DEF_PRIORITY) == 0
    assert vmscan.get_nr_to_scan(S, 5) == vmscan.AGE_INSTEAD


@pytest.mark.parametrize("min_seq, reclaimed, aged", [
    # three generations: DEF_PRIORITY scans 4096>>12 = 1; 11 ages (four generations);
    # 10..7 scan 4095>>10, 4092>>9, 4085>>8, 4070>>7 = 3, 7, 15, 31: 1+3+7+15+31 = 57 >= 32
    (0, 57, 1),
    # two generations: DEF_PRIORITY scans nothing; 11 and 10 age (three, then four);
    # 9..7 scan 4096>>9, 4088>>8, 4073>>7 = 8, 15, 31: 54 >= 32
    (1, 54, 2),
])
def test_mglru_reclaim_priorities(min_seq, reclaimed, aged):
    """try_to_free_mem_cgroup_pages(32) on cold folios, run as the thread's program:
    the priorities, aging and batch sizes of do_try_to_free_pages / try_to_shrink_lruvec."""
    S = _reclaim_state("mglru", file_mb=16)
    _mglru_cold_folios(S, 4096, min_seq)
    _exit_after_reclaim(S)
    engine.thread_step(S, 0)
    _drive_until(S, lambda S: S.t[0, T_STATE] == TS_EXITED)
    assert S.t[0, T_R_RECLAIMED] == reclaimed
    assert _counter(S, M.PAGES_RECLAIMED) == reclaimed == _counter(S, M.PGSCAN)
    assert _counter(S, M.AGING_RUNS) == aged
    assert S.g[G_MAX_SEQ] - S.g[G_MIN_SEQ] + 1 == 4
    assert S.g[G_USAGE] == 4096 - reclaimed and _counter(S, M.RECLAIM_NO_PROGRESS) == 0


@pytest.mark.parametrize("inactive, active, activated, reclaimed, deactivated", [
    # no refault activated since the last snapshot, inactive not low: the active list is
    # left alone. Inactive targets 3000>>11.. = 1, 2, 5, 11, 23: 42 >= 32 at priority 7.
    (3000, 1000, 0, 42, 0),
    # refaults activated since the snapshot ("a new workingset is being established"):
    # the active list is deactivated at its own target, 1000>>9.. = 1, 3, 7.
    (3000, 1000, 5, 42, 11),
    # inactive low (1000 < 3000): deactivation without refaults; priorities 11..7
    # deactivate 1, 2, 5, 11, 23 and reclaim 0, 0, 1, 3, 7; 6 reclaims 16 and deactivates
    # 32 + 14 (two passes); 5 reclaims 32 (59 in all) and deactivates 32.
    (1000, 3000, 0, 59, 120),
])
def test_classic_reclaim_deactivates_on_refaults_or_low_inactive(inactive, active, activated,
                                                                 reclaimed, deactivated):
    """try_to_free_mem_cgroup_pages(32) on the classic LRU, run as the thread's program:
    shrink_lruvec scans each file list at lru_size >> priority, SWAP_CLUSTER_MAX at a time,
    and deactivates only if prepare_scan_control allows it (WORKINGSET_ACTIVATE_FILE moved
    since snapshot_refaults, or inactive_is_low); the snapshot is taken at the end."""
    S = _reclaim_state("classic", file_mb=16)
    for p in range(inactive + active):
        S.pg[p, P_FLAGS] = PG_PRESENT | PG_UPTODATE | (PG_ACTIVE if p >= inactive else 0)
        lru.lruvec_add_folio(S, p, False)
    S.g[G_USAGE] = inactive + active
    S.g[G_COUNTERS + M.WORKINGSET_ACTIVATE] = activated
    _exit_after_reclaim(S)
    engine.thread_step(S, 0)
    _drive_until(S, lambda S: S.t[0, T_STATE] == TS_EXITED)
    assert S.t[0, T_R_RECLAIMED] == reclaimed == _counter(S, M.PAGES_RECLAIMED)
    assert _counter(S, M.PGDEACTIVATE) == deactivated
    assert S.g[G_LRU_SIZE + LIST_ACTIVE] == active - deactivated
    assert S.g[G_LRU_SIZE + LIST_INACTIVE] == inactive + deactivated - reclaimed
    assert S.g[G_WS_SNAPSHOT] == activated                  # snapshot_refaults


def test_classic_activations_age_the_nonresident_clock():
    """workingset_age_nonresident runs on evictions and on every activation: a recent
    refault, folio_mark_accessed at zap (workingset_activation), and reclaim putting an
    activated folio back (move_folios_to_lru); refault activations count
    WORKINGSET_ACTIVATE."""
    S = _reclaim_state("classic")
    U = PG_PRESENT | PG_UPTODATE
    # zap of a young PTE on a folio already PG_referenced: activated, the clock ages
    S.pg[5, P_FLAGS] = U | PG_REFERENCED
    lru.lruvec_add_folio(S, 5, False)
    S.vma[0, V_FILE] = 0
    S.vma[0, V_PTE0 + 5] = PTE_PRESENT | PTE_YOUNG
    cost, activated, large = mm.zap_pte_range(S, 0)
    assert (cost, activated, large) == (S.k[K_ZAP_PTE], 1, 0)
    assert S.g[G_NONRESIDENT_AGE] == 1
    assert _list(S, LIST_ACTIVE) == [5] and _counter(S, M.PGACTIVATE) == 1
    # a refault within the active list: activated, counted, the clock ages again
    S.pg[6, P_SHADOW] = 2 * 1                        # evicted when the clock read 1
    S.g[G_NONRESIDENT_AGE] = 2
    lru.workingset_refault(S, 6)
    assert S.pg[6, P_FLAGS] & PG_ACTIVE and S.g[G_NONRESIDENT_AGE] == 3
    assert _counter(S, M.WORKINGSET_ACTIVATE) == 1
    # too far: not activated, nothing ages
    S.pg[7, P_SHADOW] = 0
    S.g[G_NONRESIDENT_AGE] = 10
    lru.workingset_refault(S, 7)
    assert not S.pg[7, P_FLAGS] & PG_ACTIVE and S.g[G_NONRESIDENT_AGE] == 10
    assert _counter(S, M.REFAULTS) == 2 and _counter(S, M.WORKINGSET_ACTIVATE) == 1


def test_evict_age_histogram_counts_page_cache_age():
    """The evict_age diagnostic: reclaim bins each evicted folio by the time since
    filemap_add_folio put it in the page cache."""
    S = _reclaim_state("mglru")
    S.g[G_NOW] = 1_000
    readahead.filemap_add_folio(S, 0, 3, 1, False, False)
    S.pg[3, P_FLAGS] = PG_PRESENT | PG_UPTODATE         # read and unlocked
    assert S.pg[3, P_ADDED_NS] == 1_000
    lru.lru_add_drain_locked(S, 0)
    S.g[G_USAGE] = 1
    S.g[G_NOW] = 1_001_000
    S.t[0, T_R_BUDGET] = 10
    assert vmscan.isolate_folios(S, 0) == 1
    vmscan.shrink_folio_list(S, 0)
    assert _counter(S, M.PAGES_RECLAIMED) == 1
    age = S.g[G_AGE_HIST:G_AGE_HIST + LAT_BINS]
    assert age.sum() == 1 and age[hist.log8_bin(1_000_000)] == 1
    assert hist.log8_bin(1_000_000) == 1 + 8 * 13 + 7      # 64 ns << 13 = 524 us, 1 ms top


@pytest.mark.parametrize("lru_name", ["mglru", "classic"])
def test_refault_restores_workingset_only_if_evicted_workingset(lru_name):
    """pack_shadow keeps PG_workingset; a recent refault (MGLRU: within MAX_NR_GENS; classic:
    within the active list, which also activates it) gets it back only if it had it."""
    S = _reclaim_state(lru_name)
    U = PG_PRESENT | PG_UPTODATE
    S.pg[0, P_FLAGS] = U | PG_WORKINGSET
    S.pg[1, P_FLAGS] = U
    for p in (0, 1):
        lru.workingset_eviction(S, p)
        S.pg[p, P_FLAGS] = 0
    assert S.pg[0, P_SHADOW] & 1 == 1 and S.pg[1, P_SHADOW] & 1 == 0
    if lru_name == "classic":
        S.g[G_LRU_SIZE + LIST_ACTIVE] = 10          # refault distances 2 and 2: within it
    for p in (0, 1):
        lru.workingset_refault(S, p)
        assert S.pg[p, P_SHADOW] == -1
    assert _counter(S, M.REFAULTS) == 2                # every refault counts
    assert _counter(S, M.WORKINGSET_ACTIVATE) == 2     # both recent
    assert bool(S.pg[0, P_FLAGS] & PG_WORKINGSET) and not S.pg[1, P_FLAGS] & PG_WORKINGSET
    active = PG_ACTIVE if lru_name == "classic" else 0
    assert S.pg[0, P_FLAGS] & PG_ACTIVE == active and S.pg[1, P_FLAGS] & PG_ACTIVE == active


def test_lru_list_links_consistent():
    S = _reclaim_state("classic")
    for p in range(5):
        S.pg[p, P_FLAGS] = PG_PRESENT | PG_UPTODATE
        lru.lruvec_add_folio(S, p, False)
    lru.list_del(S, 2)
    assert _list(S, LIST_INACTIVE) == [4, 3, 1, 0]
    assert S.pg[3, P_NEXT] == 1 and S.pg[1, P_PREV] == 3
    assert S.g[G_LRU_SIZE + LIST_INACTIVE] == 4
    lru.list_add_tail(S, LIST_INACTIVE, 2)
    assert _list(S, LIST_INACTIVE) == [4, 3, 1, 0, 2] and S.g[G_LRU_TAIL + LIST_INACTIVE] == 2


# ---- 6. memory.max is never exceeded ----------------------------------------------------------

@pytest.mark.parametrize("lru_name", ["mglru", "classic"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_usage_never_exceeds_memory_max(lru_name, seed):
    p = Params.from_dict({
        "machine": {"cores": 4, "lru": lru_name, "jitter": False},
        "costs": {"cacheline_transfer_ns": 0},
        "workload": {"threads": 8, "file_mb": 4},
        "memcg": {"high_mb": 12, "max_mb": 16},
        "sim": {"duration_s": 0.3, "warmup_s": 0.0},
    })
    S = build_state(p)
    engine.run(S, np.int64(seed))
    assert S.g[G_STOP] == 0
    assert S.k[K_MAX] == 16 * 256
    assert 0 < S.g[G_PEAK_USAGE] <= S.k[K_MAX]
    assert _counter(S, M.PEAK_USAGE_PAGES) == S.g[G_PEAK_USAGE]
    assert 0 <= S.g[G_USAGE] <= S.k[K_MAX]
    # the limit bit: 8 threads x 4 MB of files do not fit in 16 MB
    assert _counter(S, M.PAGES_RECLAIMED) > 0
    assert _counter(S, M.ROUNDS) > 0
    # usage = kernel memory + cached folios + per-CPU stocks + at most one
    # charged-not-yet-added folio a thread (readahead folios: up to the window, 32 pages)
    heads = (S.pg[:, P_FLAGS] & PG_PRESENT).astype(bool)
    present = int(S.pg[heads, P_NR].sum())
    stock = int(S.core[:, C_STOCK].sum())
    slack = int(S.g[G_USAGE]) - p.kmem_pages - present - stock
    assert 0 <= slack <= p.workload.threads * p.ra_pages, (S.g[G_USAGE], present, stock)
    assert S.g[G_OOM] == 0


# ---- 7. the first major fault, by policy ------------------------------------------------------

# (retry_mmap_drop, mmap_lock read acquisitions, vma_lock_retry, vma_lock_success)
FIRST_FAULT = {
    "baseline": (1, 1, 1, 0),
    "vma_retry": (1, 0, 1, 1),
    "vma_retry_uptodate": (1, 0, 1, 1),
    "retry_hard": (1, 0, 1, 1),
    "hold_vma_io": (0, 0, 0, 1),
    "mmap_lock_only": (1, 2, 0, 0),
    "hold_file_vma_io": (0, 0, 0, 1),      # approach 3: a file fault keeps the VMA lock
}


@pytest.mark.parametrize("policy", sorted(FIRST_FAULT))
def test_first_major_fault_counters(policy):
    assert set(FIRST_FAULT) == set(core.POLICIES)
    p = Params.from_dict({
        "machine": {"cores": 1, "fault_around_kb": 4, "jitter": False},
        "costs": {"cacheline_transfer_ns": 0},
        "workload": {"threads": 1, "file_mb": 1},
        "policy": {"name": policy},
        "device": {"ra_kb": 4},
        "sim": {"duration_s": 1.0, "warmup_s": 0.0},
    })
    S = build_state(p)
    _start(S, [0])
    # run until the first fault has returned (its latency is recorded at F_END)
    _drive_until(S, lambda S: S.g[G_LAT_HIST:G_LAT_HIST + LAT_BINS].sum() == 1)
    drops, mmap_reads, vretry, vsuccess = FIRST_FAULT[policy]
    got = {
        "retry_mmap_drop": _counter(S, M.RETRY_MMAP_DROP),
        "mmap_read_count": _counter(S, M.MMAP_READ_COUNT),
        "vma_lock_retry": _counter(S, M.VMA_LOCK_RETRY),
        "vma_lock_success": _counter(S, M.VMA_LOCK_SUCCESS),
        "vma_lock_abort": _counter(S, M.VMA_LOCK_ABORT),
        "pgmajfault": _counter(S, M.PGMAJFAULT),
        "retry_io_miss": _counter(S, M.RETRY_IO_MISS),
        "pages_read": _counter(S, M.PAGES_READ),
        "mmap_write_count": _counter(S, M.MMAP_WRITE_COUNT),
    }
    assert got == {
        "retry_mmap_drop": drops,
        "mmap_read_count": mmap_reads,
        "vma_lock_retry": vretry,
        "vma_lock_success": vsuccess,
        "vma_lock_abort": 0,
        "pgmajfault": 1,
        "retry_io_miss": 0,
        "pages_read": 1,
        "mmap_write_count": 1,               # the mmap() syscall itself
    }
    # every drop was followed by one retry, whose delay the diagnostic histogram holds
    assert S.g[G_RETRY_HIST:G_RETRY_HIST + LAT_BINS].sum() == drops
    # the page is mapped and no lock is left held; the next touch (page 1) has begun faulting
    assert S.vma[0, V_PTE0] & PTE_PRESENT
    assert S.g[G_RW_READERS] == 0 and S.g[G_RW_WRITER] == -1 and S.vma[0, V_READERS] == 0
    assert _counter(S, M.PGFAULT) == 2


# ---- page_not_uptodate: the synchronous re-read -------------------------------------------

@pytest.mark.parametrize("sparse", [
    False,
    # Regression: the sparse re-read of F_READ_FOLIO_DONE did not count PAGES_READ.
    True,
])
def test_sync_reread_counts_pages_read(sparse):
    """A folio present but not uptodate (added by __filemap_get_folio after readahead did not
    bring it) is read once under page_not_uptodate: the fault drops its VMA lock, reads, and
    retries. The read is one page read, on a sparse file as on a device."""
    _, S = _state(machine={"cores": 1, "fault_around_kb": 4},
                  workload={"threads": 1, "file_mb": 1},
                  device={"sparse": sparse, "io_median_us": 100.0, "io_sigma": 0.0})
    _on_core(S, 0, 0)
    S.vma[0, V_ATTACHED] = 1
    S.t[0, T_VMA] = 0
    S.file[0, FL_VMA] = 0
    assert vma.lock_vma_under_rcu(S, 0)
    S.t[0, T_F_LOCK] = LOCK_VMA
    S.t[0, T_F_FLAGS] = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_VMA_LOCK
    S.t[0, T_F_PAGE] = 7
    S.pg[7, P_FLAGS] = PG_PRESENT | PG_LOCKED          # F_FOLIO_LOCK took it
    S.pg[7, P_REFS] = 1
    S.t[0, T_PC] = F_LOCKED
    engine.thread_step(S, 0)
    assert S.vma[0, V_READERS] == 0 and S.t[0, T_F_FPIN] == 1   # dropped for the I/O
    _drive_until(S, lambda S: S.t[0, T_PC] == F_LOCK_VMA or S.t[0, T_PC] == F_HANDLE
                 or S.t[0, T_PC] == F_END)
    assert S.pg[7, P_FLAGS] == PG_PRESENT | PG_UPTODATE and S.pg[7, P_REFS] == 0
    assert _counter(S, M.RETRY_MMAP_DROP) == 1 and _counter(S, M.VMA_LOCK_RETRY) == 1
    assert _counter(S, M.PAGES_READ) == 1


# ---- block request slots ----------------------------------------------------------------------

# Regression: the block-request pool was sized 4*threads+16, too small for a fragmented
# page cache (one request per contiguous run of a readahead window).
def test_readahead_into_fragmented_cache_fits_request_pool():
    _, S = _state(machine={"cores": 1, "fault_around_kb": 4},
                  workload={"threads": 1, "file_mb": 1},
                  device={"sparse": False, "ra_kb": 512, "io_median_us": 100.0,
                          "io_sigma": 0.0},
                  sim={"duration_s": 0.01})
    # every other page of the first 128 cached (uptodate, on the LRU, charged)
    for i in range(1, 128, 2):
        S.pg[i, P_FLAGS] = PG_PRESENT | PG_UPTODATE
        lru.lruvec_add_folio(S, i, False)
        S.g[G_USAGE] += 1
    assert S.rq.shape[0] >= 128 // 2                    # one slot per run of the window
    engine.run(S, np.int64(1))                           # first fault: a 128-page window
    assert _counter(S, M.PAGES_READ) >= 64


# ---- a busy but uptodate folio, by policy -----------------------------------------------------

# (lock dropped while waiting, retry_mmap_drop, vma_lock_retry, mmap reads, lock at the end)
BUSY_UPTODATE = {
    "baseline": (True, 1, 1, 1, LOCK_MMAP),
    "vma_retry": (True, 1, 1, 0, LOCK_VMA),
    "retry_hard": (True, 1, 1, 0, LOCK_VMA),
    "vma_retry_uptodate": (False, 0, 0, 0, LOCK_VMA),   # patch 4: wait holding the VMA lock
    "hold_vma_io": (False, 0, 0, 0, LOCK_VMA),
}


@pytest.mark.parametrize("policy", sorted(BUSY_UPTODATE))
def test_wait_on_busy_uptodate_folio(policy):
    """lock_folio_maybe_drop_mmap on an uptodate folio whose lock someone else holds (a PTE
    install): which policies drop the VMA lock and retry, and how the retry is taken."""
    dropped, drops, vretry, mmap_reads, final_lock = BUSY_UPTODATE[policy]
    _, S = _state(machine={"cores": 1, "fault_around_kb": 4},
                  workload={"threads": 1, "file_mb": 1}, policy={"name": policy})
    _on_core(S, 0, 0)
    S.vma[0, V_ATTACHED] = 1
    S.t[0, T_VMA] = 0
    S.file[0, FL_VMA] = 0
    S.t[0, T_SP] = 1                                     # the fault returns to W_TOUCH
    S.t[0, T_STACK0] = W_TOUCH
    assert vma.lock_vma_under_rcu(S, 0)
    S.t[0, T_F_LOCK] = LOCK_VMA
    S.t[0, T_F_FLAGS] = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_VMA_LOCK
    S.t[0, T_F_PAGE] = 7
    S.pg[7, P_FLAGS] = PG_PRESENT | PG_UPTODATE | PG_LOCKED
    S.pg[7, P_REFS] = 1                                  # filemap_get_folio's reference
    S.t[0, T_PC] = F_FOLIO_LOCK
    engine.thread_step(S, 0)
    assert S.t[0, T_STATE] == TS_BLOCKED                 # asleep on the folio
    assert S.vma[0, V_READERS] == (0 if dropped else 1)
    assert S.t[0, T_F_FPIN] == (1 if dropped else 0)
    pagecache.folio_unlock(S, 7)                         # the other holder unlocks: the
    assert not S.pg[7, P_FLAGS] & PG_LOCKED              # waiter races for the bit when it
    assert S.t[0, T_FOLIO_RELOCK] == 7 + 1               # runs (no handoff: unfairness left)
    _drive_until(S, lambda S: S.t[0, T_PC] == F_END)
    assert S.t[0, T_F_LOCK] == final_lock
    assert S.vma[0, V_PTE0 + 7] == PTE_PRESENT | PTE_YOUNG
    assert S.pg[7, P_FLAGS] == PG_PRESENT | PG_UPTODATE and S.pg[7, P_REFS] == 0
    assert not S.t[0, T_F_FLAGS] & FAULT_FLAG_TRIED      # not MAJOR: no FAULT_FLAG_TRIED
    assert _counter(S, M.RETRY_MMAP_DROP) == drops
    assert _counter(S, M.VMA_LOCK_RETRY) == vretry
    assert _counter(S, M.MMAP_READ_COUNT) == mmap_reads
    assert _counter(S, M.PGMAJFAULT) == 0
    _step_event(S)                                       # F_END
    assert _counter(S, M.VMA_LOCK_SUCCESS) == (1 if final_lock == LOCK_VMA else 0)
    assert S.vma[0, V_READERS] == 0 and S.g[G_RW_READERS] == 0


def test_folio_lock_handoff_only_after_unfairness_is_used_up():
    """folio_wait_bit_common: a woken exclusive waiter races for PG_locked; each lost race
    queues it again (--unfairness); after sysctl_page_lock_unfairness (5) lost races the
    unlocker takes the bit for it (WQ_FLAG_CUSTOM handoff)."""
    _, S = _state(machine={"cores": 2}, workload={"threads": 2, "file_mb": 1})
    _on_core(S, 0, 0)
    p = 3
    S.pg[p, P_FLAGS] = PG_PRESENT | PG_UPTODATE | PG_LOCKED
    assert not pagecache.folio_lock(S, 0, p, F_LOCKED)
    for lost in range(5):
        pagecache.folio_unlock(S, p)
        assert not S.pg[p, P_FLAGS] & PG_LOCKED and S.t[0, T_FOLIO_RELOCK] == p + 1
        assert pagecache.folio_trylock(S, p)             # somebody else's trylock wins
        _step_event(S)                                   # the waiter runs, loses, queues
        assert S.t[0, T_STATE] == TS_BLOCKED and S.t[0, T_FOLIO_RELOCK] == 0
    pagecache.folio_unlock(S, p)
    assert S.pg[p, P_FLAGS] & PG_LOCKED                  # handed over this time
    assert S.t[0, T_FOLIO_RELOCK] == 0 and S.t[0, T_PC] == F_LOCKED


# ---- model-only ablation switches (core.params.ModelParams) -------------------------------

@pytest.mark.parametrize("late", [True, False])
def test_ablation_tlb_late_ack(late):
    """A CPU spinning with interrupts off answers the flush IPI late; switched off, at once."""
    _, S = _state(machine={"cores": 2}, workload={"threads": 2, "file_mb": 1},
                  model={"tlb_late_ack": late})
    _on_core(S, 0, 0)
    S.core[1, C_RAN_MM] = 1
    S.core[1, C_IRQOFF] = 1
    assert sched.smp_call_function_wait(S, 0, F_END) is (not late)
    assert S.t[0, T_STATE] == (TS_SPINNING if late else TS_RUNNING)


@pytest.mark.parametrize("inkernel", [True, False])
def test_ablation_inkernel_high_handler(inkernel):
    """A charge that takes the debt past MEMCG_CHARGE_BATCH runs the over-high handler in
    the charge path; switched off, the debt waits for the return to user."""
    _, S = _state(machine={"cores": 2}, workload={"threads": 2, "file_mb": 1},
                  memcg={"high_mb": 4, "max_mb": 8}, model={"inkernel_high_handler": inkernel})
    _on_core(S, 0, 0)
    S.g[G_USAGE] = int(S.k[K_HIGH]) + 10
    S.t[0, T_DEBT] = 64
    code = memcg.try_charge_fast(S, 0, 1)
    assert code == (memcg.CHARGE_OK_OVER_HIGH if inkernel else memcg.CHARGE_OK)
    assert S.t[0, T_DEBT] == 64 + 64                     # a batch charged above high


def test_ablation_rwsem_steal_spin_off_grants_fifo():
    """Switched off, a writer never spins and the lock is granted to the first waiter at
    release (no woken-writer window for readers to steal)."""
    _, S = _state(machine={"cores": 4}, workload={"threads": 4, "file_mb": 1},
                  model={"rwsem_steal_spin": False})
    _all_on_cores(S, 4)
    assert rwsem.down_write(S, 0, 100)                   # thread 0 runs, owning it
    assert not rwsem.down_write(S, 1, 101)
    assert S.t[1, T_STATE] == TS_BLOCKED and _rw_queue(S) == [1]
    rwsem.up_write(S, 0)
    assert S.g[G_RW_WRITER] == 1 and S.g[G_RW_WOKEN] == -1 and S.t[1, T_RW_RELOCK] == 0


# ---- where a thread's time goes (core.sched.account) -----------------------------------------
def _time_row(threads, cores, policy):
    # Order-0 folios: 16 faults per 256 pages, so a thread is preempted holding mmap_lock.
    p = core.Params.from_dict({
        "machine": {"cores": cores}, "workload": {"threads": threads, "file_mb": 2},
        "device": {"large_folios": False},
        "policy": {"name": policy}, "sim": {"duration_s": 0.05, "warmup_s": 0.01}})
    return core.simulate(p, 1)


_WAIT_PCTS = ["time_runq_pct", "time_mmap_lock_pct", "time_folio_pct", "time_lru_lock_pct",
              "time_tlb_ack_pct", "time_vma_pct", "time_sleep_pct"]


def test_thread_time_alone_on_one_core_is_all_cpu():
    """One thread, one core, a sparse file and no memcg: nothing to wait for."""
    row = _time_row(1, 1, "baseline")
    assert row["time_cpu_pct"] == 100.0
    assert all(row[c] == 0.0 for c in _WAIT_PCTS)
    assert row["round_s_per_thread"] * row["rounds"] == pytest.approx(0.04, rel=1e-12)


def test_thread_time_three_threads_share_one_core():
    """The core is never idle (nothing sleeps on I/O; a wake-up latency counts as the woken
    thread's CPU time), so exactly a third of three threads' time is CPU. The rest is the
    run queue and mmap_lock (mmap_lock_only: every fault reads it, mmap/munmap write it)."""
    row = _time_row(3, 1, "mmap_lock_only")
    assert row["time_cpu_pct"] == pytest.approx(100.0 / 3, abs=1e-9)
    assert row["time_runq_pct"] > 0 and row["time_mmap_lock_pct"] > 0
    assert row["time_runq_pct"] + row["time_mmap_lock_pct"] == pytest.approx(200.0 / 3, abs=1e-9)
    assert row["round_s_per_thread"] * row["rounds"] == pytest.approx(3 * 0.04, rel=1e-12)


def test_noise_preemption_keeps_the_slice_so_a_pinned_waiter_runs():
    """Two workers pinned to one core with an ioretry_noise spinner on it. The spinner
    preempts the running worker every ~110 us; the worker resumes the rest of its slice
    (EEVDF keeps a preempted entity's deadline), so after 3 ms the other worker gets the
    core. (Restarting the slice after each preemption starved the second worker: 1009
    rounds against 0 in this run.)"""
    p = core.Params.from_dict({
        "machine": {"cores": 1, "pinning": "round_robin", "noise": True,
                    "noise_busy_us": 10.0, "noise_sleep_us": 100.0},
        "workload": {"threads": 2, "file_mb": 1}, "sim": {"duration_s": 0.1, "warmup_s": 0.0}})
    S = build_state(p)
    engine.run(S, np.int64(0), False)
    rounds = S.t[:, T_ROUNDS]
    assert rounds.min() >= 1 and rounds.min() >= rounds.max() // 2, rounds


# ---- large folios (device.large_folios) ------------------------------------------------------

def _folio_layout(S, f=0):
    """(first page, pages) of every present folio of file f, in file order."""
    n = int(S.k[K_FILE_PAGES])
    out = []
    for i in range(int(S.file[f, st.FL_PAGES])):
        p = f * n + i
        if S.pg[p, st.P_HEAD] == p and S.pg[p, P_FLAGS] & PG_PRESENT:
            out.append((i, int(S.pg[p, P_NR])))
    return out


def test_page_cache_ra_order_reads_async_windows_in_growing_folios():
    """One thread, no memcg, a 4 MB sparse file, 128 KB windows (32 pages). The read-around
    [0, 32) is order 0; each async window adds 2 to ra->order (2, 4, then 6 capped at
    ilog2(32) = 5); folios never pass the window. The last window reaches the end of the
    file, so it sets no PG_readahead (page_cache_ra_order's EOF rule), and the fault on
    each marked folio consumed its mark: none is left after the first round."""
    p = core.Params.from_dict({"machine": {"cores": 1}, "workload": {"threads": 1, "file_mb": 4},
                               "sim": {"duration_s": 0.004, "warmup_s": 0.0}})
    S = build_state(p)
    engine.run(S, np.int64(0), True)
    assert S.t[0, T_ROUNDS] >= 1
    expect = [(i, 1) for i in range(32)] + [(32 + 4 * i, 4) for i in range(8)] \
        + [(64, 16), (80, 16)] + [(96 + 32 * i, 32) for i in range(29)]
    assert _folio_layout(S) == expect
    assert not (S.pg[:, P_FLAGS] & PG_READAHEAD).any()
    assert S.file[0, st.FL_RA_ORDER] == 5
    # every present page is on an LRU list, counted in pages
    assert S.g[G_LRU_SIZE:G_LRU_SIZE + st.N_LISTS].sum() == 1024
    # the same file without large folios: 1024 order-0 folios
    q = p.with_(**{"device.large_folios": False})
    S0 = build_state(q)
    engine.run(S0, np.int64(0), True)
    assert _folio_layout(S0) == [(i, 1) for i in range(1024)]


def test_ra_folio_order_follows_alignment_and_window_end():
    """page_cache_ra_order's loop: an unaligned index lowers the order to its lowest set
    bit (__ffs), a folio that would pass the window's end is halved until it fits."""
    _, S = _state(machine={"cores": 1}, workload={"threads": 1, "file_mb": 1})
    S.t[0, st.T_RA_ORDER] = 4
    S.t[0, st.T_RA_END] = 100
    for nxt, nr in ((36, 4), (48, 16), (40, 8), (96, 4), (97, 1), (64, 16), (84, 4)):
        S.t[0, st.T_RA_NEXT] = nxt
        assert readahead._folio_nr(S, 0) == nr, nxt
    S.t[0, st.T_RA_ORDER] = readahead.RA_UNBOUNDED
    S.t[0, st.T_RA_NEXT] = 48
    assert readahead._folio_nr(S, 0) == 1


def test_large_folio_is_reclaimed_as_one_and_refaults_by_range():
    """Classic LRU: a 4-page folio (pages 8-11) is one list entry worth 4 pages; reclaim
    scans, unmaps (every PTE) and evicts it whole: 4 pages uncharged, the same shadow on
    each page, the nonresident clock aged by 4. A later order-0 folio at page 9 takes only
    its own slot's shadow (the multi-index entry splits); a 2-page folio at 10 takes the
    shadows of 10-11 and counts a refault of 2 pages."""
    S = _reclaim_state("classic")
    U = PG_PRESENT | PG_UPTODATE
    S.pg[8, P_FLAGS] = U
    S.pg[8, P_NR] = 4
    S.pg[9:12, st.P_HEAD] = 8
    lru.lruvec_add_folio(S, 8, False)
    S.vma[0, V_PTE0 + 8:V_PTE0 + 12] = PTE_PRESENT     # mapped, old
    S.g[G_USAGE] = 4
    assert _list(S, LIST_INACTIVE) == [8] and S.g[G_LRU_SIZE + LIST_INACTIVE] == 4
    S.t[0, T_R_BUDGET] = 10
    assert vmscan.isolate_folios(S, 0) == 1
    # the list ran dry after 4 of the 10 pages asked: the model takes the 4 scanned off the
    # target (the kernel takes nr_to_scan, 10; the same whenever the list is long enough)
    assert _counter(S, M.PGSCAN) == 4 and S.t[0, T_R_BUDGET] == 6
    cost = vmscan.shrink_folio_list(S, 0)
    assert cost == S.k[K_RC_SCAN] + 2 * S.k[K_RC_RMAP] + S.k[K_RC_EVICT]
    assert (S.vma[0, V_PTE0 + 8:V_PTE0 + 12] == 0).all()           # try_to_unmap
    assert S.g[G_USAGE] == 0 and _counter(S, M.PAGES_RECLAIMED) == 4
    assert S.t[0, T_R_RECLAIMED] == 4 and S.g[G_NONRESIDENT_AGE] == 4
    assert list(S.pg[8:12, P_SHADOW]) == [0, 0, 0, 0]
    assert list(S.pg[8:12, st.P_HEAD]) == [8, 9, 10, 11] and (S.pg[8:12, P_NR] == 1).all()
    assert S.g[G_AGE_HIST:G_AGE_HIST + LAT_BINS].sum() == 4
    # refaults
    readahead.filemap_add_folio(S, 0, 9, 1, False, False)
    assert _counter(S, M.REFAULTS) == 1
    assert list(S.pg[8:12, P_SHADOW]) == [0, -1, 0, 0]
    readahead.filemap_add_folio(S, 0, 10, 2, False, False)
    assert _counter(S, M.REFAULTS) == 3
    assert list(S.pg[8:12, P_SHADOW]) == [0, -1, -1, -1]
    assert S.pg[11, st.P_HEAD] == 10 and S.pg[10, P_NR] == 2
    assert pagecache.page_cached(S, 11) and not pagecache.page_cached(S, 8)


def test_large_folio_drains_the_lru_add_batch_at_once():
    """folio_may_be_lru_cached: an order-0 folio waits in the per-CPU batch, a large one
    makes the caller drain it (both then reach the list under one lru_lock hold)."""
    S = _reclaim_state("classic")
    S.pg[0, P_FLAGS] = PG_PRESENT
    assert not lru.folio_add_lru(S, 0, 0, True)
    S.pg[4, P_FLAGS] = PG_PRESENT
    S.pg[4, P_NR] = 4
    assert lru.folio_add_lru(S, 0, 4, True)
    assert lru.lru_add_drain_locked(S, 0) == 2
    assert S.g[G_LRU_SIZE + LIST_INACTIVE] == 5


def test_fault_around_and_finish_fault_map_large_folios_whole():
    """filemap_map_pages visits each folio of the 16-page window once and maps a large one
    whole, past the window (6.18); a PG_readahead folio is left for the fault, whose
    finish_fault maps it whole. Costs: one K_FA_PAGE per folio or hole visited, one
    K_PTE_INSTALL per folio plus K_PTE_BATCH per further page."""
    S = _reclaim_state("classic")
    U = PG_PRESENT | PG_UPTODATE
    for h, nr, extra in ((0, 8, 0), (8, 4, 0), (12, 4, PG_READAHEAD), (16, 32, 0)):
        S.pg[h, P_FLAGS] = U | extra
        S.pg[h, P_NR] = nr
        S.pg[h + 1:h + nr, st.P_HEAD] = h
    cost, mapped = pagecache.filemap_map_pages(S, 0, 0, 3)
    k = S.k
    assert mapped
    assert cost == 3 * k[K_FA_PAGE] + 2 * k[K_PTE_INSTALL] + 10 * k[st.K_PTE_BATCH]
    assert (S.vma[0, V_PTE0:V_PTE0 + 12] == PTE_PRESENT | PTE_YOUNG).all()
    assert (S.vma[0, V_PTE0 + 12:V_PTE0 + 48] == 0).all()
    # the window [16, 32) lies in the 32-page folio 16..47: mapped whole
    cost, mapped = pagecache.filemap_map_pages(S, 0, 0, 20)
    assert mapped and cost == k[K_FA_PAGE] + k[K_PTE_INSTALL] + 31 * k[st.K_PTE_BATCH]
    assert (S.vma[0, V_PTE0 + 16:V_PTE0 + 48] == PTE_PRESENT | PTE_YOUNG).all()
    # the marked folio: the fault maps it (finish_fault), whole
    assert pagecache.finish_fault(S, 0, 0, 13) == k[K_PTE_INSTALL] + 3 * k[st.K_PTE_BATCH]
    assert (S.vma[0, V_PTE0 + 12:V_PTE0 + 16] == PTE_PRESENT | PTE_YOUNG).all()
    # munmap's zap: one batch per folio, marking each young folio accessed once
    cost, small, large = mm.zap_pte_range(S, 0)
    assert (small, large) == (0, 0)           # first access: PG_referenced only
    assert cost == 4 * k[K_ZAP_PTE] + 44 * k[st.K_PTE_BATCH]
    assert all(S.pg[h, P_FLAGS] & PG_REFERENCED for h in (0, 8, 12, 16))


def test_pmd_order_folio_is_mapped_and_zapped_as_one_entry():
    """A 512-page folio (PMD order, aligned in a PMD-aligned mapping) is mapped by
    do_set_pmd and zapped by zap_huge_pmd: one entry, no per-page PTE cost."""
    S = _reclaim_state("classic", file_mb=4)
    S.pg[512, P_FLAGS] = PG_PRESENT | PG_UPTODATE
    S.pg[512, P_NR] = 512
    S.pg[513:1024, st.P_HEAD] = 512
    k = S.k
    cost, mapped = pagecache.filemap_map_pages(S, 0, 0, 700)
    assert mapped and cost == k[K_FA_PAGE] + k[K_PTE_INSTALL]
    assert (S.vma[0, V_PTE0 + 512:V_PTE0 + 1024] == PTE_PRESENT | PTE_YOUNG).all()
    assert (S.vma[0, V_PTE0:V_PTE0 + 512] == 0).all()
    cost, small, large = mm.zap_pte_range(S, 0)
    assert cost == k[K_ZAP_PTE] and (small, large) == (0, 0)
    assert (S.vma[0, V_PTE0:V_PTE0 + 1024] == 0).all()


# ---- the engine of each workload (core.engine.ENGINES) ---------------------------------------
def test_every_workload_has_an_engine_and_it_is_the_states():
    from core.params import WORKLOADS
    assert tuple(engine.ENGINES) == WORKLOADS
    for w in WORKLOADS:
        p = _params(workload={"name": w, "threads": 1, "file_mb": 1})
        assert build_state(p).k[K_ENGINE] == engine.ENGINE_IDS[w]


def test_a_step_outside_the_workloads_engine_raises():
    """file_thrash's engine compiles no swap step: a thread sent to one stops the run at
    once, naming where to add it, instead of running a step the engine does not have."""
    _, S = _state(machine={"cores": 1}, workload={"threads": 1, "file_mb": 1})
    _on_core(S, 0, 0)
    S.t[0, T_PC] = SW_FAULT
    with pytest.raises(RuntimeError, match=r"core\.engine\.ENGINES"):
        engine.thread_step(S, 0)


def test_prefetch_hints_compile_and_leave_every_value_alone():
    """core.prefetch emits llvm.prefetch (its name differs between LLVM versions): it must
    compile, fault on no address, even a row past the array's end, and change nothing."""
    from numba import njit

    from core.prefetch import prefetch_item, prefetch_row, prefetch_rows

    @njit
    def touch(a):
        prefetch_row(a, 3)
        prefetch_row(a, 1_000_000)            # out of range: a prefetch never faults
        prefetch_rows(a, 2, 5)
        prefetch_rows(a, 0, 0)
        prefetch_item(a, 9, 3)
        return a.sum()

    a = np.arange(120, dtype=np.int64).reshape(10, 12)
    before = a.copy()
    assert touch(a) == before.sum()
    assert (a == before).all()
    asm = touch.inspect_asm(touch.signatures[0])
    assert asm.count("prefetch") >= 5         # the hints are in the code, not optimized away
