"""Which program steps the engine's events continue at: where the event budget goes.

Runs one configuration with a copy of the engine loop that counts, for every thread event,
the program counter it resumes at, and prints the top steps with their share. Use it
before optimising the engine: an event's cost is mostly the heap and the step it runs.

    python benchmarks/event_mix.py [--scale seed|small] [--duration 1.0] [--top 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

import core
from core import engine
from core import state as st
from core.blockdev import io_done
from core.evq import pop
from core.sched import make_runnable, noise_event, thread_event_prologue
from core.simulator import build_state

SCALES = {
    "seed": {"machine": {"cores": 256}, "workload": {"threads": 500, "file_mb": 16},
             "memcg": {"high_mb": 1024, "max_mb": 1229}, "device": {"ra_kb": 512}},
    "small": {"machine": {"cores": 32}, "workload": {"threads": 64, "file_mb": 16},
              "memcg": {"high_mb": 128, "max_mb": 154}, "device": {"ra_kb": 512}},
}


@njit(cache=True)
def run_counting(S, seed, counts):
    """engine._run without warm-up handling, counting EV_THREAD events by program counter."""
    np.random.seed(seed)
    for tid in range(S.k[st.K_THREADS]):
        make_runnable(S, tid, S.t[tid, st.T_PC], np.int64(np.random.randint(0, 100_000)))
    end = S.k[st.K_END_NS]
    events = 0
    while S.g[st.G_HEAP_N] > 0 and S.ev[0, st.EV_TIME] <= end:
        t, kind, ident = pop(S)
        S.g[st.G_NOW] = t
        events += 1
        if kind == st.EV_THREAD:
            counts[S.t[ident, st.T_PC]] += 1
            if thread_event_prologue(S, ident):
                engine.thread_step(S, ident)
        elif kind == st.EV_IO_DONE:
            io_done(S, ident)
        elif kind == st.EV_NOISE:
            noise_event(S, ident)
    return events


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=sorted(SCALES), default="seed")
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    p = core.Params.from_dict({**SCALES[args.scale],
                               "sim": {"duration_s": args.duration, "warmup_s": 0.0}})
    S = build_state(p)
    counts = np.zeros(1000, np.int64)
    t0 = time.perf_counter()
    events = run_counting(S, np.int64(1), counts)
    wall = time.perf_counter() - t0
    names = {v: k for k, v in vars(st).items()
             if isinstance(v, int) and k.isupper() and k.split("_")[0] in
             ("W", "F", "M", "RA", "MC", "LR", "RC")}
    total = max(int(counts.sum()), 1)
    print(f"{args.scale}: {events:,} events in {wall:.2f} s (compilation included on the "
          f"first run); thread events by the step they resume at:")
    for pc in np.argsort(-counts)[:args.top]:
        if counts[pc]:
            print(f"  {names.get(int(pc), pc)!s:22s} {counts[pc]:>10,d}  {100 * counts[pc] / total:5.1f}%")


if __name__ == "__main__":
    main()
