"""Backends: what turns one point (core.Params) and its replicate seeds into rows.

`sim` runs core.simulate_batch; `kernel` runs the workloads as C programs on real Linux
(`sweep/kernel_backend.py`, imported only when chosen, on the worker that runs the point);
`synthetic` is a deterministic stand-in with a tunable CPU cost for tests and benchmarks.
A backend is `run(params, seeds) -> list[row]`; each row has the columns of
core.METRIC_COLUMNS. The registry is a dict so tests can add their own.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence

import core
from sweep.errors import SweepError

Backend = Callable[[core.Params, Sequence[int]], list[dict]]


# A marker per workload in numba's cache directory (core/_jitcache.py: one directory per
# version of core's sources): that workload's engine (core.engine.ENGINES) has been compiled
# there and the cache holds it.
WARM_MARKER = "compiled-{}"
_warm_in_process: set[str] = set()


def _marker(workload: str):
    from core import _jitcache
    return _jitcache.CACHE_DIR / WARM_MARKER.format(workload)


def jit_cache_warm(workloads: Sequence[str]) -> bool:
    """Whether this machine's numba cache holds the engines of these workloads for this
    version of core/."""
    return all(_marker(w).exists() for w in workloads)


def tiny_params(workload: str) -> core.Params:
    """A point of `workload` that runs in milliseconds: for compiling its engine."""
    return core.Params.from_dict({"machine": {"cores": 1},
                                  "workload": {"name": workload, "threads": 1, "file_mb": 1},
                                  "sim": {"duration_s": 0.001, "warmup_s": 0.0}})


def warm_simulator(workloads: Sequence[str]) -> float:
    """Compile (or load from the cache) the engines of these workloads in this process, one
    tiny run each, and leave their markers; returns the seconds it took. A jitted function
    compiles every jitted function it can call, so one run compiles a workload's engine."""
    import time
    t0 = time.perf_counter()
    from core.engine import ENGINES
    for w in workloads:
        if w in _warm_in_process or w not in ENGINES:
            continue                  # an unknown workload fails on its own point's row
        core.simulate(tiny_params(w), 0)
        _warm_in_process.add(w)
        _marker(w).touch()
    return time.perf_counter() - t0


def _sim(params: core.Params, seeds: Sequence[int]) -> list[dict]:
    return core.simulate_batch(params, list(seeds))


def _kernel(params: core.Params, seeds: Sequence[int]) -> list[dict]:
    from sweep import kernel_backend  # lazily: it needs a real Linux box and its C programs
    return [kernel_backend.run_point(params, seed) for seed in seeds]


def _synthetic(params: core.Params, seeds: Sequence[int]) -> list[dict]:
    from sweep import synthetic
    return [synthetic.run_point(params, seed) for seed in seeds]


BACKENDS: dict[str, Backend] = {"sim": _sim, "kernel": _kernel, "synthetic": _synthetic}


# Where core.simulate finds the engine (the module was named both ways while it was written).
_SIM_MODULES = ("core.simulator", "core.simulate")


def sim_available() -> bool:
    """Whether core.simulate has a module to call (before it lands it raises ImportError)."""
    return any(importlib.util.find_spec(m) is not None for m in _SIM_MODULES)


def check_backend(name: str) -> None:
    """Fail at start, in one line, if the backend cannot run at all."""
    if name not in BACKENDS:
        raise SweepError(f"backend={name!r}: one of {', '.join(sorted(BACKENDS))}")
    if name == "kernel" and importlib.util.find_spec("sweep.kernel_backend") is None:
        raise SweepError("backend=kernel: sweep/kernel_backend.py is not there "
                         "(the kernel backend is not installed in this checkout)")
    if name == "sim" and not sim_available():
        raise SweepError("backend=sim: core/simulate.py is not there yet "
                         "(the simulator has not landed in this checkout)")


def get_backend(name: str) -> Backend:
    return BACKENDS[name]
