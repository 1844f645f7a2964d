"""The CPU scheduler: cores, run queues, slices, pinning and the ioretry_noise spinners.

What it models of kernel/sched: a thread runs on a core until it blocks (sleeps on a lock,
a folio, I/O, a timer) or its slice ends while others wait; a woken thread joins a FIFO run
queue (global, or its own core's with `pinning=round_robin`) and does not run before a core
is free; a wake-up onto an idle core costs `wakeup_latency` (IPI + idle exit), a switch from
the run queue costs `ctx_switch`. Spinning threads (spin_lock_irq, IPI acknowledgement waits)
keep their core. Noise spinners have priority over workers on their own core.

Every change of a thread's state closes one interval of its time and opens the next
(`account`, by TT_* class of core.state): the rows' time_*_pct columns.

Simplification: preemption (slice end, a noise spinner waking) takes effect at the end of
the running thread's current CPU burst, not in the middle of it; bursts are microseconds,
slices and noise periods hundreds of microseconds or more.
"""

import numpy as np
from numba import njit

from core.evq import schedule
from core.metrics import THREAD_TIME0
from core.state import (
    C_ACK0,
    C_ACK_N,
    C_IDLE_POS,
    C_IRQOFF,
    C_NOISE_BUSY,
    C_NOISE_PENDING,
    C_RAN_MM,
    C_RQ_HEAD,
    C_RQ_TAIL,
    C_THREAD,
    C_TICK_PHASE,
    EV_NOISE,
    EV_THREAD,
    G_COUNTERS,
    G_CUR_TID,
    G_DRAINING,
    G_IDLE_LIST,
    G_IDLE_N,
    G_MM_CPUS,
    G_MMAP_LINE_CPU,
    G_MMAP_LINE_FREE,
    G_NOW,
    G_RQ_HEAD,
    G_RQ_LEN,
    G_RQ_TAIL,
    K_ABL_TLB_LATE_ACK,
    K_CORES,
    K_COST_SIGMA_PPM,
    K_CTX_SWITCH,
    K_JITTER,
    K_LINE_NS,
    K_NOISE_BUSY_NS,
    K_NOISE_SLEEP_NS,
    K_PINNING,
    K_SLICE_NS,
    K_TICK_NS,
    K_TICK_PERIOD_NS,
    K_WAKEUP,
    K_WAKEUP_SIGMA_PPM,
    STACK_DEPTH,
    T_ACCT,
    T_ACCT_SINCE,
    T_CORE,
    T_LINE_NS,
    T_M_PENDING_ACKS,
    T_PC,
    T_PREEMPT_COUNT,
    T_SLICE_NS,
    T_SP,
    T_STACK0,
    T_STATE,
    T_WAIT_NEXT,
    TS_BLOCKED,
    TS_EXITED,
    TS_RUNNABLE,
    TS_RUNNING,
    TS_SLEEPING,
    TS_SPINNING,
    TT_CPU,
    TT_EXITED,
    TT_RUNQ,
    TT_SLEEP,
    TT_TLB_ACK,
    V_LINE_CPU,
    V_LINE_FREE,
)

NOISE_THREAD = -2
IDLE = -1


# ---- where a thread's time goes --------------------------------------------------------------
@njit(cache=True, inline="always")
def account(S, tid, cls):
    """Close the thread's current TT_* interval at now and open one of class `cls`."""
    now = S.g[G_NOW]
    S.g[G_COUNTERS + THREAD_TIME0 + S.t[tid, T_ACCT]] += now - S.t[tid, T_ACCT_SINCE]
    S.t[tid, T_ACCT] = cls
    S.t[tid, T_ACCT_SINCE] = now


@njit(cache=True)
def account_flush(S):
    """Count every thread's open interval up to now (at the end of warm-up and of the run),
    so that the TT_* counters sum to threads x elapsed time."""
    for tid in range(S.t.shape[0]):
        account(S, tid, S.t[tid, T_ACCT])


# ---- idle-core set --------------------------------------------------------------------------
@njit(cache=True)
def _idle_add(S, c):
    n = S.g[G_IDLE_N]
    S.g[G_IDLE_LIST + n] = c
    S.core[c, C_IDLE_POS] = n
    S.g[G_IDLE_N] = n + 1


@njit(cache=True)
def _idle_remove(S, c):
    pos = S.core[c, C_IDLE_POS]
    n = S.g[G_IDLE_N] - 1
    last = S.g[G_IDLE_LIST + n]
    S.g[G_IDLE_LIST + pos] = last
    S.core[last, C_IDLE_POS] = pos
    S.core[c, C_IDLE_POS] = -1
    S.g[G_IDLE_N] = n


# ---- the thread program's calling convention --------------------------------------------
@njit(cache=True, inline="always")
def call(S, tid, target, ret):
    """Enter the step `target` of another mechanism; PC_RETURN there resumes at `ret`
    (the engine pops the per-thread return stack)."""
    sp = S.t[tid, T_SP]
    if sp >= STACK_DEPTH:
        raise RuntimeError("call stack overflow")
    S.t[tid, T_STACK0 + sp] = ret
    S.t[tid, T_SP] = sp + 1
    S.t[tid, T_PC] = target


@njit(cache=True, inline="always")
def proceed(S, tid, taken, pc):
    """After a call that either takes a lock now or queues the thread asleep: go on at `pc`
    now if `taken`; the step's return value (keep stepping, or wait)."""
    if taken:
        S.t[tid, T_PC] = pc
    return taken


# ---- FIFOs linked through T_WAIT_NEXT ------------------------------------------------------
@njit(cache=True, inline="always")
def fifo_append(S, tid, head, tail):
    """Append `tid` to a FIFO whose ends are (head, tail), -1 when empty; every wait queue
    (run queue, mmap_lock, lru_lock, folio lock) is one. Returns the new (head, tail)."""
    S.t[tid, T_WAIT_NEXT] = -1
    if tail < 0:
        return tid, tid
    S.t[tail, T_WAIT_NEXT] = tid
    return head, tid


# ---- run queues -------------------------------------------------------------------------------
@njit(cache=True)
def _rq_push(S, tid, front):
    S.t[tid, T_STATE] = TS_RUNNABLE
    account(S, tid, TT_RUNQ)
    S.t[tid, T_WAIT_NEXT] = -1
    S.g[G_RQ_LEN] += 1
    if S.k[K_PINNING]:
        c = tid % S.k[K_CORES]
        head = S.core[c, C_RQ_HEAD]
        if head < 0:
            S.core[c, C_RQ_HEAD] = tid
            S.core[c, C_RQ_TAIL] = tid
        elif front:
            S.t[tid, T_WAIT_NEXT] = head
            S.core[c, C_RQ_HEAD] = tid
        else:
            S.t[S.core[c, C_RQ_TAIL], T_WAIT_NEXT] = tid
            S.core[c, C_RQ_TAIL] = tid
        return
    head = S.g[G_RQ_HEAD]
    if head < 0:
        S.g[G_RQ_HEAD] = tid
        S.g[G_RQ_TAIL] = tid
    elif front:
        S.t[tid, T_WAIT_NEXT] = head
        S.g[G_RQ_HEAD] = tid
    else:
        S.t[S.g[G_RQ_TAIL], T_WAIT_NEXT] = tid
        S.g[G_RQ_TAIL] = tid


@njit(cache=True)
def _rq_pop(S, c):
    """Next runnable thread for core c, or -1."""
    if S.k[K_PINNING]:
        tid = S.core[c, C_RQ_HEAD]
        if tid >= 0:
            S.core[c, C_RQ_HEAD] = S.t[tid, T_WAIT_NEXT]
            S.t[tid, T_WAIT_NEXT] = -1
            S.g[G_RQ_LEN] -= 1
        return tid
    tid = S.g[G_RQ_HEAD]
    if tid >= 0:
        S.g[G_RQ_HEAD] = S.t[tid, T_WAIT_NEXT]
        S.t[tid, T_WAIT_NEXT] = -1
        S.g[G_RQ_LEN] -= 1
    return tid


@njit(cache=True)
def _rq_waiting_for(S, c):
    if S.k[K_PINNING]:
        return S.core[c, C_RQ_HEAD] >= 0
    return S.g[G_RQ_HEAD] >= 0


# ---- putting threads on cores --------------------------------------------------------------
@njit(cache=True, inline="always")
def _start_on(S, tid, c, delay_ns):
    S.core[c, C_THREAD] = tid
    S.t[tid, T_CORE] = c
    S.t[tid, T_STATE] = TS_RUNNING
    account(S, tid, TT_CPU)
    if not S.core[c, C_RAN_MM]:
        # mm_cpumask grows as the mm runs on new CPUs (x86 never shrinks it eagerly).
        S.core[c, C_RAN_MM] = 1
        S.g[G_MM_CPUS] += 1
    schedule(S, S.g[G_NOW] + delay_ns, EV_THREAD, tid)


@njit(cache=True, inline="always")
def dispatch_core(S, c):
    """Core c was left by its thread: give it to noise, the next runnable thread, or idle."""
    S.core[c, C_THREAD] = IDLE
    if S.core[c, C_NOISE_PENDING]:
        _noise_start(S, c)
        return
    tid = _rq_pop(S, c)
    if tid >= 0:
        _start_on(S, tid, c, S.k[K_CTX_SWITCH])
    else:
        _idle_add(S, c)


@njit(cache=True, inline="always")
def make_runnable(S, tid, pc, delay_ns):
    """try_to_wake_up: onto an idle core (after wakeup latency) or into the run queue."""
    S.t[tid, T_PC] = pc
    if S.k[K_PINNING]:
        c = tid % S.k[K_CORES]
        if S.core[c, C_THREAD] == IDLE and S.core[c, C_IDLE_POS] >= 0:
            _idle_remove(S, c)
            _start_on(S, tid, c, delay_ns)
            return
    elif S.g[G_IDLE_N] > 0:
        c = S.g[G_IDLE_LIST + S.g[G_IDLE_N] - 1]
        _idle_remove(S, c)
        _start_on(S, tid, c, delay_ns)
        return
    _rq_push(S, tid, False)


# ---- jitter: what makes two runs of a real machine differ (machine.jitter) ---------------
@njit(cache=True, _nrt=False)
def wakeup_delay(S):
    """try_to_wake_up to running: the IPI, idle exit and the wakee's first instructions.
    Lognormal around costs.wakeup_latency_ns (its median) with machine.wakeup_sigma: the
    spread of cross-CPU futex wake-ups kernel_workloads/jitter.c measures."""
    d = S.k[K_WAKEUP]
    if S.k[K_JITTER] and S.k[K_WAKEUP_SIGMA_PPM] > 0:
        s = S.k[K_WAKEUP_SIGMA_PPM] * 1e-6
        d = np.int64(d * np.exp(s * np.random.standard_normal()))
    return d


@njit(cache=True, _nrt=False)
def burst_jitter(S, tid, ns):
    """The CPU time a burst of `ns` really takes on the thread's core. (1) Cache misses:
    a mean-preserving lognormal factor with machine.cost_sigma (kernel_workloads/jitter.c:
    clearing a cold 4 KiB page varies with sigma 0.25-0.34 here); one factor per burst, so
    a burst of many folios is given the spread of one (over-dispersed, same mean). (2) The
    scheduler tick: every tick period (1/HZ) after the CPU's phase that falls inside the
    burst takes costs.tick_ns from it (NO_HZ_IDLE: only busy CPUs tick; a tick landing
    while the CPU spins on a lock, irqs off or not, is not charged)."""
    if ns <= 0:
        return ns
    sig = S.k[K_COST_SIGMA_PPM]
    if sig > 0:
        s = sig * 1e-6
        ns = np.int64(ns * np.exp(s * np.random.standard_normal() - 0.5 * s * s))
    tick = S.k[K_TICK_NS]
    c = S.t[tid, T_CORE]
    if tick > 0 and c >= 0:
        period = S.k[K_TICK_PERIOD_NS]
        t0 = S.g[G_NOW] - S.core[c, C_TICK_PHASE]
        ns += ((t0 + ns) // period - t0 // period) * tick
    return ns


# ---- lock words: an atomic on a cache line other CPUs write ------------------------------
@njit(cache=True, inline="always")
def _line_rmw(S, tid, last_cpu, free_at):
    """One atomic read-modify-write by `tid`'s CPU on a line last written by `last_cpu`
    that is busy (in transfer) until `free_at`. The line is a server of one: a CPU that
    did not write it last waits for it to be free, then for one transfer
    (costs.cacheline_transfer_ns); its own line costs nothing here (a few ns, in the
    caller's cost). The wait is charged to the thread's next burst (T_LINE_NS), a
    simplification: the atomic's effect is visible at once. Returns (cpu, free_at)."""
    c = S.t[tid, T_CORE]
    if c < 0 or c == last_cpu or S.k[K_LINE_NS] == 0:
        return last_cpu, free_at
    now = S.g[G_NOW]
    done = max(now, free_at) + S.k[K_LINE_NS]
    S.t[tid, T_LINE_NS] += done - now
    return c, done


@njit(cache=True, _nrt=False)
def mmap_lock_line(S):
    """The current thread's atomic on mmap_lock's count (down_read/up_read and the write
    side's cmpxchg): one line for the whole mm, written by every faulting CPU."""
    S.g[G_MMAP_LINE_CPU], S.g[G_MMAP_LINE_FREE] = _line_rmw(
        S, S.g[G_CUR_TID], S.g[G_MMAP_LINE_CPU], S.g[G_MMAP_LINE_FREE])


@njit(cache=True, _nrt=False)
def vma_lock_line(S, v):
    """The current thread's atomic on VMA v's vm_refcnt (vma_start_read, vma_end_read)."""
    S.vma[v, V_LINE_CPU], S.vma[v, V_LINE_FREE] = _line_rmw(
        S, S.g[G_CUR_TID], S.vma[v, V_LINE_CPU], S.vma[v, V_LINE_FREE])


@njit(cache=True)
def wake(S, tid, pc):
    """Wake a thread blocked on a lock or folio; it continues at `pc` once on a core."""
    make_runnable(S, tid, pc, wakeup_delay(S))


@njit(cache=True, inline="always")
def run_for(S, tid, ns, pc):
    """Spend `ns` of CPU on the thread's core (with the machine's jitter), then continue at
    `pc`."""
    if S.k[K_JITTER]:
        ns = burst_jitter(S, tid, ns)
    ns += S.t[tid, T_LINE_NS]
    S.t[tid, T_LINE_NS] = 0
    S.t[tid, T_PC] = pc
    S.t[tid, T_SLICE_NS] += ns
    schedule(S, S.g[G_NOW] + ns, EV_THREAD, tid)


@njit(cache=True, inline="always")
def spend(S, tid, ns, pc):
    """Spend `ns` of CPU and continue at `pc`: a burst, or straight on when ns is 0. Returns
    the step's go flag."""
    if ns > 0:
        run_for(S, tid, ns, pc)
        return False
    S.t[tid, T_PC] = pc
    return True


@njit(cache=True)
def release_core(S, tid):
    """The thread leaves its core of its own accord (blocks, sleeps, exits): when it runs
    again it starts a new slice."""
    S.t[tid, T_SLICE_NS] = 0
    c = S.t[tid, T_CORE]
    S.t[tid, T_CORE] = -1
    dispatch_core(S, c)


@njit(cache=True)
def block(S, tid, why):
    """Sleep until someone calls wake(); the core goes to the next thread. `why`: the TT_*
    class the wait counts in."""
    S.t[tid, T_STATE] = TS_BLOCKED
    account(S, tid, why)
    release_core(S, tid)


@njit(cache=True)
def exit_thread(S, tid):
    """The thread is done for good (a drained thread at its round's end, an app_launch
    thread at the end of its trace): off its core, and its time no longer counted."""
    S.t[tid, T_STATE] = TS_EXITED
    account(S, tid, TT_EXITED)
    release_core(S, tid)


@njit(cache=True)
def sleep_for(S, tid, ns, pc):
    """schedule_timeout: leave the core, become runnable again after `ns`."""
    S.t[tid, T_STATE] = TS_SLEEPING
    account(S, tid, TT_SLEEP)
    S.t[tid, T_PC] = pc
    release_core(S, tid)
    schedule(S, S.g[G_NOW] + ns, EV_THREAD, tid)


@njit(cache=True, inline="always")
def spin(S, tid, why):
    """Busy-wait keeping the core (and, for spin_lock_irq, with interrupts off); `why`: the
    TT_* class the spin counts in."""
    S.t[tid, T_STATE] = TS_SPINNING
    account(S, tid, why)


@njit(cache=True, inline="always")
def end_spin(S, tid, pc):
    """The spinner got what it waited for: it continues at once on its own core."""
    S.t[tid, T_STATE] = TS_RUNNING
    account(S, tid, TT_CPU)
    S.t[tid, T_PC] = pc
    schedule(S, S.g[G_NOW], EV_THREAD, tid)


@njit(cache=True, inline="always")
def preempt_if_due(S, tid):
    """At a burst boundary: yield to a noise spinner, or to waiters once the slice is used.

    Returns True if the thread left its core (it is back in the run queue, at the head when
    a noise spinner took its core, at the tail when its slice ended).
    """
    if S.t[tid, T_PREEMPT_COUNT] > 0:
        return False                          # spin_lock and get_cpu disable preemption
    c = S.t[tid, T_CORE]
    if S.core[c, C_NOISE_PENDING]:
        # The rest of its slice stays for when it comes back: EEVDF keeps a preempted
        # entity's deadline until it has used its slice (update_deadline).
        S.t[tid, T_CORE] = -1
        _rq_push(S, tid, True)
        dispatch_core(S, c)
        return True
    if S.t[tid, T_SLICE_NS] >= S.k[K_SLICE_NS] and _rq_waiting_for(S, c):
        S.t[tid, T_SLICE_NS] = 0
        S.t[tid, T_CORE] = -1
        _rq_push(S, tid, False)
        dispatch_core(S, c)
        return True
    return False


# ---- ioretry_noise spinners ----------------------------------------------------------------
@njit(cache=True)
def _noise_start(S, c):
    S.core[c, C_NOISE_PENDING] = 0
    S.core[c, C_NOISE_BUSY] = 1
    S.core[c, C_THREAD] = NOISE_THREAD
    schedule(S, S.g[G_NOW] + S.k[K_NOISE_BUSY_NS], EV_NOISE, c)


@njit(cache=True)
def noise_event(S, c):
    """A noise spinner's timer fired (start of its busy period) or its busy period ended."""
    if S.core[c, C_NOISE_BUSY]:
        S.core[c, C_NOISE_BUSY] = 0
        if not S.g[G_DRAINING]:
            schedule(S, S.g[G_NOW] + S.k[K_NOISE_SLEEP_NS], EV_NOISE, c)
        dispatch_core(S, c)
        return
    if S.g[G_DRAINING]:
        return
    if S.core[c, C_THREAD] == IDLE:
        _idle_remove(S, c)
        _noise_start(S, c)
    else:
        # The worker on this core leaves it at its next burst boundary (preempt_if_due).
        S.core[c, C_NOISE_PENDING] = 1


@njit(cache=True, inline="always")
def thread_event_prologue(S, tid):
    """EV_THREAD arrived: returns True if the thread should run its step now."""
    st = S.t[tid, T_STATE]
    if st == TS_SLEEPING:
        make_runnable(S, tid, S.t[tid, T_PC], wakeup_delay(S))
        return False
    if st != TS_RUNNING:
        raise RuntimeError("EV_THREAD for a thread that is neither running nor sleeping")
    return not preempt_if_due(S, tid)


# ---- interrupts off and TLB-shootdown acknowledgements -------------------------------------
@njit(cache=True, inline="always")
def local_irq_disable(S, c):
    S.core[c, C_IRQOFF] = 1


@njit(cache=True, inline="always")
def local_irq_enable(S, c):
    """Interrupts back on: this CPU now answers the flush IPIs that waited for it."""
    S.core[c, C_IRQOFF] = 0
    n = S.core[c, C_ACK_N]
    for i in range(n):
        f = S.core[c, C_ACK0 + i]
        S.t[f, T_M_PENDING_ACKS] -= 1
        if S.t[f, T_M_PENDING_ACKS] == 0:
            end_spin(S, f, S.t[f, T_PC])
    S.core[c, C_ACK_N] = 0


@njit(cache=True)
def smp_call_function_wait(S, tid, pc):
    """flush_tlb_mm_range's IPIs to every other CPU in mm_cpumask, waiting for the acks
    (csd_lock_wait spins). A CPU with interrupts off answers when it turns them back on.
    True: every CPU answered at once; False: spinning, continues at `pc` on the last ack."""
    if not S.k[K_ABL_TLB_LATE_ACK]:
        return True                               # ablation: irqs-off CPUs answer at once
    own = S.t[tid, T_CORE]
    cnt = 0
    for c in range(S.k[K_CORES]):
        if c != own and S.core[c, C_RAN_MM] and S.core[c, C_IRQOFF]:
            S.core[c, C_ACK0 + S.core[c, C_ACK_N]] = tid
            S.core[c, C_ACK_N] += 1
            cnt += 1
    if cnt == 0:
        return True
    S.t[tid, T_M_PENDING_ACKS] = cnt
    S.t[tid, T_PC] = pc
    spin(S, tid, TT_TLB_ACK)
    return False
