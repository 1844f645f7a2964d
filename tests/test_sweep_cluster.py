"""The sweep joins a multi-node Ray cluster by address and survives losing a worker node,
with stdout left to the sweep's own lines.

`ray.cluster_utils.Cluster` starts a head and two worker nodes on loopback, each a separate
raylet: Ray schedules across them as across machines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import polars as pl
import pytest
from _sweep_util import REPO, latest, stored_keys, run_sweep

ray_cluster_utils = pytest.importorskip("ray.cluster_utils")

# Synthetic points of 0.4 CPU-s so the three 1-CPU nodes all get work; 24 runs.
ARGS = ["+grid=smoke", "grid.axes.workload.threads=[4,5,6,7,8,9]", "backend=synthetic",
        "sweep.chunk_target_s=0.5", "ray.max_retries=5"]
ENV = {"SWEEP_SYNTHETIC_WORK_S": "0.4"}
NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024**2}


@pytest.fixture
def cluster():
    c = ray_cluster_utils.Cluster(initialize_head=True, head_node_args=dict(NODE))
    workers = [c.add_node(**NODE) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    c.shutdown()


def test_sweep_spreads_over_nodes_and_survives_a_lost_node(cluster, tmp_path):
    c, workers = cluster
    root = tmp_path / "a"
    proc = run_sweep([*ARGS, f"ray.address={c.address}"], root, env=ENV, check=True)
    assert f"on {c.address} (3 CPUs)" in proc.stderr
    pts = pl.read_parquet(latest(root) / "points.parquet")
    assert pts.height == 24 and set(pts["status"]) == {"ok"}
    assert pts["node_id"].n_unique() >= 2

    # Same sweep into a fresh store; a worker node dies once some chunks are stored.
    root = tmp_path / "b"
    cmd = [sys.executable, "-m", "sweep", *ARGS, f"ray.address={c.address}",
           f"output.root={root}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | ENV
    sweep = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(stored_keys(root)) < 2 and time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()
        time.sleep(0.05)
    c.remove_node(workers[1])
    out, err = sweep.communicate(timeout=240)
    assert sweep.returncode == 0, out + err
    # stdout is the sweep's own: Ray's "(raylet) Task run_chunk failed ..." goes to stderr.
    assert [ln.split(":")[0] for ln in out.splitlines()] == ["report", "sweep smoke"], out
    pts = pl.read_parquet(latest(root) / "points.parquet")
    assert pts.height == 24 and set(pts["status"]) == {"ok"}


def test_ray_address_env_joins_the_cluster(cluster, tmp_path):
    c, _ = cluster
    proc = run_sweep(["+grid=smoke", "backend=synthetic"], tmp_path,
                     env={"RAY_ADDRESS": c.address}, check=True)
    assert f"on {c.address}" in proc.stderr


def test_no_address_stays_local_while_a_cluster_runs(cluster, tmp_path):
    """Without ray.address the sweep starts its own embedded Ray, not the running cluster."""
    proc = run_sweep(["+grid=smoke", "backend=synthetic", "grid.axes.workload.threads=[4]",
                      "replicates=1", "ray.num_cpus=1"], tmp_path, check=True)
    assert "on local Ray (1 CPUs)" in proc.stderr
