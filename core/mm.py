"""mmap and munmap with the kernel's lock sequence (mm/mmap.c, mm/vma.c, mm/memory.c).

mmap: `mmap_write_lock`, `do_mmap` (VMA allocated, linked into the tree and the file's
i_mmap), `mmap_write_unlock`.

munmap (`do_vmi_align_munmap`): `mmap_write_lock`; `vms_gather_munmap_vmas` detaches the
VMA and `vma_start_write`s it, waiting for its per-VMA readers; `mmap_write_downgrade`
(readers queued behind the writer get in); `vms_clear_ptes` under the read lock:
`lru_add_drain`, `unmap_vmas` zapping every present PTE (a young PTE marks its folio
accessed: on the classic LRU a second access activates it through a per-CPU batch that
takes lru_lock), `tlb_finish_mmu` flushing the TLB of every CPU in mm_cpumask and waiting
for their acknowledgements (late from CPUs spinning on lru_lock with interrupts off),
`free_pgtables`; then `mmap_read_unlock`. Each syscall settles memory.high debt on its way
back to user mode.

fork (kernel/fork.c `copy_process` -> `copy_mm` -> `dup_mm` -> mm/mmap.c `dup_mmap`, v7.0-rc3):
the task is copied (`costs.fork_base_ns`), then `mmap_write_lock_killable(oldmm)` and
`for_each_vma` in address order: `vma_start_write_killable(mpnt)` (it waits for the VMA's
fault readers, holding mmap_lock for write), `vm_area_dup`, `anon_vma_fork` and
`copy_page_range`, which copies the PTEs only when `vma_needs_copy` (the VMA has an
anon_vma: a written private mapping; shared and read-only file mappings are refilled by
faults). After the loop `flush_tlb_mm(oldmm)` (the copied PTEs were write-protected) and
`mmap_write_unlock(oldmm)`, whose mm_lock_seq bump ends every VMA write lock. The review
thread's proposal (`policy.fork_lock=cow`) write-locks only `is_cow_mapping()` VMAs.
Of a fork_stall process's thousands of VMAs only a few are modelled (the ones threads
fault); the others are copied in bursts at their average cost (`K_FORK_BULK_NS`), with no
readers to wait for.
"""

from numba import njit

from core.costs import PTRS_PER_PTE
from core.lru import (
    list_add,
    list_del,
    lru_hold_ns,
    spin_lock_irq_lru,
    spin_unlock_irq_lru,
    workingset_age_nonresident,
)
from core.hist import hist_add
from core.memcg import exit_to_user_mode, uncharge
from core.metrics import FORK_NS, FORK_NS_MAX, FORKS, PGACTIVATE
from core.rwsem import down_write, downgrade_write, rwsem_owner_sleeps, up_read, up_write
from core.sched import call, proceed, run_for, smp_call_function_wait, spend
from core.state import (
    C_FB_N,
    FL_PAGES,
    FL_VMA,
    FORK_LOCK_ALL,
    G_COUNTERS,
    G_FORK_HIST,
    G_MM_CPUS,
    G_NOW,
    K_AL_HEAP_VMA,
    K_FILE_PAGES,
    K_FORK_ANON_VMA,
    K_FORK_BASE,
    K_FORK_BULK_NS,
    K_FORK_FILE_VMA,
    K_FORK_PTE,
    K_FORK_RULE,
    K_FORK_VMAS,
    K_FREE_PGTABLES,
    K_LRU,
    K_LRU_ADD_BATCH,
    K_MMAP,
    K_MPROTECT,
    K_MUNMAP_GATHER,
    K_PTE_BATCH,
    K_TLB_BASE,
    K_TLB_PER_CPU,
    K_V_PT0,
    K_ZAP_PTE,
    LIST_ACTIVE,
    LR_ADD_DRAIN,
    LRU_CLASSIC,
    M_ACTIVATE,
    M_ACTIVATE_DONE,
    M_ACTIVATE_LOCKED,
    M_DOWNGRADE,
    M_FORK,
    M_FORK_ACKED,
    M_FORK_COPY,
    M_FORK_DONE,
    M_FORK_LOCK,
    M_FORK_LOCKED,
    M_FORK_TLB,
    M_FORK_VMA,
    M_FORK_WALK,
    M_FREE_PGTABLES,
    M_MMAP,
    M_MMAP_DONE,
    M_MMAP_LOCKED,
    M_MPROTECT,
    M_MPROTECT_DONE,
    M_MPROTECT_LOCKED,
    M_MPROTECT_VMA,
    M_MUNMAP,
    M_MUNMAP_DONE,
    M_MUNMAP_LOCKED,
    M_RETURN_TO_USER,
    M_TLB_ACKED,
    M_TLB_FLUSH,
    M_VMA_START_WRITE,
    M_ZAP,
    M_ZAP_PTES,
    P_FLAGS,
    P_HEAD,
    P_NR,
    PG_ACTIVE,
    PG_LRU,
    PG_REFERENCED,
    PTE_PRESENT,
    PTE_YOUNG,
    T_CORE,
    T_FK_POS,
    T_FK_START,
    T_FK_V,
    T_M_COUNT,
    T_M_LARGE,
    T_PC,
    T_VMA,
    T_W_VMA2,
    V_ANON_VMA,
    V_ATTACHED,
    V_FILE,
    V_FLAGS,
    V_POS,
    V_PT_N,
    V_PTE0,
    V_READERS,
    VM_MAYWRITE,
    VM_SHARED,
)
from core.vma import vma_start_write, vma_write_unlock


@njit(cache=True)
def pte_alloc_pages(S, v, index):
    """Page-table pages a fault at `index` of VMA v must allocate first (__pte_alloc, or
    do_fault_around's prealloc_pte; v7.0 GFP_PGTABLE_USER is __GFP_ACCOUNT, so each is
    charged to the memcg): 0 when the PTE table of its 2 MB range exists, else 1, plus 1
    for the PMD table when the VMA has no PTE table yet (each file mapping here lies in a
    PUD range of its own)."""
    if S.vma[v, S.k[K_V_PT0] + index // PTRS_PER_PTE]:
        return 0
    return 2 if S.vma[v, V_PT_N] == 0 else 1


@njit(cache=True)
def pte_alloc_done(S, v, index):
    """The charged tables are in place (pmd_populate)."""
    S.vma[v, S.k[K_V_PT0] + index // PTRS_PER_PTE] = 1
    S.vma[v, V_PT_N] += 1


@njit(cache=True)
def free_pgtables(S, v):
    """free_pgtables at munmap: every PTE table of the VMA and its PMD table are freed and
    uncharged. Returns the pages freed."""
    n = S.vma[v, V_PT_N]
    if n == 0:
        return 0
    first = S.k[K_V_PT0]
    for i in range(first, S.vma.shape[1]):
        S.vma[v, i] = 0
    S.vma[v, V_PT_N] = 0
    uncharge(S, n + 1)
    return n + 1


@njit(cache=True)
def zap_pte_range(S, v):
    """Clear every present PTE of VMA v (zap_present_ptes: the PTEs of one folio in one
    batch, folio_pte_batch). Returns (cost_ns, small folios to activate, large folios to
    activate): a young batch marks its folio accessed once; on the classic LRU a second
    access activates it through the per-CPU activate batch, which a large folio drains at
    once (folio_may_be_lru_cached)."""
    n = S.k[K_FILE_PAGES]
    base = S.vma[v, V_FILE] * n
    classic = S.k[K_LRU] == LRU_CLASSIC
    cost = 0
    activate = 0
    large = 0
    pages = 0
    i = 0
    while i < n:
        if not (S.vma[v, V_PTE0 + i] & PTE_PRESENT):
            i += 1
            continue
        p = S.pg[base + i, P_HEAD]
        end = p - base + S.pg[p, P_NR]
        young = False
        j = i
        while j < end and (S.vma[v, V_PTE0 + j] & PTE_PRESENT):
            young = young or (S.vma[v, V_PTE0 + j] & PTE_YOUNG) != 0
            S.vma[v, V_PTE0 + j] = 0
            j += 1
        if j - i == PTRS_PER_PTE:
            cost += S.k[K_ZAP_PTE]                 # zap_huge_pmd: one entry
        else:
            cost += S.k[K_ZAP_PTE] + (j - i - 1) * S.k[K_PTE_BATCH]
        i = j
        # folio_mark_accessed (vma_has_recency). MGLRU only bumps the refs (no lock).
        if young and classic:
            if (S.pg[p, P_FLAGS] & PG_REFERENCED) and (S.pg[p, P_FLAGS] & PG_LRU) \
                    and not (S.pg[p, P_FLAGS] & PG_ACTIVE):
                S.pg[p, P_FLAGS] |= PG_ACTIVE
                S.pg[p, P_FLAGS] &= ~PG_REFERENCED
                list_del(S, p)
                list_add(S, LIST_ACTIVE, p)
                workingset_age_nonresident(S, S.pg[p, P_NR])   # workingset_activation
                pages += S.pg[p, P_NR]
                if S.pg[p, P_NR] > 1:
                    large += 1
                else:
                    activate += 1
            else:
                S.pg[p, P_FLAGS] |= PG_REFERENCED
    S.g[G_COUNTERS + PGACTIVATE] += pages    # lru_activate (folio_activate)
    return cost, activate, large


@njit(cache=True)
def is_cow_mapping(flags):
    """include/linux/mm.h: private and may be written, so it can hold anonymous pages."""
    return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE


@njit(cache=True)
def dup_mmap_locks(S, v):
    """Whether dup_mmap write-locks VMA v: always on v7.0; only a COW mapping under the
    review thread's rule (David Hildenbrand's is_cow_mapping() form of it)."""
    return S.k[K_FORK_RULE] == FORK_LOCK_ALL or is_cow_mapping(S.vma[v, V_FLAGS])


@njit(cache=True)
def copy_vma_ns(S, v):
    """vm_area_dup, anon_vma_fork and copy_page_range of one modelled VMA: its page tables
    are copied only if it has an anon_vma (vma_needs_copy), one PTE at a time."""
    if not S.vma[v, V_ANON_VMA]:
        return S.k[K_FORK_FILE_VMA]
    ptes = 0
    for i in range(S.file[S.vma[v, V_FILE], FL_PAGES]):
        if S.vma[v, V_PTE0 + i] & PTE_PRESENT:
            ptes += 1
    return S.k[K_FORK_ANON_VMA] + ptes * S.k[K_FORK_PTE]


@njit(cache=True)
def next_vma_at(S, pos):
    """The modelled VMA in the tree (attached) first in address order at or after `pos`,
    -1 if none: the vma iterator's next stop among the VMAs threads fault."""
    best = -1
    for v in range(S.vma.shape[0]):
        if S.vma[v, V_ATTACHED] and S.vma[v, V_POS] >= pos \
                and (best < 0 or S.vma[v, V_POS] < S.vma[best, V_POS]):
            best = v
    return best


@njit(cache=True)
def _fork_returns(S, tid):
    lat = S.g[G_NOW] - S.t[tid, T_FK_START]
    S.g[G_COUNTERS + FORKS] += 1
    S.g[G_COUNTERS + FORK_NS] += lat
    S.g[G_COUNTERS + FORK_NS_MAX] = max(S.g[G_COUNTERS + FORK_NS_MAX], lat)
    hist_add(S, G_FORK_HIST, lat)


@njit(cache=True)
def step(S, tid, pc):
    v = S.t[tid, T_VMA]

    # -- mmap ------------------------------------------------------------------------------
    if pc == M_MMAP:
        return proceed(S, tid, down_write(S, tid, M_MMAP_LOCKED), M_MMAP_LOCKED)

    if pc == M_MMAP_LOCKED:
        run_for(S, tid, S.k[K_MMAP], M_MMAP_DONE)
        return False

    if pc == M_MMAP_DONE:
        v = S.t[tid, T_W_VMA2]                # the thread's own VMA slot (one mapping each)
        S.t[tid, T_VMA] = v
        S.vma[v, V_ATTACHED] = 1
        S.file[S.vma[v, V_FILE], FL_VMA] = v
        up_write(S, tid)
        S.t[tid, T_PC] = M_RETURN_TO_USER
        return True

    # -- munmap ----------------------------------------------------------------------------
    if pc == M_MUNMAP:
        return proceed(S, tid, down_write(S, tid, M_MUNMAP_LOCKED), M_MUNMAP_LOCKED)

    if pc == M_MUNMAP_LOCKED:
        run_for(S, tid, S.k[K_MUNMAP_GATHER], M_VMA_START_WRITE)
        return False

    if pc == M_VMA_START_WRITE:
        if S.vma[v, V_READERS] > 0:
            rwsem_owner_sleeps(S)                 # about to sleep holding mmap_lock
        return proceed(S, tid, vma_start_write(S, tid, v, M_DOWNGRADE), M_DOWNGRADE)

    if pc == M_DOWNGRADE:
        S.vma[v, V_ATTACHED] = 0                 # detached: lock_vma_under_rcu fails from now
        vma_write_unlock(S, v)
        downgrade_write(S, tid)
        S.t[tid, T_PC] = M_ZAP
        return True

    if pc == M_ZAP:
        # lru_add_drain(): this CPU's pending lru_add batch goes to the lists first.
        if S.core[S.t[tid, T_CORE], C_FB_N] > 0:
            call(S, tid, LR_ADD_DRAIN, M_ZAP)
            return True
        S.t[tid, T_PC] = M_ZAP_PTES
        return True

    if pc == M_ZAP_PTES:
        cost, activate, large = zap_pte_range(S, v)
        S.t[tid, T_M_COUNT] = activate
        S.t[tid, T_M_LARGE] = large
        run_for(S, tid, cost, M_ACTIVATE)
        return False

    if pc == M_ACTIVATE:
        # folio_activate batches: one lru_lock hold per full per-CPU batch, and one per
        # large folio (classic LRU).
        if S.t[tid, T_M_COUNT] <= 0 and S.t[tid, T_M_LARGE] <= 0:
            S.t[tid, T_PC] = M_TLB_FLUSH
            return True
        return proceed(S, tid, spin_lock_irq_lru(S, tid, M_ACTIVATE_LOCKED), M_ACTIVATE_LOCKED)

    if pc == M_ACTIVATE_LOCKED:
        if S.t[tid, T_M_LARGE] > 0:
            S.t[tid, T_M_LARGE] -= 1
            nb = 1
        else:
            nb = min(S.t[tid, T_M_COUNT], S.k[K_LRU_ADD_BATCH])
            S.t[tid, T_M_COUNT] -= nb
        run_for(S, tid, lru_hold_ns(S, nb), M_ACTIVATE_DONE)
        return False

    if pc == M_ACTIVATE_DONE:
        spin_unlock_irq_lru(S, tid)
        S.t[tid, T_PC] = M_ACTIVATE
        return True

    if pc == M_TLB_FLUSH:
        cost = S.k[K_TLB_BASE] + S.g[G_MM_CPUS] * S.k[K_TLB_PER_CPU]
        run_for(S, tid, cost, M_TLB_ACKED)
        return False

    if pc == M_TLB_ACKED:
        return proceed(S, tid, smp_call_function_wait(S, tid, M_FREE_PGTABLES), M_FREE_PGTABLES)

    if pc == M_FREE_PGTABLES:
        free_pgtables(S, v)
        run_for(S, tid, S.k[K_FREE_PGTABLES], M_MUNMAP_DONE)
        return False

    if pc == M_MUNMAP_DONE:
        S.file[S.vma[v, V_FILE], FL_VMA] = -1        # unlink_file_vma: out of i_mmap
        S.t[tid, T_VMA] = -1
        up_read(S)
        S.t[tid, T_PC] = M_RETURN_TO_USER
        return True

    # -- mprotect (mm/mprotect.c do_mprotect_pkey -> mprotect_fixup) -------------------------
    if pc == M_MPROTECT:
        return proceed(S, tid, down_write(S, tid, M_MPROTECT_LOCKED), M_MPROTECT_LOCKED)

    if pc == M_MPROTECT_LOCKED:
        # vma_modify_flags -> vma_start_write on the target: waits for its fault readers.
        if S.vma[S.k[K_AL_HEAP_VMA], V_READERS] > 0:
            rwsem_owner_sleeps(S)
        taken = vma_start_write(S, tid, S.k[K_AL_HEAP_VMA], M_MPROTECT_VMA)
        return proceed(S, tid, taken, M_MPROTECT_VMA)

    if pc == M_MPROTECT_VMA:
        run_for(S, tid, S.k[K_MPROTECT], M_MPROTECT_DONE)
        return False

    if pc == M_MPROTECT_DONE:
        vma_write_unlock(S, S.k[K_AL_HEAP_VMA])
        up_write(S, tid)
        S.t[tid, T_PC] = M_RETURN_TO_USER
        return True

    if pc == M_RETURN_TO_USER:
        exit_to_user_mode(S, tid)
        return True

    raise RuntimeError("mm: unknown program counter")


@njit(cache=True)
def fork_step(S, tid, pc):
    """fork (kernel/fork.c copy_process, mm/mmap.c dup_mmap): a step of its own, so that
    only the engines of workloads that fork compile it (core.engine.ENGINES)."""
    if pc == M_FORK:
        S.t[tid, T_FK_START] = S.g[G_NOW]
        run_for(S, tid, S.k[K_FORK_BASE], M_FORK_LOCK)     # copy_process up to copy_mm
        return False

    if pc == M_FORK_LOCK:
        # dup_mmap: mmap_write_lock_killable(oldmm)
        return proceed(S, tid, down_write(S, tid, M_FORK_LOCKED), M_FORK_LOCKED)

    if pc == M_FORK_LOCKED:
        S.t[tid, T_FK_POS] = 0
        S.t[tid, T_PC] = M_FORK_WALK
        return True

    if pc == M_FORK_WALK:
        # for_each_vma: the VMAs before the next modelled one in address order, copied in
        # one burst. A modelled slot not in the tree (a mapper's region between cycles) is
        # passed over.
        pos = S.t[tid, T_FK_POS]
        v = next_vma_at(S, pos)
        S.t[tid, T_FK_V] = v
        end = S.vma[v, V_POS] if v >= 0 else S.k[K_FORK_VMAS]
        S.t[tid, T_FK_POS] = end
        return spend(S, tid, max(0, end - pos) * S.k[K_FORK_BULK_NS],
                     M_FORK_VMA if v >= 0 else M_FORK_TLB)

    if pc == M_FORK_VMA:
        v = S.t[tid, T_FK_V]
        if not dup_mmap_locks(S, v):
            S.t[tid, T_PC] = M_FORK_COPY
            return True
        # vma_start_write_killable(mpnt): sleeps until the VMA's readers are gone.
        if S.vma[v, V_READERS] > 0:
            rwsem_owner_sleeps(S)
        return proceed(S, tid, vma_start_write(S, tid, v, M_FORK_COPY), M_FORK_COPY)

    if pc == M_FORK_COPY:
        v = S.t[tid, T_FK_V]
        S.t[tid, T_FK_POS] = S.vma[v, V_POS] + 1
        run_for(S, tid, copy_vma_ns(S, v), M_FORK_WALK)
        return False

    if pc == M_FORK_TLB:
        # flush_tlb_mm(oldmm), still holding mmap_lock: every CPU the mm ran on.
        run_for(S, tid, S.k[K_TLB_BASE] + S.g[G_MM_CPUS] * S.k[K_TLB_PER_CPU], M_FORK_ACKED)
        return False

    if pc == M_FORK_ACKED:
        return proceed(S, tid, smp_call_function_wait(S, tid, M_FORK_DONE), M_FORK_DONE)

    if pc == M_FORK_DONE:
        # mmap_write_unlock(oldmm): the mm_lock_seq bump ends every VMA write lock.
        for v in range(S.vma.shape[0]):
            vma_write_unlock(S, v)
        up_write(S, tid)
        _fork_returns(S, tid)
        S.t[tid, T_PC] = M_RETURN_TO_USER
        return True

    raise RuntimeError("mm: unknown fork program counter")
