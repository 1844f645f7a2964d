"""Readahead for mmap faults (mm/readahead.c, the mmap parts of mm/filemap.c).

- `page_cache_sync_ra` as do_sync_mmap_readahead uses it (read-around): `ra_pages` pages
  centred on the fault, PG_readahead on the page `ra_pages / 4` from the end.
- `page_cache_async_ra` on a PG_readahead hit: clear the mark, advance the window by its
  size (ramped up by get_next_ra_size, capped at `ra_pages`), mark its first page.
- `page_cache_ra_unbounded`: for each page of the window not in the cache, allocate a
  folio and `filemap_add_folio` it, locked, charged with the readahead mask
  (`__GFP_NORETRY`: on failure the window is cut short there), into the LRU through the
  per-CPU batch; a page already present ends the current run (`read_pages` submits it).
- `read_pages`: on a sparse file the holes are zero-filled on this CPU and the folios are
  uptodate and unlocked when it returns; otherwise one block request per contiguous run.

The mmap_miss heuristic is not modelled: sequential faults keep it near zero (fault-around
hits decrement it), so read-around always runs in the workloads simulated here.
"""

from numba import njit

from core.blockdev import submit_read
from core.lru import folio_add_lru, workingset_refault
from core.memcg import (
    CHARGE_NEEDS_RECLAIM,
    CHARGE_OK_OVER_HIGH,
    charge_slow,
    handle_over_high_in_charge,
    try_charge_fast,
    uncharge,
)
from core.metrics import PAGES_READ, RA_TRUNCATED
from core.pagecache import folio_mark_uptodate_unlock
from core.sched import call, run_for
from core.state import (
    FL_PAGES,
    FL_RA_ASYNC,
    FL_RA_SIZE,
    FL_RA_START,
    G_COUNTERS,
    G_NOW,
    K_CHARGE,
    K_FILE_PAGES,
    K_FOLIO_ALLOC,
    K_RA_PAGES,
    K_RA_SUBMIT,
    K_SPARSE,
    K_ZERO_FILL,
    LR_ADD_DRAIN,
    P_ADDED_NS,
    P_FLAGS,
    PC_RETURN,
    PG_LOCKED,
    PG_PRESENT,
    PG_READAHEAD,
    RA_CHARGED,
    RA_LOOP,
    RA_READ_PAGES,
    RA_SPARSE_DONE,
    T_C_OK,
    T_FILE,
    T_PC,
    T_RA_COST,
    T_RA_END,
    T_RA_MARK,
    T_RA_NEXT,
    T_RA_RUN_N,
    T_RA_RUN_START,
)


@njit(cache=True)
def get_next_ra_size(cur, max_pages):
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


@njit(cache=True)
def _begin_window(S, tid, start, size, async_size, ret):
    n = S.file[S.t[tid, T_FILE], FL_PAGES]          # i_size: no readahead past the end
    end = start + size
    end = min(end, n)
    S.t[tid, T_RA_NEXT] = start
    S.t[tid, T_RA_END] = end
    S.t[tid, T_RA_MARK] = start + size - async_size
    S.t[tid, T_RA_RUN_N] = 0
    S.t[tid, T_RA_COST] = 0
    call(S, tid, RA_LOOP, ret)


@njit(cache=True)
def page_cache_sync_ra(S, tid, index, ret):
    """do_sync_mmap_readahead's read-around for a miss at `index`."""
    f = S.t[tid, T_FILE]
    ra = S.k[K_RA_PAGES]
    start = max(0, index - ra // 2)
    S.file[f, FL_RA_START] = start
    S.file[f, FL_RA_SIZE] = ra
    S.file[f, FL_RA_ASYNC] = ra // 4
    _begin_window(S, tid, start, ra, ra // 4, ret)


@njit(cache=True)
def page_cache_async_ra(S, tid, index, ret):
    """do_async_mmap_readahead on a PG_readahead folio at `index`."""
    f = S.t[tid, T_FILE]
    n = S.file[f, FL_PAGES]
    base = f * S.k[K_FILE_PAGES]
    S.pg[base + index, P_FLAGS] &= ~PG_READAHEAD
    ra = S.k[K_RA_PAGES]
    start = S.file[f, FL_RA_START]
    size = S.file[f, FL_RA_SIZE]
    if size > 0 and index == start + size - S.file[f, FL_RA_ASYNC]:
        start += size
        size = get_next_ra_size(size, ra)
    else:
        # Context readahead: restart right after the cached run that holds the mark.
        start = index + 1
        while start < n and start < index + ra and (S.pg[base + start, P_FLAGS] & PG_PRESENT):
            start += 1
        size = ra
    S.file[f, FL_RA_START] = start
    S.file[f, FL_RA_SIZE] = size
    S.file[f, FL_RA_ASYNC] = size
    _begin_window(S, tid, start, size, size, ret)


@njit(cache=True, inline="always")
def filemap_add_folio(S, tid, p, readahead_mark, in_fault):
    """A new locked folio enters the page cache (already charged). True if the per-CPU LRU
    batch is full and must be drained."""
    fl = PG_PRESENT | PG_LOCKED
    if readahead_mark:
        fl |= PG_READAHEAD
    S.pg[p, P_FLAGS] = fl
    S.pg[p, P_ADDED_NS] = S.g[G_NOW]
    workingset_refault(S, p)
    return folio_add_lru(S, tid, p, in_fault)


@njit(cache=True, inline="always")
def _add_next(S, tid):
    """Add the folio at ra_next (charge already done). True if a drain call was set up."""
    f = S.t[tid, T_FILE]
    i = S.t[tid, T_RA_NEXT]
    p = f * S.k[K_FILE_PAGES] + i
    if S.t[tid, T_RA_RUN_N] == 0:
        S.t[tid, T_RA_RUN_START] = i
    S.t[tid, T_RA_RUN_N] += 1
    S.t[tid, T_RA_NEXT] = i + 1
    S.t[tid, T_RA_COST] += S.k[K_FOLIO_ALLOC] + S.k[K_CHARGE]
    if filemap_add_folio(S, tid, p, i == S.t[tid, T_RA_MARK], True):
        call(S, tid, LR_ADD_DRAIN, RA_LOOP)
        return True
    return False


@njit(cache=True, _nrt=False)
def step(S, tid, pc):
    f = S.t[tid, T_FILE]
    n = S.k[K_FILE_PAGES]
    base = f * n

    if pc == RA_LOOP:
        while S.t[tid, T_RA_NEXT] < S.t[tid, T_RA_END]:
            p = base + S.t[tid, T_RA_NEXT]
            if S.pg[p, P_FLAGS] & PG_PRESENT:
                if S.t[tid, T_RA_RUN_N] > 0:
                    S.t[tid, T_PC] = RA_READ_PAGES
                    return True
                S.t[tid, T_RA_NEXT] += 1
                continue
            code = try_charge_fast(S, tid, 1)
            if code == CHARGE_NEEDS_RECLAIM:
                charge_slow(S, tid, 1, 1, RA_CHARGED)
                return True
            if code == CHARGE_OK_OVER_HIGH:
                S.t[tid, T_C_OK] = 1
                handle_over_high_in_charge(S, tid, RA_CHARGED)
                return True
            if _add_next(S, tid):
                return True
        if S.t[tid, T_RA_RUN_N] > 0:
            S.t[tid, T_PC] = RA_READ_PAGES
            return True
        if S.t[tid, T_RA_COST] > 0:
            cost = S.t[tid, T_RA_COST]
            S.t[tid, T_RA_COST] = 0
            run_for(S, tid, cost, PC_RETURN)
            return False
        S.t[tid, T_PC] = PC_RETURN
        return True

    if pc == RA_CHARGED:
        if not S.t[tid, T_C_OK]:
            S.g[G_COUNTERS + RA_TRUNCATED] += 1      # -ENOMEM from filemap_add_folio: break
            S.t[tid, T_RA_END] = S.t[tid, T_RA_NEXT]
            S.t[tid, T_PC] = RA_LOOP
            return True
        if S.pg[base + S.t[tid, T_RA_NEXT], P_FLAGS] & PG_PRESENT:
            uncharge(S, 1)                     # raced with another reader: -EEXIST
            S.t[tid, T_RA_NEXT] += 1
            S.t[tid, T_PC] = RA_LOOP
            return True
        if _add_next(S, tid):
            return True
        S.t[tid, T_PC] = RA_LOOP
        return True

    if pc == RA_READ_PAGES:
        nrun = S.t[tid, T_RA_RUN_N]
        cost = S.t[tid, T_RA_COST] + S.k[K_RA_SUBMIT]
        S.t[tid, T_RA_COST] = 0
        if S.k[K_SPARSE]:
            run_for(S, tid, cost + nrun * S.k[K_ZERO_FILL], RA_SPARSE_DONE)
            return False
        submit_read(S, base + S.t[tid, T_RA_RUN_START], nrun, tid)
        S.t[tid, T_RA_RUN_N] = 0
        run_for(S, tid, cost, RA_LOOP)
        return False

    if pc == RA_SPARSE_DONE:
        first = base + S.t[tid, T_RA_RUN_START]
        nrun = S.t[tid, T_RA_RUN_N]
        for p in range(first, first + nrun):
            folio_mark_uptodate_unlock(S, p)
        S.g[G_COUNTERS + PAGES_READ] += nrun
        S.t[tid, T_RA_RUN_N] = 0
        S.t[tid, T_PC] = RA_LOOP
        return True

    raise RuntimeError("readahead: unknown program counter")
