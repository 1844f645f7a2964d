"""Anonymous faults and swap-in (mm/memory.c do_anonymous_page and do_swap_page,
mm/swap_state.c, mm/page_io.c, drivers/block/zram).

An anonymous region is an object like a file: page i of it is one folio slot, and that slot
is also its swap entry (the swap slot allocator is not modelled, one entry per page). A
page is
- never touched: no folio, no entry: the first (write) touch runs `do_anonymous_page`;
- resident: PG_PRESENT (mapped, or only in the swap cache after MADV_PAGEOUT unmapped it);
- swapped: PG_SWAPPED without PG_PRESENT: its PTE holds the swap entry.
PG_SWAPCACHE marks a folio the swap cache maps its entry to.

Steps and the kernel code they mirror:

- SW_FAULT     handle_pte_fault: a swap entry in the PTE -> do_swap_page, none ->
               do_anonymous_page.
- SW_ANON      do_anonymous_page (write fault): alloc a zeroed folio, charge it
               (mem_cgroup_charge, may reclaim holding the fault lock), map it, folio_add_lru.
- SW_SWAP      do_swap_page (v7.0-rc3): swap_cache_get_folio; a hit is a minor fault. A miss
               counts PGMAJFAULT (VM_FAULT_MAJOR). `zram` (SWP_SYNCHRONOUS_IO) no longer
               bypasses the swap cache (v7.0, "mm, swap: never bypass the swap cache even
               for SWP_SYNCHRONOUS_IO"): `alloc_swap_folio` allocates and charges a folio,
               `swapin_folio` adds it to the swap cache locked and on the LRU
               (`__swap_cache_prepare_and_add`), or, if another thread's folio got there
               first, drops it and takes that one (SWAPCACHE_BUSY counts these races); the
               winner decompresses on this CPU (`swap_read_folio` -> zram_read_page) and
               the completion unlocks the folio, waking whoever waits for it. Either way
               the fault goes on to folio_lock_or_retry: a concurrent reader of the entry
               meets the folio in the swap cache and waits there, the path patches 2 and 4
               change. `disk`: `swapin_readahead` (swap_cluster_readahead) adds the
               window's swapped pages to the swap cache locked, charged, on the LRU, and
               submits their reads.
- SW_LOCK      folio_lock_or_retry: trylock; when busy on a first try (ALLOW_RETRY and not
               TRIED) drop the fault lock, folio_wait_locked, VM_FAULT_RETRY; otherwise sleep
               for the lock holding the fault lock. Patch 4 (`vma_retry_uptodate`) clears
               ALLOW_RETRY for an uptodate folio; `hold_vma_io` never drops the VMA lock.
- SW_LOCKED    pte_same under the PTE lock (another thread mapped it: out_nomap), then
               set_pte_at + swap_free with the folio lock held, then
               should_try_to_free_swap -> folio_free_swap: on zram always (v7.0 frees the
               swap cache of SWP_SYNCHRONOUS_IO devices after mapping), on a disk only when
               swap is half full (mem_cgroup_swap_full).
"""

from numba import njit

from core.blockdev import submit_read
from core.fault import fault_folio, fault_return_retry, release_fault_lock
from core.lru import folio_add_lru, lruvec_add_folio
from core.memcg import mem_cgroup_charge, uncharge
from core.metrics import PGMAJFAULT, PSWPIN, SWAPCACHE_BUSY
from core.mm import pte_alloc_done, pte_alloc_pages
from core.pagecache import folio_lock, folio_trylock, folio_unlock, folio_wait_locked
from core.sched import call, proceed, run_for, spend
from core.state import (
    F_END,
    FAULT_FLAG_ALLOW_RETRY,
    FAULT_FLAG_TRIED,
    FL_PAGES,
    G_COUNTERS,
    G_SWAP_USAGE,
    G_USAGE,
    K_CHARGE,
    K_FILE_PAGES,
    K_FOLIO_ALLOC,
    K_POLICY,
    K_PTE_INSTALL,
    K_RA_SUBMIT,
    K_SWAP_DEV,
    K_SWAP_MAX,
    K_SWAP_RA,
    K_ZERO_FILL,
    K_ZRAM_DECOMP,
    LOCK_VMA,
    LR_ADD_DRAIN,
    P_FLAGS,
    P_REFS,
    PG_ANON,
    PG_DIRTY,
    PG_LOCKED,
    PG_PRESENT,
    PG_SWAPCACHE,
    PG_SWAPPED,
    PG_UPTODATE,
    POL_HOLD_VMA_IO,
    POL_VMA_RETRY_UPTODATE,
    PTE_PRESENT,
    PTE_YOUNG,
    SW_ANON,
    SW_ANON_CHARGED,
    SW_FAULT,
    SW_LOCK,
    SW_LOCKED,
    SW_RA_CHARGED,
    SW_RA_DONE,
    SW_RA_LOOP,
    SW_SWAP,
    SW_SWAP_CHARGED,
    SW_WAITED,
    SW_ZRAM_READ_DONE,
    SWAP_ZRAM,
    T_C_OK,
    T_F_FLAGS,
    T_F_FPIN,
    T_F_LOCK,
    T_F_PAGE,
    T_F_RET,
    T_FILE,
    T_PC,
    T_RA_COST,
    T_RA_END,
    T_RA_NEXT,
    T_RA_RUN_N,
    T_RA_RUN_START,
    T_VMA,
    V_ANON_VMA,
    V_PTE0,
    VM_FAULT_MAJOR,
)


@njit(cache=True)
def _pte(S, tid):
    return S.vma[S.t[tid, T_VMA], V_PTE0 + S.t[tid, T_F_PAGE]]


# ---- swap slots and the swap cache -----------------------------------------------------
@njit(cache=True)
def swap_free_entry(S, p):
    """The last reference to the entry went: its slot is free, uncharged from swap.max."""
    if S.pg[p, P_FLAGS] & PG_SWAPPED:
        S.pg[p, P_FLAGS] &= ~PG_SWAPPED
        S.g[G_SWAP_USAGE] -= 1


@njit(cache=True)
def mem_cgroup_swap_full(S):
    """vm_swap_full for the memcg: half of swap.max in use."""
    return S.g[G_SWAP_USAGE] * 2 >= S.k[K_SWAP_MAX]


@njit(cache=True)
def folio_alloc_swap(S, p):
    """add_to_swap: a slot (charged to swap.max; fails at the limit, or with no swap) and
    the swap cache entry. The folio is dirtied (it must be written)."""
    if S.g[G_SWAP_USAGE] >= S.k[K_SWAP_MAX]:
        return False
    S.g[G_SWAP_USAGE] += 1
    S.pg[p, P_FLAGS] |= PG_SWAPCACHE | PG_SWAPPED | PG_DIRTY
    return True


# ---- setup: memory in place before time 0 ----------------------------------------------
@njit(cache=True)
def prefill(S, f, v, first, n, anon):
    """Folios first..first+n-1 of object f resident (uptodate, on the LRU, charged) and,
    if v >= 0, mapped in VMA v: the state a workload starts from (the swapin test's
    initial write, app_launch's warm page cache)."""
    base = f * S.k[K_FILE_PAGES]
    for i in range(first, first + n):
        p = base + i
        fl = PG_PRESENT | PG_UPTODATE
        if anon:
            fl |= PG_ANON | PG_DIRTY
        S.pg[p, P_FLAGS] = fl
        lruvec_add_folio(S, p, False)
        S.g[G_USAGE] += 1
        if v >= 0:
            S.vma[v, V_PTE0 + i] = PTE_PRESENT | PTE_YOUNG
            if anon:
                S.vma[v, V_ANON_VMA] = 1             # written before time 0
            nr = pte_alloc_pages(S, v, i)        # its page tables, charged as a fault would
            if nr:
                pte_alloc_done(S, v, i)
                S.g[G_USAGE] += nr


# ---- the fault program ----------------------------------------------------------------
@njit(cache=True)
def _add_lru_then(S, tid, p, cost, pc):
    """folio_add_lru_vma, spend `cost`, continue at `pc` (draining a full batch first)."""
    if folio_add_lru(S, tid, p, True):
        call(S, tid, LR_ADD_DRAIN, pc)
        run_for(S, tid, cost, LR_ADD_DRAIN)
        return False
    return spend(S, tid, cost, pc)


@njit(cache=True)
def step(S, tid, pc):
    if pc == SW_FAULT:
        if _pte(S, tid) & PTE_PRESENT:
            S.t[tid, T_PC] = F_END               # raced: mapped meanwhile, nothing to do
            return True
        fl = S.pg[fault_folio(S, tid), P_FLAGS]
        S.t[tid, T_PC] = SW_SWAP if fl & (PG_SWAPPED | PG_SWAPCACHE) else SW_ANON
        return True

    # -- do_anonymous_page ------------------------------------------------------------------
    if pc == SW_ANON:
        # do_anonymous_page: anon_vma_prepare gives the VMA its anon_vma (from now on
        # dup_mmap copies its page tables), then the folio is allocated and charged.
        S.vma[S.t[tid, T_VMA], V_ANON_VMA] = 1
        mem_cgroup_charge(S, tid, 1, 0, SW_ANON_CHARGED)
        return True

    if pc == SW_ANON_CHARGED:
        p = fault_folio(S, tid)
        if not S.t[tid, T_C_OK]:
            S.t[tid, T_PC] = F_END               # VM_FAULT_OOM: the access faults again
            return True
        if (_pte(S, tid) & PTE_PRESENT) or (S.pg[p, P_FLAGS] & PG_PRESENT):
            uncharge(S, 1)                       # !pte_none under the PTE lock: release
            S.t[tid, T_PC] = F_END
            return True
        S.pg[p, P_FLAGS] = PG_PRESENT | PG_UPTODATE | PG_ANON | PG_DIRTY
        S.vma[S.t[tid, T_VMA], V_PTE0 + S.t[tid, T_F_PAGE]] = PTE_PRESENT | PTE_YOUNG
        cost = S.k[K_FOLIO_ALLOC] + S.k[K_ZERO_FILL] + S.k[K_CHARGE] + S.k[K_PTE_INSTALL]
        return _add_lru_then(S, tid, p, cost, F_END)

    # -- do_swap_page -----------------------------------------------------------------------
    if pc == SW_SWAP:
        p = fault_folio(S, tid)
        fl = S.pg[p, P_FLAGS]
        if fl & PG_SWAPCACHE:
            S.pg[p, P_REFS] += 1                 # swap_cache_get_folio: a reference
            S.t[tid, T_PC] = SW_LOCK
            return True
        if S.k[K_SWAP_DEV] == SWAP_ZRAM:
            # alloc_swap_folio charges the new folio first (mem_cgroup_swapin_charge_folio).
            mem_cgroup_charge(S, tid, 1, 0, SW_SWAP_CHARGED)
            return True
        # swapin_readahead -> swap_cluster_readahead: the aligned window around the entry.
        S.g[G_COUNTERS + PGMAJFAULT] += 1
        S.t[tid, T_F_RET] |= VM_FAULT_MAJOR
        ra = S.k[K_SWAP_RA]
        i = S.t[tid, T_F_PAGE]
        start = i - i % ra
        S.t[tid, T_RA_NEXT] = start
        S.t[tid, T_RA_END] = min(start + ra, S.file[S.t[tid, T_FILE], FL_PAGES])
        S.t[tid, T_RA_RUN_N] = 0
        S.t[tid, T_RA_COST] = 0
        S.t[tid, T_PC] = SW_RA_LOOP
        return True

    if pc == SW_SWAP_CHARGED:
        p = fault_folio(S, tid)
        if not S.t[tid, T_C_OK]:
            S.t[tid, T_PC] = F_END               # no folio: VM_FAULT_OOM, the access faults again
            return True
        fl = S.pg[p, P_FLAGS]
        if (_pte(S, tid) & PTE_PRESENT) or not (fl & (PG_SWAPPED | PG_SWAPCACHE)):
            uncharge(S, 1)                       # the entry is gone: mapped meanwhile
            S.t[tid, T_PC] = F_END
            return True
        S.g[G_COUNTERS + PGMAJFAULT] += 1
        S.t[tid, T_F_RET] |= VM_FAULT_MAJOR
        if fl & PG_SWAPCACHE:
            # swapin_folio: __swap_cache_prepare_and_add found another thread's folio for
            # the entry; ours is put, theirs is returned with a reference.
            uncharge(S, 1)
            S.g[G_COUNTERS + SWAPCACHE_BUSY] += 1
            S.pg[p, P_REFS] += 1
            S.t[tid, T_PC] = SW_LOCK
            return True
        # Ours goes into the swap cache, locked and not uptodate, and on the LRU; then
        # swap_read_folio decompresses it synchronously on this CPU.
        S.pg[p, P_FLAGS] = (fl | PG_SWAPCACHE | PG_PRESENT | PG_LOCKED | PG_ANON) \
            & ~PG_UPTODATE
        return _add_lru_then(S, tid, p, S.k[K_FOLIO_ALLOC] + S.k[K_CHARGE]
                             + S.k[K_ZRAM_DECOMP], SW_ZRAM_READ_DONE)

    if pc == SW_ZRAM_READ_DONE:
        p = fault_folio(S, tid)
        S.pg[p, P_FLAGS] |= PG_UPTODATE          # zram_read_page done: folio_end_read
        S.g[G_COUNTERS + PSWPIN] += 1
        folio_unlock(S, p)                       # wakes readers waiting in the swap cache
        S.pg[p, P_REFS] += 1
        S.t[tid, T_PC] = SW_LOCK
        return True

    if pc == SW_RA_LOOP:
        base = S.t[tid, T_FILE] * S.k[K_FILE_PAGES]
        while S.t[tid, T_RA_NEXT] < S.t[tid, T_RA_END]:
            q = base + S.t[tid, T_RA_NEXT]
            fl = S.pg[q, P_FLAGS]
            if (fl & PG_SWAPPED) and not (fl & PG_PRESENT):
                # __read_swap_cache_async: a new folio, charged, then into the swap cache.
                mem_cgroup_charge(S, tid, 1, 0, SW_RA_CHARGED)
                return True
            if S.t[tid, T_RA_RUN_N] > 0:
                _submit_run(S, tid, base)
            S.t[tid, T_RA_NEXT] += 1
        if S.t[tid, T_RA_RUN_N] > 0:
            _submit_run(S, tid, base)
        cost = S.t[tid, T_RA_COST]
        S.t[tid, T_RA_COST] = 0
        return spend(S, tid, cost, SW_RA_DONE)

    if pc == SW_RA_CHARGED:
        base = S.t[tid, T_FILE] * S.k[K_FILE_PAGES]
        i = S.t[tid, T_RA_NEXT]
        q = base + i
        if not S.t[tid, T_C_OK]:
            S.t[tid, T_RA_END] = i               # allocation failed: stop the window here
            S.t[tid, T_PC] = SW_RA_LOOP
            return True
        fl = S.pg[q, P_FLAGS]
        if not (fl & PG_SWAPPED) or (fl & PG_PRESENT):
            uncharge(S, 1)                       # raced: someone else brought it in
            if S.t[tid, T_RA_RUN_N] > 0:
                _submit_run(S, tid, base)
            S.t[tid, T_RA_NEXT] = i + 1
            S.t[tid, T_PC] = SW_RA_LOOP
            return True
        S.pg[q, P_FLAGS] = (fl | PG_PRESENT | PG_LOCKED | PG_SWAPCACHE | PG_ANON) \
            & ~(PG_UPTODATE | PG_DIRTY)
        if S.t[tid, T_RA_RUN_N] == 0:
            S.t[tid, T_RA_RUN_START] = i
        S.t[tid, T_RA_RUN_N] += 1
        S.t[tid, T_RA_NEXT] = i + 1
        S.t[tid, T_RA_COST] += S.k[K_FOLIO_ALLOC] + S.k[K_CHARGE]
        S.g[G_COUNTERS + PSWPIN] += 1
        if folio_add_lru(S, tid, q, False):
            call(S, tid, LR_ADD_DRAIN, SW_RA_LOOP)
            return True
        S.t[tid, T_PC] = SW_RA_LOOP
        return True

    if pc == SW_RA_DONE:
        p = fault_folio(S, tid)
        if (_pte(S, tid) & PTE_PRESENT) or not (S.pg[p, P_FLAGS] & PG_SWAPCACHE):
            S.t[tid, T_PC] = F_END               # mapped meanwhile, or the read failed
            return True
        S.pg[p, P_REFS] += 1
        S.t[tid, T_PC] = SW_LOCK
        return True

    if pc == SW_LOCK:
        p = fault_folio(S, tid)
        if S.k[K_POLICY] == POL_VMA_RETRY_UPTODATE and (S.pg[p, P_FLAGS] & PG_UPTODATE):
            # Patch 4: the folio is uptodate, only its lock is busy: wait holding the lock.
            S.t[tid, T_F_FLAGS] &= ~FAULT_FLAG_ALLOW_RETRY
        if folio_trylock(S, p):
            S.t[tid, T_PC] = SW_LOCKED
            return True
        fl = S.t[tid, T_F_FLAGS]
        first_try = (fl & FAULT_FLAG_ALLOW_RETRY) and not (fl & FAULT_FLAG_TRIED)
        hold = S.k[K_POLICY] == POL_HOLD_VMA_IO and S.t[tid, T_F_LOCK] == LOCK_VMA
        if first_try and not hold:
            # __folio_lock_or_retry: release_fault_lock, folio_wait_locked, RETRY.
            release_fault_lock(S, tid)
            S.t[tid, T_F_FPIN] = 1
            return folio_wait_locked(S, tid, p, SW_WAITED)
        return proceed(S, tid, folio_lock(S, tid, p, SW_LOCKED), SW_LOCKED)

    if pc == SW_WAITED:
        S.pg[fault_folio(S, tid), P_REFS] -= 1           # out_release: folio_put
        # Patch 2: a folio_lock_or_retry retry of a first try under the VMA lock sets
        # retry_by_vma_lock (the drop above happened only on a first try).
        fault_return_retry(S, tid, True)
        return True

    if pc == SW_LOCKED:
        p = fault_folio(S, tid)
        S.pg[p, P_REFS] -= 1
        if _pte(S, tid) & PTE_PRESENT:
            # !pte_same: another thread mapped it first (out_nomap).
            folio_unlock(S, p)
            S.t[tid, T_PC] = F_END
            return True
        S.vma[S.t[tid, T_VMA], V_PTE0 + S.t[tid, T_F_PAGE]] = PTE_PRESENT | PTE_YOUNG
        if S.k[K_SWAP_DEV] == SWAP_ZRAM or mem_cgroup_swap_full(S):
            # should_try_to_free_swap -> folio_free_swap: leave the swap cache, free the
            # slot (done after mapping, so racing faults still meet the folio there).
            S.pg[p, P_FLAGS] &= ~PG_SWAPCACHE
            S.pg[p, P_FLAGS] |= PG_DIRTY
            swap_free_entry(S, p)
        folio_unlock(S, p)
        return spend(S, tid, S.k[K_PTE_INSTALL], F_END)

    raise RuntimeError("swap: unknown program counter")


@njit(cache=True)
def _submit_run(S, tid, base):
    """swap_read_folio for the run of new swap-cache folios (one plugged bio)."""
    submit_read(S, base + S.t[tid, T_RA_RUN_START], S.t[tid, T_RA_RUN_N], tid)
    S.t[tid, T_RA_COST] += S.k[K_RA_SUBMIT]
    S.t[tid, T_RA_RUN_N] = 0
