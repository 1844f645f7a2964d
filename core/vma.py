"""The per-VMA lock (mm/mmap_lock.c, include/linux/mmap_lock.h).

`lock_vma_under_rcu` never sleeps: it fails (VMA_LOCK_ABORT) if the VMA is gone, is
write-locked, or a writer is waiting for its readers to drain (the writer has already
raised the reference count past VMA_LOCK_OFFSET); otherwise it takes a read reference.
`vma_start_write`, called only under mmap_write_lock, waits until the reader count is 0,
then marks the VMA write-locked; the mark clears at mmap_write_unlock/downgrade (the
mm_lock_seq bump). The time a writer waits for readers is recorded: this is where holding
the VMA lock across I/O (`hold_vma_io`) stalls munmap, mprotect and fork.
"""

from numba import njit

from core.metrics import VMA_WRITER_WAIT_MAX_NS, VMA_WRITER_WAIT_NS
from core.sched import block, vma_lock_line, wake
from core.state import (
    G_COUNTERS,
    G_NOW,
    T_PC,
    T_WAIT_START,
    TT_VMA,
    V_ATTACHED,
    V_READERS,
    V_WRITE_LOCKED,
    V_WRITER,
)


@njit(cache=True)
def lock_vma_under_rcu(S, v):
    """True: read reference taken. False: caller falls back to mmap_lock."""
    if v < 0 or not S.vma[v, V_ATTACHED] or S.vma[v, V_WRITE_LOCKED] or S.vma[v, V_WRITER] >= 0:
        return False
    S.vma[v, V_READERS] += 1
    vma_lock_line(S, v)
    return True


@njit(cache=True)
def _vma_writer_got_it(S, v, tid):
    S.vma[v, V_WRITER] = -1
    S.vma[v, V_WRITE_LOCKED] = 1
    w = S.g[G_NOW] - S.t[tid, T_WAIT_START]
    S.g[G_COUNTERS + VMA_WRITER_WAIT_NS] += w
    S.g[G_COUNTERS + VMA_WRITER_WAIT_MAX_NS] = max(S.g[G_COUNTERS + VMA_WRITER_WAIT_MAX_NS], w)


@njit(cache=True)
def vma_end_read(S, v):
    n = S.vma[v, V_READERS] - 1
    if n < 0:
        raise RuntimeError("vma lock invariant: vma_end_read without a reader")
    S.vma[v, V_READERS] = n
    vma_lock_line(S, v)
    w = S.vma[v, V_WRITER]
    if n == 0 and w >= 0:
        _vma_writer_got_it(S, v, w)
        wake(S, w, S.t[w, T_PC])


@njit(cache=True)
def vma_start_write(S, tid, v, pc):
    """True: write-locked now. False: asleep until the last reader leaves, then at `pc`."""
    S.t[tid, T_WAIT_START] = S.g[G_NOW]
    if S.vma[v, V_READERS] == 0:
        _vma_writer_got_it(S, v, tid)
        return True
    S.vma[v, V_WRITER] = tid
    S.t[tid, T_PC] = pc
    block(S, tid, TT_VMA)
    return False


@njit(cache=True)
def vma_write_unlock(S, v):
    """The mm_lock_seq bump at mmap_write_unlock/downgrade ends every VMA write lock."""
    S.vma[v, V_WRITE_LOCKED] = 0
