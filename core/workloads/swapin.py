"""swapin: the patch series' swap test (MODEL.md section 4).

One private anonymous VMA of `anon_mb`, written once before time 0 (every page resident,
dirty, mapped). `writers` threads loop `madvise(MADV_PAGEOUT)` over the whole VMA; `readers`
threads loop reading one byte of every page in order, faulting the swapped-out ones back in
(do_swap_page). A full pass is a round: `pageout_rounds` for the writers, `swapin_rounds`
for the readers (the row's `rounds` and `throughput_rounds_s` count the readers' passes).
"""

from numba import njit

from core.fault import fault_begin
from core.metrics import PAGEOUT_ROUNDS, SWAPIN_ROUNDS
from core.sched import call, release_core, run_for
from core.state import (
    F_LOCK_VMA,
    FL_PAGES,
    G_COUNTERS,
    G_DRAINING,
    K_TOUCH,
    MA_PAGEOUT,
    PTE_PRESENT,
    PTE_YOUNG,
    ROLE_WRITER,
    T_F_START,
    T_FILE,
    T_PAGE,
    T_PC,
    T_ROLE,
    T_ROUNDS,
    T_STATE,
    T_VMA,
    TS_EXITED,
    V_PTE0,
    W_SI_PAGEOUT,
    W_SI_PAGEOUT_DONE,
    W_SI_READ,
    W_SI_READ_END,
    W_SI_START,
)


@njit(cache=True)
def _round_end(S, tid, counter, pc):
    """A pass is done: count it; in drain mode (tests) stop here, holding nothing."""
    S.g[G_COUNTERS + counter] += 1
    S.t[tid, T_ROUNDS] += 1
    if S.g[G_DRAINING]:
        S.t[tid, T_STATE] = TS_EXITED
        release_core(S, tid)
        return False
    S.t[tid, T_PC] = pc
    return True


@njit(cache=True)
def step(S, tid, pc):
    if pc == W_SI_START:
        S.t[tid, T_PAGE] = 0
        S.t[tid, T_PC] = W_SI_PAGEOUT if S.t[tid, T_ROLE] == ROLE_WRITER else W_SI_READ
        return True

    if pc == W_SI_READ:
        v = S.t[tid, T_VMA]
        n = S.file[S.t[tid, T_FILE], FL_PAGES]
        i = S.t[tid, T_PAGE]
        start = i
        while i < n and (S.vma[v, V_PTE0 + i] & PTE_PRESENT):
            S.vma[v, V_PTE0 + i] |= PTE_YOUNG      # the MMU sets the accessed bit
            i += 1
        S.t[tid, T_PAGE] = i
        cost = (i - start) * S.k[K_TOUCH]
        if i >= n:
            if cost > 0:
                run_for(S, tid, cost, W_SI_READ_END)
                return False
            S.t[tid, T_PC] = W_SI_READ_END
            return True
        # Read the run of mapped pages, then fault on page i: one burst for both.
        cost += fault_begin(S, tid, i, W_SI_READ)
        S.t[tid, T_F_START] += (i - start) * S.k[K_TOUCH]
        run_for(S, tid, cost, F_LOCK_VMA)
        return False

    if pc == W_SI_READ_END:
        return _round_end(S, tid, SWAPIN_ROUNDS, W_SI_START)

    if pc == W_SI_PAGEOUT:
        call(S, tid, MA_PAGEOUT, W_SI_PAGEOUT_DONE)
        return True

    if pc == W_SI_PAGEOUT_DONE:
        return _round_end(S, tid, PAGEOUT_ROUNDS, W_SI_START)

    raise RuntimeError("swapin: unknown program counter")
