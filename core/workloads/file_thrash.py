"""file_thrash: the published stress test's reproducer (docs/model.md, Workloads).

Each worker thread owns one file and loops: [open] -> mmap(PROT_READ, MAP_SHARED) of the
whole file -> read one byte of every 4 KiB page in order -> munmap [-> close]. A round is
one loop. Reads of pages whose PTEs are present advance in one burst (the whole run of
mapped pages costs touch_ns each and one event); the first page without a PTE faults.
"""

from numba import njit

from core.metrics import ROUNDS
from core.sched import call, run_for
from core.state import (
    FL_MMAP_MISS,
    FL_RA_ASYNC,
    FL_RA_ORDER,
    FL_RA_SIZE,
    FL_RA_START,
    K_FILE_PAGES,
    K_OPEN_CLOSE,
    K_OPEN_CLOSE_NS,
    M_MMAP,
    M_MUNMAP,
    T_FILE,
    T_PAGE,
    T_PC,
    T_VMA,
    W_MMAP,
    W_MUNMAP,
    W_ROUND_END,
    W_ROUND_START,
    W_TOUCH,
)
from core.workloads.userloop import round_end, touch_pages


@njit(cache=True)
def step(S, tid, pc):
    if pc == W_ROUND_START:
        if S.k[K_OPEN_CLOSE]:
            # A new struct file: its readahead state starts afresh.
            f = S.t[tid, T_FILE]
            S.file[f, FL_RA_START] = 0
            S.file[f, FL_RA_SIZE] = 0
            S.file[f, FL_RA_ASYNC] = 0
            S.file[f, FL_RA_ORDER] = 0
            S.file[f, FL_MMAP_MISS] = 0
            run_for(S, tid, S.k[K_OPEN_CLOSE_NS], W_MMAP)
            return False
        S.t[tid, T_PC] = W_MMAP
        return True

    if pc == W_MMAP:
        S.t[tid, T_PAGE] = 0
        call(S, tid, M_MMAP, W_TOUCH)
        return True

    if pc == W_TOUCH:
        return touch_pages(S, tid, S.t[tid, T_VMA], S.k[K_FILE_PAGES], W_MUNMAP, W_TOUCH)

    if pc == W_MUNMAP:
        call(S, tid, M_MUNMAP, W_ROUND_END)
        return True

    if pc == W_ROUND_END:
        return round_end(S, tid, ROUNDS, W_ROUND_START)

    raise RuntimeError("file_thrash: unknown program counter")
