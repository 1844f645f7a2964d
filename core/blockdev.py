"""The block device: lognormal latency, per-page transfer, bounded queue depth.

A request covers a run of contiguous folios of one file (what read_pages submits).
Its service time is a lognormal draw (median `io_median_us`, shape `io_sigma`) plus the
transfer of its pages plus completion handling; at most `queue_depth` requests are in
flight, later ones wait in FIFO order. On completion every folio of the run becomes
uptodate and is unlocked (handing its lock to a waiter, if any): end_buffer_async_read /
mpage_end_io -> folio_end_read. A write (swap-out to `disk`) ends the folios' writeback
(folio_end_writeback); the submitter does not wait for it.
"""

import numpy as np
from numba import njit

from core.evq import schedule
from core.metrics import PAGES_READ
from core.pagecache import folios_end_read
from core.sched import block, fifo_append, wake
from core.state import (
    EV_IO_DONE,
    G_COUNTERS,
    G_IO_FREE,
    G_IO_INFLIGHT,
    G_IO_QHEAD,
    G_IO_QTAIL,
    G_IO_QUEUED,
    G_IO_WAIT_HEAD,
    G_IO_WAIT_TAIL,
    G_NOW,
    K_IO_COMPLETE,
    K_IO_MEDIAN_NS,
    K_IO_SIGMA_PPM,
    K_IO_XFER,
    K_QUEUE_DEPTH,
    P_FLAGS,
    PG_WRITEBACK,
    RQ_FIRST,
    RQ_N,
    RQ_NEXT,
    RQ_OWNER,
    RQ_WRITE,
    T_PC,
    T_WAIT_NEXT,
    TT_FOLIO,
)


@njit(cache=True)
def _service_ns(S, n):
    median = S.k[K_IO_MEDIAN_NS]
    sigma = S.k[K_IO_SIGMA_PPM] / 1e6
    lat = median
    if sigma > 0.0 and median > 0:
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
