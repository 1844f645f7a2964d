"""What the workloads' user-space loops share: touching pages in order (faulting on a
miss), and the end of a round."""

from numba import njit

from core.fault import fault_begin
from core.sched import exit_thread, run_for, spend
from core.state import (
    F_LOCK_VMA,
    G_COUNTERS,
    G_DRAINING,
    K_TOUCH,
    PTE_PRESENT,
    PTE_YOUNG,
    T_F_START,
    T_PAGE,
    T_PC,
    T_ROUNDS,
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
        return spend(S, tid, cost, done_pc)
    cost += fault_begin(S, tid, i, again_pc)
    S.t[tid, T_F_START] += (i - start) * S.k[K_TOUCH]
    run_for(S, tid, cost, F_LOCK_VMA)
    return False


@njit(cache=True)
def round_end(S, tid, counter, pc):
    """A round is done: count it (vm counter `counter`) and go on at `pc`; in drain mode
    (tests) the thread stops here instead, at a round boundary, holding nothing."""
    S.g[G_COUNTERS + counter] += 1
    S.t[tid, T_ROUNDS] += 1
    if S.g[G_DRAINING]:
        exit_thread(S, tid)
        return False
    S.t[tid, T_PC] = pc
    return True
