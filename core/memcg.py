"""The memory cgroup's charge path (mm/memcontrol.c).

`try_charge_memcg`: a charge is served from this CPU's stock if it holds enough pages
(`consume_stock`); otherwise MEMCG_CHARGE_BATCH (64) pages are charged to the counter and
the rest refills the stock, so the counter moves in steps and runs ahead of use by up to 64
pages per CPU. A charge that would push the counter over `memory.max` reclaims
synchronously on the charging thread, holding whatever lock it holds (MEMCG_MAX), retries,
drains the stocks once, and gives up at once for `__GFP_NORETRY` (readahead) or after
MAX_RECLAIM_RETRIES without progress otherwise. The counter never exceeds `memory.max`.

`memory.high`: a counter charge that leaves usage above it adds the batch to the task's
debt (`memcg_nr_pages_over_high`). `__mem_cgroup_handle_over_high` reclaims the debt on the
return to user mode, holding no lock, and, once the debt passes MEMCG_CHARGE_BATCH, inside
the charge path itself, holding whatever lock the fault or syscall holds. It keeps
reclaiming while reclaim makes progress (or for MAX_RECLAIM_RETRIES more tries), and sleeps
the penalty of `calculate_high_delay` only when it made none; no sleep at or below HZ/100
jiffies, at most 2 s.
"""

from numba import njit

from core.metrics import HIGH_RECLAIM_INKERNEL, HIGH_THROTTLE_NS, MAX_RECLAIM
from core.sched import call, sleep_for
from core.state import (
    C_STOCK,
    G_COUNTERS,
    G_OOM,
    G_PEAK_USAGE,
    G_USAGE,
    K_ABL_INKERNEL_HIGH,
    K_CORES,
    K_HIGH,
    K_HZ,
    K_MAX,
    MC_CHARGE,
    MC_OVER_HIGH,
    MC_OVER_HIGH_RECLAIMED,
    MC_OVER_HIGH_SLEPT,
    MC_RECLAIMED,
    PC_RETURN,
    T_C_DRAINED,
    T_C_NORETRY,
    T_C_NR,
    T_C_OK,
    T_C_RETRIES,
    T_CORE,
    T_DEBT,
    T_OH_IN_RETRY,
    T_OH_NR,
    T_OH_RETRIES,
    T_PC,
    T_R_RECLAIMED,
)
from core.vmscan import start_reclaim

MEMCG_CHARGE_BATCH = 64
MAX_RECLAIM_RETRIES = 16
PAGE_ALLOC_COSTLY_ORDER = 3
MEMCG_DELAY_PRECISION_SHIFT = 20
MEMCG_DELAY_SCALING_SHIFT = 14

CHARGE_OK = 0
CHARGE_OK_OVER_HIGH = 1   # charged; the in-kernel over-high handler must run now
CHARGE_NEEDS_RECLAIM = 2


@njit(cache=True)
def _page_counter_try_charge(S, nr):
    mx = S.k[K_MAX]
    u = S.g[G_USAGE] + nr
    if mx > 0 and u > mx:
        return False
    S.g[G_USAGE] = u
    S.g[G_PEAK_USAGE] = max(S.g[G_PEAK_USAGE], u)
    return True


@njit(cache=True)
def try_charge_fast(S, tid, nr):
    """The non-blocking part of try_charge_memcg for `nr` pages on the thread's CPU."""
    c = S.t[tid, T_CORE]
    if S.core[c, C_STOCK] >= nr:
        S.core[c, C_STOCK] -= nr                 # consume_stock
        return CHARGE_OK
    batch = max(MEMCG_CHARGE_BATCH, nr)
    if not _page_counter_try_charge(S, batch):
        batch = nr
        if not _page_counter_try_charge(S, batch):
            return CHARGE_NEEDS_RECLAIM
    if batch > nr:
        # refill_stock: a stock above MEMCG_CHARGE_BATCH is drained back to the counter.
        S.core[c, C_STOCK] += batch - nr
        if S.core[c, C_STOCK] > MEMCG_CHARGE_BATCH:
            S.g[G_USAGE] -= S.core[c, C_STOCK]
            S.core[c, C_STOCK] = 0
    high = S.k[K_HIGH]
    if high > 0 and S.g[G_USAGE] > high:
        S.t[tid, T_DEBT] += batch
    if S.t[tid, T_DEBT] > MEMCG_CHARGE_BATCH and S.k[K_ABL_INKERNEL_HIGH]:
        return CHARGE_OK_OVER_HIGH
    return CHARGE_OK


@njit(cache=True)
def uncharge(S, nr):
    S.g[G_USAGE] -= nr


@njit(cache=True)
def drain_all_stock(S):
    """Return every CPU's stock to the counter (the kernel queues this on each CPU)."""
    for c in range(S.k[K_CORES]):
        S.g[G_USAGE] -= S.core[c, C_STOCK]
        S.core[c, C_STOCK] = 0


@njit(cache=True)
def charge_slow(S, tid, nr, noretry, ret):
    """Enter the blocking part of try_charge_memcg; c_ok says the outcome at `ret`."""
    S.t[tid, T_C_NR] = nr
    S.t[tid, T_C_NORETRY] = noretry
    S.t[tid, T_C_DRAINED] = 0
    S.t[tid, T_C_RETRIES] = MAX_RECLAIM_RETRIES
    S.t[tid, T_C_OK] = 0
    call(S, tid, MC_CHARGE, ret)


@njit(cache=True)
def mem_cgroup_charge(S, tid, nr, noretry, ret):
    """Charge `nr` new pages (mem_cgroup_charge -> try_charge_memcg): the fast path, else
    direct reclaim on this thread, and the in-kernel over-high handler when the debt is
    due. The thread continues at `ret`; T_C_OK says whether the charge succeeded."""
    code = try_charge_fast(S, tid, nr)
    if code == CHARGE_NEEDS_RECLAIM:
        charge_slow(S, tid, nr, noretry, ret)
        return
    S.t[tid, T_C_OK] = 1
    if code == CHARGE_OK_OVER_HIGH:
        handle_over_high_in_charge(S, tid, ret)
        return
    S.t[tid, T_PC] = ret


@njit(cache=True)
def calculate_high_delay(S, nr_pages):
    """Penalty in jiffies for a task that charged nr_pages over memory.high."""
    high = S.k[K_HIGH]
    usage = S.g[G_USAGE]
    if high <= 0 or usage <= high:
        return 0
    overage = ((usage - high) << MEMCG_DELAY_PRECISION_SHIFT) // max(high, 1)
    penalty = overage * overage * S.k[K_HZ]
    penalty >>= MEMCG_DELAY_PRECISION_SHIFT
    penalty >>= MEMCG_DELAY_SCALING_SHIFT
    return penalty * nr_pages // MEMCG_CHARGE_BATCH


@njit(cache=True)
def step(S, tid, pc):
    if pc == MC_CHARGE:
        S.g[G_COUNTERS + MAX_RECLAIM] += 1          # memcg_memory_event(MEMCG_MAX)
        start_reclaim(S, tid, S.t[tid, T_C_NR], MC_RECLAIMED)
        return True

    if pc == MC_RECLAIMED:
        nr = S.t[tid, T_C_NR]
        code = try_charge_fast(S, tid, nr)
        if code == CHARGE_NEEDS_RECLAIM and not S.t[tid, T_C_DRAINED]:
            # drain_all_stock, then `goto retry`: charge again, reclaim again if it fails.
            drain_all_stock(S)
            S.t[tid, T_C_DRAINED] = 1
            code = try_charge_fast(S, tid, nr)
            if code == CHARGE_NEEDS_RECLAIM:
                S.t[tid, T_PC] = MC_CHARGE
                return True
        if code != CHARGE_NEEDS_RECLAIM:
            S.t[tid, T_C_OK] = 1
            if code == CHARGE_OK_OVER_HIGH:
                S.g[G_COUNTERS + HIGH_RECLAIM_INKERNEL] += 1
                S.t[tid, T_OH_IN_RETRY] = 0
                S.t[tid, T_PC] = MC_OVER_HIGH
            else:
                S.t[tid, T_PC] = PC_RETURN
            return True
        if S.t[tid, T_C_NORETRY]:
            S.t[tid, T_PC] = PC_RETURN           # __GFP_NORETRY: nomem
            return True
        # "Only for regular pages": a charge above PAGE_ALLOC_COSTLY_ORDER retries only
        # within nr_retries, progress or not.
        if S.t[tid, T_R_RECLAIMED] == 0 or nr > (1 << PAGE_ALLOC_COSTLY_ORDER):
            S.t[tid, T_C_RETRIES] -= 1
            if S.t[tid, T_C_RETRIES] < 0:
                # The kernel would invoke the memcg OOM killer here; the model reports it
                # and lets the caller fail the allocation (VM_FAULT_OOM -> the fault retries).
                S.g[G_OOM] += 1
                S.t[tid, T_PC] = PC_RETURN
                return True
        S.t[tid, T_PC] = MC_CHARGE
        return True

    # -- __mem_cgroup_handle_over_high --------------------------------------------------------
    if pc == MC_OVER_HIGH:
        if S.t[tid, T_OH_IN_RETRY] == 0:
            S.t[tid, T_OH_NR] = S.t[tid, T_DEBT]
            S.t[tid, T_DEBT] = 0
            S.t[tid, T_OH_RETRIES] = MAX_RECLAIM_RETRIES
        # reclaim_high: only while usage is above memory.high.
        if S.g[G_USAGE] > S.k[K_HIGH]:
            nr = 32 if S.t[tid, T_OH_IN_RETRY] else S.t[tid, T_OH_NR]
            start_reclaim(S, tid, nr, MC_OVER_HIGH_RECLAIMED)
        else:
            S.t[tid, T_R_RECLAIMED] = 0
            S.t[tid, T_PC] = MC_OVER_HIGH_RECLAIMED
        return True

    if pc == MC_OVER_HIGH_RECLAIMED:
        penalty = calculate_high_delay(S, S.t[tid, T_OH_NR])
        penalty = min(penalty, 2 * S.k[K_HZ])               # MEMCG_MAX_HIGH_DELAY_JIFFIES
        if penalty <= S.k[K_HZ] // 100:
            S.t[tid, T_OH_IN_RETRY] = 0
            S.t[tid, T_PC] = PC_RETURN
            return True
        if S.t[tid, T_R_RECLAIMED] > 0 or S.t[tid, T_OH_RETRIES] > 0:
            if S.t[tid, T_R_RECLAIMED] == 0:
                S.t[tid, T_OH_RETRIES] -= 1
            S.t[tid, T_OH_IN_RETRY] = 1
            S.t[tid, T_PC] = MC_OVER_HIGH
            return True
        S.t[tid, T_OH_IN_RETRY] = 0
        ns = penalty * (1_000_000_000 // S.k[K_HZ])
        S.g[G_COUNTERS + HIGH_THROTTLE_NS] += ns
        sleep_for(S, tid, ns, MC_OVER_HIGH_SLEPT)
        return False

    if pc == MC_OVER_HIGH_SLEPT:
        S.t[tid, T_PC] = PC_RETURN
        return True

    raise RuntimeError("memcg: unknown program counter")


@njit(cache=True)
def handle_over_high_in_charge(S, tid, ret):
    """try_charge_memcg's tail: the debt passed MEMCG_CHARGE_BATCH inside the kernel, so the
    handler runs right here, holding whatever lock the caller holds."""
    S.g[G_COUNTERS + HIGH_RECLAIM_INKERNEL] += 1
    S.t[tid, T_OH_IN_RETRY] = 0
    call(S, tid, MC_OVER_HIGH, ret)


@njit(cache=True)
def exit_to_user_mode(S, tid):
    """resume_user_mode_work at the end of a fault or syscall: settle the memory.high debt
    holding no lock, then return to the caller's frame."""
    if not mem_cgroup_handle_over_high(S, tid, PC_RETURN):
        S.t[tid, T_PC] = PC_RETURN


@njit(cache=True)
def mem_cgroup_handle_over_high(S, tid, ret):
    """resume_user_mode_work: settle the debt on the way back to user mode (no lock held).
    True if the handler was entered (the thread continues at `ret` afterwards)."""
    if S.t[tid, T_DEBT] > 0:
        S.t[tid, T_OH_IN_RETRY] = 0
        call(S, tid, MC_OVER_HIGH, ret)
        return True
    return False
