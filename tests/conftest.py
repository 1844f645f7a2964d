"""The session compiles the simulator once, in the background, while the tests that never
run it go first.

On a clean checkout numba's cache is empty, and each workload's engine
(core.engine.ENGINES) compiles on first use: a minute or more each on one core here.
When the cache lacks any of them, one background process compiles them all into the shared
cache (sweep.backend.warm_simulator). Meanwhile the tests of NO_SIMULATOR run on the other
core: the synthetic backend on Ray, the kernel backend, configuration and storage. The first
test of any other module waits for that process, so nothing compiles twice. With a warm
cache nothing is started and only the order differs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import pytest

# Test modules that never call the simulator. A module missing here only waits for the
# compile; a simulator module listed here would compile beside it (slower, still right).
NO_SIMULATOR = {
    "test_docs_columns", "test_kernel_backend", "test_params", "test_report",
    "test_sweep_cluster", "test_sweep_compare", "test_sweep_config", "test_sweep_errors",
    "test_sweep_grid", "test_sweep_guards", "test_sweep_install", "test_sweep_kernel",
    "test_sweep_outputs", "test_sweep_overrides", "test_sweep_ray_start", "test_sweep_store",
    "test_sweep_store_damage", "test_sweep_validity",
}

# What the background process runs: every engine's run, and the entry of
# core.engine.thread_step, which the mechanism tests call (compiled, not run).
WARM = """
import time
t0 = time.perf_counter()
from core import engine
from core.simulator import build_state
from sweep.backend import tiny_params, warm_simulator
warm_simulator(list(engine.ENGINES))
for w in engine.ENGINES:
    engine.compile_thread_step(build_state(tiny_params(w)))
print(f"compiled in {time.perf_counter() - t0:.0f} s")
"""

_warmer: subprocess.Popen | None = None
_warmer_log = None
_report: list[str] = []          # said at the end of the session


def _needs_simulator(item: pytest.Item) -> bool:
    return item.module.__name__.rpartition(".")[2] not in NO_SIMULATOR


def pytest_collection_modifyitems(session, config, items):
    global _warmer, _warmer_log
    items.sort(key=_needs_simulator)          # stable: each group keeps its own order
    from core.engine import ENGINES
    from sweep.backend import jit_cache_warm
    if not any(map(_needs_simulator, items)) or jit_cache_warm(list(ENGINES)):
        return
    _warmer_log = tempfile.TemporaryFile()
    _warmer = subprocess.Popen([sys.executable, "-c", WARM], stdout=_warmer_log,
                               stderr=subprocess.STDOUT)


def _wait_for_warmer() -> None:
    global _warmer
    t0 = time.perf_counter()
    rc = _warmer.wait()
    _warmer_log.seek(0)
    out = _warmer_log.read().decode(errors="replace").strip().splitlines()
    _warmer = None
    # A failed compile is not an error here: the tests compile for themselves and fail
    # with the real message.
    _report.append(f"background compile of the engines: exit {rc}, "
                   f"{out[-1] if out else 'no output'}; the first test needing them waited "
                   f"{time.perf_counter() - t0:.0f} s")


@pytest.fixture(autouse=True)
def _simulator_compiled(request):
    if _warmer is not None and _needs_simulator(request.node):
        _wait_for_warmer()
    yield


def pytest_sessionfinish(session, exitstatus):
    """A session that ends before needing the engines (-x, -k) stops the compile it
    started."""
    global _warmer
    if _warmer is not None:
        _warmer.terminate()
        _warmer.wait()
        _warmer = None


def pytest_terminal_summary(terminalreporter):
    for line in _report:
        terminalreporter.write_line(line)
