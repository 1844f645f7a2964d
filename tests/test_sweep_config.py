"""The Hydra tree: schema mirrors core.params, every preset composes into valid Params."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import core
from sweep.app import base_params, plan
from sweep.cli import CONF_DIR
from sweep.config import PARAM_GROUPS, Config

CONF = Path(CONF_DIR)


def _compose(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose("config", overrides=list(overrides))


def test_schema_mirrors_core_params_exactly():
    cfg = _compose()
    for group, params_cls in PARAM_GROUPS.items():
        want = {f.name: f.default for f in dataclasses.fields(params_cls)}
        assert OmegaConf.to_container(cfg[group]) == want, group
    assert core.Params.from_dict(base_params(cfg)) == core.Params()
    assert {f.name for f in dataclasses.fields(Config)} >= set(PARAM_GROUPS)


@pytest.mark.parametrize("group", ["machine", "policy", "memcg", "device", "scenario"])
def test_every_preset_composes_into_valid_params(group):
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        cfg = _compose(f"{group}={option}")
        core.Params.from_dict(base_params(cfg))  # raises ParamError if a preset is invalid


def test_presets_values():
    p = core.Params.from_dict(base_params(_compose("scenario=seed_thrash")))
    assert (p.machine.cores, p.workload.threads, p.workload.file_mb) == (256, 500, 16)
    assert (p.memcg.high_mb, p.memcg.max_mb, p.memcg.swap_max_mb) == (1024, 1229, 0)
    assert (p.device.ra_kb, p.sim.duration_s, p.sim.warmup_s) == (2048, 120.0, 10.0)
    assert (p.machine.lru, p.device.large_folios, p.workload.open_close) == \
        ("classic", True, False)
    noise = core.Params.from_dict(base_params(_compose("scenario=seed_thrash_noise")))
    assert (noise.machine.noise, noise.machine.pinning, noise.workload.open_close) == \
        (True, "round_robin", True)
    assert (noise.machine.noise_busy_us, noise.machine.noise_sleep_us) == (10.0, 45.0)
    p = core.Params.from_dict(base_params(_compose("scenario=seed_thrash_small")))
    assert (p.machine.cores, p.workload.threads, p.memcg.high_mb, p.memcg.max_mb) == \
        (32, 64, 128, 154)
    assert core.Params.from_dict(base_params(_compose("machine=phone8"))).machine.cores == 8
    nvme = core.Params.from_dict(base_params(_compose("device=nvme"))).device
    assert not nvme.sparse and nvme.io_median_us == 80.0


def test_costs_override():
    p = core.Params.from_dict(base_params(_compose("costs.wakeup_latency_ns=6000")))
    assert p.costs.wakeup_latency_ns == 6000


GRIDS = sorted(str(p.relative_to(CONF / "grid").with_suffix(""))
               for p in (CONF / "grid").rglob("*.yaml"))


@pytest.mark.parametrize("grid", GRIDS)
def test_every_grid_expands(grid):
    """Users' grids and the study grids under study/ (each named after its file)."""
    name, points, units = plan(_compose(f"+grid={grid}", "backend=synthetic"))
    assert name == grid.rpartition("/")[2] and points and len(units) >= len(points)


def test_memcg_grid_is_the_series_job():
    _, points, _ = plan(_compose("+grid=memcg", "backend=synthetic"))
    assert {p.params.policy.name for p in points} == {"baseline", "vma_retry",
                                                      "vma_retry_uptodate"}
    assert len({p.params.machine.cores for p in points}) == 1
    for p in points:  # working set 2x-8x memory.high
        ratio = p.params.workload.threads * p.params.workload.file_mb / p.params.memcg.high_mb
        assert 2 <= ratio <= 8
    policies = sorted({p.params.policy.name for p in plan(_compose(
        "+grid=policies", "backend=synthetic"))[1]})
    assert policies == sorted(core.POLICIES)
