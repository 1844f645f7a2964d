"""swapin: the patch series' swap test (docs/model.md, Workloads).

One private anonymous VMA of `anon_mb`, written once before time 0 (every page resident,
dirty, mapped). `writers` threads loop `madvise(MADV_PAGEOUT)` over the whole VMA; `readers`
threads loop reading one byte of every page in order, faulting the swapped-out ones back in
(do_swap_page). A full pass is a round: `pageout_rounds` for the writers, `swapin_rounds`
for the readers (the row's `rounds` and `throughput_rounds_s` count the readers' passes).
"""

from numba import njit

from core.metrics import PAGEOUT_ROUNDS, SWAPIN_ROUNDS
from core.sched import call
from core.state import (
    FL_ANON,
    FL_PAGES,
    FL_VMA,
    G_PEAK_USAGE,
    G_USAGE,
    K_FILE_PAGES,
    K_N_FILES,
    K_THREADS,
    MA_PAGEOUT,
    ROLE_READER,
    ROLE_WRITER,
    T_FILE,
    T_PAGE,
    T_PC,
    T_ROLE,
    T_VMA,
    V_ATTACHED,
    W_SI_PAGEOUT,
    W_SI_PAGEOUT_DONE,
    W_SI_READ,
    W_SI_READ_END,
    W_SI_START,
    make_state,
)
from core.swap import prefill
from core.workloads.userloop import round_end, touch_pages


def constants(p, k) -> None:
    """Fill swapin's slots of the constant vector (core.simulator.constants)."""
    w = p.workload
    k[K_THREADS] = w.writers + w.readers
    k[K_FILE_PAGES] = p.anon_pages
    k[K_N_FILES] = 1


def build_state(p, k):
    """One anon VMA over one anon object; writers first, then readers. The test's initial
    write is done before time 0: every page resident, dirty and mapped."""
    pages = p.anon_pages
    S = make_state(k, n_threads=int(k[K_THREADS]), n_cores=p.machine.cores, n_pages=pages,
                   n_files=1, file_pages=pages, n_vmas=1)
    S.file[0, FL_ANON] = 1
    S.file[0, FL_VMA] = 0
    S.vma[0, V_ATTACHED] = 1
    S.t[:, T_FILE] = 0
    S.t[:, T_VMA] = 0
    S.t[:, T_PC] = W_SI_START
    S.t[:, T_ROLE] = ROLE_READER
    S.t[:p.workload.writers, T_ROLE] = ROLE_WRITER
    prefill(S, 0, 0, 0, pages, True)
    S.g[G_PEAK_USAGE] = S.g[G_USAGE]
    return S


@njit(cache=True)
def step(S, tid, pc):
    if pc == W_SI_START:
        S.t[tid, T_PAGE] = 0
        S.t[tid, T_PC] = W_SI_PAGEOUT if S.t[tid, T_ROLE] == ROLE_WRITER else W_SI_READ
        return True

    if pc == W_SI_READ:
        f = S.t[tid, T_FILE]
        return touch_pages(S, tid, S.t[tid, T_VMA], S.file[f, FL_PAGES], W_SI_READ_END,
                           W_SI_READ)

    if pc == W_SI_READ_END:
        return round_end(S, tid, SWAPIN_ROUNDS, W_SI_START)

    if pc == W_SI_PAGEOUT:
        call(S, tid, MA_PAGEOUT, W_SI_PAGEOUT_DONE)
        return True

    if pc == W_SI_PAGEOUT_DONE:
        return round_end(S, tid, PAGEOUT_ROUNDS, W_SI_START)

    raise RuntimeError("swapin: unknown program counter")
