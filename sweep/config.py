"""The Hydra schema of the sweep: one structured config per group, mirroring `core.params`.

Each group's dataclass is stored as `base_<group>` in its group of Hydra's ConfigStore; the
YAML files under `conf/<group>/` name that schema in their defaults list and hold values only.
The fields of machine, workload, policy, memcg, device, sim, costs and model are generated
from the `core.params` dataclasses, so the schema cannot drift from the simulator's: a key that
`core.Params` does not know is a key Hydra rejects at start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

import core
from core.costs import Costs

# Hydra group -> the core.params dataclass it mirrors.
PARAM_GROUPS: dict[str, type] = {
    "machine": core.MachineParams,
    "workload": core.WorkloadParams,
    "policy": core.PolicyParams,
    "memcg": core.MemcgParams,
    "device": core.DeviceParams,
    "costs": Costs,
    "model": core.ModelParams,
    "sim": core.SimParams,
}

_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _mirror(name: str, params_cls: type) -> type:
    """A mutable dataclass with the fields, types and defaults of a frozen core dataclass."""
    specs = []
    for f in dataclasses.fields(params_cls):
        tname = f.type if isinstance(f.type, str) else f.type.__name__
        specs.append((f.name, _TYPES[tname], field(default=f.default)))
    return dataclasses.make_dataclass(name, specs)


MachineConfig = _mirror("MachineConfig", core.MachineParams)
WorkloadConfig = _mirror("WorkloadConfig", core.WorkloadParams)
PolicyConfig = _mirror("PolicyConfig", core.PolicyParams)
MemcgConfig = _mirror("MemcgConfig", core.MemcgParams)
DeviceConfig = _mirror("DeviceConfig", core.DeviceParams)
CostsConfig = _mirror("CostsConfig", Costs)
ModelConfig = _mirror("ModelConfig", core.ModelParams)
SimConfig = _mirror("SimConfig", core.SimParams)


@dataclass
class RayConfig:
    # None: embedded local Ray, unless RAY_ADDRESS is set. "auto", "host:port", "ray://...".
    address: str | None = None
    # CPUs of the embedded local Ray; None = the CPUs this process may run on.
    num_cpus: int | None = None
    # Seconds to wait for a cluster's GCS to accept a TCP connection before giving up.
    connect_timeout_s: float = 10.0
    # Re-runs of a task whose worker or node died (not of a simulation that raised).
    max_retries: int = 3


@dataclass
class SweepConfig:
    # Target wall seconds per Ray task: long enough that scheduling is noise, short enough
    # that a lost node costs little and the last chunks spread over all CPUs.
    chunk_target_s: float = 20.0
    # Chunks in flight per CPU of the cluster (the ray.wait window).
    in_flight_per_cpu: int = 2
    dry_run: bool = False
    # Run kernel-backend points again even if the store has them: a measurement depends on
    # the machine's state (its load, its page cache), not only on the point's parameters.
    remeasure: bool = False
    # Seconds between progress lines when stderr is not a terminal.
    progress_interval_s: float = 10.0
    # The most memory one point's simulator state may take, in GiB (None: a third of this
    # machine's memory); a point above it is refused before anything runs.
    max_point_mem_gb: float | None = None
    # Allow grids of more than 100,000 points and more than a simulated day per run.
    allow_large: bool = False


@dataclass
class OutputConfig:
    # Relative paths are relative to the directory the command was started from.
    root: str = "results"
    report: bool = True


@dataclass
class GridConfig:
    name: str = MISSING
    # Dotted config keys -> lists of values (nested mappings are flattened to dotted keys).
    axes: dict[str, Any] = field(default_factory=dict)
    # Groups of axes that move together (equal-length value lists, zipped not crossed).
    zip: list[list[str]] = field(default_factory=list)
    # Rules {dotted key: value or list of values}; a point matching every key is dropped.
    exclude: list[dict[str, Any]] = field(default_factory=list)
    # Replicates of each point (the command line's `replicates=N` wins).
    replicates: int = 2


@dataclass
class Config:
    machine: MachineConfig = field(default_factory=MachineConfig)  # type: ignore[valid-type]
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)  # type: ignore[valid-type]
    policy: PolicyConfig = field(default_factory=PolicyConfig)  # type: ignore[valid-type]
    memcg: MemcgConfig = field(default_factory=MemcgConfig)  # type: ignore[valid-type]
    device: DeviceConfig = field(default_factory=DeviceConfig)  # type: ignore[valid-type]
    costs: CostsConfig = field(default_factory=CostsConfig)  # type: ignore[valid-type]
    model: ModelConfig = field(default_factory=ModelConfig)  # type: ignore[valid-type]
    sim: SimConfig = field(default_factory=SimConfig)  # type: ignore[valid-type]
    ray: RayConfig = field(default_factory=RayConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    grid: GridConfig | None = None
    # The root seed: every replicate's seed derives from it, the point's hash and the
    # replicate's number (sweep.grid.replicate_seed), for `python -m sweep` and sweep.point.
    seed: int = 0
    # Replicates per point; None: the grid's `replicates` (python -m sweep) or 1 (sweep.point).
    replicates: int | None = None
    # Which backend turns a point into a row: sim (core.simulate), kernel
    # (sweep/kernel_backend.py on real Linux), synthetic (a stand-in for tests/benchmarks).
    backend: str = "sim"


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, node in [("machine", MachineConfig), ("workload", WorkloadConfig),
                        ("policy", PolicyConfig), ("memcg", MemcgConfig),
                        ("device", DeviceConfig), ("costs", CostsConfig),
                        ("model", ModelConfig), ("sim", SimConfig),
                        ("ray", RayConfig), ("sweep", SweepConfig), ("output", OutputConfig),
                        ("grid", GridConfig)]:
        cs.store(group=group, name=f"base_{group}", node=node)


register_configs()
