"""Bad input stops the run before anything is computed: one line, non-zero exit, no files."""

from __future__ import annotations

import pytest
from _sweep_util import run_sweep

CASES = [
    (["+grid=smoke", "machine.corez=4"],
     "unknown config key 'machine.corez'; did you mean machine.cores"),
    (["+grid=smok"], "grid=smok: no such option; did you mean smoke?"),
    (["+grid=smoke", "+grid.axes.machine.corez=[1]"],
     "unknown key 'machine.corez'; did you mean machine.cores"),
    (["+grid=smoke", "grid.axes.workload.threads=[]"], "grid.axes.workload.threads: empty"),
    (["+grid=smoke", "grid.zip=[[memcg.high_mb,memcg.max_mb]]",
      "grid.axes.memcg.max_mb=[10,20]"], "grid.zip[0]: axes of unequal length"),
    (["+grid=smoke", "grid.axes.workload.threads=[0]"], "workload.threads=0: allowed"),
    (["+grid=smoke", "machine.cores=abc"], "machine.cores=abc:"),
    (["+grid=smoke", "backend=kernal"], "backend='kernal': one of"),
    (["+grid=smoke", "ray.address=http://127.0.0.1:8265"], "dashboard (HTTP) address"),
    (["+grid=smoke", "ray.address=127.0.0.1:9", "ray.connect_timeout_s=2"],
     "cannot reach 127.0.0.1:9"),
    (["+grid=smoke", "sweep.chunk_target_s=0"], "sweep.chunk_target_s=0.0: must be > 0"),
    (["+grid=smoke", "replicates=0"], "replicates=0: must be >= 1"),
    (["+grid=smoke", "seed=-1"], "seed=-1: must be >= 0"),
    (["+grid=smoke", "grid.seeds=3"], "grid.seeds is now replicates: write replicates=3"),
    (["+grid=smoke", "sweep.root_seed=3"], "sweep.root_seed is now seed: write seed=3"),
    (["+grid=smoke", "+seed=7"], "write seed=7 (no plus: seed is a top-level setting)"),
    (["grid=smoke"], "write +grid=smoke"),
    (["-m", "+grid=smoke"], "-m (Hydra's multirun) is not used here"),
    (["+grid=smoke", "+grid.axis=[1]"], "unknown grid key 'grid.axis'; did you mean axes?"),
    (["+grid=smoke", "+machine.corez=4"], "unknown config key 'machine.corez'; did you mean"),
    ([], "no grid given: add +grid=<name>"),
    (["+grid=smoke", "sim.duration_s=inf"], "sim.duration_s=inf: must be a finite number"),
    (["+grid=smoke", "sim.duration_s=1e9"], "is over a simulated day"),
    (["+grid=smoke", "workload.file_mb=100000", "memcg.high_mb=0", "memcg.max_mb=0",
      "sweep.max_point_mem_gb=1"], "over sweep.max_point_mem_gb=1"),
    (["+grid=smoke", "grid.axes.workload.threads=[1,2,3,4,5,6,7,8,9,10]",
      "grid.axes.workload.file_mb=[1,2,3,4,5,6,7,8,9,10]",
      "+grid.axes.device.ra_kb=[4,8,16,32,64,128,256,512,1024,2048]",
      "+grid.axes.costs.touch_ns=[1,2,3,4,5,6,7,8,9,10]",
      "+grid.axes.costs.zero_fill_ns=[1,2,3,4,5,6,7,8,9,10]"],
     "the grid has 200,000 points, over 100,000: write sweep.allow_large=true"),
    (["+grid=smoke", "grid.name=/abs/x"], "grid.name='/abs/x': must be a plain name"),
    (["+grid=smoke", "grid.name=.store"], "grid.name='.store': must be a plain name"),
]


@pytest.mark.parametrize("args,needle", CASES, ids=[" ".join(c[0]) or "nogrid" for c in CASES])
def test_bad_input_is_one_line(tmp_path, args, needle):
    root = tmp_path / "out"
    proc = run_sweep(args, root, timeout=60)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert not root.exists(), "an invalid run wrote results"


def test_kernel_backend_absent_is_one_line(monkeypatch):
    import importlib.util

    from sweep.backend import check_backend
    from sweep.errors import SweepError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sweep.kernel_backend" else real(name, *a))
    with pytest.raises(SweepError, match="backend=kernel: sweep/kernel_backend.py is not there"):
        check_backend("kernel")


def test_kernel_backend_needs_a_kernel_runner_node():
    from sweep.errors import SweepError
    from sweep.runner import Cluster, compute

    with pytest.raises(SweepError, match="'kernel_runner' resource"):
        compute([], {}, "kernel", Cluster(address="x:1", cpus=4, kernel_runners=0), 1.0, 2, 0,
                lambda rows: None)


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_output_root_that_cannot_be_written_is_one_line(tmp_path, where):
    root = tmp_path / "a-file" if where == "file" else "/proc/faultsim-nope"
    if where == "file":
        root.write_text("x")
    proc = run_sweep(["+grid=smoke", "backend=synthetic"], root, timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: output.root={root}: "), proc.stderr


def test_an_output_root_without_room_is_refused_before_computing(tmp_path, monkeypatch):
    """The expected output (store parts and the run directory, estimated per run) must fit
    the file system's free space; the check runs before Ray starts, and writes nothing."""
    import collections
    import shutil

    from hydra import compose, initialize_config_dir

    from sweep import app, limits
    from sweep.cli import CONF_DIR
    from sweep.errors import SweepError

    root = tmp_path / "out"
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose("config", overrides=["+grid=smoke", "backend=synthetic",
                                            f"output.root={root}"])
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, 1 << 30, 1 << 20))
    monkeypatch.setattr(app, "connect", lambda *a, **k: pytest.fail("Ray was started"))
    with pytest.raises(SweepError, match=r"output.root=.*: about 5 MB are needed for 8 new "
                                         r"runs and the run directory, 1 MB are free on"):
        app.run_sweep(cfg)
    assert not root.exists()
    assert limits.needed_bytes(0, 8) < limits.needed_bytes(8, 8)
