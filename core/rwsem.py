"""mmap_lock: a Linux rwsem (kernel/locking/rwsem.c) with its queueing rules.

- `down_read` takes the fast path only if no writer holds the lock, nobody waits and no
  handoff is pending (RWSEM_READ_FAILED_MASK). In the slow path a reader steals the lock
  when it is free and no handoff is pending, even with waiters queued
  (`rwsem_down_read_slowpath`, "reader optimistic lock stealing"), waking the readers at
  the front of the queue with it; it queues if a writer or other readers hold the lock.
  So a queued writer blocks later readers except in the window where the lock is free.
- `down_write` takes the fast path only if the lock is free and nobody waits. A free lock
  with waiters (a woken writer has not run yet) is stolen, as readers do, unless a handoff
  is pending (`rwsem_optimistic_spin` finds no owner and `rwsem_try_write_lock_unqueued`
  succeeds). Otherwise it spins (below) or queues.
- On release (`rwsem_wake` -> `rwsem_mark_wake(RWSEM_WAKE_ANY)`): a reader at the head
  brings every queued reader with it (the waker grants them the lock), up to
  MAX_READERS_WAKEUP, skipping queued writers (phase-fair). A writer at the head is only
  woken: it takes the lock itself when it runs (`rwsem_try_write_lock` in
  `rwsem_down_write_slowpath`), and sleeps again if a reader stole it meanwhile. A writer
  that fails after waiting RWSEM_WAIT_TIMEOUT sets RWSEM_FLAG_HANDOFF: no more stealing,
  and the next release hands it the lock directly (6.3+).
- `downgrade_write` turns the writer into a reader and wakes the readers at the head
  (RWSEM_WAKE_READ_OWNED: a writer at the head is not woken).

- A writer that finds the lock held by a running writer spins on its CPU
  (`rwsem_optimistic_spin`, in OSQ order) instead of sleeping; when the owner releases
  the lock the first spinner takes it, ahead of the queued waiters. Spinners give up and
  queue when the owner sleeps (`rwsem_owner_sleeps`), when the lock becomes reader-owned
  (a downgrade; the kernel spins up to 10-25 us on readers, the model not at all), or
  when the handoff bit is set. A waiter passed over for 4 ms by a spinner sets the
  handoff bit, as `rwsem_mark_wake` does for readers and the writer loop for writers.
Every acquisition is counted with its wait into the eight-bucket histogram of docs/model.md.

Not modelled (issue 5): a spinner yielding its CPU on need_resched.
"""

from numba import njit

from core.metrics import MMAP_READ_COUNT, MMAP_READ_WAIT_NS, MMAP_WRITE_COUNT, MMAP_WRITE_WAIT_NS
from core.sched import block, end_spin, fifo_append, mmap_lock_line, spin, wake
from core.state import (
    G_COUNTERS,
    G_HIST_READ,
    G_HIST_WRITE,
    G_NOW,
    G_RW_HANDOFF,
    G_RW_QHEAD,
    G_RW_QLEN,
    G_RW_QTAIL,
    G_RW_READERS,
    G_RW_SPIN_HEAD,
    G_RW_SPIN_TAIL,
    G_RW_WOKEN,
    G_RW_WRITER,
    K_ABL_RWSEM_STEAL,
    RW_READ,
    RW_WRITE,
    T_PC,
    T_RW_RELOCK,
    T_RW_WANT,
    T_STATE,
    T_WAIT_NEXT,
    T_WAIT_START,
    TS_RUNNING,
    TT_MMAP_LOCK,
)

MAX_READERS_WAKEUP = 0x100
# RWSEM_WAIT_TIMEOUT: DIV_ROUND_UP(HZ, 250) jiffies, 4 ms at HZ=250.
RWSEM_WAIT_TIMEOUT_NS = 4_000_000


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
    _append(S, tid)


@njit(cache=True)
def _append(S, tid):
    S.g[G_RW_QHEAD], S.g[G_RW_QTAIL] = fifo_append(S, tid, S.g[G_RW_QHEAD], S.g[G_RW_QTAIL])
    S.g[G_RW_QLEN] += 1


# ---- writers' optimistic spinning (rwsem_optimistic_spin) --------------------------------
@njit(cache=True)
def _can_spin(S):
    """rwsem_can_spin_on_owner: a writer owns the lock and is on a CPU, no handoff."""
    owner = S.g[G_RW_WRITER]
    return owner >= 0 and S.t[owner, T_STATE] == TS_RUNNING and not S.g[G_RW_HANDOFF] \
        and S.k[K_ABL_RWSEM_STEAL] != 0


@njit(cache=True)
def rwsem_stop_spinners(S):
    """The spinners give up (the owner sleeps, the lock is reader-owned, a handoff is
    pending): each queues as a sleeping waiter, its wait counted from when it began."""
    tid = S.g[G_RW_SPIN_HEAD]
    while tid >= 0:
        nxt = S.t[tid, T_WAIT_NEXT]
        _append(S, tid)
        block(S, tid, TT_MMAP_LOCK)
        tid = nxt
    S.g[G_RW_SPIN_HEAD] = -1
    S.g[G_RW_SPIN_TAIL] = -1


@njit(cache=True)
def rwsem_owner_sleeps(S):
    """The write owner is about to sleep (it stops being on_cpu): spinners queue."""
    rwsem_stop_spinners(S)


@njit(cache=True)
def _spinner_takes_it(S):
    """up_write with a spinner: the first spinner's cmpxchg wins; a waiter passed over for
    RWSEM_WAIT_TIMEOUT sets the handoff bit, which ends the spinning."""
    tid = S.g[G_RW_SPIN_HEAD]
    nxt = S.t[tid, T_WAIT_NEXT]
    S.g[G_RW_SPIN_HEAD] = nxt
    if nxt < 0:
        S.g[G_RW_SPIN_TAIL] = -1
    S.t[tid, T_WAIT_NEXT] = -1
    _grant_write(S, tid)
    end_spin(S, tid, S.t[tid, T_PC])
    first = S.g[G_RW_WOKEN] if S.g[G_RW_WOKEN] >= 0 else S.g[G_RW_QHEAD]
    if first >= 0 and S.g[G_NOW] - S.t[first, T_WAIT_START] >= RWSEM_WAIT_TIMEOUT_NS:
        S.g[G_RW_HANDOFF] = 1
        rwsem_stop_spinners(S)


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
def _grant_write(S, tid):
    """The first waiter, writer `tid` (already out of the linked queue), owns the lock."""
    S.g[G_RW_WRITER] = tid
    S.g[G_RW_HANDOFF] = 0
    _count(S, RW_WRITE, S.g[G_NOW] - S.t[tid, T_WAIT_START])


@njit(cache=True)
def _nobody_waits(S):
    return S.g[G_RW_QHEAD] < 0 and S.g[G_RW_WOKEN] < 0


@njit(cache=True)
def _can_steal(S):
    """The lock is free (no writer, no readers; a woken writer has not run yet) and no
    handoff is pending: a reader or writer on a CPU takes it ahead of the waiters."""
    return S.g[G_RW_WRITER] < 0 and S.g[G_RW_READERS] == 0 and not S.g[G_RW_HANDOFF] \
        and S.k[K_ABL_RWSEM_STEAL] != 0


@njit(cache=True)
def rwsem_mark_wake(S, wake_any):
    """Wake the first waiter(s) if the lock state allows it. `wake_any` False is
    RWSEM_WAKE_READ_OWNED (a reader owns the lock): a writer at the head stays asleep.

    A woken writer leaves the linked queue (its thread is on a run queue, linked through
    the same field) but stays the first waiter (G_RW_WOKEN) until it has run."""
    head = S.g[G_RW_QHEAD]
    if head < 0 or S.g[G_RW_WRITER] >= 0 or S.g[G_RW_WOKEN] >= 0:
        return
    now = S.g[G_NOW]
    if S.t[head, T_RW_WANT] == RW_WRITE:
        if not wake_any or S.g[G_RW_READERS] > 0:
            return
        _unlink(S, -1, head)
        if S.g[G_RW_HANDOFF] or not S.k[K_ABL_RWSEM_STEAL]:
            _grant_write(S, head)                 # direct handoff to the first waiter
        else:
            S.g[G_RW_WOKEN] = head                # woken; takes the lock when it runs
            S.t[head, T_RW_RELOCK] = 1
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
    if woken > 0:
        S.g[G_RW_HANDOFF] = 0                     # the first waiter got it: handoff done


@njit(cache=True)
def rwsem_relock_write(S, tid):
    """A woken writer runs (the loop of rwsem_down_write_slowpath): take the lock if it is
    free, else set the handoff bit once it has waited RWSEM_WAIT_TIMEOUT and sleep again,
    still the first waiter. True if taken (it goes on at its T_PC owning the lock)."""
    if S.g[G_RW_WOKEN] != tid:
        raise RuntimeError("rwsem invariant: a woken writer is not the first waiter")
    S.t[tid, T_RW_RELOCK] = 0
    S.g[G_RW_WOKEN] = -1
    if S.g[G_RW_WRITER] < 0 and S.g[G_RW_READERS] == 0:
        _grant_write(S, tid)
        return True
    if S.g[G_NOW] - S.t[tid, T_WAIT_START] >= RWSEM_WAIT_TIMEOUT_NS:
        S.g[G_RW_HANDOFF] = 1
        rwsem_stop_spinners(S)
    S.t[tid, T_WAIT_NEXT] = S.g[G_RW_QHEAD]       # back at the head of the queue
    if S.g[G_RW_QHEAD] < 0:
        S.g[G_RW_QTAIL] = tid
    S.g[G_RW_QHEAD] = tid
    S.g[G_RW_QLEN] += 1
    block(S, tid, TT_MMAP_LOCK)
    return False


@njit(cache=True)
def down_read(S, tid, pc):
    """mmap_read_lock. True: held now (caller goes on). False: queued and asleep; the thread
    continues at `pc` holding the lock once granted."""
    if S.g[G_RW_WRITER] < 0 and _nobody_waits(S):
        S.g[G_RW_READERS] += 1
        mmap_lock_line(S)
        _count(S, RW_READ, 0)
        return True
    if _can_steal(S):
        # Reader optimistic lock stealing: the lock is free (a woken writer has not run
        # yet); the first reader in wakes the readers at the front of the queue.
        S.g[G_RW_READERS] += 1
        mmap_lock_line(S)
        _count(S, RW_READ, 0)
        rwsem_mark_wake(S, False)
        return True
    S.t[tid, T_PC] = pc
    _enqueue(S, tid, RW_READ)
    block(S, tid, TT_MMAP_LOCK)
    return False


@njit(cache=True)
def down_read_trylock(S):
    """mmap_read_trylock: never sleeps; fails if a writer holds the lock or anyone waits."""
    if S.g[G_RW_WRITER] < 0 and _nobody_waits(S):
        S.g[G_RW_READERS] += 1
        mmap_lock_line(S)
        _count(S, RW_READ, 0)
        return True
    return False


@njit(cache=True)
def down_write(S, tid, pc):
    """mmap_write_lock; same contract as down_read."""
    if (S.g[G_RW_WRITER] < 0 and S.g[G_RW_READERS] == 0 and _nobody_waits(S)) \
            or _can_steal(S):
        S.g[G_RW_WRITER] = tid
        mmap_lock_line(S)
        _count(S, RW_WRITE, 0)
        return True
    S.t[tid, T_PC] = pc
    if _can_spin(S):
        S.t[tid, T_RW_WANT] = RW_WRITE
        S.t[tid, T_WAIT_START] = S.g[G_NOW]
        S.g[G_RW_SPIN_HEAD], S.g[G_RW_SPIN_TAIL] = fifo_append(
            S, tid, S.g[G_RW_SPIN_HEAD], S.g[G_RW_SPIN_TAIL])
        spin(S, tid, TT_MMAP_LOCK)
        return False
    _enqueue(S, tid, RW_WRITE)
    block(S, tid, TT_MMAP_LOCK)
    return False


@njit(cache=True)
def up_read(S):
    n = S.g[G_RW_READERS] - 1
    if n < 0:
        raise RuntimeError("rwsem invariant: up_read without readers")
    S.g[G_RW_READERS] = n
    mmap_lock_line(S)
    if n == 0:
        rwsem_mark_wake(S, True)


@njit(cache=True)
def up_write(S, tid):
    if S.g[G_RW_WRITER] != tid:
        raise RuntimeError("rwsem invariant: up_write by a thread that is not the owner")
    S.g[G_RW_WRITER] = -1
    mmap_lock_line(S)
    if S.g[G_RW_SPIN_HEAD] >= 0:
        _spinner_takes_it(S)
        return
    rwsem_mark_wake(S, True)


@njit(cache=True)
def downgrade_write(S, tid):
    if S.g[G_RW_WRITER] != tid:
        raise RuntimeError("rwsem invariant: downgrade by a thread that is not the owner")
    S.g[G_RW_WRITER] = -1
    S.g[G_RW_READERS] += 1
    mmap_lock_line(S)
    rwsem_stop_spinners(S)                        # reader-owned now: spinners give up
    rwsem_mark_wake(S, False)
