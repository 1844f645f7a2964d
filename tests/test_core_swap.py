"""Anonymous memory and swap (core/swap.py, core/madvise.py): tiny hand-built states, exact
outcomes. The state is the swapin workload's (one anon VMA, every page resident and mapped
at time 0); a test reshapes a page by hand into the state it needs."""

from __future__ import annotations

import pytest
from _sim_util import counter, drive_until, lru_list, on_core

import core
from core import engine, lru, pagecache, rwsem, vma
from core import metrics as M
from core.simulator import build_state
from core.state import (
    C_STOCK,
    FAULT_FLAG_ALLOW_RETRY,
    FAULT_FLAG_VMA_LOCK,
    G_DRAINING,
    G_LAT_HIST,
    G_RW_READERS,
    G_SWAP_USAGE,
    G_USAGE,
    LAT_BINS,
    LIST_ANON,
    LOCK_MMAP,
    LOCK_VMA,
    MA_PAGEOUT,
    P_FLAGS,
    P_REFS,
    PG_ANON,
    PG_DIRTY,
    PG_LOCKED,
    PG_LRU,
    PG_PRESENT,
    PG_SWAPCACHE,
    PG_SWAPPED,
    PG_UPTODATE,
    PTE_PRESENT,
    PTE_YOUNG,
    SW_SWAP,
    SW_SWAP_CHARGED,
    T_C_OK,
    T_F_FLAGS,
    T_F_FPIN,
    T_F_LOCK,
    T_F_PAGE,
    T_PC,
    T_SP,
    T_STACK0,
    T_STATE,
    TS_BLOCKED,
    TS_EXITED,
    V_PTE0,
    V_READERS,
    W_SI_PAGEOUT_DONE,
    W_SI_READ,
)

PAGE = 7


def _swapin_state(policy="baseline", readers=1, writers=0, swap="zram", swap_max_mb=64):
    p = core.Params.from_dict({
        "machine": {"cores": 4, "jitter": False},
        "costs": {"cacheline_transfer_ns": 0},
        "workload": {"name": "swapin", "writers": writers, "readers": readers, "anon_mb": 1},
        "policy": {"name": policy},
        "memcg": {"swap_max_mb": swap_max_mb},
        "device": {"swap": swap},
        "sim": {"duration_s": 1.0, "warmup_s": 0.0},
    })
    return build_state(p)


def _swap_out(S, p):
    """Page p as MADV_PAGEOUT leaves it once the folio is freed: the PTE holds the entry."""
    lru.lruvec_del_folio(S, p)
    S.pg[p, P_FLAGS] = PG_ANON | PG_SWAPPED
    S.vma[0, V_PTE0 + p] = 0
    S.g[G_USAGE] -= 1
    S.g[G_SWAP_USAGE] += 1


def _fault_returned(S, n=1):
    """The fault latency is recorded at F_END: n faults have returned."""
    return S.g[G_LAT_HIST:G_LAT_HIST + LAT_BINS].sum() == n


def _fault_on(S, tid, page, policy):
    """Thread `tid` is inside a fault on `page` holding the lock its policy takes first
    (the VMA lock; mmap_lock for mmap_lock_only), about to run do_swap_page."""
    on_core(S, tid, tid)
    S.t[tid, T_SP] = 1                               # the fault returns to the read loop
    S.t[tid, T_STACK0] = W_SI_READ
    S.t[tid, T_F_PAGE] = page
    if policy == "mmap_lock_only":
        assert rwsem.down_read(S, tid, 0)
        S.t[tid, T_F_LOCK] = LOCK_MMAP
        S.t[tid, T_F_FLAGS] = FAULT_FLAG_ALLOW_RETRY
    else:
        assert vma.lock_vma_under_rcu(S, 0)
        S.t[tid, T_F_LOCK] = LOCK_VMA
        S.t[tid, T_F_FLAGS] = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_VMA_LOCK
    S.t[tid, T_PC] = SW_SWAP


# policy -> (drops the fault lock, vma_lock_retry, mmap_lock reads, lock at the end)
BUSY_SWAPCACHE = {
    "baseline": (True, 1, 1, LOCK_MMAP),               # retry on the mmap_lock path
    "vma_retry": (True, 1, 0, LOCK_VMA),               # patch 2: retry under the VMA lock
    "retry_hard": (True, 1, 0, LOCK_VMA),
    "vma_retry_uptodate": (False, 0, 0, LOCK_VMA),     # patch 4: wait holding the VMA lock
    "hold_vma_io": (False, 0, 0, LOCK_VMA),
    "mmap_lock_only": (True, 0, 2, LOCK_MMAP),         # the drop, then a TRIED mmap_lock pass
    "hold_file_vma_io": (True, 1, 0, LOCK_VMA),        # approach 3: anon retries as patch 2
}


@pytest.mark.parametrize("policy", sorted(BUSY_SWAPCACHE))
def test_swapcache_folio_locked_by_pte_installer(policy):
    """do_swap_page finds the entry's folio in the swap cache, uptodate, locked by another
    thread that is installing its PTE: folio_lock_or_retry by policy."""
    assert set(BUSY_SWAPCACHE) == set(core.POLICIES)
    dropped, vretry, mmap_reads, final_lock = BUSY_SWAPCACHE[policy]
    S = _swapin_state(policy)
    S.vma[0, V_PTE0 + PAGE] = 0
    S.pg[PAGE, P_FLAGS] = (PG_PRESENT | PG_UPTODATE | PG_ANON | PG_SWAPCACHE | PG_SWAPPED
                           | PG_LOCKED | PG_LRU)
    _fault_on(S, 0, PAGE, policy)
    engine.thread_step(S, 0)
    assert S.t[0, T_STATE] == TS_BLOCKED                 # asleep on the folio
    assert S.t[0, T_F_FPIN] == int(dropped)
    held_vma = 0 if dropped or policy == "mmap_lock_only" else 1
    assert S.vma[0, V_READERS] == held_vma
    assert S.pg[PAGE, P_REFS] == 1                       # the lookup's reference, kept asleep
    # The other thread maps the page and unlocks the folio.
    S.vma[0, V_PTE0 + PAGE] = PTE_PRESENT | PTE_YOUNG
    pagecache.folio_unlock(S, PAGE)
    drive_until(S, _fault_returned)
    assert counter(S, M.VMA_LOCK_SUCCESS) == int(final_lock == LOCK_VMA)
    assert counter(S, M.VMA_LOCK_RETRY) == vretry
    assert counter(S, M.MMAP_READ_COUNT) == mmap_reads
    assert counter(S, M.RETRY_MMAP_DROP) == 0            # counted in filemap_fault only
    assert counter(S, M.PGMAJFAULT) == 0                 # a swap-cache hit is minor
    assert S.pg[PAGE, P_REFS] == 0 and not S.pg[PAGE, P_FLAGS] & PG_LOCKED
    assert S.vma[0, V_READERS] == 0 and S.g[G_RW_READERS] == 0


# policy -> (vma_lock_retry, mmap_lock reads) of the second reader
ZRAM_RACE = {
    "baseline": (1, 1),                # the retry takes mmap_lock
    "vma_retry": (1, 0),               # patch 2: retry_by_vma_lock
    "vma_retry_uptodate": (1, 0),      # not uptodate while decompressed: patch 4 is silent
    "retry_hard": (1, 0),
    "hold_vma_io": (0, 0),             # sleeps on the folio lock holding the VMA lock
    "hold_file_vma_io": (1, 0),        # approach 3: anon faults retry under the VMA lock
}


@pytest.mark.parametrize("policy", sorted(ZRAM_RACE))
def test_zram_second_reader_waits_in_the_swap_cache(policy):
    """v7.0-rc3: zram swap-in no longer bypasses the swap cache. Two readers fault the same
    swapped-out page. The first allocates and charges a folio, adds it to the swap cache
    locked (swapin_folio) and decompresses it on its CPU. The second finds it there (a
    minor fault) and goes through folio_lock_or_retry: on a first try it drops its lock,
    waits for the folio and retries, by policy; the retry finds the page mapped. After
    mapping, the first frees the swap cache and the slot (SWP_SYNCHRONOUS_IO)."""
    vretry, mmap_reads = ZRAM_RACE[policy]
    S = _swapin_state(policy, readers=2)
    _swap_out(S, PAGE)
    _fault_on(S, 0, PAGE, policy)
    _fault_on(S, 1, PAGE, policy)
    engine.thread_step(S, 0)                             # charge, add, decompress burst
    flags = int(S.pg[PAGE, P_FLAGS])
    assert flags & PG_SWAPCACHE and flags & PG_LOCKED and not flags & PG_UPTODATE
    assert counter(S, M.PGMAJFAULT) == 1
    engine.thread_step(S, 1)
    assert S.t[1, T_STATE] == TS_BLOCKED                 # waiting for the folio
    assert counter(S, M.PGMAJFAULT) == 1                 # its hit is minor
    assert S.vma[0, V_READERS] == (2 if policy == "hold_vma_io" else 1)
    drive_until(S, lambda S: _fault_returned(S, 2))
    assert S.vma[0, V_PTE0 + PAGE] & PTE_PRESENT
    flags = int(S.pg[PAGE, P_FLAGS])
    assert flags & PG_PRESENT and not flags & (PG_SWAPPED | PG_SWAPCACHE | PG_LOCKED)
    assert S.g[G_SWAP_USAGE] == 0                        # folio_free_swap: the slot is free
    assert counter(S, M.PSWPIN) == 1 and counter(S, M.SWAPCACHE_BUSY) == 0
    assert counter(S, M.VMA_LOCK_RETRY) == vretry
    assert counter(S, M.MMAP_READ_COUNT) == mmap_reads
    assert S.pg[PAGE, P_REFS] == 0
    assert S.vma[0, V_READERS] == 0 and S.g[G_RW_READERS] == 0


def test_zram_raced_swapin_takes_the_swap_cache_folio():
    """swapin_folio after another thread's folio got into the swap cache between the
    lookup and the insert: the new folio is put (uncharged) and the cached one is used,
    a major fault all the same (SWAPCACHE_BUSY counts the race)."""
    S = _swapin_state(readers=1)
    _swap_out(S, PAGE)
    _fault_on(S, 0, PAGE, "baseline")
    usage = int(S.g[G_USAGE] - S.core[:, C_STOCK].sum())
    # the lookup missed: the thread is at SW_SWAP_CHARGED with a charged folio
    S.t[0, T_C_OK] = 1
    S.g[G_USAGE] += 1
    S.pg[PAGE, P_FLAGS] = PG_ANON | PG_SWAPPED | PG_SWAPCACHE | PG_PRESENT | PG_UPTODATE
    S.t[0, T_PC] = SW_SWAP_CHARGED
    engine.thread_step(S, 0)
    drive_until(S, _fault_returned)
    assert counter(S, M.SWAPCACHE_BUSY) == 1 and counter(S, M.PGMAJFAULT) == 1
    assert counter(S, M.PSWPIN) == 0                     # nothing read by this thread
    assert S.vma[0, V_PTE0 + PAGE] & PTE_PRESENT
    assert int(S.g[G_USAGE] - S.core[:, C_STOCK].sum()) == usage


def _pageout_pass(S, tid=0):
    on_core(S, tid, tid)
    S.t[tid, T_SP] = 1
    S.t[tid, T_STACK0] = W_SI_PAGEOUT_DONE
    S.t[tid, T_PC] = MA_PAGEOUT
    S.g[G_DRAINING] = 1                                   # stop at the end of the pass
    engine.thread_step(S, tid)
    drive_until(S, lambda S: S.t[tid, T_STATE] == TS_EXITED, max_events=100_000)
    assert counter(S, M.PAGEOUT_ROUNDS) == 1


def test_madv_pageout_skips_locked_folio():
    """MADV_PAGEOUT swaps out every mapped folio except one whose lock is held."""
    S = _swapin_state(readers=0, writers=1)
    S.pg[PAGE, P_FLAGS] |= PG_LOCKED                     # a fault is installing it
    _pageout_pass(S)
    assert counter(S, M.PAGEOUT_LOCKED_SKIP) == 1
    assert counter(S, M.PSWPOUT) == 255
    # the locked folio and the VMA's page tables (a PTE table and its PMD table) remain
    assert S.g[G_SWAP_USAGE] == 255 and S.g[G_USAGE] == 1 + 2
    assert S.vma[0, V_PTE0 + PAGE] & PTE_PRESENT          # still mapped
    assert S.pg[PAGE, P_FLAGS] & PG_LRU                   # put back on the anon LRU
    assert lru_list(S, LIST_ANON) == [PAGE]
    for q in (0, 8, 255):
        assert S.pg[q, P_FLAGS] == PG_ANON | PG_SWAPPED
        assert S.vma[0, V_PTE0 + q] == 0
    assert S.g[G_RW_READERS] == 0                         # mmap_lock read released


def test_swap_max_zero_never_swaps_anon():
    """swap_max=0: add_to_swap fails for every folio; nothing leaves memory."""
    S = _swapin_state(readers=0, writers=1, swap_max_mb=0)
    _pageout_pass(S)
    assert counter(S, M.PSWPOUT) == 0 and S.g[G_SWAP_USAGE] == 0
    assert S.g[G_USAGE] == 256 + 2                         # the pages and their page tables
    assert all(S.pg[q, P_FLAGS] & PG_PRESENT and S.vma[0, V_PTE0 + q] & PTE_PRESENT
               for q in range(256))
    assert len(lru_list(S, LIST_ANON)) == 256


def test_disk_swapin_readahead_reads_the_cluster():
    """On a disk, a miss reads the aligned window of swap_ra_pages (8) swapped pages into
    the swap cache with one request; the faulting thread drops its lock, waits for its
    folio and retries (a major retry: FAULT_FLAG_TRIED on the mmap_lock path in
    baseline); the others stay cached and are minor faults later."""
    S = _swapin_state(swap="disk")
    for q in range(8, 16):
        _swap_out(S, q)
    _fault_on(S, 0, 10, "baseline")
    engine.thread_step(S, 0)
    drive_until(S, _fault_returned)
    assert counter(S, M.PGMAJFAULT) == 1 and counter(S, M.PSWPIN) == 8
    assert counter(S, M.PAGES_READ) == 8
    assert counter(S, M.VMA_LOCK_RETRY) == 1 and counter(S, M.MMAP_READ_COUNT) == 1
    assert S.vma[0, V_PTE0 + 10] & PTE_PRESENT
    for q in range(8, 16):
        fl = int(S.pg[q, P_FLAGS])
        assert fl & PG_SWAPCACHE and fl & PG_UPTODATE and not fl & (PG_LOCKED | PG_DIRTY)
    assert S.g[G_SWAP_USAGE] == 8                         # cached copies keep their slots
