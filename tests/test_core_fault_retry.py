"""The retry decisions of the fault path, read against v7.0-rc3 and the series' patches,
each on a scripted scenario with exact counters.

A fault is built by hand at a precise point of `filemap_fault` (the thread on a core, its
VMA lock or mmap_lock held as the kernel would hold it there), then stepped with
`fault.step` one program counter at a time, so a test can change the page cache between
the drop and the retry, and then played to its end by the engine's event loop.
"""

from __future__ import annotations

import copy

import pytest
from _sim_util import counter, drive_until, on_core, start

from core import Params, engine, fault, mm, pagecache
from core import metrics as M
from core.simulator import build_state
from core.state import (
    C_STOCK,
    F_END,
    F_FILEMAP,
    F_FOLIO_LOCK,
    F_LOCK_MMAP,
    F_LOCK_VMA,
    F_LOCKED,
    F_NEW_FOLIO_CHARGED,
    F_READ_FOLIO_DONE,
    FAULT_FLAG_ALLOW_RETRY,
    FAULT_FLAG_TRIED,
    FAULT_FLAG_VMA_LOCK,
    FL_MMAP_MISS,
    FL_VMA,
    G_LAT_HIST,
    G_RW_READERS,
    G_USAGE,
    LAT_BINS,
    LOCK_MMAP,
    LOCK_VMA,
    MMAP_LOTSAMISS,
    P_FLAGS,
    P_REFS,
    PG_ISOLATED,
    PG_LOCKED,
    PG_PRESENT,
    PG_READAHEAD,
    PG_UPTODATE,
    PG_WORKINGSET,
    PTE_PRESENT,
    T_C_OK,
    T_F_FLAGS,
    T_F_FPIN,
    T_F_LOCK,
    T_F_PAGE,
    T_F_RET,
    T_PC,
    T_SP,
    T_STACK0,
    T_VMA,
    V_ATTACHED,
    V_PT_N,
    V_PTE0,
    V_READERS,
    VM_FAULT_MAJOR,
    VM_FAULT_RETRY,
    VM_FAULT_RETRY_VMA,
    W_TOUCH,
)

PAGE = 7

BASE = {
    "machine": {"cores": 1, "fault_around_kb": 4, "jitter": False},
    "costs": {"cacheline_transfer_ns": 0},
    "workload": {"threads": 1, "file_mb": 1},
    "device": {"ra_kb": 4, "sparse": True},
    "sim": {"duration_s": 1.0, "warmup_s": 0.0},
}


def _fault_at(policy: str, pc: int, page_flags: int, major: bool):
    """One thread faulting page PAGE under its VMA lock, first try, stopped at `pc` with the
    lock already dropped for I/O (fpin), the folio in the state `page_flags` and held by
    one filemap_get_folio reference."""
    d = copy.deepcopy(BASE)
    d["policy"] = {"name": policy}
    S = build_state(Params.from_dict(d))
    on_core(S, 0, 0)
    S.vma[0, V_ATTACHED] = 1
    S.t[0, T_VMA] = 0
    S.file[0, FL_VMA] = 0
    S.t[0, T_SP] = 1                                    # the fault returns to W_TOUCH
    S.t[0, T_STACK0] = W_TOUCH
    S.t[0, T_F_FLAGS] = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_VMA_LOCK
    S.t[0, T_F_PAGE] = PAGE
    S.t[0, T_F_FPIN] = 1                                # the VMA lock was dropped
    S.t[0, T_F_RET] = VM_FAULT_MAJOR if major else 0
    S.pg[PAGE, P_FLAGS] = page_flags
    S.pg[PAGE, P_REFS] = 1
    S.t[0, T_PC] = pc
    return S


def _step_until_retry(S):
    """fault.step until the arch handler has chosen the retry's lock (F_LOCK_VMA or
    F_LOCK_MMAP): the window between the drop and the retry."""
    for _ in range(20):
        pc = int(S.t[0, T_PC])
        if pc in (F_LOCK_VMA, F_LOCK_MMAP):
            return pc
        assert fault.step(S, 0, pc)
    raise AssertionError("no retry")


def _evict(S, page):
    """Reclaim took the clean, unmapped folio: the slot is empty again."""
    assert S.pg[page, P_REFS] == 0 and not S.pg[page, P_FLAGS] & PG_LOCKED
    S.pg[page, P_FLAGS] = 0


# ---- the retry of a folio evicted between the drop and the retry ------------------------------

# policy -> (lock the retry takes, mmap_lock read acquisitions)
EVICTED = {
    "baseline": (LOCK_MMAP, 1),
    "vma_retry": (LOCK_VMA, 0),
}


@pytest.mark.parametrize("policy", sorted(EVICTED))
def test_folio_evicted_before_the_retry_counts_one_retry_io_miss(policy):
    """The first try read the page (MAJOR), found it uptodate and returned RETRY; reclaim
    evicts it before the retry runs. The retry, with FAULT_FLAG_TRIED (set because the
    attempt was MAJOR), misses: RETRY_IO_MISS == 1 and a second PGMAJFAULT, and it reads
    the page again without dropping its lock: under mmap_lock for baseline, under the VMA
    lock for vma_retry (patch 1's bit)."""
    lock, mmap_reads = EVICTED[policy]
    S = _fault_at(policy, F_LOCKED, PG_PRESENT | PG_UPTODATE | PG_LOCKED, major=True)
    assert _step_until_retry(S) == (F_LOCK_VMA if lock == LOCK_VMA else F_LOCK_MMAP)
    assert bool(S.t[0, T_F_RET] & VM_FAULT_RETRY_VMA) == (lock == LOCK_VMA)
    assert S.t[0, T_F_FLAGS] & FAULT_FLAG_TRIED          # MAJOR, so TRIED
    assert counter(S, M.RETRY_MMAP_DROP) == 1 and counter(S, M.VMA_LOCK_RETRY) == 1
    _evict(S, PAGE)
    engine.thread_step(S, 0)
    drive_until(S, lambda S: S.t[0, T_PC] == F_END)
    assert S.t[0, T_F_LOCK] == lock
    assert counter(S, M.RETRY_IO_MISS) == 1
    assert counter(S, M.PGMAJFAULT) == 1                 # the retry's (the first try's came
                                                         # before the scripted point)
    assert counter(S, M.RETRY_MMAP_DROP) == 1            # the TRIED retry never drops
    assert counter(S, M.MMAP_READ_COUNT) == mmap_reads
    assert counter(S, M.PAGES_READ) == 1
    assert S.vma[0, V_PTE0 + PAGE] & PTE_PRESENT


def test_tried_is_set_after_a_major_vma_lock_retry_only():
    """do_user_addr_fault sets FAULT_FLAG_TRIED after a VMA-lock RETRY only if the attempt
    returned VM_FAULT_MAJOR: a busy-but-cached folio retries without it."""
    for major, tried in ((True, True), (False, False)):
        S = _fault_at("vma_retry", F_LOCKED, PG_PRESENT | PG_UPTODATE | PG_LOCKED, major)
        assert _step_until_retry(S) == F_LOCK_VMA
        assert bool(S.t[0, T_F_FLAGS] & FAULT_FLAG_TRIED) == tried


# ---- patch 1 sets VM_FAULT_RETRY_VMA on one exit only --------------------------------------

# policy -> the retry's program counter after page_not_uptodate and after an IS_ERR folio
NOT_RETRY_VMA = {
    "baseline": F_LOCK_MMAP,
    "vma_retry": F_LOCK_MMAP,
    "vma_retry_uptodate": F_LOCK_MMAP,
    "retry_hard": F_LOCK_VMA,
}


@pytest.mark.parametrize("policy", sorted(NOT_RETRY_VMA))
def test_page_not_uptodate_retry_falls_back_to_mmap_lock(policy):
    """page_not_uptodate: `if (fpin) goto out_retry;` right after filemap_read_folio. Patch
    1 sets retry_by_vma_lock only in the uptodate `if (fpin)` branch, so under the series
    this retry still goes to mmap_lock; retry_hard marks every VMA-lock retry."""
    S = _fault_at(policy, F_READ_FOLIO_DONE, PG_PRESENT | PG_LOCKED, major=True)
    assert _step_until_retry(S) == NOT_RETRY_VMA[policy]
    assert S.t[0, T_F_RET] & VM_FAULT_RETRY
    assert S.pg[PAGE, P_FLAGS] == PG_PRESENT | PG_UPTODATE   # read, unlocked
    assert S.pg[PAGE, P_REFS] == 0                           # out_retry put it
    assert counter(S, M.RETRY_MMAP_DROP) == 1 and counter(S, M.VMA_LOCK_RETRY) == 1
    assert counter(S, M.PAGES_READ) == 1


@pytest.mark.parametrize("policy", sorted(NOT_RETRY_VMA))
def test_charge_failure_after_the_drop_goes_to_out_retry(policy):
    """__filemap_get_folio fails (the memcg charge failed) after the lock was dropped:
    `if (fpin) goto out_retry;`, a counted drop and a retry (under mmap_lock for the
    series: no retry_by_vma_lock on this exit), not VM_FAULT_OOM."""
    S = _fault_at(policy, F_NEW_FOLIO_CHARGED, 0, major=True)
    S.pg[PAGE, P_REFS] = 0                                  # IS_ERR: no folio to put
    S.t[0, T_C_OK] = 0
    assert _step_until_retry(S) == NOT_RETRY_VMA[policy]
    assert counter(S, M.RETRY_MMAP_DROP) == 1 and counter(S, M.VMA_LOCK_RETRY) == 1
    assert S.t[0, T_F_FLAGS] & FAULT_FLAG_TRIED
    assert S.pg[PAGE, P_FLAGS] == 0 and S.pg[PAGE, P_REFS] == 0


def test_charge_failure_without_a_drop_is_oom():
    """The same failure on a TRIED attempt (no drop): VM_FAULT_OOM, the fault ends and the
    access faults again; nothing is counted as a drop."""
    S = _fault_at("baseline", F_NEW_FOLIO_CHARGED, 0, major=True)
    S.pg[PAGE, P_REFS] = 0
    S.t[0, T_F_FPIN] = 0
    S.t[0, T_F_FLAGS] |= FAULT_FLAG_TRIED
    S.t[0, T_C_OK] = 0
    assert fault.step(S, 0, F_NEW_FOLIO_CHARGED)
    assert S.t[0, T_PC] == F_END
    assert counter(S, M.RETRY_MMAP_DROP) == 0


def test_uptodate_exit_sets_retry_vma_only_under_the_series():
    """The uptodate `if (fpin)` exit: patch 1's bit for vma_retry and vma_retry_uptodate
    under the VMA lock, none for baseline; under mmap_lock never (the bit needs
    FAULT_FLAG_VMA_LOCK)."""
    for policy, bit in (("baseline", False), ("vma_retry", True),
                        ("vma_retry_uptodate", True), ("retry_hard", True)):
        S = _fault_at(policy, F_LOCKED, PG_PRESENT | PG_UPTODATE | PG_LOCKED, major=False)
        _step_until_retry(S)
        assert bool(S.t[0, T_F_RET] & VM_FAULT_RETRY_VMA) == bit, policy
        assert S.vma[0, V_READERS] == 0 and S.g[G_RW_READERS] == 0
    S = _fault_at("vma_retry", F_LOCKED, PG_PRESENT | PG_UPTODATE | PG_LOCKED, major=False)
    S.t[0, T_F_FLAGS] = FAULT_FLAG_ALLOW_RETRY                 # an mmap_lock attempt
    assert _step_until_retry(S) == F_LOCK_MMAP
    assert not S.t[0, T_F_RET] & VM_FAULT_RETRY_VMA


# ---- mmap_miss: read-around switched off for a file that keeps missing ------------------------

# mmap_miss before the fault -> (pages read, mmap_lock reads under vma_retry, mmap_miss after)
MMAP_MISS = {
    0: (16, 0, 1),
    MMAP_LOTSAMISS - 1: (16, 0, MMAP_LOTSAMISS),
    MMAP_LOTSAMISS: (1, 1, MMAP_LOTSAMISS + 1),          # 101 > MMAP_LOTSAMISS: no read-around
    MMAP_LOTSAMISS * 10: (1, 1, MMAP_LOTSAMISS * 10),    # saturated
}


@pytest.mark.parametrize("miss", sorted(MMAP_MISS))
def test_mmap_miss_switches_read_around_off(miss):
    """do_sync_mmap_readahead: a miss adds one to the file's mmap_miss; past MMAP_LOTSAMISS
    the fault reads no window: __filemap_get_folio adds one folio under the VMA lock and
    page_not_uptodate drops the lock and reads that page alone, then returns RETRY without
    patch 1's bit, so even vma_retry retries under mmap_lock. The first try's fault-around
    (one page here) found nothing; the retry's maps the page, a hit (-1)."""
    pages, mmap_reads, after = MMAP_MISS[miss]
    d = copy.deepcopy(BASE)
    d["policy"] = {"name": "vma_retry"}
    d["device"] = {"ra_kb": 64, "sparse": True}
    S = build_state(Params.from_dict(d))
    S.file[0, FL_MMAP_MISS] = miss
    start(S, [0])
    drive_until(S, lambda S: S.g[G_LAT_HIST:G_LAT_HIST + LAT_BINS].sum() == 1)
    assert counter(S, M.PAGES_READ) == pages
    assert counter(S, M.PGMAJFAULT) == 1 and counter(S, M.RETRY_MMAP_DROP) == 1
    assert counter(S, M.MMAP_READ_COUNT) == mmap_reads
    # the retry's filemap_map_pages maps page 0 (not workingset): one hit
    assert S.file[0, FL_MMAP_MISS] == after - 1
    assert S.vma[0, V_PTE0] & PTE_PRESENT


def test_fault_around_hits_lower_mmap_miss_except_workingset_pages():
    """filemap_map_pages: each page it maps that is not PG_workingset is a hit; the hits
    come off mmap_miss, floored at 0. Locked and PG_readahead folios are not visited as
    hits; a folio isolated by a reclaimer is mapped (next_uptodate_folio has no LRU check)."""
    d = copy.deepcopy(BASE)
    d["machine"]["fault_around_kb"] = 64
    S = build_state(Params.from_dict(d))
    S.vma[0, V_ATTACHED] = 1
    S.file[0, FL_VMA] = 0
    U = PG_PRESENT | PG_UPTODATE
    S.pg[0:16, P_FLAGS] = U
    S.pg[1, P_FLAGS] = U | PG_WORKINGSET
    S.pg[2, P_FLAGS] = U | PG_WORKINGSET
    S.pg[3, P_FLAGS] = U | PG_LOCKED
    S.pg[4, P_FLAGS] = U | PG_READAHEAD
    S.pg[5, P_FLAGS] = U | PG_ISOLATED                      # held by a reclaimer
    S.file[0, FL_MMAP_MISS] = 20
    _, mapped = pagecache.filemap_map_pages(S, 0, 0, 0)
    assert mapped
    ptes = [bool(S.vma[0, V_PTE0 + i] & PTE_PRESENT) for i in range(16)]
    assert ptes == [i not in (3, 4) for i in range(16)]
    assert S.file[0, FL_MMAP_MISS] == 20 - (16 - 4)           # 12 hits
    S.file[0, FL_MMAP_MISS] = 5
    pagecache.filemap_map_pages(S, 0, 0, 0)
    assert S.file[0, FL_MMAP_MISS] == 0


def test_async_readahead_hit_counts_only_unlocked_folios():
    """do_async_mmap_readahead: a page-cache hit on a first try lowers mmap_miss by one,
    unless the folio is locked (likely another fault's, already counted)."""
    for flags, after in ((PG_PRESENT | PG_UPTODATE, 9),
                         (PG_PRESENT | PG_UPTODATE | PG_LOCKED, 10)):
        S = _fault_at("baseline", F_FILEMAP, flags, major=False)
        S.t[0, T_F_FPIN] = 0
        S.pg[PAGE, P_REFS] = 0
        S.file[0, FL_MMAP_MISS] = 10
        assert fault.step(S, 0, F_FILEMAP)
        assert S.file[0, FL_MMAP_MISS] == after
        assert S.t[0, T_PC] == F_FOLIO_LOCK and S.t[0, T_F_FPIN] == 0   # no PG_readahead


# ---- page tables: charged at the first fault of each 2 MB range, freed at munmap -------------

def test_page_tables_are_charged_by_the_fault_that_needs_them():
    """v7.0: GFP_PGTABLE_USER is accounted. The first fault of a mapping allocates its PMD
    table and the PTE table of its 2 MB range (2 pages charged, under the fault's lock), a
    fault in another range one more, free_pgtables at munmap uncharges them all."""
    d = copy.deepcopy(BASE)
    d["workload"] = {"threads": 1, "file_mb": 4}            # 1024 pages: two PTE tables
    d["memcg"] = {"high_mb": 0, "max_mb": 64}
    S = build_state(Params.from_dict(d))
    kmem = int(S.g[G_USAGE])

    def in_use():
        return int(S.g[G_USAGE] - S.core[:, C_STOCK].sum())

    start(S, [0])
    drive_until(S, lambda S: S.g[G_LAT_HIST:G_LAT_HIST + LAT_BINS].sum() == 1)
    # the first fault (page 0, one page read with 4 KB read-ahead): PMD + PTE table + page
    assert in_use() == kmem + 2 + 1
    assert S.vma[0, V_PT_N] == 1
    assert mm.pte_alloc_pages(S, 0, 511) == 0                # same 2 MB range
    assert mm.pte_alloc_pages(S, 0, 512) == 1                # the next range: its PTE table
    mm.pte_alloc_done(S, 0, 512)
    S.g[G_USAGE] += 1
    assert mm.free_pgtables(S, 0) == 3                       # two PTE tables and the PMD
    assert in_use() == kmem + 1 and S.vma[0, V_PT_N] == 0
    assert mm.pte_alloc_pages(S, 0, 0) == 2                  # the next mapping starts over
