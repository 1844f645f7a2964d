"""Helpers shared by the mechanism tests: play threads and events by hand on a State.

Threads that call a blocking primitive are first put "on a core" (`on_core`), exactly as the
scheduler would have left them. `step_event` is one iteration of `core.engine.run`'s loop,
so a test can stop at a precise point.
"""

from __future__ import annotations

from core import engine, evq, sched
from core.blockdev import io_done, throtl_dispatch
from core.state import (
    C_THREAD,
    EV_IO_DONE,
    EV_THREAD,
    EV_THROTL,
    G_COUNTERS,
    G_HEAP_N,
    G_LRU_HEAD,
    G_NOW,
    P_NEXT,
    T_CORE,
    T_PC,
    T_STATE,
    TS_RUNNING,
    TT_CPU,
)


def on_core(S, tid, c):
    """Leave thread `tid` running on idle core `c` (what sched._start_on does, without the
    EV_THREAD event: the test itself plays the thread)."""
    assert S.core[c, C_THREAD] == -1
    sched._idle_remove(S, c)
    S.t[tid, T_STATE] = TS_RUNNING
    sched.account(S, tid, TT_CPU)
    S.t[tid, T_CORE] = c
    S.core[c, C_THREAD] = tid


def counter(S, idx):
    return int(S.g[G_COUNTERS + idx])


def lru_list(S, lst):
    """LRU list `lst` from head (young end) to tail."""
    out = []
    p = int(S.g[G_LRU_HEAD + lst])
    while p >= 0:
        out.append(p)
        p = int(S.pg[p, P_NEXT])
    return out


def start(S, tids):
    for tid in tids:
        sched.make_runnable(S, tid, int(S.t[tid, T_PC]), 0)


def step_event(S):
    """One iteration of core.engine.run's loop."""
    t, kind, ident = evq.pop(S)
    S.g[G_NOW] = t
    if kind == EV_THREAD:
        if sched.thread_event_prologue(S, ident):
            engine.thread_step(S, ident)
    elif kind == EV_IO_DONE:
        io_done(S, ident)
    elif kind == EV_THROTL:
        throtl_dispatch(S, ident)
    else:
        raise AssertionError(f"unexpected event kind {kind}")


def drive_until(S, cond, max_events=10_000):
    for _ in range(max_events):
        if cond(S):
            return
        assert S.g[G_HEAP_N] > 0, "event queue ran dry before the condition held"
        step_event(S)
    raise AssertionError("condition not reached")
