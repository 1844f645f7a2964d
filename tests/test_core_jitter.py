"""What the machine adds to the model's costs (core/sched.py): the jitter of
machine.jitter (the scheduler tick, cache-miss variation of a burst's cost, the wake-up
latency's spread) and the cache-line transfers of atomics on shared lock words. Exact where the term is
deterministic (the tick), statistical with a stated tolerance where it is drawn, and
whole runs: with jitter two seeds differ, one seed repeats itself."""

from __future__ import annotations

import numpy as np
from _sim_util import on_core
from numba import njit

import core
from core import sched
from core.simulator import build_state
from core.state import (
    C_TICK_PHASE,
    G_CUR_TID,
    G_MMAP_LINE_CPU,
    G_MMAP_LINE_FREE,
    G_NOW,
    K_LINE_NS,
    K_TICK_PERIOD_NS,
    K_WAKEUP,
    T_LINE_NS,
    T_SLICE_NS,
)


@njit(cache=True)
def _seed(s):
    np.random.seed(s)


def _state(**machine):
    m = {"cores": 2, **machine}
    p = core.Params.from_dict({"machine": m, "workload": {"threads": 2, "file_mb": 1},
                               "sim": {"duration_s": 0.01, "warmup_s": 0.0}})
    S = build_state(p)
    on_core(S, 0, 0)
    return S


def test_tick_takes_its_cost_from_every_burst_it_lands_in():
    """HZ=250: a tick every 4 ms after the CPU's phase; each one inside the burst adds
    costs.tick_ns (2 us). No cache-miss factor here (cost_sigma 0)."""
    S = _state(cost_sigma=0.0)
    period = int(S.k[K_TICK_PERIOD_NS])
    assert period == 4_000_000
    S.core[0, C_TICK_PHASE] = 1_000_000                  # ticks at 1, 5, 9, ... ms
    S.g[G_NOW] = 0
    assert sched.burst_jitter(S, 0, 999_999) == 999_999  # ends just before the first
    assert sched.burst_jitter(S, 0, 1_000_001) == 1_000_001 + 2_000
    assert sched.burst_jitter(S, 0, 9_000_001) == 9_000_001 + 3 * 2_000
    S.g[G_NOW] = 1_000_000                               # starts on a tick: counted once
    assert sched.burst_jitter(S, 0, 10) == 10
    S.g[G_NOW] = 999_999
    assert sched.burst_jitter(S, 0, 10) == 10 + 2_000
    assert sched.burst_jitter(S, 0, 0) == 0


def test_burst_cost_factor_keeps_the_mean():
    """The cache-miss factor is a mean-preserving lognormal (sigma 0.3): over 40,000
    bursts of 10 us the mean stays within 1% (the standard error is 0.15%), and the
    spread is the lognormal's (std/mean = sqrt(exp(0.09) - 1) = 0.307, within 5%)."""
    S = _state(cost_sigma=0.3)
    S.core[0, C_TICK_PHASE] = 0
    S.g[G_NOW] = 1                                       # no tick in [1, 1 + ~10 us)
    _seed(3)
    x = np.array([sched.burst_jitter(S, 0, 10_000) for _ in range(40_000)], float)
    assert abs(x.mean() / 10_000 - 1) < 0.01
    assert abs(x.std() / x.mean() - np.sqrt(np.exp(0.09) - 1)) < 0.05 * 0.307


def test_wakeup_latency_is_lognormal_around_its_median():
    """costs.wakeup_latency_ns is the median (schbench's p50): over 40,000 draws the
    sample median is within 2% of it; with jitter off every wake-up takes exactly it."""
    S = _state(wakeup_sigma=0.3)
    _seed(5)
    d = np.array([sched.wakeup_delay(S) for _ in range(40_000)], float)
    assert abs(np.median(d) / S.k[K_WAKEUP] - 1) < 0.02
    assert d.min() < 0.7 * S.k[K_WAKEUP] and d.max() > 1.5 * S.k[K_WAKEUP]
    S = _state(jitter=False)
    assert {int(sched.wakeup_delay(S)) for _ in range(100)} == {int(S.k[K_WAKEUP])}


# A small point under memcg pressure on the classic LRU, where without jitter the threads
# run in lockstep and seeds barely matter.
POINT = {"machine": {"cores": 4, "lru": "classic"}, "workload": {"threads": 8, "file_mb": 2},
         "memcg": {"high_mb": 6, "max_mb": 8}, "sim": {"duration_s": 0.2, "warmup_s": 0.05}}
TIMING = {"wall_s", "events_per_s"}


def _row(seed, jitter=True):
    d = {k: dict(v) for k, v in POINT.items()}
    d["machine"]["jitter"] = jitter
    r = core.simulate(core.Params.from_dict(d), seed)
    return {k: v for k, v in r.items() if k not in TIMING}


def test_two_seeds_give_different_rows_and_one_seed_repeats():
    a, b, a2 = _row(1), _row(2), _row(1)
    assert a == a2
    differ = [k for k in a if a[k] != b[k]]
    assert "events" in differ and "throughput_rounds_s" in differ, differ


def test_lock_word_line_serves_one_transfer_at_a_time():
    """mmap_lock's count word: a CPU that did not write it last waits for the line to be
    free, then one transfer (170 ns); the CPU that owns it pays nothing more. The wait is
    charged with the thread's next burst."""
    p = core.Params.from_dict({"machine": {"cores": 3, "jitter": False},
                               "workload": {"threads": 3, "file_mb": 1},
                               "sim": {"duration_s": 0.01, "warmup_s": 0.0}})
    S = build_state(p)
    for tid in range(3):
        on_core(S, tid, tid)
    L = int(S.k[K_LINE_NS])
    assert L == 170

    def rmw(tid):
        S.g[G_CUR_TID] = tid
        sched.mmap_lock_line(S)
        return int(S.t[tid, T_LINE_NS])

    S.g[G_NOW] = 0
    assert rmw(0) == L                       # the line came from nowhere (a miss)
    assert rmw(0) == L                       # its own line: nothing more
    assert rmw(1) == 2 * L                   # waits for the transfer to 0, then its own
    S.g[G_NOW] = 500
    assert rmw(2) == L                       # the line is idle again by then
    assert S.g[G_MMAP_LINE_CPU] == 2 and S.g[G_MMAP_LINE_FREE] == 500 + L
    sched.run_for(S, 1, 1000, 0)             # the wait is spent with the next burst
    assert S.t[1, T_LINE_NS] == 0 and S.t[1, T_SLICE_NS] == 1000 + 2 * L
