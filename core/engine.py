"""The engine: pop (time, seq, event), dispatch, repeat.

It owns nothing but the clock and the dispatch: a thread event runs the thread's program
(`thread_step`) until the thread waits again; the program counter's hundreds digit names
the mechanism module that owns the step. Calls between modules go through a small
per-thread return stack (`call` pushes, PC_RETURN pops).
"""

import functools
import warnings

import numba
import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic, overload

from core import fault, lru, madvise, memcg, mm, readahead, swap, vmscan
from core.blockdev import io_done, throtl_dispatch
from core.evq import pop, schedule
from core.metrics import FORK_NS_MAX, N_COUNTERS, PEAK_USAGE_PAGES, VMA_WRITER_WAIT_MAX_NS
from core.pagecache import folio_relock
from core.rwsem import rwsem_relock_write
from core.sched import account_flush, make_runnable, noise_event, thread_event_prologue
from core.state import (
    C_TICK_PHASE,
    EV_IO_DONE,
    EV_NOISE,
    EV_THREAD,
    EV_THROTL,
    EV_TIME,
    EV_WARMUP,
    G_COUNTERS,
    G_CUR_TID,
    G_DRAINING,
    G_EVENTS,
    G_HEAP_N,
    G_HIST_READ,
    G_HIST_WRITE,
    G_LAT_HIST,
    G_LAUNCH_NS,
    G_NOW,
    G_PEAK_USAGE,
    G_STOP,
    G_USAGE,
    G_WARM,
    G_WARM_COUNTERS,
    G_WARM_HIST,
    K_CORES,
    K_END_NS,
    K_ENGINE,
    K_JITTER,
    K_MAX_EVENTS,
    K_NOISE,
    K_NOISE_SLEEP_NS,
    K_THREADS,
    K_TICK_PERIOD_NS,
    K_WARMUP_NS,
    LAT_BINS,
    M_FORK,
    N_HISTS,
    PC_RETURN,
    T_FOLIO_RELOCK,
    T_PC,
    T_ROUNDS,
    T_RW_RELOCK,
    T_SP,
    T_STACK0,
    T_WARM_ROUNDS,
    State,
)
from core.workloads import app_launch, file_thrash, fork_stall, swapin

# numba's SSA pass flags variables of functions inlined into an inlined overload (here lru.step
# inside `program_step`) as "not in scope" (numba issue #9489, Python 3.11): a pedantic
# check on its IR bookkeeping, not on the code. The rows are checked bit for bit instead
# (benchmarks/fingerprint.py).
warnings.filterwarnings("ignore", message=r".*variable '.*' is not in scope",
                        category=numba.core.errors.NumbaIRAssumptionWarning)


# ---- the engine of each workload ------------------------------------------------------------
# numba compiles every function a jitted function can call, so one engine for every workload
# compiled the swap, madvise and fork paths for a file_thrash run as well. Each workload has
# an engine of its own instead, compiled with the steps its threads can reach and no other
# (a cold compile of file_thrash's engine: docs/studies/engine-performance.md). A program
# counter of a step left out raises at once (`_outside`): add the step to the workload's
# line below. The rows are those of one engine with every step.
ENGINES = {
    "file_thrash": ("file_thrash", "fault", "mm", "readahead", "memcg", "lru", "vmscan"),
    "swapin": ("swapin", "fault", "swap", "madvise", "readahead", "memcg", "lru", "vmscan"),
    "app_launch": ("app_launch", "fault", "mm", "swap", "readahead", "memcg", "lru",
                   "vmscan"),
    "fork_stall": ("fork_stall", "app_launch", "fault", "mm", "fork", "swap", "readahead",
                   "memcg", "lru", "vmscan"),
}
ENGINE_IDS = {name: i for i, name in enumerate(ENGINES)}     # S.k[K_ENGINE]

_STEPS = {"file_thrash": file_thrash.step, "swapin": swapin.step,
          "app_launch": app_launch.step, "fork_stall": fork_stall.step,
          "fault": fault.step, "mm": mm.step, "fork": mm.fork_step,
          "readahead": readahead.step, "memcg": memcg.step, "lru": lru.step,
          "vmscan": vmscan.step, "swap": swap.step, "madvise": madvise.step}


@njit(cache=True)
def _outside(S, tid, pc):
    if pc >= 0:
        raise RuntimeError("a program counter of a step this workload's engine does not "
                           "compile: add the step to core.engine.ENGINES")
    return False


@functools.cache
def _program_step(engine):
    """The dispatch of `engine` (an index of ENGINES): the program counter's hundreds digit
    names the module that owns the step; the steps the engine leaves out are `_outside`.
    Built once per engine (the pure-Python fallback below asks for it at every step)."""
    keep = ENGINES[list(ENGINES)[engine]]
    f = {name: (step if name in keep else _outside) for name, step in _STEPS.items()}
    thrash, swapin_, launch, forker = (f["file_thrash"], f["swapin"], f["app_launch"],
                                      f["fork_stall"])
    fault_, mm_, fork_, ra, mc = f["fault"], f["mm"], f["fork"], f["readahead"], f["memcg"]
    lru_, scan, swap_, madv = f["lru"], f["vmscan"], f["swap"], f["madvise"]

    def program_step(S, tid, pc, engine):
        group = pc // 100
        if group == 1:
            if pc < 120:
                return thrash(S, tid, pc)
            if pc < 140:
                return swapin_(S, tid, pc)
            if pc < 160:
                return launch(S, tid, pc)
            return forker(S, tid, pc)
        if group == 2:
            return fault_(S, tid, pc)
        if group == 3:
            if pc < M_FORK:
                return mm_(S, tid, pc)
            return fork_(S, tid, pc)
        if group == 4:
            return ra(S, tid, pc)
        if group == 5:
            return mc(S, tid, pc)
        if group == 6:
            if pc < 610:
                return lru_(S, tid, pc)
            return scan(S, tid, pc)
        if group == 7:
            return swap_(S, tid, pc)
        if group == 8:
            return madv(S, tid, pc)
        raise RuntimeError("unknown program counter")
    return program_step


def program_step(S, tid, pc, engine):
    """One step of the thread's program; `engine` is a compile-time constant in jitted code."""
    return _program_step(engine)(S, tid, pc, engine)


@overload(program_step, inline="always")
def _program_step_typed(S, tid, pc, engine):
    if isinstance(engine, types.IntegerLiteral):
        return _program_step(engine.literal_value)
    return None


@njit(cache=True, _nrt=False, inline="always")
def _thread_step(S, tid, engine):
    S.g[G_CUR_TID] = tid
    if S.t[tid, T_FOLIO_RELOCK] and not folio_relock(S, tid):
        return                                 # lost the race for the folio lock: queued
    if S.t[tid, T_RW_RELOCK] and not rwsem_relock_write(S, tid):
        return                                 # a reader stole mmap_lock: asleep again
    while True:
        pc = S.t[tid, T_PC]
        if pc == PC_RETURN:
            sp = S.t[tid, T_SP] - 1
            if sp < 0:
                raise RuntimeError("call stack underflow")
            S.t[tid, T_SP] = sp
            S.t[tid, T_PC] = S.t[tid, T_STACK0 + sp]
            continue
        if not program_step(S, tid, pc, engine):
            return


def thread_step(S, tid):
    """Run thread `tid`'s program until it waits (one thread event), with the workload's
    engine; for tests that play the engine event by event."""
    engine = int(S.k[K_ENGINE])
    if numba.config.DISABLE_JIT:
        return _thread_step(S, tid, engine)
    _STEP_ENTRIES[engine](S, np.int64(tid))


def compile_thread_step(S):
    """Compile, without running, the entry `thread_step` uses for S's engine (the test
    session warms it beside the runs)."""
    if not numba.config.DISABLE_JIT:
        _STEP_ENTRIES[int(S.k[K_ENGINE])].compile((numba.typeof(S), numba.types.int64))


@njit(cache=True)
def _warmup_snapshot(S):
    S.g[G_WARM] = 1
    account_flush(S)
    # Maxima restart at the end of warm-up; sums are differenced at the end.
    S.g[G_COUNTERS + VMA_WRITER_WAIT_MAX_NS] = 0
    S.g[G_COUNTERS + FORK_NS_MAX] = 0
    S.g[G_PEAK_USAGE] = S.g[G_USAGE]
    for i in range(N_COUNTERS):
        S.g[G_WARM_COUNTERS + i] = S.g[G_COUNTERS + i]
    for i in range(8):
        S.g[G_WARM_HIST + i] = S.g[G_HIST_READ + i]
        S.g[G_WARM_HIST + 8 + i] = S.g[G_HIST_WRITE + i]
    for i in range(N_HISTS * LAT_BINS):         # G_LAT_HIST .. G_BG_LAT_HIST
        S.g[G_LAT_HIST + i] = 0
    for tid in range(S.k[K_THREADS]):
        S.t[tid, T_WARM_ROUNDS] = S.t[tid, T_ROUNDS]


@intrinsic
def _int64_ptr(typingctx, addr):
    """An address (arr.ctypes.data) as an int64 pointer, for carray."""
    sig = types.CPointer(types.int64)(types.uintp)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))
    return sig, codegen


@njit(cache=True)
def _view(a):
    return carray(_int64_ptr(a.ctypes.data), a.shape)


@njit(cache=True)
def _unmanaged(S):
    """The same buffers as arrays without a meminfo. numba increfs and decrefs, atomically,
    every array of the State tuple on every call it does not inline; arrays built by carray
    carry no meminfo and skip that (measured: 1.8 M -> see benchmarks/engine.py). The
    caller keeps the real arrays alive for the whole run."""
    return State(_view(S.g), _view(S.k), _view(S.t), _view(S.pg), _view(S.vma),
                 _view(S.file), _view(S.core), _view(S.rq), _view(S.ev))


def run(S, seed, drain=False):
    """Simulate S with its workload's engine (S.k[K_ENGINE]); returns events processed."""
    engine = int(S.k[K_ENGINE])
    if numba.config.DISABLE_JIT:
        # Pure Python (NUMBA_DISABLE_JIT=1, for stepping through a mechanism in a
        # debugger): there is no reference counting to avoid and carray views cannot be built.
        return _run(S, seed, drain, engine)
    return _RUN_ENTRIES[engine](S, np.int64(seed), bool(drain))


def _entries(engine):
    """The compiled entries of an engine, called from Python: the run, and one event of a
    thread (for tests). numba compiles each entry with every step it reaches, and links and
    optimizes them again into it, so a run compiles only the first. `engine` is a constant of
    the closures, which numba types as a literal and keys its cache by."""
    @njit(cache=True)
    def run_entry(S, seed, drain):
        return _run(_unmanaged(S), seed, drain, engine)

    @njit(cache=True)
    def step_entry(S, tid):
        _thread_event(_unmanaged(S), tid, engine)
    return run_entry, step_entry


@njit(cache=True, _nrt=False)
def _thread_event(S, tid, engine):
    _thread_step(S, tid, engine)


@njit(cache=True, _nrt=False)
def _run(S, seed, drain, engine):
    """Simulate until K_END_NS (or the event cap); returns events processed.

    drain=True (tests): after K_END_NS keep going until every thread has finished the
    round it was in, so that the final state must hold no lock at all."""
    np.random.seed(seed)
    n = S.k[K_THREADS]
    # Threads start within the first 100 us in random order: different seeds, different
    # interleavings; the same seed, the same run.
    for tid in range(n):
        make_runnable(S, tid, S.t[tid, T_PC], np.int64(np.random.randint(0, 100_000)))
    if S.k[K_JITTER]:
        # Each CPU's tick runs on its own clock: a phase drawn per CPU.
        for c in range(S.k[K_CORES]):
            S.core[c, C_TICK_PHASE] = np.random.randint(0, S.k[K_TICK_PERIOD_NS])
    if S.k[K_NOISE]:
        for c in range(S.k[K_CORES]):
            schedule(S, np.int64(np.random.randint(0, S.k[K_NOISE_SLEEP_NS] + 1)), EV_NOISE, c)
    if S.k[K_WARMUP_NS] > 0:
        schedule(S, S.k[K_WARMUP_NS], EV_WARMUP, 0)
    else:
        _warmup_snapshot(S)
    end = S.k[K_END_NS]
    max_events = S.k[K_MAX_EVENTS]
    events = 0
    while S.g[G_HEAP_N] > 0:
        t = S.ev[0, EV_TIME]
        if t > end:
            if not drain:
                break
            S.g[G_DRAINING] = 1
            if t > 20 * end + 10_000_000_000:
                S.g[G_STOP] = 2               # a thread never finished its round
                break
        t, kind, ident = pop(S)
        S.g[G_NOW] = t
        events += 1
        if kind == EV_THREAD:
            if thread_event_prologue(S, ident):
                _thread_step(S, ident, engine)
        elif kind == EV_IO_DONE:
            io_done(S, ident)
        elif kind == EV_NOISE:
            noise_event(S, ident)
        elif kind == EV_WARMUP:
            _warmup_snapshot(S)
        elif kind == EV_THROTL:
            throtl_dispatch(S, ident)
        if events >= max_events:
            S.g[G_STOP] = 1
            break
    if S.g[G_STOP] == 0 and not drain and S.g[G_LAUNCH_NS] < 0:
        S.g[G_NOW] = end
    account_flush(S)
    S.g[G_COUNTERS + PEAK_USAGE_PAGES] = S.g[G_PEAK_USAGE]
    S.g[G_EVENTS] = events
    return events


_RUN_ENTRIES, _STEP_ENTRIES = zip(*(_entries(engine) for engine in range(len(ENGINES))))
