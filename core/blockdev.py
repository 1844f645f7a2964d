"""The block device: lognormal latency with an optional heavy tail, per-page transfer,
bounded queue depth, and blk-throttle in front of it for one throttled cgroup.

A request covers a run of contiguous folios of one file (what read_pages submits).
Its service time is a lognormal draw (median `io_median_us`, shape `io_sigma`), or with
probability `io_tail_pct` a Pareto draw (scale `io_tail_us`, shape `io_tail_alpha`: the
multi-millisecond stalls of flash under background writeback and garbage collection),
plus the transfer of its pages plus completion handling; at most `queue_depth` requests
are in flight, later ones wait in FIFO order. On completion every folio of the run becomes
uptodate and is unlocked (handing its lock to a waiter, if any): end_buffer_async_read /
mpage_end_io -> folio_end_read. A write (swap-out to `disk`) ends the folios' writeback
(folio_end_writeback); the submitter does not wait for it.

blk-throttle (block/blk-throttle.c, io.max `rbps`/`riops`): a read submitted by a thread of
the throttled group (T_BLKCG = 1) waits in the group's FIFO until its budget allows it:
blk_throtl_bio -> tg_may_dispatch, dispatched by the group's pending timer. The budget is
modelled as a token bucket one throtl_slice deep (DFL_THROTL_SLICE, HZ/10 = 100 ms): an idle
group may send a slice's worth at once, as tg_within_bps_limit's slice rounding allows, then
bytes/rbps (or 1/riops, whichever is longer) per request.
"""

import numpy as np
from numba import njit

from core.evq import schedule
from core.metrics import PAGES_READ
from core.pagecache import folios_end_read
from core.sched import block, fifo_append, wake
from core.state import (
    EV_IO_DONE,
    EV_THROTL,
    G_COUNTERS,
    G_IO_FREE,
    G_IO_INFLIGHT,
    G_IO_QHEAD,
    G_IO_QTAIL,
    G_IO_QUEUED,
    G_IO_WAIT_HEAD,
    G_IO_WAIT_TAIL,
    G_NOW,
    G_THROTL_NEXT,
    K_IO_COMPLETE,
    K_IO_MEDIAN_NS,
    K_IO_SIGMA_PPM,
    K_IO_TAIL_ALPHA_PPM,
    K_IO_TAIL_NS,
    K_IO_TAIL_PPM,
    K_IO_XFER,
    K_QUEUE_DEPTH,
    K_THROTL_BPS,
    K_THROTL_IOPS,
    K_THROTL_SLICE_NS,
    P_FLAGS,
    PG_WRITEBACK,
    RQ_FIRST,
    RQ_N,
    RQ_NEXT,
    RQ_OWNER,
    RQ_WRITE,
    T_BLKCG,
    T_PC,
    T_WAIT_NEXT,
    TT_FOLIO,
)


@njit(cache=True)
def _service_ns(S, n):
    median = S.k[K_IO_MEDIAN_NS]
    sigma = S.k[K_IO_SIGMA_PPM] / 1e6
    lat = median
    if S.k[K_IO_TAIL_PPM] > 0 and np.random.randint(0, 1_000_000) < S.k[K_IO_TAIL_PPM]:
        # Pareto: P(lat > x) = (tail_ns / x) ** alpha for x >= tail_ns.
        u = 1.0 - np.random.random()                  # (0, 1]
        lat = int(S.k[K_IO_TAIL_NS] * u ** (-1e6 / S.k[K_IO_TAIL_ALPHA_PPM]))
    elif sigma > 0.0 and median > 0:
        lat = int(median * np.exp(sigma * np.random.standard_normal()))
    return lat + n * S.k[K_IO_XFER] + S.k[K_IO_COMPLETE]


@njit(cache=True)
def _start(S, slot):
    S.g[G_IO_INFLIGHT] += 1
    schedule(S, S.g[G_NOW] + _service_ns(S, S.rq[slot, RQ_N]), EV_IO_DONE, slot)


@njit(cache=True)
def submit_read(S, first, n, owner):
    """submit_bio for folios first..first+n-1 (all locked by the submitter)."""
    _submit(S, first, n, owner, 0)


@njit(cache=True)
def submit_write(S, first, n, owner):
    """submit_bio(REQ_OP_WRITE) for folios first..first+n-1, all under writeback. The
    caller got a request first (blk_get_request)."""
    _submit(S, first, n, owner, 1)


@njit(cache=True)
def blk_get_request(S, tid, pc):
    """blk_mq_get_tag for an asynchronous writer: with queue_depth requests already queued
    behind the device, sleep until a completion frees one, then continue at `pc`. True if
    a request is available now."""
    if S.g[G_IO_QUEUED] < S.k[K_QUEUE_DEPTH]:
        return True
    S.t[tid, T_PC] = pc
    S.g[G_IO_WAIT_HEAD], S.g[G_IO_WAIT_TAIL] = fifo_append(S, tid, S.g[G_IO_WAIT_HEAD],
                                                           S.g[G_IO_WAIT_TAIL])
    block(S, tid, TT_FOLIO)
    return False


@njit(cache=True)
def _submit(S, first, n, owner, write):
    slot = S.g[G_IO_FREE]
    if slot < 0:
        raise RuntimeError("block request slots exhausted")
    S.g[G_IO_FREE] = S.rq[slot, RQ_NEXT]
    S.rq[slot, RQ_FIRST] = first
    S.rq[slot, RQ_N] = n
    S.rq[slot, RQ_OWNER] = owner
    S.rq[slot, RQ_WRITE] = write
    S.rq[slot, RQ_NEXT] = -1
    if not write and owner >= 0 and S.t[owner, T_BLKCG] == 1 \
            and (S.k[K_THROTL_BPS] > 0 or S.k[K_THROTL_IOPS] > 0):
        at = blk_throtl_bio(S, n)
        if at > S.g[G_NOW]:
            schedule(S, at, EV_THROTL, slot)
            return
    throtl_dispatch(S, slot)


@njit(cache=True)
def blk_throtl_bio(S, n):
    """The throttled group's next read of n pages: when its budget allows it (ns). The
    group's budget is spent up to G_THROTL_NEXT; credit accrues from then on but never
    more than one throtl_slice of it (an idle group's first bios go at once)."""
    cost = 0
    if S.k[K_THROTL_BPS] > 0:
        cost = n * 4096 * 1_000_000_000 // S.k[K_THROTL_BPS]
    if S.k[K_THROTL_IOPS] > 0:
        cost = max(cost, 1_000_000_000 // S.k[K_THROTL_IOPS])
    now = S.g[G_NOW]
    spent = max(S.g[G_THROTL_NEXT], now - S.k[K_THROTL_SLICE_NS]) + cost
    S.g[G_THROTL_NEXT] = spent
    return max(now, spent)


@njit(cache=True)
def throtl_dispatch(S, slot):
    """The request goes to the device: started if a slot is free, else queued FIFO."""
    if S.g[G_IO_INFLIGHT] < S.k[K_QUEUE_DEPTH]:
        _start(S, slot)
    else:
        tail = S.g[G_IO_QTAIL]
        if tail < 0:
            S.g[G_IO_QHEAD] = slot
        else:
            S.rq[tail, RQ_NEXT] = slot
        S.g[G_IO_QTAIL] = slot
        S.g[G_IO_QUEUED] += 1


@njit(cache=True)
def io_done(S, slot):
    first = S.rq[slot, RQ_FIRST]
    n = S.rq[slot, RQ_N]
    if S.rq[slot, RQ_WRITE]:
        for p in range(first, first + n):
            S.pg[p, P_FLAGS] &= ~PG_WRITEBACK            # folio_end_writeback
    else:
        folios_end_read(S, first, n)
        S.g[G_COUNTERS + PAGES_READ] += n
    S.rq[slot, RQ_NEXT] = S.g[G_IO_FREE]
    S.g[G_IO_FREE] = slot
    S.g[G_IO_INFLIGHT] -= 1
    head = S.g[G_IO_QHEAD]
    if head >= 0:
        S.g[G_IO_QHEAD] = S.rq[head, RQ_NEXT]
        if S.rq[head, RQ_NEXT] < 0:
            S.g[G_IO_QTAIL] = -1
        S.rq[head, RQ_NEXT] = -1
        S.g[G_IO_QUEUED] -= 1
        _start(S, head)
        w = S.g[G_IO_WAIT_HEAD]
        if w >= 0:
            nxt = S.t[w, T_WAIT_NEXT]
            S.g[G_IO_WAIT_HEAD] = nxt
            if nxt < 0:
                S.g[G_IO_WAIT_TAIL] = -1
            S.t[w, T_WAIT_NEXT] = -1
            wake(S, w, S.t[w, T_PC])
