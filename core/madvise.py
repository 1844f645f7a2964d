"""madvise(MADV_PAGEOUT) on an anonymous VMA (mm/madvise.c, mm/vmscan.c reclaim_pages).

The syscall takes `mmap_lock` for read (madvise_lock: MADV_PAGEOUT does not need the write
lock) and walks the VMA's page tables (`madvise_cold_or_pageout_pte_range`): each present
PTE has its young bit cleared, its folio is isolated from the LRU under `lru_lock`
(`folio_isolate_lru`), and the isolated folios go to `reclaim_pages` ->
`shrink_folio_list(ignore_references)`. There, for each folio:

- `folio_trylock`; a locked folio (a fault installing it) is skipped and put back;
- `add_to_swap`: a swap slot (charged to swap.max: at the limit, or with swap_max 0, the
  folio is kept), the swap cache, dirty;
- `try_to_unmap`: the PTE becomes the swap entry; a dirty folio's TLB entries are flushed
  before it is written (`try_to_unmap_flush_dirty`), IPIs to every CPU of the mm;
- `pageout` -> `swap_writepage`: writeback starts and the folio is unlocked; `zram`
  compresses it on this CPU and ends writeback at once; `disk` submits a write and moves on
  (the folio is kept while under writeback);
- then, if writeback ended and the folio is clean: `folio_trylock` again and
  `__remove_mapping`, which fails while anybody holds a reference or mapped it again (a
  reader that faulted it back in); otherwise the folio leaves the swap cache and is freed
  (uncharged). Kept folios go back on the LRU under `lru_lock`.

Simplification: the kernel isolates a whole PMD (512 PTEs) before reclaiming; the model
isolates and reclaims batches of SWAP_CLUSTER_MAX (32) folios, each folio_isolate_lru of
a batch in one lru_lock hold.
"""

from numba import njit

from core.blockdev import blk_get_request, submit_write
from core.lru import (
    lru_hold_ns,
    lruvec_add_folio,
    lruvec_del_folio,
    spin_lock_irq_lru,
    spin_unlock_irq_lru,
)
from core.memcg import exit_to_user_mode, uncharge
from core.metrics import PAGEOUT_LOCKED_SKIP, PAGES_RECLAIMED, PSWPOUT
from core.pagecache import folio_trylock, folio_unlock
from core.rwsem import down_read, up_read
from core.sched import call, proceed, run_for, smp_call_function_wait, spend
from core.state import (
    C_FB_N,
    FL_PAGES,
    G_COUNTERS,
    G_MM_CPUS,
    K_ADD_TO_SWAP,
    K_AGING_PTE,
    K_FILE_PAGES,
    K_RC_EVICT,
    K_RC_RMAP,
    K_RC_SCAN,
    K_SWAP_DEV,
    K_SWAP_WRITE_SUBMIT,
    K_TLB_BASE,
    K_TLB_PER_CPU,
    K_ZRAM_COMP,
    LR_ADD_DRAIN,
    MA_DONE,
    MA_DOWN_READ,
    MA_FLUSHED,
    MA_FOLIO,
    MA_ISOLATE,
    MA_ISOLATE_LOCK,
    MA_ISOLATE_LOCKED,
    MA_LOCKED,
    MA_PAGEOUT,
    MA_PUTBACK,
    MA_PUTBACK_DONE,
    MA_PUTBACK_LOCKED,
    MA_SHRINK,
    MA_WRITE,
    MA_WRITE_SUBMIT,
    MA_WRITTEN,
    P_FLAGS,
    P_REFS,
    P_WQ_HEAD,
    PG_ANON,
    PG_DIRTY,
    PG_ISOLATED,
    PG_LRU,
    PG_SWAPCACHE,
    PG_SWAPPED,
    PG_WRITEBACK,
    PTE_PRESENT,
    PTE_YOUNG,
    RECLAIM_BATCH,
    SWAP_ZRAM,
    T_CORE,
    T_FILE,
    T_PAGE,
    T_PC,
    T_PO_I,
    T_R_BATCH0,
    T_R_BATCH_N,
    T_VMA,
    V_PTE0,
)
from core.swap import folio_alloc_swap


@njit(cache=True)
def _page(S, tid, j):
    return S.t[tid, T_R_BATCH0 + j]


@njit(cache=True)
def madvise_pageout_pte_range(S, tid):
    """Collect up to RECLAIM_BATCH mapped anon folios from T_PAGE on, clearing their young
    bits. Returns PTEs walked."""
    v = S.t[tid, T_VMA]
    f = S.t[tid, T_FILE]
    base = f * S.k[K_FILE_PAGES]
    n = S.file[f, FL_PAGES]
    i = S.t[tid, T_PAGE]
    got = 0
    walked = 0
    while i < n and got < RECLAIM_BATCH:
        pte = S.vma[v, V_PTE0 + i]
        walked += 1
        if pte & PTE_PRESENT:
            S.vma[v, V_PTE0 + i] = pte & ~PTE_YOUNG
            p = base + i
            if S.pg[p, P_FLAGS] & PG_ANON:
                S.t[tid, T_R_BATCH0 + got] = p
                got += 1
        i += 1
    S.t[tid, T_PAGE] = i
    S.t[tid, T_R_BATCH_N] = got
    return walked


@njit(cache=True)
def _keep(S, tid, j):
    """The folio stays in the batch and goes back on the LRU (putback)."""
    S.t[tid, T_PO_I] = j + 1


@njit(cache=True)
def _free_folio(S, tid, j, p):
    """__remove_mapping: out of the swap cache (the entry stays in the PTE), freed; -1
    marks its slot of the batch."""
    S.pg[p, P_FLAGS] = PG_ANON | PG_SWAPPED
    uncharge(S, 1)
    S.g[G_COUNTERS + PAGES_RECLAIMED] += 1
    S.t[tid, T_R_BATCH0 + j] = -1
    S.t[tid, T_PO_I] = j + 1


@njit(cache=True)
def step(S, tid, pc):
    if pc == MA_PAGEOUT:
        # madvise_pageout: lru_add_drain() of this CPU first, then madvise_lock.
        S.t[tid, T_PAGE] = 0
        if S.core[S.t[tid, T_CORE], C_FB_N] > 0:
            call(S, tid, LR_ADD_DRAIN, MA_DOWN_READ)
            return True
        S.t[tid, T_PC] = MA_DOWN_READ
        return True

    if pc == MA_DOWN_READ:
        return proceed(S, tid, down_read(S, tid, MA_LOCKED), MA_LOCKED)

    if pc == MA_LOCKED or pc == MA_ISOLATE:
        walked = madvise_pageout_pte_range(S, tid)
        nxt = MA_ISOLATE_LOCK if S.t[tid, T_R_BATCH_N] > 0 else MA_DONE
        run_for(S, tid, walked * S.k[K_AGING_PTE], nxt)
        return False

    if pc == MA_ISOLATE_LOCK:
        taken = spin_lock_irq_lru(S, tid, MA_ISOLATE_LOCKED)
        return proceed(S, tid, taken, MA_ISOLATE_LOCKED)

    if pc == MA_ISOLATE_LOCKED:
        # folio_isolate_lru for each: only folios on an LRU list (not in a per-CPU batch,
        # not isolated by someone else).
        n = S.t[tid, T_R_BATCH_N]
        got = 0
        for j in range(n):
            p = _page(S, tid, j)
            if (S.pg[p, P_FLAGS] & (PG_LRU | PG_ISOLATED)) == PG_LRU:
                lruvec_del_folio(S, p)
                S.pg[p, P_FLAGS] |= PG_ISOLATED
                S.t[tid, T_R_BATCH0 + got] = p
                got += 1
        S.t[tid, T_R_BATCH_N] = got
        run_for(S, tid, lru_hold_ns(S, n), MA_SHRINK)
        return False

    if pc == MA_SHRINK:
        spin_unlock_irq_lru(S, tid)
        S.t[tid, T_PO_I] = 0
        S.t[tid, T_PC] = MA_FOLIO
        return True

    if pc == MA_FOLIO:
        # shrink_folio_list, one folio at a time.
        cost = 0
        base = S.t[tid, T_FILE] * S.k[K_FILE_PAGES]
        v = S.t[tid, T_VMA]
        while S.t[tid, T_PO_I] < S.t[tid, T_R_BATCH_N]:
            j = S.t[tid, T_PO_I]
            p = _page(S, tid, j)
            cost += S.k[K_RC_SCAN]
            if not folio_trylock(S, p):
                S.g[G_COUNTERS + PAGEOUT_LOCKED_SKIP] += 1
                _keep(S, tid, j)
                continue
            if not (S.pg[p, P_FLAGS] & PG_SWAPCACHE):
                if not folio_alloc_swap(S, p):
                    folio_unlock(S, p)             # activate_locked: no swap space
                    _keep(S, tid, j)
                    continue
                cost += S.k[K_ADD_TO_SWAP]
            i = p - base
            if S.vma[v, V_PTE0 + i] & PTE_PRESENT:
                S.vma[v, V_PTE0 + i] = 0           # try_to_unmap: the swap entry
                cost += S.k[K_RC_RMAP]
            if S.pg[p, P_FLAGS] & PG_DIRTY:
                # try_to_unmap_flush_dirty before pageout: flush every CPU of the mm.
                cost += S.k[K_TLB_BASE] + S.g[G_MM_CPUS] * S.k[K_TLB_PER_CPU]
                run_for(S, tid, cost, MA_FLUSHED)
                return False
            folio_unlock(S, p)                     # clean (its copy is in swap already)
            run_for(S, tid, cost, MA_WRITTEN)
            return False
        return spend(S, tid, cost, MA_PUTBACK)

    if pc == MA_FLUSHED:
        return proceed(S, tid, smp_call_function_wait(S, tid, MA_WRITE), MA_WRITE)

    if pc == MA_WRITE:
        # pageout -> swap_writepage: writeback starts, the folio is unlocked.
        p = _page(S, tid, S.t[tid, T_PO_I])
        S.pg[p, P_FLAGS] &= ~PG_DIRTY
        S.pg[p, P_FLAGS] |= PG_WRITEBACK
        folio_unlock(S, p)
        S.g[G_COUNTERS + PSWPOUT] += 1
        if S.k[K_SWAP_DEV] == SWAP_ZRAM:
            run_for(S, tid, S.k[K_ZRAM_COMP], MA_WRITTEN)   # zram_write_page, synchronous
            return False
        S.t[tid, T_PC] = MA_WRITE_SUBMIT
        return True

    if pc == MA_WRITE_SUBMIT:
        # swap_writepage_bdev_async: submit_bio, which may sleep for a request.
        if not blk_get_request(S, tid, MA_WRITE_SUBMIT):
            return False
        submit_write(S, _page(S, tid, S.t[tid, T_PO_I]), 1, tid)
        run_for(S, tid, S.k[K_SWAP_WRITE_SUBMIT], MA_WRITTEN)
        return False

    if pc == MA_WRITTEN:
        j = S.t[tid, T_PO_I]
        p = _page(S, tid, j)
        if S.k[K_SWAP_DEV] == SWAP_ZRAM:
            S.pg[p, P_FLAGS] &= ~PG_WRITEBACK     # the synchronous write has ended
        i = p - S.t[tid, T_FILE] * S.k[K_FILE_PAGES]
        fl = S.pg[p, P_FLAGS]
        if (fl & (PG_WRITEBACK | PG_DIRTY)) or not folio_trylock(S, p):
            _keep(S, tid, j)
            S.t[tid, T_PC] = MA_FOLIO
            return True
        if S.pg[p, P_REFS] > 0 or S.pg[p, P_WQ_HEAD] >= 0 \
                or (S.vma[S.t[tid, T_VMA], V_PTE0 + i] & PTE_PRESENT):
            folio_unlock(S, p)                     # __remove_mapping: refcount not frozen
            _keep(S, tid, j)
            S.t[tid, T_PC] = MA_FOLIO
            return True
        _free_folio(S, tid, j, p)
        run_for(S, tid, S.k[K_RC_EVICT], MA_FOLIO)
        return False

    if pc == MA_PUTBACK:
        n = S.t[tid, T_R_BATCH_N]
        kept = 0
        for j in range(n):
            p = _page(S, tid, j)
            if p >= 0:
                S.t[tid, T_R_BATCH0 + kept] = p
                kept += 1
        S.t[tid, T_R_BATCH_N] = kept
        if kept == 0:
            S.t[tid, T_PC] = MA_ISOLATE
            return True
        taken = spin_lock_irq_lru(S, tid, MA_PUTBACK_LOCKED)
        return proceed(S, tid, taken, MA_PUTBACK_LOCKED)

    if pc == MA_PUTBACK_LOCKED:
        n = S.t[tid, T_R_BATCH_N]
        for j in range(n):
            p = _page(S, tid, j)
            S.pg[p, P_FLAGS] &= ~PG_ISOLATED
            lruvec_add_folio(S, p, False)
        run_for(S, tid, lru_hold_ns(S, n), MA_PUTBACK_DONE)
        return False

    if pc == MA_PUTBACK_DONE:
        spin_unlock_irq_lru(S, tid)
        S.t[tid, T_R_BATCH_N] = 0
        S.t[tid, T_PC] = MA_ISOLATE
        return True

    if pc == MA_DONE:
        up_read(S)
        exit_to_user_mode(S, tid)
        return True

    raise RuntimeError("madvise: unknown program counter")
