"""The user-space read loop every workload shares: touch pages in order, fault on a miss."""

from numba import njit

from core.fault import fault_begin
from core.sched import run_for
from core.state import (
    F_LOCK_VMA,
    K_TOUCH,
    PTE_PRESENT,
    PTE_YOUNG,
    T_F_START,
    T_PAGE,
    T_PC,
    V_PTE0,
)


@njit(cache=True)
def touch_pages(S, tid, v, end, done_pc, again_pc):
    """Touch pages T_PAGE..end-1 of VMA v. A run of mapped pages costs touch_ns each (the
    MMU sets their accessed bits) and advances in one step; the first page without a PTE
    faults, in the same burst, and the fault returns to `again_pc`. Once the run reaches
    `end` the thread continues at `done_pc`. Returns the step's go/wait flag."""
    i = S.t[tid, T_PAGE]
    start = i
    while i < end and (S.vma[v, V_PTE0 + i] & PTE_PRESENT):
        S.vma[v, V_PTE0 + i] |= PTE_YOUNG
        i += 1
    S.t[tid, T_PAGE] = i
    cost = (i - start) * S.k[K_TOUCH]
    if i >= end:
        if cost > 0:
            run_for(S, tid, cost, done_pc)
            return False
        S.t[tid, T_PC] = done_pc
        return True
    cost += fault_begin(S, tid, i, again_pc)
    S.t[tid, T_F_START] += (i - start) * S.k[K_TOUCH]
    run_for(S, tid, cost, F_LOCK_VMA)
    return False
