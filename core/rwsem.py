"""mmap_lock: a Linux rwsem (kernel/locking/rwsem.c) with its queueing rules.

- `down_read` takes the fast path only if no writer holds the lock and nobody waits
  (`rwsem_read_trylock` fails on RWSEM_FLAG_WAITERS): a queued writer blocks every later
  reader.
- `down_write` takes the fast path only if the lock is free and nobody waits.
- On release (`rwsem_wake` -> `rwsem_mark_wake`): a writer at the head gets the lock alone
  once it is free; a reader at the head brings every queued reader with it, up to
  MAX_READERS_WAKEUP, skipping queued writers (phase-fair).
- `downgrade_write` turns the writer into a reader and wakes the readers at the head the
  same way (RWSEM_WAKE_READ_OWNED).
Every acquisition is counted with its wait into the eight-bucket histogram of MODEL.md 6.

Not modelled here yet (the convoy issue): writers' optimistic spinning on a running owner
and the 4 ms RWSEM_WAIT_TIMEOUT handoff. Waiters sleep; the FIFO order is kept exactly.
"""

from numba import njit

from core.metrics import MMAP_READ_COUNT, MMAP_READ_WAIT_NS, MMAP_WRITE_COUNT, MMAP_WRITE_WAIT_NS
from core.sched import block, fifo_append, wake
from core.state import (
    G_COUNTERS,
    G_HIST_READ,
    G_HIST_WRITE,
    G_NOW,
    G_RW_QHEAD,
    G_RW_QLEN,
    G_RW_QTAIL,
    G_RW_READERS,
    G_RW_WRITER,
    RW_READ,
    RW_WRITE,
    T_PC,
    T_RW_WANT,
    T_WAIT_NEXT,
    T_WAIT_START,
)

MAX_READERS_WAKEUP = 0x100


@njit(cache=True)
def wait_bucket(wait_ns):
    """Decade of microseconds: [0,1) [1,10) ... [1e6, inf) us -> 0..7."""
    us = wait_ns // 1000
    b = 0
    edge = 1
    while b < 7 and us >= edge:
        b += 1
        edge *= 10
    return b


@njit(cache=True)
def _count(S, kind, wait_ns):
    if kind == RW_READ:
        S.g[G_COUNTERS + MMAP_READ_COUNT] += 1
        S.g[G_COUNTERS + MMAP_READ_WAIT_NS] += wait_ns
        S.g[G_HIST_READ + wait_bucket(wait_ns)] += 1
    else:
        S.g[G_COUNTERS + MMAP_WRITE_COUNT] += 1
        S.g[G_COUNTERS + MMAP_WRITE_WAIT_NS] += wait_ns
        S.g[G_HIST_WRITE + wait_bucket(wait_ns)] += 1


@njit(cache=True)
def _enqueue(S, tid, kind):
    S.t[tid, T_RW_WANT] = kind
    S.t[tid, T_WAIT_START] = S.g[G_NOW]
    S.g[G_RW_QHEAD], S.g[G_RW_QTAIL] = fifo_append(S, tid, S.g[G_RW_QHEAD], S.g[G_RW_QTAIL])
    S.g[G_RW_QLEN] += 1


@njit(cache=True)
def _unlink(S, prev, tid):
    nxt = S.t[tid, T_WAIT_NEXT]
    if prev < 0:
        S.g[G_RW_QHEAD] = nxt
    else:
        S.t[prev, T_WAIT_NEXT] = nxt
    if S.g[G_RW_QTAIL] == tid:
        S.g[G_RW_QTAIL] = prev
    S.t[tid, T_WAIT_NEXT] = -1
    S.g[G_RW_QLEN] -= 1


@njit(cache=True)
def rwsem_mark_wake(S):
    """Hand the lock to the head waiter(s) if the lock state allows it."""
    head = S.g[G_RW_QHEAD]
    if head < 0 or S.g[G_RW_WRITER] >= 0:
        return
    now = S.g[G_NOW]
    if S.t[head, T_RW_WANT] == RW_WRITE:
        if S.g[G_RW_READERS] == 0:
            _unlink(S, -1, head)
            S.g[G_RW_WRITER] = head
            _count(S, RW_WRITE, now - S.t[head, T_WAIT_START])
            wake(S, head, S.t[head, T_PC])
        return
    woken = 0
    prev = -1
    tid = head
    while tid >= 0 and woken < MAX_READERS_WAKEUP:
        nxt = S.t[tid, T_WAIT_NEXT]
        if S.t[tid, T_RW_WANT] == RW_READ:
            _unlink(S, prev, tid)
            S.g[G_RW_READERS] += 1
            _count(S, RW_READ, now - S.t[tid, T_WAIT_START])
            wake(S, tid, S.t[tid, T_PC])
            woken += 1
        else:
            prev = tid
        tid = nxt


@njit(cache=True)
def down_read(S, tid, pc):
    """mmap_read_lock. True: held now (caller goes on). False: queued and asleep; the thread
    continues at `pc` holding the lock once granted."""
    if S.g[G_RW_WRITER] < 0 and S.g[G_RW_QHEAD] < 0:
        S.g[G_RW_READERS] += 1
        _count(S, RW_READ, 0)
        return True
    S.t[tid, T_PC] = pc
    _enqueue(S, tid, RW_READ)
    block(S, tid)
    return False


@njit(cache=True)
def down_read_trylock(S):
    """mmap_read_trylock: never sleeps; fails if a writer holds the lock or anyone waits."""
    if S.g[G_RW_WRITER] < 0 and S.g[G_RW_QHEAD] < 0:
        S.g[G_RW_READERS] += 1
        _count(S, RW_READ, 0)
        return True
    return False


@njit(cache=True)
def down_write(S, tid, pc):
    """mmap_write_lock; same contract as down_read."""
    if S.g[G_RW_WRITER] < 0 and S.g[G_RW_READERS] == 0 and S.g[G_RW_QHEAD] < 0:
        S.g[G_RW_WRITER] = tid
        _count(S, RW_WRITE, 0)
        return True
    S.t[tid, T_PC] = pc
    _enqueue(S, tid, RW_WRITE)
    block(S, tid)
    return False


@njit(cache=True)
def up_read(S):
    n = S.g[G_RW_READERS] - 1
    if n < 0:
        raise RuntimeError("rwsem invariant: up_read without readers")
    S.g[G_RW_READERS] = n
    if n == 0:
        rwsem_mark_wake(S)


@njit(cache=True)
def up_write(S, tid):
    if S.g[G_RW_WRITER] != tid:
        raise RuntimeError("rwsem invariant: up_write by a thread that is not the owner")
    S.g[G_RW_WRITER] = -1
    rwsem_mark_wake(S)


@njit(cache=True)
def downgrade_write(S, tid):
    if S.g[G_RW_WRITER] != tid:
        raise RuntimeError("rwsem invariant: downgrade by a thread that is not the owner")
    S.g[G_RW_WRITER] = -1
    S.g[G_RW_READERS] += 1
    rwsem_mark_wake(S)
