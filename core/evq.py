"""The event queue: a binary min-heap on (time, sequence number).

The rising sequence number runs same-time events in the order they were scheduled (as in
SimPy's Environment), which is what makes a (params, seed) pair give the same row bit for
bit.
"""

from numba import njit

from core.state import EV_ID, EV_KIND, EV_SEQ, EV_TIME, G_HEAP_N, G_NOW, G_SEQ


@njit(cache=True)
def schedule(S, at_ns, kind, ident):
    """Push an event; `at_ns` is absolute and never before now."""
    n = S.g[G_HEAP_N]
    if n >= S.ev.shape[0]:
        raise RuntimeError("event heap full: more pending events than threads*4+cores*4")
    if at_ns < S.g[G_NOW]:
        raise RuntimeError("event scheduled in the past")
    ev = S.ev
    seq = S.g[G_SEQ]
    S.g[G_SEQ] = seq + 1
    S.g[G_HEAP_N] = n + 1
    # Sift up with a hole. The new sequence number is the largest in the heap, so only a
    # strictly later parent moves down.
    i = n
    while i > 0:
        parent = (i - 1) >> 1
        if at_ns < ev[parent, EV_TIME]:
            ev[i, EV_TIME] = ev[parent, EV_TIME]
            ev[i, EV_SEQ] = ev[parent, EV_SEQ]
            ev[i, EV_KIND] = ev[parent, EV_KIND]
            ev[i, EV_ID] = ev[parent, EV_ID]
            i = parent
        else:
            break
    ev[i, EV_TIME] = at_ns
    ev[i, EV_SEQ] = seq
    ev[i, EV_KIND] = kind
    ev[i, EV_ID] = ident


@njit(cache=True)
def pop(S):
    """Remove the earliest event; return (time, kind, id). The heap must not be empty."""
    ev = S.ev
    t = ev[0, EV_TIME]
    kind = ev[0, EV_KIND]
    ident = ev[0, EV_ID]
    n = S.g[G_HEAP_N] - 1
    S.g[G_HEAP_N] = n
    if n > 0:
        # Sift the last entry down from the root with a hole: one write per level.
        lt = ev[n, EV_TIME]
        ls = ev[n, EV_SEQ]
        i = 0
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            ct = ev[child, EV_TIME]
            cs = ev[child, EV_SEQ]
            r = child + 1
            if r < n:
                rt = ev[r, EV_TIME]
                if rt < ct or (rt == ct and ev[r, EV_SEQ] < cs):
                    child = r
                    ct = rt
                    cs = ev[r, EV_SEQ]
            if ct < lt or (ct == lt and cs < ls):
                ev[i, EV_TIME] = ct
                ev[i, EV_SEQ] = cs
                ev[i, EV_KIND] = ev[child, EV_KIND]
                ev[i, EV_ID] = ev[child, EV_ID]
                i = child
            else:
                break
        ev[i, EV_TIME] = lt
        ev[i, EV_SEQ] = ls
        ev[i, EV_KIND] = ev[n, EV_KIND]
        ev[i, EV_ID] = ev[n, EV_ID]
    return t, kind, ident
