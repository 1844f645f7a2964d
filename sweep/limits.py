"""What a sweep checks before it computes anything, beyond what core.Params validates: that
its output can be written, that its grid name is a plain name, that every parameter is a
finite number, that each point fits in memory, and that the grid is not absurdly large.
Each failure is one SweepError line (exit status 2), raised before Ray starts.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import core
from sweep.errors import SweepError

# A grid's name is a directory under output.root: a plain name, not a path, not the store.
GRID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESERVED_NAMES = {".store"}
# Above this many points a grid needs sweep.allow_large=true.
LARGE_GRID_POINTS = 100_000


def check_grid_name(name: str) -> None:
    if not GRID_NAME.match(name) or name in RESERVED_NAMES:
        raise SweepError(f"grid.name={name!r}: must be a plain name (letters, digits, '_', "
                         "'-', '.'; not a path): it is the results directory under "
                         "output.root")


def _existing_ancestor(root: Path) -> Path:
    """root, or its nearest ancestor that exists (where it would be created)."""
    existing = root
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    return existing


def check_output_root(root: Path) -> None:
    """output.root is a directory that takes a file, or can be made in one that does (it is
    not created here: a sweep refused later leaves nothing behind)."""
    existing = _existing_ancestor(root)
    if not existing.is_dir():
        raise SweepError(f"output.root={root}: {existing} is not a directory")
    probe = existing / f".faultsim-write-test-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"x")
    except OSError as e:
        raise SweepError(f"output.root={root}: {existing} is not writable "
                         f"({e.strerror or e})") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


# What a run's row takes on disk, measured with the smoke grid (8 runs in 4 chunks): its
# store part's share, 15 KB (a part is mostly its ~200-column schema, so fewer rows per
# chunk cost more each), and its run directory's, 9 KB; the report and plots besides.
STORE_BYTES_PER_RUN = 16 * 1024
RUN_DIR_BYTES_PER_RUN = 10 * 1024
RUN_DIR_FIXED_BYTES = 5 << 20


def needed_bytes(runs_to_compute: int, runs_in_grid: int) -> int:
    """Disk a sweep is expected to write: the new rows' parts, and a run directory
    holding every run of the grid."""
    return (runs_to_compute * STORE_BYTES_PER_RUN + runs_in_grid * RUN_DIR_BYTES_PER_RUN
            + RUN_DIR_FIXED_BYTES)


def check_free_space(root: Path, runs_to_compute: int, runs_in_grid: int) -> None:
    """Refuse before computing when output.root's file system cannot hold the expected
    output (an estimate, from needed_bytes)."""
    existing = _existing_ancestor(root)
    need = needed_bytes(runs_to_compute, runs_in_grid)
    free = shutil.disk_usage(existing).free
    if free < need:
        raise SweepError(f"output.root={root}: about {need / (1 << 20):,.0f} MB are needed "
                         f"for {runs_to_compute:,} new runs and the run directory, "
                         f"{free / (1 << 20):,.0f} MB are free on {existing}")


def check_finite(params: core.Params | dict, where: str) -> None:
    """Every numeric parameter a finite number (core.Params checks ranges, not inf/nan);
    `params` may be given as its to_dict()."""
    as_dict = params if isinstance(params, dict) else params.to_dict()
    for group, values in as_dict.items():
        for key, v in values.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise SweepError(f"{where}: {group}.{key}={v}: must be a finite number")


def point_bytes(params: core.Params) -> int:
    """The simulator's arrays for one run of `params`, in bytes, as core.state.make_state
    allocates them: every workload's builder (core.simulator.build_state) makes K_N_FILES
    objects of K_FILE_PAGES pages with a VMA each, for K_THREADS threads, from the values
    core.simulator.constants gives it."""
    return _arrays_bytes(params.workload, params.machine, params.device)


@functools.lru_cache(maxsize=4096)
def _arrays_bytes(workload, machine, device) -> int:
    """point_bytes for these groups (the sizes read nothing else): a plan checks every
    point, and a grid has few distinct (workload, machine, device) triples."""
    from core import state as st
    from core.simulator import constants
    k = constants(core.Params(workload=workload, machine=machine, device=device))
    n_threads, width, n_files = int(k[st.K_THREADS]), int(k[st.K_FILE_PAGES]), \
        int(k[st.K_N_FILES])
    cores = machine.cores
    cap = 4 * n_threads + 4 * cores + 64
    n_rq = n_threads * (int(k[st.K_RA_PAGES]) // 2 + 2) + 2 * int(k[st.K_QUEUE_DEPTH]) + 16
    cells = (n_threads * st.N_T + n_files * width * st.N_P
             + n_files * (st.V_PTE0 + width + -(-width // st.PTRS_PER_PTE))
             + n_files * st.N_FL + cores * (st.C_ACK0 + n_threads) + n_rq * st.N_RQ
             + cap * 4)
    return 8 * cells


def machine_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_memory(params: core.Params, budget_gb: float, where: Callable[[], str]) -> None:
    """`where()` names the point in the error (built only then: a plan checks every
    point)."""
    need = point_bytes(params)
    if need > budget_gb * (1 << 30):
        raise SweepError(f"{where()}: needs about {need / (1 << 30):.1f} GiB for the simulator's "
                         f"state, over sweep.max_point_mem_gb={budget_gb:g} (raise it if this "
                         "machine can hold it)")


def default_budget_gb() -> float:
    """A third of this machine's memory: two workers may hold a point each at once."""
    return round(machine_memory_bytes() / 3 / (1 << 30), 1)
