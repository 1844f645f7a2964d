"""Grid expansion, point identity and seeds (no Ray, no subprocess)."""

from __future__ import annotations

import pytest

import core
from sweep.errors import SweepError
import hashlib

from sweep.app import scenario_params
from sweep.grid import expand, point_hash, replicate_seed, replicate_seeds, units_of

BASE = core.Params(machine=core.MachineParams(cores=4),
                   workload=core.WorkloadParams(threads=8, file_mb=4)).to_dict()


def test_cross_product_zip_and_exclude():
    axes = {"workload": {"threads": [4, 8]}, "memcg.high_mb": [8, 16], "memcg.max_mb": [10, 20],
            "policy.name": ["baseline", "vma_retry"]}
    pts = expand(BASE, axes, [["memcg.high_mb", "memcg.max_mb"]],
                 [{"policy.name": "vma_retry", "workload.threads": 4}])
    got = [(p.axes["workload.threads"], p.axes["memcg.high_mb"], p.axes["memcg.max_mb"],
            p.axes["policy.name"]) for p in pts]
    # 2 threads x 2 zipped memcg x 2 policies = 8, minus vma_retry at 4 threads (2 points).
    assert got == [(4, 8, 10, "baseline"), (4, 16, 20, "baseline"),
                   (8, 8, 10, "baseline"), (8, 8, 10, "vma_retry"),
                   (8, 16, 20, "baseline"), (8, 16, 20, "vma_retry")]
    assert all(p.params.machine.cores == 4 for p in pts)


def test_hash_and_seeds_do_not_depend_on_grid_order_or_extension():
    a = expand(BASE, {"workload.threads": [4, 8]})
    b = expand(BASE, {"workload.threads": [16, 8, 4]})
    ha = {p.axes["workload.threads"]: p.point_hash for p in a}
    hb = {p.axes["workload.threads"]: p.point_hash for p in b}
    assert ha[4] == hb[4] and ha[8] == hb[8]
    sa = {(u.point_hash, u.replicate): u.seed for u in units_of(a, 3, 7)}
    sb = {(u.point_hash, u.replicate): u.seed for u in units_of(b, 3, 7)}
    assert all(sb[k] == v for k, v in sa.items())
    assert len(set(sb.values())) == len(sb)  # distinct seeds


def test_hash_is_stable_and_covers_model_version_and_backend(monkeypatch):
    p = core.Params.from_dict(BASE)
    h = point_hash(p, "sim")
    assert h == point_hash(core.Params.from_dict(BASE), "sim")
    assert len(h) == 64
    assert point_hash(p, "kernel") != h
    monkeypatch.setattr(core, "MODEL_VERSION", core.MODEL_VERSION + "-changed")
    assert point_hash(p, "sim") != h
    seed = replicate_seed(0, h, 0)
    assert 0 <= seed < 2**63 and seed == replicate_seed(0, h, 0) != replicate_seed(1, h, 0)


def test_a_plans_hashes_and_seeds_are_the_reference_ones():
    """expand builds each point's canonical JSON from cached groups and units_of mixes the
    seeds on arrays: both must give what point_hash and numpy's SeedSequence give, or a
    store's rows would no longer be found."""
    pts = expand(BASE, {"scenario": ["seed_thrash", "app_launch"], "backend": ["sim", "kernel"],
                        "workload.threads": [4, 16], "machine.cores": [2],
                        "memcg.high_mb": [0, 256], "memcg.max_mb": [0, 300]},
                 [["memcg.high_mb", "memcg.max_mb"]], scenarios=scenario_params(),
                 pinned={"sim.duration_s": 0.5})
    assert len(pts) == 16
    for p in pts:
        assert p.point_hash == point_hash(core.Params.from_dict(p.params.to_dict()), p.backend)
        assert p.params.sim.duration_s == 0.5 and p.params.machine.cores == 2
    # Hashes with high zero words (shorter entropy), replicate numbers of two words, and
    # root seeds of one to five words.
    keys = [(hashlib.sha256(str(i).encode()).hexdigest(), i % 3) for i in range(200)]
    keys += [("0" * 9 + keys[0][0][9:], 1), ("0" * 64, 0), ("0" * 63 + "5", 2),
             (keys[1][0], 2**32 + 3)]
    for root in (0, 7, 2**40 + 7, 2**130 + 1):
        assert replicate_seeds(root, keys) == [replicate_seed(root, h, r) for h, r in keys]
    assert [u.seed for u in units_of(pts, 2, 5)] == [
        replicate_seed(5, p.point_hash, r) for p in pts for r in range(2)]


def test_a_group_checks_itself_and_params_checks_across_groups():
    with pytest.raises(core.ParamError, match="memcg.max_mb=10: must be >= memcg.high_mb"):
        core.MemcgParams(high_mb=20, max_mb=10)
    with pytest.raises(core.ParamError, match="costs.touch_ns=-1"):
        core.Costs(touch_ns=-1)
    with pytest.raises(core.ParamError, match="memcg.max_mb=8: must be >= .* MB for 64 cores"):
        core.Params(machine=core.MachineParams(cores=64), memcg=core.MemcgParams(max_mb=8))


def test_axis_given_as_dotted_or_nested_is_the_same():
    a = expand(BASE, {"workload.threads": [4]})
    b = expand(BASE, {"workload": {"threads": [4]}})
    assert a[0].point_hash == b[0].point_hash


@pytest.mark.parametrize("axes,zips,excl,needle", [
    ({"machine.corez": [1]}, [], [], "unknown key 'machine.corez'; did you mean machine.cores"),
    ({}, [], [], "grid.axes is empty"),
    ({"machine.cores": []}, [], [], "grid.axes.machine.cores: empty list"),
    ({"memcg.high_mb": [8, 16], "memcg.max_mb": [10]}, [["memcg.high_mb", "memcg.max_mb"]],
     [], "axes of unequal length"),
    ({"memcg.high_mb": [8]}, [["memcg.high_mb", "memcg.max_mb"]], [],
     "'memcg.max_mb' is not an axis"),
    ({"machine.cores": [0]}, [], [], "machine.cores=0: allowed 1..4096"),
    ({"machine.cores": [4]}, [], [{"machine.cores": 4}], "removes every point"),
    ({"machine.cores": [4]}, [], [{"machine.corse": 4}], "grid.exclude[0]: unknown key"),
    ({"machine.cores": [4], "machine": {"cores": [8]}}, [], [], "given twice"),
])
def test_bad_grids_are_one_line_errors(axes, zips, excl, needle):
    with pytest.raises(SweepError) as ei:
        expand(BASE, axes, zips, excl)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg


def test_scenario_axis_applies_each_preset_before_the_other_axes():
    """A `scenario` axis: each value's parameters first, then the grid's other axes; an
    unknown name is one line naming the presets."""
    scen = {"big": {"machine": {"cores": 16}, "workload": {"threads": 32}},
            "small": {"machine": {"cores": 2}}}
    pts = expand(BASE, {"scenario": ["big", "small"], "machine.cores": [8]},
                 scenarios=scen)
    got = [(p.axes["scenario"], p.params.machine.cores, p.params.workload.threads)
           for p in pts]
    assert got == [("big", 8, 32), ("small", 8, 8)]        # the axis wins over the preset
    pts = expand(BASE, {"scenario": ["big", "small"]}, scenarios=scen)
    assert [p.params.machine.cores for p in pts] == [16, 2]
    with pytest.raises(SweepError, match="unknown scenario 'huge'; one of big, small"):
        expand(BASE, {"scenario": ["huge"]}, scenarios=scen)


def test_shipped_presets_load_as_scenario_values():
    """Every conf/scenario/*.yaml sets only core.Params groups, with valid values."""
    from sweep.app import scenario_params
    scen = scenario_params()
    assert {"seed_thrash", "seed_thrash_noise", "seed_swapin", "app_launch"} <= set(scen)
    pts = expand(core.Params().to_dict(), {"scenario": sorted(scen)}, scenarios=scen)
    by = {p.axes["scenario"]: p.params for p in pts}
    assert by["seed_thrash_noise"].machine.noise and by["seed_thrash_noise"].workload.open_close
    assert by["seed_thrash"].machine.cores == 256 and not by["seed_thrash"].machine.noise
