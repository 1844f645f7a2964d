"""Readahead for mmap faults (mm/readahead.c, the mmap parts of mm/filemap.c; read at v6.18,
the callers re-read at v7.0-rc3, which calls page_cache_ra_order(&ractl, ra) with the order
in ra->order as modelled here).

- `page_cache_sync_ra` as do_sync_mmap_readahead uses it (read-around): `ra_pages` pages
  centred on the fault, PG_readahead on the page `ra_pages / 4` from the end, ra->order 0.
- `page_cache_async_ra` on a PG_readahead hit: clear the mark, advance the window by its
  size (ramped up by get_next_ra_size, capped at `ra_pages`) or, off the expected index,
  restart after the next hole (page_cache_next_miss); ra->order += 2, the window's end
  aligned down to that order; async_size = size (the window's first folio is marked).
- `page_cache_ra_order` (`device.large_folios`, mapping_large_folio_support): the window in
  folios of ra->order, capped at MAX_PAGECACHE_ORDER (PMD order) and ilog2(size), smaller
  where the index is unaligned or the folio would pass the window's end; PG_readahead on
  the folio that holds the mark. A folio that finds a page of its range cached (-EEXIST)
  or fails its charge (-ENOMEM) ends the loop: what was added is submitted and the rest
  of the window goes to `page_cache_ra_unbounded`. A window that reaches the end of the
  file sets no mark.
- `page_cache_ra_unbounded` (without large folios, and the fallback): for each page of the
  window not in the cache, allocate a folio and `filemap_add_folio` it, locked, charged
  with the readahead mask (`__GFP_NORETRY`: on failure the window is cut short there),
  into the LRU through the per-CPU batch; a page already present ends the current run
  (`read_pages` submits it). No mark when the window was cut at the end of the file.
- `read_pages`: on a sparse file the holes are zero-filled on this CPU and the folios are
  uptodate and unlocked when it returns; otherwise one block request per contiguous run.

The mmap_miss heuristic (read-around off for a file that misses far more than it hits) is
in core/fault.py (do_sync_mmap_readahead, do_async_mmap_readahead) and core/pagecache.py
(filemap_map_pages' hits).
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
from core.pagecache import folios_end_read, page_cached
from core.prefetch import prefetch_row
from core.sched import call, run_for
from core.state import (
    FL_PAGES,
    FL_RA_ASYNC,
    FL_RA_ORDER,
    FL_RA_SIZE,
    FL_RA_START,
    G_COUNTERS,
    G_NOW,
    K_CHARGE,
    K_FILE_PAGES,
    K_FOLIO_ALLOC,
    K_LARGE_FOLIOS,
    K_RA_PAGES,
    K_RA_SUBMIT,
    K_SPARSE,
    K_ZERO_FILL,
    LR_ADD_DRAIN,
    P_ADDED_NS,
    P_FLAGS,
    P_HEAD,
    P_NR,
    P_SHADOW,
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
    T_RA_ORDER,
    T_RA_RUN_N,
    T_RA_RUN_START,
)

MAX_PAGECACHE_ORDER = 9    # x86-64: HPAGE_PMD_ORDER (PREFER_MAX_PAGECACHE_ORDER)
RA_UNBOUNDED = -1          # t_ra_order of a window read by page_cache_ra_unbounded
RA_PREFETCH = 8            # RA_LOOP warms the row of the folio this many folios ahead


@njit(cache=True)
def get_next_ra_size(cur, max_pages):
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


@njit(cache=True, inline="always")
def ilog2(x):
    r = 0
    while x > 1:
        x >>= 1
        r += 1
    return r


@njit(cache=True, inline="always")
def _unbounded_mark(S, f):
    """do_page_cache_ra's mark for the file's window: start + size - async_size, none when
    the window passes the last page (lookahead_size = 0)."""
    start = S.file[f, FL_RA_START]
    size = S.file[f, FL_RA_SIZE]
    if start + size - 1 > S.file[f, FL_PAGES] - 1:
        return -1
    return start + size - S.file[f, FL_RA_ASYNC]


@njit(cache=True)
def _read_window(S, tid, f, ret):
    """page_cache_ra_order for the window in the file's ra state (ra->order chosen by the
    caller), or page_cache_ra_unbounded without large folios."""
    start = S.file[f, FL_RA_START]
    size = S.file[f, FL_RA_SIZE]
    last = S.file[f, FL_PAGES] - 1                  # i_size: no readahead past the end
    S.t[tid, T_RA_NEXT] = start
    if S.k[K_LARGE_FOLIOS]:
        if last > start + size - 1:
            last = start + size - 1
            S.t[tid, T_RA_MARK] = start + size - S.file[f, FL_RA_ASYNC]
        else:
            S.t[tid, T_RA_MARK] = -1               # reached the end: no readahead marker
        order = min(MAX_PAGECACHE_ORDER, S.file[f, FL_RA_ORDER])
        order = min(order, ilog2(max(size, 1)))
        S.file[f, FL_RA_ORDER] = order
        S.t[tid, T_RA_ORDER] = order
    else:
        S.file[f, FL_RA_ORDER] = 0
        S.t[tid, T_RA_ORDER] = RA_UNBOUNDED
        S.t[tid, T_RA_MARK] = _unbounded_mark(S, f)
        last = min(last, start + size - 1)
    S.t[tid, T_RA_END] = last + 1
    S.t[tid, T_RA_RUN_N] = 0
    S.t[tid, T_RA_COST] = 0
    call(S, tid, RA_LOOP, ret)


@njit(cache=True)
def page_cache_sync_ra(S, tid, index, ret):
    """do_sync_mmap_readahead's read-around for a miss at `index`."""
    f = S.t[tid, T_FILE]
    ra = S.k[K_RA_PAGES]
    S.file[f, FL_RA_START] = max(0, index - ra // 2)
    S.file[f, FL_RA_SIZE] = ra
    S.file[f, FL_RA_ASYNC] = ra // 4
    S.file[f, FL_RA_ORDER] = 0
    _read_window(S, tid, f, ret)


@njit(cache=True)
def page_cache_async_ra(S, tid, index, ret):
    """do_async_mmap_readahead on a PG_readahead folio holding page `index` (the fault's
    vmf->pgoff; req_count is ra_pages). Continues at `ret` with or without a window."""
    f = S.t[tid, T_FILE]
    n = S.file[f, FL_PAGES]
    base = f * S.k[K_FILE_PAGES]
    h = S.pg[base + index, P_HEAD]
    S.pg[h, P_FLAGS] &= ~PG_READAHEAD
    ra = S.k[K_RA_PAGES]
    start = S.file[f, FL_RA_START]
    size = S.file[f, FL_RA_SIZE]
    expected = start + size - S.file[f, FL_RA_ASYNC]
    expected -= expected % S.pg[h, P_NR]
    if size > 0 and index == expected:
        start += size
        size = max(size, get_next_ra_size(size, ra))
    else:
        # Interleaved or restarted stream: page_cache_next_miss(index + 1, ra_pages).
        start = index + 1
        while start <= index + ra and start < n and page_cached(S, base + start):
            start += 1
        if start > index + ra:
            S.t[tid, T_PC] = ret                  # no hole within max_pages: no readahead
            return
        size = get_next_ra_size(start - index + ra, ra)
    order = S.file[f, FL_RA_ORDER] + 2
    ffs = ilog2(ra & -ra) + 1                     # ffs(max_pages), 1-based
    align = 1 << min(order, ffs - 1)
    end = start + size
    aligned_end = end - end % align
    if aligned_end > start:
        size -= end - aligned_end
    S.file[f, FL_RA_START] = start
    S.file[f, FL_RA_SIZE] = size
    S.file[f, FL_RA_ASYNC] = size
    S.file[f, FL_RA_ORDER] = order
    _read_window(S, tid, f, ret)


@njit(cache=True, inline="always")
def _folio_nr(S, tid):
    """Pages of the next folio of the window: page_cache_ra_order's order, lowered to the
    index's alignment (__ffs) and until it fits before the window's end; 1 unbounded."""
    order = S.t[tid, T_RA_ORDER]
    if order <= 0:
        return 1
    i = S.t[tid, T_RA_NEXT]
    if i & ((1 << order) - 1):
        order = ilog2(i & -i)
    while order > 0 and i + (1 << order) > S.t[tid, T_RA_END]:
        order -= 1
    return 1 << order


@njit(cache=True, inline="always")
def _range_cached(S, first, nr):
    for p in range(first, first + nr):
        if page_cached(S, p):
            return True
    return False


@njit(cache=True, inline="always")
def _fallback(S, tid):
    """page_cache_ra_order's loop broke (-EEXIST or -ENOMEM): read_pages submits what was
    added (RA_READ_PAGES, if anything was), do_page_cache_ra takes the rest of the window
    (RA_LOOP, unbounded)."""
    f = S.t[tid, T_FILE]
    S.t[tid, T_RA_ORDER] = RA_UNBOUNDED
    S.t[tid, T_RA_MARK] = _unbounded_mark(S, f)
    S.t[tid, T_PC] = RA_READ_PAGES if S.t[tid, T_RA_RUN_N] > 0 else RA_LOOP


@njit(cache=True, inline="always")
def filemap_add_folio(S, tid, p, nr, readahead_mark, in_fault):
    """A new locked folio of nr pages at page p enters the page cache (already charged):
    __filemap_add_folio takes the shadow its range held (the last one found), then the
    LRU. True if the per-CPU LRU batch must be drained now (full, or the folio is large:
    folio_may_be_lru_cached)."""
    fl = PG_PRESENT | PG_LOCKED
    if readahead_mark:
        fl |= PG_READAHEAD
    S.pg[p, P_FLAGS] = fl
    S.pg[p, P_ADDED_NS] = S.g[G_NOW]
    S.pg[p, P_NR] = nr
    shadow = S.pg[p, P_SHADOW]
    for q in range(p + 1, p + nr):
        S.pg[q, P_HEAD] = p
        if S.pg[q, P_SHADOW] >= 0:
            shadow = S.pg[q, P_SHADOW]
            S.pg[q, P_SHADOW] = -1
    S.pg[p, P_SHADOW] = shadow
    workingset_refault(S, p)
    return folio_add_lru(S, tid, p, in_fault)


@njit(cache=True, inline="always")
def _add_next(S, tid, nr):
    """Add the folio of nr pages at ra_next (charge already done). True if a drain call was
    set up."""
    f = S.t[tid, T_FILE]
    i = S.t[tid, T_RA_NEXT]
    p = f * S.k[K_FILE_PAGES] + i
    if S.t[tid, T_RA_RUN_N] == 0:
        S.t[tid, T_RA_RUN_START] = i
    S.t[tid, T_RA_RUN_N] += nr
    S.t[tid, T_RA_NEXT] = i + nr
    S.t[tid, T_RA_COST] += S.k[K_FOLIO_ALLOC] + S.k[K_CHARGE]
    mark = S.t[tid, T_RA_MARK]
    marked = mark >= 0 and i == mark - mark % nr       # ra_alloc_folio: round_down(mark)
    if filemap_add_folio(S, tid, p, nr, marked, True):
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
            nr = _folio_nr(S, tid)
            if S.t[tid, T_RA_NEXT] + RA_PREFETCH * nr < S.t[tid, T_RA_END]:
                prefetch_row(S.pg, p + RA_PREFETCH * nr)   # the window's pages to come
            if S.t[tid, T_RA_ORDER] == RA_UNBOUNDED:
                if page_cached(S, p):
                    if S.t[tid, T_RA_RUN_N] > 0:
                        S.t[tid, T_PC] = RA_READ_PAGES
                        return True
                    S.t[tid, T_RA_NEXT] += 1
                    continue
            elif _range_cached(S, p, nr):
                _fallback(S, tid)                    # -EEXIST
                return True
            code = try_charge_fast(S, tid, nr)
            if code == CHARGE_NEEDS_RECLAIM:
                charge_slow(S, tid, nr, 1, RA_CHARGED)
                return True
            if code == CHARGE_OK_OVER_HIGH:
                S.t[tid, T_C_OK] = 1
                handle_over_high_in_charge(S, tid, RA_CHARGED)
                return True
            if _add_next(S, tid, nr):
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
        nr = _folio_nr(S, tid)
        if not S.t[tid, T_C_OK]:
            if S.t[tid, T_RA_ORDER] != RA_UNBOUNDED:
                _fallback(S, tid)                    # -ENOMEM from ra_alloc_folio
                return True
            S.g[G_COUNTERS + RA_TRUNCATED] += 1      # -ENOMEM from filemap_add_folio: break
            S.t[tid, T_RA_END] = S.t[tid, T_RA_NEXT]
            S.t[tid, T_PC] = RA_LOOP
            return True
        if _range_cached(S, base + S.t[tid, T_RA_NEXT], nr):
            uncharge(S, nr)                          # raced with another reader: -EEXIST
            if S.t[tid, T_RA_ORDER] != RA_UNBOUNDED:
                _fallback(S, tid)
                return True
            S.t[tid, T_RA_NEXT] += 1
            # read_pages(ractl) submits the batch before the page is skipped.
            S.t[tid, T_PC] = RA_READ_PAGES if S.t[tid, T_RA_RUN_N] > 0 else RA_LOOP
            return True
        if _add_next(S, tid, nr):
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
        folios_end_read(S, first, nrun)
        S.g[G_COUNTERS + PAGES_READ] += nrun
        S.t[tid, T_RA_RUN_N] = 0
        S.t[tid, T_PC] = RA_LOOP
        return True

    raise RuntimeError("readahead: unknown program counter")
