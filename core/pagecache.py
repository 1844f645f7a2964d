"""The page cache of each file (mm/filemap.c): folio states, the folio lock, PTEs.

A folio (one page, or with `device.large_folios` a naturally aligned run of 2^order pages:
core.state names the head page of each) is absent, present-locked (being read or
installed), or present-uptodate; it carries PG_readahead, PG_referenced, PG_active, PG_workingset, and,
once evicted, a shadow (eviction stamp) in its xarray slot for refault detection. The folio
lock is a sleeping lock with a FIFO wait queue and lock handoff on unlock
(`folio_wake_bit` takes the lock on behalf of the first exclusive waiter). Each VMA keeps
its PTEs (present, young) for the pages of its file.

`filemap_map_pages` is the fault-around of do_read_fault: it maps, without sleeping, every
folio of the window that is uptodate, unlocked and not PG_readahead, a large folio whole
(v6.18 "mm/filemap: map entire large folio faultaround": the files here are PMD-aligned
mappings of whole files, so every folio lies inside the VMA and one page table), and
`finish_fault` maps the faulting folio whole ("mm/fault: try to map the entire file folio
in finish_fault()").
"""

from numba import njit

from core.costs import PTRS_PER_PTE
from core.prefetch import prefetch_item, prefetch_row, prefetch_rows
from core.sched import block, fifo_append, wake

PAGE_LOCK_UNFAIRNESS = 5        # sysctl_page_lock_unfairness (mm/filemap.c)
END_READ_PREFETCH = 8           # folios_end_read warms the row this many folios ahead
from core.state import (
    FL_MMAP_MISS,
    FL_PAGES,
    G_NOW,
    K_FA_PAGE,
    K_FA_PAGES,
    K_FILE_PAGES,
    K_PTE_BATCH,
    K_PTE_INSTALL,
    P_FLAGS,
    P_HEAD,
    P_NR,
    P_WQ_HEAD,
    P_WQ_TAIL,
    PG_LOCKED,
    PG_PRESENT,
    PG_READAHEAD,
    PG_UPTODATE,
    PG_WORKINGSET,
    PTE_PRESENT,
    PTE_YOUNG,
    T_FOLIO_RELOCK,
    T_PC,
    T_UNFAIR,
    T_WAIT_NEXT,
    T_WAIT_START,
    T_WQ_SHARED,
    TT_FOLIO,
    V_PTE0,
)


@njit(cache=True, inline="always")
def gpage(S, f, index):
    """Global folio index of page `index` of file `f`."""
    return f * S.k[K_FILE_PAGES] + index


@njit(cache=True, inline="always")
def page_cached(S, p):
    """filemap_get_entry finds a folio (not a shadow) at page p."""
    return (S.pg[S.pg[p, P_HEAD], P_FLAGS] & PG_PRESENT) != 0


@njit(cache=True, inline="always")
def set_pte_range(S, v, first, nr):
    """Map pages first..first+nr-1 (file indices) of VMA v, young; returns the cost: one
    rmap/refcount update for the folio, one PTE store (and mapcount) per further page. A
    whole PMD-order folio is mapped by one PMD entry instead (do_set_pmd: the mapping is
    PMD-aligned and, fresh after mmap, has no page table there yet); the model keeps its
    pages' PTE bits as the PMD's."""
    for i in range(first, first + nr):
        S.vma[v, V_PTE0 + i] = PTE_PRESENT | PTE_YOUNG
    if nr == PTRS_PER_PTE:
        return S.k[K_PTE_INSTALL]
    return S.k[K_PTE_INSTALL] + (nr - 1) * S.k[K_PTE_BATCH]


@njit(cache=True, inline="always")
def map_folio_ptes(S, v, first, end):
    """Map the pages of one folio, file indices first..end-1, that have no PTE yet, one
    set_pte_range per run of them (filemap_map_folio_range's pte_none checks). Returns the
    cost."""
    cost = 0
    j = first
    while j < end:
        if S.vma[v, V_PTE0 + j] & PTE_PRESENT:
            j += 1
            continue
        k = j
        while k < end and not (S.vma[v, V_PTE0 + k] & PTE_PRESENT):
            k += 1
        cost += set_pte_range(S, v, j, k - j)
        j = k
    return cost


@njit(cache=True, inline="always")
def folio_trylock(S, p):
    if S.pg[p, P_FLAGS] & PG_LOCKED:
        return False
    S.pg[p, P_FLAGS] |= PG_LOCKED
    return True


@njit(cache=True)
def folio_lock(S, tid, p, pc):
    """__folio_lock: True if taken now; else sleep in the folio's wait queue (an exclusive
    waiter) and continue at `pc` owning the lock. folio_wait_bit_common: a woken waiter
    races for the bit itself and queues again at the tail when it loses; only after
    sysctl_page_lock_unfairness (5) lost races does folio_unlock hand it the lock
    (WQ_FLAG_CUSTOM)."""
    if folio_trylock(S, p):
        return True
    S.t[tid, T_UNFAIR] = PAGE_LOCK_UNFAIRNESS
    _queue(S, tid, p, pc)
    return False


@njit(cache=True)
def _queue(S, tid, p, pc):
    """`repeat:` in folio_wait_bit_common: --unfairness, then to the tail of the queue."""
    S.t[tid, T_UNFAIR] -= 1
    S.t[tid, T_PC] = pc
    S.t[tid, T_WAIT_START] = S.g[G_NOW]
    S.pg[p, P_WQ_HEAD], S.pg[p, P_WQ_TAIL] = fifo_append(S, tid, S.pg[p, P_WQ_HEAD],
                                                         S.pg[p, P_WQ_TAIL])
    block(S, tid, TT_FOLIO)


@njit(cache=True)
def folio_wait_handoff(S, tid, p, pc):
    """Sleep until the folio lock is handed to this thread at unlock (a reader of its own
    locked folio waiting for the I/O to finish: the re-read of page_not_uptodate)."""
    S.t[tid, T_UNFAIR] = 0
    _queue(S, tid, p, pc)


@njit(cache=True)
def folio_relock(S, tid):
    """A waiter woken without the lock runs: take the bit, or queue again. True if taken
    (the thread continues at its T_PC owning the lock)."""
    p = S.t[tid, T_FOLIO_RELOCK] - 1
    S.t[tid, T_FOLIO_RELOCK] = 0
    if folio_trylock(S, p):
        return True
    _queue(S, tid, p, S.t[tid, T_PC])
    return False


@njit(cache=True)
def folio_wait_locked(S, tid, p, pc):
    """folio_wait_locked: sleep until the folio is unlocked, without taking the lock (a
    non-exclusive waiter). Continues at `pc` at once if it is not locked."""
    if not (S.pg[p, P_FLAGS] & PG_LOCKED):
        S.t[tid, T_PC] = pc
        return True
    S.t[tid, T_WQ_SHARED] = 1
    _queue(S, tid, p, pc)
    return False


@njit(cache=True, inline="always")
def folio_unlock(S, p):
    """folio_unlock -> folio_wake_bit: every non-exclusive waiter ahead of the first
    exclusive one is woken; the first exclusive waiter is woken too and the walk stops
    there. It is handed the lock if its unfairness is used up (wake_page_function takes the
    bit for it); otherwise the bit is free and it must race for it when it runs."""
    head = S.pg[p, P_WQ_HEAD]
    while head >= 0:
        nxt = S.t[head, T_WAIT_NEXT]
        S.pg[p, P_WQ_HEAD] = nxt
        if nxt < 0:
            S.pg[p, P_WQ_TAIL] = -1
        S.t[head, T_WAIT_NEXT] = -1
        if S.t[head, T_WQ_SHARED]:
            S.t[head, T_WQ_SHARED] = 0
            wake(S, head, S.t[head, T_PC])
            head = nxt
            continue
        if S.t[head, T_UNFAIR] >= 0:
            S.pg[p, P_FLAGS] &= ~PG_LOCKED
            S.t[head, T_FOLIO_RELOCK] = p + 1
        wake(S, head, S.t[head, T_PC])
        return
    S.pg[p, P_FLAGS] &= ~PG_LOCKED


@njit(cache=True, inline="always")
def folio_mark_uptodate_unlock(S, p):
    S.pg[p, P_FLAGS] |= PG_UPTODATE
    folio_unlock(S, p)


@njit(cache=True, inline="always")
def folios_end_read(S, first, n):
    """folio_end_read for every folio of a read of pages first..first+n-1 (a request or a
    sparse run: folios added back to back, each starting at its head)."""
    p = first
    prefetch_rows(S.pg, first, min(n, END_READ_PREFETCH))
    while p < first + n:
        nr = S.pg[p, P_NR]
        if p + END_READ_PREFETCH * nr < first + n:
            prefetch_row(S.pg, p + END_READ_PREFETCH * nr)   # the run went cold during the read
        folio_mark_uptodate_unlock(S, p)
        p += nr


@njit(cache=True, _nrt=False)
def filemap_map_pages(S, v, f, index):
    """do_fault_around -> filemap_map_pages. Map the fault-around window of `index` in VMA v.

    Returns (cost_ns, faulting_page_mapped). next_uptodate_folio (v7.0-rc3) visits each
    folio (or hole) of the window once and skips folios that are absent, locked (trylock
    fails), not uptodate or PG_readahead (left for a real fault to trigger async
    readahead); it does not look at the LRU, so a folio a reclaimer has isolated is mapped
    too (shrink_folio_list then finds it mapped and young). filemap_map_folio_range maps
    the rest, a large folio whole. Every page it passes that is not PG_workingset counts as
    a hit against the file's mmap_miss ("recently evicted" pages do not, so that a
    thrashing file can still stop read-around); the sum comes off mmap_miss at the end,
    floored at 0. Cost: one K_FA_PAGE per folio or hole visited, the PTE stores of
    set_pte_range per folio mapped.
    """
    fa = S.k[K_FA_PAGES]
    start = index - index % fa
    end = start + fa
    end = min(end, S.file[f, FL_PAGES])
    base = f * S.k[K_FILE_PAGES]
    prefetch_rows(S.pg, base + start, end - start)   # the window's rows and PTEs, at once
    prefetch_item(S.vma, v, V_PTE0 + start)
    prefetch_item(S.vma, v, V_PTE0 + end - 1)
    cost = 0
    hits = 0
    i = start
    while i < end:
        h = S.pg[base + i, P_HEAD]
        nr = S.pg[h, P_NR]
        first = h - base
        nxt = first + nr
        cost += S.k[K_FA_PAGE]
        fl = S.pg[h, P_FLAGS]
        if (fl & (PG_PRESENT | PG_UPTODATE)) == (PG_PRESENT | PG_UPTODATE) and \
                not (fl & (PG_LOCKED | PG_READAHEAD)):
            if not (fl & PG_WORKINGSET):
                hits += nr
            # x86 keeps prefaulted PTEs young (arch_wants_old_prefaulted_pte() is false).
            cost += map_folio_ptes(S, v, first, nxt)
        i = nxt
    S.file[f, FL_MMAP_MISS] = max(0, S.file[f, FL_MMAP_MISS] - hits)
    return cost, (S.vma[v, V_PTE0 + index] & PTE_PRESENT) != 0


@njit(cache=True)
def finish_fault(S, v, f, index):
    """Install the faulting folio's PTEs (it is locked and uptodate): the whole folio when
    it is large (it lies inside the VMA and one page table here), else the one page."""
    base = f * S.k[K_FILE_PAGES]
    h = S.pg[base + index, P_HEAD]
    return map_folio_ptes(S, v, h - base, h - base + S.pg[h, P_NR])
