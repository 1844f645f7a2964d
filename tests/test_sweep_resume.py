"""A driver killed with SIGKILL mid-sweep: the rerun computes only what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from _sweep_util import BACKEND, REPO, latest, stored_keys, metrics_sorted, run_sweep

# 6 thread counts x 2 policies x 2 seeds = 24 runs; small chunks so parts land one by one.
ARGS = ["+grid=smoke", "grid.axes.workload.threads=[4,5,6,7,8,9]", "sweep.chunk_target_s=0.3",
        "sweep.in_flight_per_cpu=1"]
# Only the synthetic backend reads this: 0.3 CPU-s per run keeps the sweep a few seconds long.
ENV = {"SWEEP_SYNTHETIC_WORK_S": "0.3"}


def test_resume_after_sigkill(tmp_path):
    root = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sweep", *ARGS, f"output.root={root}", f"backend={BACKEND}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | ENV
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len(stored_keys(root)) < 4 and time.monotonic() < deadline:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        # The embedded Ray the driver started outlives it; clean up its session.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    done_before = stored_keys(root)
    assert 4 <= len(done_before) < 24, "kill came too late to test a resume"
    assert not (root / "smoke").exists()

    rerun = run_sweep(ARGS, root, env=ENV, check=True)
    assert f"{len(set(done_before))} cached, {24 - len(set(done_before))} to compute" \
        in rerun.stderr
    keys = stored_keys(root)
    assert len(keys) == len(set(keys)) == 24, "a run was computed twice"

    clean = tmp_path / "clean"
    run_sweep(ARGS, clean, env=ENV, check=True)
    assert metrics_sorted(latest(root)).equals(metrics_sorted(latest(clean)))
