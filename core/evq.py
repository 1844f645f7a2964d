"""The event queue: a binary min-heap on (time, sequence number).

The rising sequence number runs same-time events in the order they were scheduled (as in
SimPy's Environment), which is what makes a (params, seed) pair give the same row bit for
bit.
"""

from numba import njit

from core.state import EV_ID, EV_KIND, EV_SEQ, EV_TIME, G_HEAP_N, G_NOW, G_SEQ


@njit(cache=True)
def _less(S, a, b):
    ta = S.ev[a, EV_TIME]
    tb = S.ev[b, EV_TIME]
    return ta < tb or (ta == tb and S.ev[a, EV_SEQ] < S.ev[b, EV_SEQ])


@njit(cache=True)
def _swap(S, a, b):
    S.ev[a, EV_TIME], S.ev[b, EV_TIME] = S.ev[b, EV_TIME], S.ev[a, EV_TIME]
    S.ev[a, EV_SEQ], S.ev[b, EV_SEQ] = S.ev[b, EV_SEQ], S.ev[a, EV_SEQ]
    S.ev[a, EV_KIND], S.ev[b, EV_KIND] = S.ev[b, EV_KIND], S.ev[a, EV_KIND]
    S.ev[a, EV_ID], S.ev[b, EV_ID] = S.ev[b, EV_ID], S.ev[a, EV_ID]


@njit(cache=True)
def schedule(S, at_ns, kind, ident):
    """Push an event; `at_ns` is absolute and never before now."""
    n = S.g[G_HEAP_N]
    if n >= S.ev.shape[0]:
        raise RuntimeError("event heap full: more pending events than threads*4+cores*4")
    if at_ns < S.g[G_NOW]:
        raise RuntimeError("event scheduled in the past")
    S.ev[n, EV_TIME] = at_ns
    S.ev[n, EV_SEQ] = S.g[G_SEQ]
    S.g[G_SEQ] += 1
    S.ev[n, EV_KIND] = kind
    S.ev[n, EV_ID] = ident
    S.g[G_HEAP_N] = n + 1
    i = n
    while i > 0:
        parent = (i - 1) >> 1
        if _less(S, i, parent):
            _swap(S, i, parent)
            i = parent
        else:
            break


@njit(cache=True)
def pop(S):
    """Remove the earliest event; return (time, kind, id). The heap must not be empty."""
    t = S.ev[0, EV_TIME]
    kind = S.ev[0, EV_KIND]
    ident = S.ev[0, EV_ID]
    n = S.g[G_HEAP_N] - 1
    S.g[G_HEAP_N] = n
    if n > 0:
        S.ev[0, EV_TIME] = S.ev[n, EV_TIME]
        S.ev[0, EV_SEQ] = S.ev[n, EV_SEQ]
        S.ev[0, EV_KIND] = S.ev[n, EV_KIND]
        S.ev[0, EV_ID] = S.ev[n, EV_ID]
        i = 0
        while True:
            left = 2 * i + 1
            if left >= n:
                break
            child = left
            if left + 1 < n and _less(S, left + 1, left):
                child = left + 1
            if _less(S, child, i):
                _swap(S, child, i)
                i = child
            else:
                break
    return t, kind, ident
