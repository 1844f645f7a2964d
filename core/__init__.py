"""core: a discrete-event simulator of the Linux page-fault path (docs/model.md).

Public API: `Params` (frozen, validated), `ParamError`, `simulate(params, seed) -> row`,
`simulate_batch(params, seeds) -> list[row]`, `METRIC_COLUMNS`, `MODEL_VERSION`.
core imports numpy and numba only; it knows nothing of Hydra or Ray.
"""

from core import _jitcache  # noqa: F401  (first: numba's cache must be keyed before any @njit)
from core.costs import Costs
from core.metrics import METRIC_COLUMNS, MODEL_VERSION
from core.params import (
    POLICIES,
    DeviceParams,
    MachineParams,
    MemcgParams,
    ModelParams,
    ParamError,
    Params,
    PolicyParams,
    SimParams,
    WorkloadParams,
)


def simulate(params: Params, seed: int) -> dict:
    """Run one replicate; return the flat row of docs/model.md, What a row reports."""
    from core.simulator import simulate as _simulate
    return _simulate(params, seed)


def simulate_batch(params: Params, seeds) -> list[dict]:
    """Run several replicates of one point in one call (compiled code loaded once)."""
    from core.simulator import simulate_batch as _simulate_batch
    return _simulate_batch(params, seeds)


__all__ = [
    "METRIC_COLUMNS",
    "MODEL_VERSION",
    "POLICIES",
    "Costs",
    "DeviceParams",
    "MachineParams",
    "MemcgParams",
    "ModelParams",
    "ParamError",
    "Params",
    "PolicyParams",
    "SimParams",
    "WorkloadParams",
    "simulate",
    "simulate_batch",
]
