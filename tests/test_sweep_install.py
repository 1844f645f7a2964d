"""A normal install: `pip install .` (not editable) into a fresh virtual environment, then
`python -m sweep +grid=smoke` from another directory: conf/, kernel_workloads/ and
data/published/ travel as the wheel's data files (sweep/resources.py finds them).

The environment sees this interpreter's packages (--system-site-packages) so that only
faultsim itself is installed; pip builds it with setuptools from the package registry."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_normal_install_runs_from_anywhere(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(REPO)],
                   check=True, env=env, cwd=tmp_path, timeout=600)
    where = subprocess.run([str(py), "-c", "import sweep.resources as r, sweep; "
                            "print(sweep.__file__); print(r.CONF_DIR); print(r.WORKLOAD_DIR);"
                            "print(r.PUBLISHED_DIR)"], check=True, env=env, cwd=tmp_path,
                           capture_output=True, text=True).stdout.split()
    assert all(w.startswith(str(env_dir)) for w in where), where
    assert (Path(where[2]) / "file_thrash.c").is_file()
    assert (Path(where[3]) / "seed_thrash.csv").is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = subprocess.run([str(py), "-m", "sweep", "+grid=smoke", "backend=synthetic",
                           "ray.num_cpus=1"], env=env, cwd=work, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (work / "results" / "smoke" / "latest" / "summary.md").is_file()
    assert sys.executable != str(py)
