"""Command-line precedence: a value for a key the grid has as an axis replaces that axis;
a scenario's values stay below a grid's axes; the command line wins over a scenario axis.
The seeds: one root seed (`seed=N`), one replicate count (`replicates=N`). No Ray."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from sweep import app
from sweep.cli import CONF_DIR
from sweep.errors import SweepError


def _plan(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("config", overrides=list(overrides))
    return app.plan(cfg, overrides=[o for o in overrides if not o.startswith("+grid=")])


def test_a_dotted_value_replaces_the_axis(capsys):
    _, points, _ = _plan("+grid=memcg", "machine.cores=16")
    assert {p.params.machine.cores for p in points} == {16}
    assert {p.axes["machine.cores"] for p in points} == {16}
    assert len(points) == 12  # 2 threads x 2 memcg x 3 policies, as before
    err = capsys.readouterr().err
    assert "machine.cores=16 (command line) replaces the grid's axis machine.cores [8]" in err


def test_a_group_option_replaces_the_axes_it_sets(capsys):
    _, points, _ = _plan("+grid=policies", "machine=server64", "device=nvme")
    assert {p.params.machine.cores for p in points} == {64}
    # device=nvme sets sparse and the latency, not read-ahead: the grid's ra_kb axis holds.
    assert {(p.params.device.sparse, p.params.device.io_median_us, p.params.device.ra_kb)
            for p in points} == {(False, 80.0, 512)}
    assert "machine.cores=64 (command line) replaces" in capsys.readouterr().err


def test_a_zipped_axis_leaves_its_zip_group():
    _, points, _ = _plan("+grid=memcg", "memcg.max_mb=100")
    # max_mb pinned; high_mb stays an axis of two values, now crossed with the rest.
    assert {p.params.memcg.max_mb for p in points} == {100}
    assert {p.params.memcg.high_mb for p in points} == {32, 64}


def test_a_scenario_stays_below_the_grids_axes():
    _, points, _ = _plan("+grid=memcg", "scenario=seed_thrash_small")
    # seed_thrash_small sets 32 cores and 64 threads; the grid's axes say 8 cores, 16/32.
    assert {p.params.machine.cores for p in points} == {8}
    assert {p.params.workload.threads for p in points} == {16, 32}
    # ... and its other values hold: the classic LRU, 2 MB read-ahead is an axis (512).
    assert {p.params.machine.lru for p in points} == {"classic"}


def test_the_command_line_wins_over_a_scenario_axis():
    _, points, _ = _plan("+grid=validity", "sim.duration_s=3.0", "sim.warmup_s=1.0")
    assert {p.params.sim.duration_s for p in points} == {3.0}
    _, points, _ = _plan("+grid=validity")
    assert len({p.params.sim.duration_s for p in points}) > 1  # each preset's own


def test_invalid_values_are_still_refused():
    with pytest.raises(SweepError, match="workload.threads=-4"):
        _plan("+grid=memcg", "workload.threads=-4")


def test_seed_and_replicates():
    _, _, units = _plan("+grid=smoke")
    assert len(units) == 8  # the grid's replicates: 2
    _, _, more = _plan("+grid=smoke", "replicates=3")
    assert len(more) == 12
    _, _, other = _plan("+grid=smoke", "seed=5")
    assert [u.point_hash for u in other] == [u.point_hash for u in units]
    assert not {u.seed for u in other} & {u.seed for u in units}
    _, _, again = _plan("+grid=smoke", "seed=0")
    assert [u.seed for u in again] == [u.seed for u in units]
