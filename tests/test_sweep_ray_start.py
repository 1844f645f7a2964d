"""The README's cluster commands as written: a head started with `ray start --head` (token
authentication on, as Ray 2.59+ starts it) and a sweep joining it by address.

The head runs with --block in its own process group, its temp dir and HOME (where `ray
start` writes ~/.ray/auth_token) under the test's directory and a free port; the test kills
exactly that process group at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import polars as pl
import pytest
from _sweep_util import REPO, latest, run_sweep, stored_keys

RAY = shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the head's process group (ray start --block, its GCS, raylet and workers),
    SIGKILL what is left after 5 s; then nothing of the group may remain."""
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGTERM)
    for sig, grace in ((None, 5), (signal.SIGKILL, 30)):
        if sig is not None and _group_alive(proc.pid):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            proc.poll()
            time.sleep(0.2)
    proc.wait(timeout=10)
    assert not _group_alive(proc.pid), "the head's process group outlived SIGKILL"


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("head")
    if RAY is None:
        pytest.skip("the ray command is not installed")
    home = tmp_path / "home"
    home.mkdir()
    port = _free_port()
    # Ray's socket paths must fit AF_UNIX's 107 bytes: a short temp dir, removed after.
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_")} | {"HOME": str(home)}
    # The token a first local run (ray.init) leaves in ~/.ray/auth_token: with it there,
    # `ray start` turns token authentication on.
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").is_file()
    log = open(tmp_path / "head.log", "w")  # noqa: SIM115  closed below
    proc = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--num-cpus=1",
                             f"--temp-dir={ray_tmp}", "--include-dashboard=false",
                             "--disable-usage-stats", "--block"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "head.log").read_text()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    time.sleep(3)  # the raylet registers after the GCS listens
    assert "Token authentication is enabled" in (tmp_path / "head.log").read_text()
    try:
        yield f"127.0.0.1:{port}", env, proc
    finally:
        _stop_group(proc)
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_sweep_joins_a_ray_start_head(head, tmp_path):
    address, env, _ = head
    proc = run_sweep(["+grid=smoke", "backend=synthetic", f"ray.address={address}"],
                     tmp_path / "out", env={"HOME": env["HOME"]}, check=True)
    assert f"on {address} (1 CPUs)" in proc.stderr
    pts = pl.read_parquet(latest(tmp_path / "out") / "points.parquet")
    assert pts.height == 8 and set(pts["status"]) == {"ok"}


def test_a_refused_token_is_one_line(head, tmp_path):
    address, env, _ = head
    proc = run_sweep(["+grid=smoke", "backend=synthetic", f"ray.address={address}"],
                     tmp_path / "out", env={"HOME": env["HOME"], "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: ray.address={address}: the cluster refused"), proc.stderr
    assert "auth_token" in last
    assert not (tmp_path / "out").exists()


def test_a_head_lost_mid_sweep_is_one_line_and_status_3(head, tmp_path):
    """Last in this module: it kills the head. The sweep stops within about 10 s of the
    head going away, with the resume hint, instead of Ray's own error a minute later."""
    address, env, proc = head
    root = tmp_path / "out"
    sweep_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "HOME": env["HOME"], "SWEEP_SYNTHETIC_WORK_S": "0.5"}
    sweep = subprocess.Popen([sys.executable, "-m", "sweep", "+grid=smoke",
                              "backend=synthetic", "grid.axes.workload.threads=[4,5,6,7,8,9]",
                              "sweep.chunk_target_s=0.5", f"ray.address={address}",
                              f"output.root={root}"], cwd=REPO, env=sweep_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(stored_keys(root)) < 2 and time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    t0 = time.monotonic()
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 3, err
    assert time.monotonic() - t0 < 45
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: ray.address={address}: the cluster's head stopped "
                           "answering") and "run the same command to resume" in last
