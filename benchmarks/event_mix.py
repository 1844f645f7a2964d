"""Which program steps the engine's events continue at: where the event budget goes.

Runs one configuration with a copy of the engine loop that counts, for every thread event,
the program counter it resumes at, and the CPU cycles (the time-stamp counter, read around
each event) spent from the pop to the end of that event; prints the top steps with their
share of events and of cycles. Use it before optimising the engine. Cycles include the
two counter reads (some tens of cycles) and are attributed to the step an event resumes
at, though the event may run several steps before the thread waits again.

    python benchmarks/event_mix.py [--preset seed_thrash] [--policy baseline] [--duration 1.0] [--top 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

import core
from core import engine
from core import state as st
from core.blockdev import io_done
from core.evq import pop
from core.sched import make_runnable, noise_event, thread_event_prologue
from core.simulator import build_state
from sweep.app import scenario_params

PRESETS = ("seed_thrash", "seed_thrash_small", "seed_thrash_noise", "seed_swapin")


@intrinsic
def _cycles(typingctx):
    """The time-stamp counter (llvm.readcyclecounter: rdtsc on x86)."""
    sig = types.uint64()

    def codegen(context, builder, signature, args):
        from llvmlite import ir
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=ir.FunctionType(
            ir.IntType(64), []))
        return builder.call(fn, [])
    return sig, codegen


def counting_run(engine_id):
    """engine._run without warm-up handling, counting events and cycles by program counter
    (index 999: I/O completions and noise events), for the workload's engine `engine_id`
    (core.engine.ENGINES). The index is a constant of the closure, which numba types as a
    literal and keys its cache by, as core.engine's own entries do."""
    @njit(cache=True)
    def run_counting(S, seed, counts, cycles):
        np.random.seed(seed)
        for tid in range(S.k[st.K_THREADS]):
            make_runnable(S, tid, S.t[tid, st.T_PC], np.int64(np.random.randint(0, 100_000)))
        end = S.k[st.K_END_NS]
        events = 0
        while S.g[st.G_HEAP_N] > 0 and S.ev[0, st.EV_TIME] <= end:
            c0 = _cycles()
            t, kind, ident = pop(S)
            S.g[st.G_NOW] = t
            events += 1
            slot = 999
            if kind == st.EV_THREAD:
                slot = S.t[ident, st.T_PC]
                if thread_event_prologue(S, ident):
                    engine._thread_step(S, ident, engine_id)
            elif kind == st.EV_IO_DONE:
                io_done(S, ident)
            elif kind == st.EV_NOISE:
                noise_event(S, ident)
            counts[slot] += 1
            cycles[slot] += np.int64(_cycles() - c0)
        return events
    return run_counting


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=PRESETS, default="seed_thrash")
    ap.add_argument("--policy", default="baseline")
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    d = {g: dict(v) for g, v in scenario_params()[args.preset].items()}
    d["policy"] = {"name": args.policy}
    d.setdefault("sim", {}).update({"duration_s": args.duration, "warmup_s": 0.0})
    p = core.Params.from_dict(d)
    S = build_state(p)
    counts = np.zeros(1000, np.int64)
    cycles = np.zeros(1000, np.int64)
    t0 = time.perf_counter()
    events = counting_run(int(S.k[st.K_ENGINE]))(S, np.int64(1), counts, cycles)
    wall = time.perf_counter() - t0
    names = {v: k for k, v in vars(st).items()
             if isinstance(v, int) and k.isupper() and k.split("_")[0] in
             ("W", "F", "M", "RA", "MC", "LR", "RC")}
    names[999] = "(I/O done, noise)"
    total = max(int(counts.sum()), 1)
    ctotal = max(int(cycles.sum()), 1)
    print(f"{args.preset} {args.policy}: {events:,} events in {wall:.2f} s (compilation included on the "
          f"first run), {ctotal / total:.0f} cycles per event; events by the step they "
          f"resume at:")
    print(f"  {'step':22s} {'events':>10s} {'share':>6s} {'cycles':>7s} {'/event':>7s}")
    for pc in np.argsort(-cycles)[:args.top]:
        if counts[pc]:
            print(f"  {names.get(int(pc), pc)!s:22s} {counts[pc]:>10,d} "
                  f"{100 * counts[pc] / total:5.1f}% {100 * cycles[pc] / ctotal:6.1f}% "
                  f"{cycles[pc] / counts[pc]:7.0f}")


if __name__ == "__main__":
    main()
