"""The page-fault path, by policy (docs/model.md): the arch handler's lock choice and
retry rules, and file read faults. Faults on an anonymous object go from F_HANDLE to
core/swap.py (do_anonymous_page, do_swap_page) and come back through F_END or F_OUT_RETRY.

Steps and kernel functions they mirror:

- F_LOCK_VMA   arch/x86/mm/fault.c do_user_addr_fault: `lock_vma_under_rcu`; on failure
               VMA_LOCK_ABORT and the mmap_lock path.
- F_HANDLE     mm/memory.c do_read_fault: `do_fault_around` (filemap_map_pages) first; if
               the faulting page got mapped, done (VM_FAULT_NOPAGE).
- F_FILEMAP    mm/filemap.c filemap_fault: a page-cache hit not on a TRIED attempt runs
               `do_async_mmap_readahead` (a hit against mmap_miss; drops the lock on
               PG_readahead); a miss counts PGMAJFAULT, RETRY_IO_MISS if FAULT_FLAG_TRIED
               (vmstat_count.patch) and runs `do_sync_mmap_readahead`: mmap_miss + 1, and
               unless the file now misses more than MMAP_LOTSAMISS, the lock is dropped on a
               first try (`maybe_unlock_mmap_for_io`) for the read-around.
- F_GET_FOLIO  `__filemap_get_folio(FGP_CREAT|FGP_FOR_MMAP)` when readahead did not bring
               the page (full reclaim allowed: not __GFP_NORETRY).
- F_FOLIO_LOCK `lock_folio_maybe_drop_mmap`: trylock, else drop the lock (first try) and
               sleep on the folio.
- F_LOCKED     not uptodate: page_not_uptodate, read it once (`filemap_read_folio`), then
               `out_retry` if the lock was dropped (no VM_FAULT_RETRY_VMA); uptodate and the
               lock was dropped: `out_retry` (RETRY_MMAP_DROP, VM_FAULT_RETRY, plus
               VM_FAULT_MAJOR after a miss, plus patch 1's VM_FAULT_RETRY_VMA under the VMA
               lock); otherwise `finish_fault` installs the PTE.
- F_OUT_RETRY  the arch handler (for file and swap faults alike): VMA_LOCK_RETRY,
               FAULT_FLAG_TRIED only if MAJOR, then by
               VM_FAULT_RETRY_VMA back to the VMA lock, else on to `lock_mm_and_find_vma`
               (policies differ only in where they set that bit); under mmap_lock
               every retry sets TRIED, and a TRIED attempt never drops the lock, so its
               re-read, reclaim and penalty sleep all happen holding mmap_lock.

Policies: `baseline` (v6.18), `vma_retry` (patches 1-3: VM_FAULT_RETRY_VMA, the retry after
an I/O wait goes back to the VMA lock), `vma_retry_uptodate` (patches 4-5: an uptodate
folio clears FAULT_FLAG_ALLOW_RETRY before the folio-lock wait), `retry_hard` (every retry
back to the VMA lock except the hard cases, which file read faults never hit),
`hold_vma_io` (never drop the VMA lock for I/O), `mmap_lock_only` (before 6.4),
`hold_file_vma_io` (the review's "approach 3": file faults keep the VMA lock across I/O,
anonymous ones drop it and retry under it as `vma_retry` does).
"""

from numba import njit

from core.blockdev import submit_read
from core.hist import hist_add
from core.memcg import exit_to_user_mode, mem_cgroup_charge, uncharge
from core.metrics import (
    PAGES_READ,
    PGFAULT,
    PGMAJFAULT,
    RETRY_IO_MISS,
    RETRY_MMAP_DROP,
    VMA_LOCK_ABORT,
    VMA_LOCK_RETRY,
    VMA_LOCK_SUCCESS,
)
from core.mm import pte_alloc_done, pte_alloc_pages
from core.pagecache import (
    filemap_map_pages,
    finish_fault,
    folio_lock,
    folio_trylock,
    folio_unlock,
    folio_wait_handoff,
)
from core.readahead import filemap_add_folio, page_cache_async_ra, page_cache_sync_ra
from core.rwsem import down_read, up_read
from core.sched import call, proceed, run_for
from core.state import (
    F_END,
    F_FILEMAP,
    F_FOLIO_LOCK,
    F_GET_FOLIO,
    F_HANDLE,
    F_LOCK_MMAP,
    F_LOCK_VMA,
    F_LOCKED,
    F_MMAP_LOCKED,
    F_NEW_FOLIO_CHARGED,
    F_OUT_RETRY,
    F_PTE_CHARGED,
    F_READ_FOLIO_DONE,
    F_RETURN_TO_USER,
    FAULT_FLAG_ALLOW_RETRY,
    FAULT_FLAG_TRIED,
    FAULT_FLAG_VMA_LOCK,
    FL_ANON,
    FL_MMAP_MISS,
    G_BG_LAT_HIST,
    G_COUNTERS,
    G_LAT_HIST,
    G_NOW,
    G_RETRY_HIST,
    K_FAULT_ENTRY,
    K_FILE_PAGES,
    K_POLICY,
    K_SPARSE,
    K_ZERO_FILL,
    LOCK_MMAP,
    LOCK_NONE,
    LOCK_VMA,
    LR_ADD_DRAIN,
    MMAP_LOTSAMISS,
    P_FLAGS,
    P_HEAD,
    P_NR,
    P_REFS,
    PG_LOCKED,
    PG_PRESENT,
    PG_READAHEAD,
    PG_UPTODATE,
    POL_HOLD_FILE_VMA_IO,
    POL_HOLD_VMA_IO,
    POL_MMAP_LOCK_ONLY,
    POL_RETRY_HARD,
    POL_VMA_RETRY,
    POL_VMA_RETRY_UPTODATE,
    ROLE_BG,
    SW_FAULT,
    T_C_OK,
    T_F_DROP_NS,
    T_F_FLAGS,
    T_F_FPIN,
    T_F_LOCK,
    T_F_PAGE,
    T_F_RET,
    T_F_START,
    T_FILE,
    T_PC,
    T_ROLE,
    T_VMA,
    VM_FAULT_MAJOR,
    VM_FAULT_RETRY,
    VM_FAULT_RETRY_VMA,
)
from core.vma import lock_vma_under_rcu, vma_end_read


@njit(cache=True)
def fault_begin(S, tid, index, ret):
    """Exception entry for a fault on page `index` of the thread's mapping (PGFAULT).
    The caller charges the entry cost in the burst that precedes F_LOCK_VMA."""
    S.g[G_COUNTERS + PGFAULT] += 1
    S.t[tid, T_F_PAGE] = index
    S.t[tid, T_F_FLAGS] = FAULT_FLAG_ALLOW_RETRY
    S.t[tid, T_F_LOCK] = LOCK_NONE
    S.t[tid, T_F_START] = S.g[G_NOW]
    call(S, tid, F_LOCK_VMA, ret)
    return S.k[K_FAULT_ENTRY]


@njit(cache=True)
def release_fault_lock(S, tid):
    """release_fault_lock: vma_end_read or mmap_read_unlock, whichever the fault holds."""
    lk = S.t[tid, T_F_LOCK]
    if lk == LOCK_VMA:
        vma_end_read(S, S.t[tid, T_VMA])
    elif lk == LOCK_MMAP:
        up_read(S)
    S.t[tid, T_F_LOCK] = LOCK_NONE


@njit(cache=True)
def maybe_unlock_mmap_for_io(S, tid):
    """Drop the fault lock for I/O only on a first try (ALLOW_RETRY without TRIED);
    `hold_vma_io` and `hold_file_vma_io` never drop the VMA lock of a file fault."""
    if S.t[tid, T_F_FPIN]:
        return
    fl = S.t[tid, T_F_FLAGS]
    if not (fl & FAULT_FLAG_ALLOW_RETRY) or (fl & FAULT_FLAG_TRIED):
        return
    policy = S.k[K_POLICY]
    if (policy == POL_HOLD_VMA_IO or policy == POL_HOLD_FILE_VMA_IO) \
            and S.t[tid, T_F_LOCK] == LOCK_VMA:
        return
    release_fault_lock(S, tid)
    S.t[tid, T_F_FPIN] = 1


@njit(cache=True)
def _record_latency(S, tid):
    """Fault latency, entry to return; fork_stall's background threads in a histogram of
    their own, so that fault_latency_* are the foreground's."""
    base = G_BG_LAT_HIST if S.t[tid, T_ROLE] == ROLE_BG else G_LAT_HIST
    hist_add(S, base, S.g[G_NOW] - S.t[tid, T_F_START])


@njit(cache=True)
def fault_folio(S, tid):
    """The folio holding the faulting page (vmf->pgoff of the thread's object): its head
    page, the page itself when it is absent or order 0."""
    return S.pg[S.t[tid, T_FILE] * S.k[K_FILE_PAGES] + S.t[tid, T_F_PAGE], P_HEAD]


@njit(cache=True)
def _put_ref(S, tid):
    p = fault_folio(S, tid)
    if S.pg[p, P_REFS] > 0:
        S.pg[p, P_REFS] -= 1


@njit(cache=True)
def fault_return_retry(S, tid, retry_by_vma_lock):
    """`return ret | VM_FAULT_RETRY | (retry_by_vma_lock ? VM_FAULT_RETRY_VMA : 0)`: the
    end of a first-try attempt that dropped its lock, for filemap_fault and do_swap_page.
    The series' policies set VM_FAULT_RETRY_VMA only where their patches do
    (`retry_by_vma_lock`, and only under the VMA lock); `retry_hard` (the May 2026 draft)
    marks every retry taken under the VMA lock, since file and swap faults never meet its
    hard cases. `hold_file_vma_io` ("approach 3" of the review) retries anonymous faults
    under the VMA lock as the series does (its file faults never drop the lock). The arch
    step F_OUT_RETRY routes on the bit alone."""
    ret = VM_FAULT_RETRY
    if S.t[tid, T_F_FLAGS] & FAULT_FLAG_VMA_LOCK:
        policy = S.k[K_POLICY]
        if policy == POL_RETRY_HARD or (
                retry_by_vma_lock
                and (policy == POL_VMA_RETRY or policy == POL_VMA_RETRY_UPTODATE
                     or policy == POL_HOLD_FILE_VMA_IO)):
            ret |= VM_FAULT_RETRY_VMA
    S.t[tid, T_F_RET] |= ret
    S.t[tid, T_PC] = F_OUT_RETRY


@njit(cache=True)
def filemap_out_retry(S, tid, put, retry_by_vma_lock):
    """filemap_fault's `out_retry` label (v7.0-rc3): vmstat_count.patch counts
    RETRY_MMAP_DROP here, on every path that reaches it (the uptodate `if (fpin)` exit,
    page_not_uptodate after its re-read, an IS_ERR folio after the drop); the folio
    reference is put unless the folio is an error (`put` False)."""
    S.g[G_COUNTERS + RETRY_MMAP_DROP] += 1
    S.t[tid, T_F_DROP_NS] = S.g[G_NOW]
    if put:
        _put_ref(S, tid)
    fault_return_retry(S, tid, retry_by_vma_lock)


@njit(cache=True)
def do_sync_mmap_readahead(S, tid):
    """filemap_fault's miss (v7.0-rc3 mm/filemap.c): mmap_miss counts the miss (saturating
    at MMAP_LOTSAMISS * 10); a file that misses far more than it hits (mmap_miss above
    MMAP_LOTSAMISS) gets no read-around and keeps its lock: __filemap_get_folio then adds
    one folio under the lock, and page_not_uptodate drops the lock and reads it alone.
    Otherwise drop the lock (first try) and read around the fault. The mappings here are
    neither VM_SEQ_READ nor VM_RAND_READ, nor VM_HUGEPAGE."""
    f = S.t[tid, T_FILE]
    miss = S.file[f, FL_MMAP_MISS]
    if miss < MMAP_LOTSAMISS * 10:
        miss += 1
        S.file[f, FL_MMAP_MISS] = miss
    if miss > MMAP_LOTSAMISS:
        S.t[tid, T_PC] = F_GET_FOLIO
        return True
    maybe_unlock_mmap_for_io(S, tid)
    page_cache_sync_ra(S, tid, S.t[tid, T_F_PAGE], F_GET_FOLIO)
    return True


@njit(cache=True)
def do_async_mmap_readahead(S, tid, p):
    """filemap_fault's page-cache hit on a first try (v7.0-rc3): an unlocked folio counts as
    a hit against mmap_miss (a locked one is likely another fault's, not counted twice);
    a PG_readahead folio drops the lock and starts the next window."""
    f = S.t[tid, T_FILE]
    if not (S.pg[p, P_FLAGS] & PG_LOCKED) and S.file[f, FL_MMAP_MISS] > 0:
        S.file[f, FL_MMAP_MISS] -= 1
    if S.pg[p, P_FLAGS] & PG_READAHEAD:
        maybe_unlock_mmap_for_io(S, tid)
        page_cache_async_ra(S, tid, S.t[tid, T_F_PAGE], F_FOLIO_LOCK)
        return True
    S.t[tid, T_PC] = F_FOLIO_LOCK
    return True


@njit(cache=True, _nrt=False)
def step(S, tid, pc):
    policy = S.k[K_POLICY]

    if pc == F_LOCK_VMA:
        # Each attempt gets the arch handler's flags afresh: patch 4's clearing of
        # FAULT_FLAG_ALLOW_RETRY lasts for one handle_mm_fault call only.
        S.t[tid, T_F_FLAGS] |= FAULT_FLAG_ALLOW_RETRY
        S.t[tid, T_F_FPIN] = 0
        S.t[tid, T_F_RET] = 0
        if policy == POL_MMAP_LOCK_ONLY:
            S.t[tid, T_PC] = F_LOCK_MMAP
            return True
        if lock_vma_under_rcu(S, S.t[tid, T_VMA]):
            S.t[tid, T_F_LOCK] = LOCK_VMA
            S.t[tid, T_F_FLAGS] |= FAULT_FLAG_VMA_LOCK
            S.t[tid, T_PC] = F_HANDLE
            return True
        S.g[G_COUNTERS + VMA_LOCK_ABORT] += 1
        S.t[tid, T_PC] = F_LOCK_MMAP
        return True

    if pc == F_LOCK_MMAP:
        # lock_mm_and_find_vma
        S.t[tid, T_F_FLAGS] &= ~FAULT_FLAG_VMA_LOCK
        S.t[tid, T_F_FLAGS] |= FAULT_FLAG_ALLOW_RETRY
        S.t[tid, T_F_FPIN] = 0
        S.t[tid, T_F_RET] = 0
        return proceed(S, tid, down_read(S, tid, F_MMAP_LOCKED), F_MMAP_LOCKED)

    if pc == F_MMAP_LOCKED:
        S.t[tid, T_F_LOCK] = LOCK_MMAP
        S.t[tid, T_PC] = F_HANDLE
        return True

    if pc == F_HANDLE:
        if S.t[tid, T_F_DROP_NS] > 0:
            # A retry after out_retry: how long the uptodate folio waited for it (model
            # diagnostic: RETRY_IO_MISS is this delay outliving the folio, docs/studies/convoy.md).
            hist_add(S, G_RETRY_HIST, S.g[G_NOW] - S.t[tid, T_F_DROP_NS])
            S.t[tid, T_F_DROP_NS] = 0
        nr = pte_alloc_pages(S, S.t[tid, T_VMA], S.t[tid, T_F_PAGE])
        if nr:
            # The range's page tables first, charged to the memcg under the fault's lock
            # (reclaim and the in-kernel memory.high handler may run right here).
            mem_cgroup_charge(S, tid, nr, 0, F_PTE_CHARGED)
            return True
        if S.file[S.t[tid, T_FILE], FL_ANON]:
            # handle_pte_fault on an anonymous VMA: do_anonymous_page or do_swap_page.
            S.t[tid, T_PC] = SW_FAULT
            return True
        cost, mapped = filemap_map_pages(S, S.t[tid, T_VMA], S.t[tid, T_FILE], S.t[tid, T_F_PAGE])
        run_for(S, tid, cost, F_END if mapped else F_FILEMAP)
        return False

    if pc == F_PTE_CHARGED:
        if not S.t[tid, T_C_OK]:
            S.t[tid, T_PC] = F_END               # pte_alloc failed: VM_FAULT_OOM
            return True
        pte_alloc_done(S, S.t[tid, T_VMA], S.t[tid, T_F_PAGE])
        S.t[tid, T_PC] = F_HANDLE
        return True

    if pc == F_FILEMAP:
        p = fault_folio(S, tid)
        fl = S.pg[p, P_FLAGS]
        if fl & PG_PRESENT:
            S.pg[p, P_REFS] += 1                  # filemap_get_folio holds a reference
            if not (S.t[tid, T_F_FLAGS] & FAULT_FLAG_TRIED):
                return do_async_mmap_readahead(S, tid, p)
            S.t[tid, T_PC] = F_FOLIO_LOCK
            return True
        S.g[G_COUNTERS + PGMAJFAULT] += 1
        if S.t[tid, T_F_FLAGS] & FAULT_FLAG_TRIED:
            S.g[G_COUNTERS + RETRY_IO_MISS] += 1
        S.t[tid, T_F_RET] |= VM_FAULT_MAJOR
        return do_sync_mmap_readahead(S, tid)

    if pc == F_GET_FOLIO:
        p = fault_folio(S, tid)
        if S.pg[p, P_FLAGS] & PG_PRESENT:
            S.pg[p, P_REFS] += 1
            S.t[tid, T_PC] = F_FOLIO_LOCK
            return True
        mem_cgroup_charge(S, tid, 1, 0, F_NEW_FOLIO_CHARGED)
        return True

    if pc == F_NEW_FOLIO_CHARGED:
        p = fault_folio(S, tid)
        if not S.t[tid, T_C_OK]:
            # IS_ERR(folio) from __filemap_get_folio: `if (fpin) goto out_retry;` (a retry
            # that falls back to mmap_lock under the series too: no VM_FAULT_RETRY_VMA);
            # otherwise VM_FAULT_OOM, pagefault_out_of_memory, the access faults again.
            if S.t[tid, T_F_FPIN]:
                filemap_out_retry(S, tid, False, False)
                return True
            S.t[tid, T_PC] = F_END
            return True
        if S.pg[p, P_FLAGS] & PG_PRESENT:
            uncharge(S, 1)
        else:
            # FGP_FOR_MMAP: added locked, then unlocked for lock_folio_maybe_drop_mmap.
            full = filemap_add_folio(S, tid, p, 1, False, True)
            S.pg[p, P_FLAGS] &= ~PG_LOCKED
            if full:
                S.pg[p, P_REFS] += 1
                call(S, tid, LR_ADD_DRAIN, F_FOLIO_LOCK)
                return True
        S.pg[p, P_REFS] += 1
        S.t[tid, T_PC] = F_FOLIO_LOCK
        return True

    if pc == F_FOLIO_LOCK:
        p = fault_folio(S, tid)
        if policy == POL_VMA_RETRY_UPTODATE and (S.pg[p, P_FLAGS] & PG_UPTODATE):
            # Patch 4: only the folio lock is busy (someone installing PTEs); wait for it
            # holding the fault lock instead of dropping and retrying.
            S.t[tid, T_F_FLAGS] &= ~FAULT_FLAG_ALLOW_RETRY
        if folio_trylock(S, p):
            S.t[tid, T_PC] = F_LOCKED
            return True
        maybe_unlock_mmap_for_io(S, tid)
        return proceed(S, tid, folio_lock(S, tid, p, F_LOCKED), F_LOCKED)

    if pc == F_LOCKED:
        p = fault_folio(S, tid)
        if not (S.pg[p, P_FLAGS] & PG_UPTODATE):
            # page_not_uptodate: read it once, synchronously.
            maybe_unlock_mmap_for_io(S, tid)
            S.t[tid, T_F_RET] |= VM_FAULT_MAJOR
            if S.k[K_SPARSE]:
                run_for(S, tid, S.pg[p, P_NR] * S.k[K_ZERO_FILL], F_READ_FOLIO_DONE)
                return False
            # The I/O completion unlocks the folio and hands the lock back to us.
            submit_read(S, p, S.pg[p, P_NR], tid)
            folio_wait_handoff(S, tid, p, F_READ_FOLIO_DONE)
            return False
        if S.t[tid, T_F_FPIN]:
            # `if (fpin) { folio_unlock(folio); goto out_retry; }`: the folio is uptodate
            # but the lock was dropped. Patch 1 sets retry_by_vma_lock here, and only here.
            folio_unlock(S, p)
            filemap_out_retry(S, tid, True, True)
            return True
        cost = finish_fault(S, S.t[tid, T_VMA], S.t[tid, T_FILE], S.t[tid, T_F_PAGE])
        folio_unlock(S, p)
        _put_ref(S, tid)
        run_for(S, tid, cost, F_END)
        return False

    if pc == F_READ_FOLIO_DONE:
        p = fault_folio(S, tid)
        if S.k[K_SPARSE]:
            S.pg[p, P_FLAGS] |= PG_UPTODATE
            S.g[G_COUNTERS + PAGES_READ] += S.pg[p, P_NR]
        if S.t[tid, T_F_FPIN]:
            # page_not_uptodate: `if (fpin) goto out_retry;` right after
            # filemap_read_folio, whose completion unlocked the folio. No
            # retry_by_vma_lock here: under the series this retry takes mmap_lock.
            folio_unlock(S, p)
            filemap_out_retry(S, tid, True, False)
            return True
        # Without a drop the kernel puts the folio and goes to retry_find, which finds it
        # uptodate and locks it again; the model keeps the lock the read handed back.
        S.t[tid, T_PC] = F_LOCKED
        return True

    if pc == F_OUT_RETRY:
        if S.t[tid, T_F_FLAGS] & FAULT_FLAG_VMA_LOCK:
            # do_user_addr_fault after handle_mm_fault under the VMA lock returned
            # VM_FAULT_RETRY: count it, set TRIED if MAJOR, then (patch 1) `if (fault &
            # VM_FAULT_RETRY_VMA) goto retry_vma;`, else on to lock_mmap.
            S.g[G_COUNTERS + VMA_LOCK_RETRY] += 1
            if S.t[tid, T_F_RET] & VM_FAULT_MAJOR:
                S.t[tid, T_F_FLAGS] |= FAULT_FLAG_TRIED
            if S.t[tid, T_F_RET] & VM_FAULT_RETRY_VMA:
                S.t[tid, T_PC] = F_LOCK_VMA
            else:
                S.t[tid, T_PC] = F_LOCK_MMAP
            return True
        S.t[tid, T_F_FLAGS] |= FAULT_FLAG_TRIED
        S.t[tid, T_PC] = F_LOCK_MMAP
        return True

    if pc == F_END:
        if S.t[tid, T_F_LOCK] == LOCK_VMA:
            S.g[G_COUNTERS + VMA_LOCK_SUCCESS] += 1
        release_fault_lock(S, tid)
        _record_latency(S, tid)
        S.t[tid, T_PC] = F_RETURN_TO_USER
        return True

    if pc == F_RETURN_TO_USER:
        exit_to_user_mode(S, tid)
        return True

    raise RuntimeError("fault: unknown program counter")
