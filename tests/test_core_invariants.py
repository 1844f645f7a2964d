"""Whole-simulation invariants over small random configurations (fixed seeds), the
determinism of a (params, seed) pair, and the series' effect at a scaled-down point."""

from __future__ import annotations

import random

import numpy as np
import pytest

import core
from core import metrics as M
from core import state as st
from core.engine import run
from core.metrics import COUNTER_NAMES, MAX_RECLAIM
from core.simulator import build_state

ENGINE_COLUMNS = {"wall_s", "events_per_s"}


def random_params(rng: random.Random) -> core.Params:
    cores = rng.choice([1, 2, 3, 4, 8])
    threads = rng.choice([1, 2, 3, 5, 8, 12])
    file_mb = rng.choice([1, 2, 4])
    limit = rng.choice([0, 0, 1, 1, 1])
    high = max(4, threads * file_mb // rng.choice([2, 3, 4])) if limit else 0
    mx = int(high * rng.choice([1.0, 1.2, 1.5])) if limit else 0
    if limit:
        mx = max(mx, high)
    return core.Params.from_dict({
        "machine": {"cores": cores, "lru": rng.choice(["mglru", "classic"]),
                    "pinning": rng.choice(["none", "round_robin"]),
                    "noise": rng.random() < 0.25},
        "workload": {"threads": threads, "file_mb": file_mb,
                     "open_close": rng.random() < 0.3},
        "policy": {"name": rng.choice(core.POLICIES)},
        "memcg": {"high_mb": high, "max_mb": mx},
        "device": {"sparse": rng.random() < 0.7, "ra_kb": rng.choice([16, 64, 128, 512]),
                   "io_median_us": rng.choice([20.0, 100.0]),
                   "large_folios": rng.random() < 0.75},
        "sim": {"duration_s": 0.05, "warmup_s": 0.0},
    })


def random_anon_params(rng: random.Random) -> core.Params:
    """swapin and app_launch: anon faults, swap-in, MADV_PAGEOUT, mprotect."""
    cores = rng.choice([1, 2, 4, 8])
    policy = rng.choice(core.POLICIES)
    sim = {"duration_s": 0.05, "warmup_s": 0.0}
    device = {"swap": rng.choice(["zram", "disk"]), "sparse": False,
              "io_median_us": rng.choice([20.0, 150.0]), "swap_ra_pages": rng.choice([1, 8])}
    if rng.random() < 0.5:
        return core.Params.from_dict({
            "machine": {"cores": cores},
            "workload": {"name": "swapin", "writers": rng.choice([0, 1, 2]),
                         "readers": rng.choice([1, 2, 3]), "anon_mb": rng.choice([1, 2])},
            "policy": {"name": policy},
            "memcg": {"swap_max_mb": rng.choice([0, 1, 64])},
            "device": device, "sim": sim})
    limit = rng.random() < 0.3
    return core.Params.from_dict({
        "machine": {"cores": cores, "lru": rng.choice(["mglru", "classic"])},
        "workload": {"name": "app_launch", "threads": rng.choice([1, 3, 6]),
                     "app_touches": rng.choice([20, 100]), "app_mappers": rng.choice([0, 1, 2]),
                     "app_cached_pct": rng.choice([0, 50, 100]),
                     "app_map_period_us": rng.choice([200.0, 2000.0]),
                     "app_work_us": rng.choice([0.0, 20.0])},
        "policy": {"name": policy},
        "memcg": {"high_mb": 160 if limit else 0, "max_mb": 176 if limit else 0},
        "device": device, "sim": sim})


def random_fork_params(rng: random.Random) -> core.Params:
    """fork_stall: fork's dup_mmap, blk-throttle, the device's tail, every policy and rule."""
    return core.Params.from_dict({
        "machine": {"cores": rng.choice([1, 2, 4])},
        "workload": {"name": "fork_stall", "threads": rng.choice([1, 2, 4]),
                     "app_touches": rng.choice([20, 100]), "app_mappers": rng.choice([0, 1]),
                     "fork_vmas": rng.choice([100, 500]),
                     "fork_period_ms": rng.choice([0.5, 2.0]),
                     "fork_bg_threads": rng.choice([0, 1, 2]),
                     "fork_bg_shared": rng.random() < 0.5,
                     "fork_bg_pos_pct": rng.choice([0, 25, 100])},
        "policy": {"name": rng.choice(core.POLICIES), "fork_lock": rng.choice(["all", "cow"])},
        "device": {"sparse": False, "throttle_read_mbps": rng.choice([0.0, 0.5, 4.0]),
                   "io_tail_pct": rng.choice([0.0, 5.0])},
        "sim": {"duration_s": 0.05, "warmup_s": 0.0}})


# The older kernels' lru_add batch (PAGEVEC_SIZE 15) under memcg pressure, so a size other
# than the default (v7.0's FOLIO_BATCH_SIZE, 31) keeps the same invariants.
PAGEVEC_BATCH = core.Params.from_dict({
    "machine": {"cores": 4}, "workload": {"threads": 8, "file_mb": 2},
    "memcg": {"high_mb": 6, "max_mb": 8}, "costs": {"lru_add_batch": 15},
    "sim": {"duration_s": 0.05, "warmup_s": 0.0}})
CASES = ([random_params(random.Random(i)) for i in range(24)]
         + [random_anon_params(random.Random(100 + i)) for i in range(12)] + [PAGEVEC_BATCH]
         + [random_fork_params(random.Random(200 + i)) for i in range(6)])


@pytest.mark.parametrize("params", CASES, ids=[f"cfg{i}" for i in range(len(CASES))])
def test_invariants_after_drain(params):
    """Run, then let every thread finish its round: nothing may be left held."""
    S = build_state(params)
    run(S, np.int64(7), True)
    g, t = S.g, S.t
    assert g[st.G_STOP] == 0, "the drain did not end: some thread cannot finish its round"
    assert g[st.G_HEAP_N] == 0, "events left after the drain"
    assert (t[:, st.T_STATE] == st.TS_EXITED).all(), "a thread never finished its round"
    assert g[st.G_RW_WRITER] == -1 and g[st.G_RW_READERS] == 0 and g[st.G_RW_QHEAD] == -1
    assert g[st.G_RW_HANDOFF] == 0 and g[st.G_RW_WOKEN] == -1 and g[st.G_RW_SPIN_HEAD] == -1
    assert (t[:, st.T_RW_RELOCK] == 0).all()
    assert g[st.G_LRU_OWNER] == -1 and g[st.G_LRU_QHEAD] == -1
    assert g[st.G_IO_WAIT_HEAD] == -1 and g[st.G_IO_QUEUED] == 0
    assert (S.vma[:, st.V_READERS] == 0).all() and (S.vma[:, st.V_WRITER] == -1).all()
    assert (S.vma[:, st.V_WRITE_LOCKED] == 0).all(), "a VMA write lock outlived mmap_lock"
    assert ((S.pg[:, st.P_FLAGS] & st.PG_LOCKED) == 0).all(), "a folio is still locked"
    assert (S.pg[:, st.P_REFS] == 0).all(), "a folio reference leaked"
    assert (t[:, st.T_PREEMPT_COUNT] == 0).all() and (S.core[:, st.C_IRQOFF] == 0).all()
    assert (t[:, st.T_SP] == 0).all(), "a call stack is not empty"
    counters = g[st.G_COUNTERS:st.G_COUNTERS + len(COUNTER_NAMES)]
    assert (counters >= 0).all(), dict(zip(COUNTER_NAMES, counters))
    if params.memcg.max_mb:
        assert g[st.G_PEAK_USAGE] <= S.k[st.K_MAX], "usage exceeded memory.max"
    # Every thread made progress: at least one whole round each (app_launch's mappers
    # have no rounds: they cycle until the start is over).
    workers = t[:, st.T_ROLE] == st.ROLE_WORKER \
        if params.workload.name in ("app_launch", "fork_stall") else np.ones(len(t), bool)
    assert (t[workers, st.T_ROUNDS] >= 1).all(), t[:, st.T_ROUNDS]
    # Swap: the slots in use are the pages whose data is in swap; swap.max holds; nothing
    # is left isolated.
    swapped = int(((S.pg[:, st.P_FLAGS] & st.PG_SWAPPED) != 0).sum())
    assert g[st.G_SWAP_USAGE] == swapped
    assert swapped <= S.k[st.K_SWAP_MAX]
    assert ((S.pg[:, st.P_FLAGS] & st.PG_ISOLATED) == 0).all()
    # The diagnostics (core.hist): every drop's retry started (none pending), and each
    # counted a delay once (the histograms restart at warm-up, the counters are differenced:
    # a drop just before it and its retry just after may differ, at most one per thread).
    assert (t[:, st.T_F_DROP_NS] == 0).all(), "a drop whose retry never started"
    warm = st.G_WARM_COUNTERS
    drops = g[st.G_COUNTERS + M.RETRY_MMAP_DROP] - g[warm + M.RETRY_MMAP_DROP]
    retries = g[st.G_RETRY_HIST:st.G_RETRY_HIST + st.LAT_BINS].sum()
    assert abs(int(retries) - int(drops)) <= len(t), (retries, drops)
    if params.workload.name == "file_thrash":       # every eviction is a file folio's
        evicted = g[st.G_COUNTERS + M.PAGES_RECLAIMED] - g[warm + M.PAGES_RECLAIMED]
        assert g[st.G_AGE_HIST:st.G_AGE_HIST + st.LAT_BINS].sum() == evicted
    # Thread time (core.sched.account): every thread ended in TT_EXITED, and the classes
    # share out threads x elapsed time exactly (time starts at 0 for every thread).
    assert (t[:, st.T_ACCT] == st.TT_EXITED).all()
    tt = g[st.G_COUNTERS + M.THREAD_TIME0:st.G_COUNTERS + M.THREAD_TIME0 + M.N_THREAD_TIME]
    assert (tt >= 0).all() and int(tt.sum()) == len(t) * int(g[st.G_NOW])
    # Pages on lists + in batches + isolated = pages present in the cache.
    present = check_folios(S)
    on_lists = int(g[st.G_LRU_SIZE:st.G_LRU_SIZE + st.N_LISTS].sum())
    in_batches = sum(int(S.pg[S.core[c, st.C_FB0 + i], st.P_NR])
                     for c in range(len(S.core)) for i in range(S.core[c, st.C_FB_N]))
    assert present == on_lists + in_batches


def check_folios(S):
    """The folio structure (core.state): each present head covers 2^order pages from an
    index aligned to it, its tail pages name it and carry no flags of their own; every
    other page is its own head. Returns the pages present."""
    pg = S.pg
    n = len(pg)
    heads = pg[:, st.P_HEAD]
    present = 0
    covered = np.zeros(n, bool)
    for h in np.flatnonzero(pg[:, st.P_FLAGS] & st.PG_PRESENT):
        nr = int(pg[h, st.P_NR])
        assert heads[h] == h and nr & (nr - 1) == 0, (h, nr)
        assert (h % int(S.k[st.K_FILE_PAGES])) % nr == 0, (h, nr)
        assert (heads[h + 1:h + nr] == h).all() and (pg[h + 1:h + nr, st.P_NR] == 1).all()
        assert (pg[h + 1:h + nr, st.P_FLAGS] == 0).all(), "flags on a tail page"
        covered[h + 1:h + nr] = True
        present += nr
    rest = ~covered
    assert (heads[rest] == np.flatnonzero(rest)).all(), "a page names a head that is gone"
    assert (pg[rest & ~(pg[:, st.P_FLAGS] & st.PG_PRESENT).astype(bool), st.P_NR] == 1).all()
    return present


def test_row_has_every_column_and_counters_agree():
    p = CASES[3]
    row = core.simulate(p, 3)
    assert set(row) == set(core.METRIC_COLUMNS)
    assert row["pgfault"] >= row["pgmajfault"] >= 0
    assert row["mmap_read_count"] == sum(row[f"mmap_read_hist_{i}"] for i in range(8))
    assert row["mmap_write_count"] == sum(row[f"mmap_write_hist_{i}"] for i in range(8))
    assert row["swapin_rounds"] is None and row["launch_ms"] is None


DETERMINISM = {
    "file_thrash": {"machine": {"cores": 4}, "workload": {"threads": 8, "file_mb": 2},
                    "memcg": {"high_mb": 8, "max_mb": 10},
                    "sim": {"duration_s": 0.1, "warmup_s": 0.02}},
    "swapin": {"machine": {"cores": 4},
               "workload": {"name": "swapin", "writers": 2, "readers": 2, "anon_mb": 2},
               "memcg": {"swap_max_mb": 64}, "sim": {"duration_s": 0.05, "warmup_s": 0.0}},
    "app_launch": {"machine": {"cores": 4},
                   "workload": {"name": "app_launch", "threads": 4, "app_touches": 100},
                   "device": {"sparse": False}, "sim": {"duration_s": 1.0, "warmup_s": 0.0}},
}


@pytest.mark.parametrize("workload", sorted(DETERMINISM))
def test_determinism_same_seed_same_row_other_seed_differs(workload):
    p = core.Params.from_dict(DETERMINISM[workload])
    a, b, c = core.simulate(p, 11), core.simulate(p, 11), core.simulate(p, 12)
    strip = lambda r: {k: v for k, v in r.items() if k not in ENGINE_COLUMNS}
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)
    batch = core.simulate_batch(p, [11, 12])
    assert [strip(r) for r in batch] == [strip(a), strip(c)]


@pytest.mark.parametrize("large_folios,faults", [(False, 64), (True, 35)])
def test_no_limit_means_no_reclaim(large_folios, faults):
    p = core.Params.from_dict({"machine": {"cores": 2}, "workload": {"threads": 2, "file_mb": 4},
                               "device": {"large_folios": large_folios},
                               "sim": {"duration_s": 0.1, "warmup_s": 0.0}})
    S = build_state(p)
    run(S, np.int64(1), False)
    assert S.g[st.G_COUNTERS + MAX_RECLAIM] == 0
    row = core.simulate(p, 1)
    assert row["pages_reclaimed"] == 0 and row["retry_io_miss"] == 0
    # Nothing is ever evicted: after the first round every page is cached and uptodate.
    # Order 0: one fault-around fault per 16-page window, 1024 pages / 16 = 64. Large
    # folios (32-page windows): the read-around [0, 32) is order 0 (2 faults), the async
    # windows order 2 and 4 (2 faults each: 16-page fault-around), then order 5 (ilog2 of
    # the window): one fault maps each 32-page folio whole, 29 of them. 35.
    per_round = row["pgfault"] / row["rounds"]
    assert faults <= per_round <= faults + 2, per_round


SCALED = {"machine": {"cores": 32}, "workload": {"threads": 64, "file_mb": 16},
          "memcg": {"high_mb": 128, "max_mb": 154}, "device": {"ra_kb": 512},
          "sim": {"duration_s": 1.2, "warmup_s": 0.3}}


@pytest.fixture(scope="module")
def scaled_rows():
    return {pol: core.simulate(core.Params.from_dict({**SCALED, "policy": {"name": pol}}), 5)
            for pol in ("baseline", "vma_retry", "vma_retry_uptodate")}


def test_series_takes_no_mmap_lock_in_file_thrash(scaled_rows):
    """docs/model.md: under the series file faults retry under the VMA lock; mmap_lock is left
    to mmap/munmap (writes) and VMA-lock aborts, which file_thrash never causes."""
    base = scaled_rows["baseline"]
    assert base["mmap_read_count"] > 0
    for pol in ("vma_retry", "vma_retry_uptodate"):
        assert scaled_rows[pol]["mmap_read_count"] == 0
        assert scaled_rows[pol]["mmap_write_count"] > 0


def test_series_loses_less_io_than_baseline(scaled_rows):
    base = scaled_rows["baseline"]
    # The check only means something where baseline loses I/O: require it.
    assert base["retry_io_miss"] > 0, "baseline has no RETRY_IO_MISS at the scaled point"
    for pol in ("vma_retry", "vma_retry_uptodate"):
        assert scaled_rows[pol]["miss_drop_pct"] < base["miss_drop_pct"]


def test_numba_disable_jit_runs_and_gives_the_same_row():
    """NUMBA_DISABLE_JIT=1 must still run, so a mechanism can be stepped in a
    debugger; it runs the same code, so it must give the same row (RNG draws included)."""
    import json
    import os
    import subprocess
    import sys
    script = (
        "import core, json\n"
        "p = core.Params.from_dict({'machine': {'cores': 2}, 'workload': {'threads': 2, "
        "'file_mb': 1}, 'memcg': {'high_mb': 4, 'max_mb': 5}, 'device': {'sparse': False}, "
        "'sim': {'duration_s': 0.004, 'warmup_s': 0.0}})\n"
        "r = core.simulate(p, 1)\n"
        "print(json.dumps({k: v for k, v in r.items() if k not in ('wall_s', 'events_per_s')}))\n")
    rows = []
    for disable in ("1", "0"):
        env = {**os.environ, "NUMBA_DISABLE_JIT": disable}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=600, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    assert rows[0]["rounds"] > 0
    assert rows[0] == rows[1]
