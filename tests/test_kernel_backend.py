"""The kernel backend on this machine: tiny real runs (1-4 threads, 1-16 MB, 1-2 s), no memcg
limits on the real cgroupfs (the memcg code path runs against a fake tree in tmp_path).
No test asserts a wall-clock time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pl = pytest.importorskip("polars")

from core import Params
from core.metrics import METRIC_COLUMNS
from sweep import kernel_backend as kb

pytestmark = pytest.mark.skipif(kb.find_compiler() is None,
                                reason="no C compiler (cc/gcc): kernel workloads cannot build")

PAGE = 4096
# The kernel's default fault_around_bytes is 64 KiB (mm/memory.c), 16 pages per read fault.
# It is a debugfs knob; the tests only read it, and fall back to the default.
DEFAULT_FAULT_AROUND_PAGES = 16


def fault_around_pages() -> int:
    try:
        return int(Path("/sys/kernel/debug/fault_around_bytes").read_text()) // PAGE
    except (OSError, ValueError):
        return DEFAULT_FAULT_AROUND_PAGES


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kcache")


def small_params(**dotted) -> Params:
    base = {"machine.cores": 2, "workload.threads": 2, "workload.file_mb": 8,
            "sim.duration_s": 1.5, "sim.warmup_s": 0.5}
    base.update(dotted)
    return Params().with_(**base)


def last_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    return json.loads(lines[-1])


# ---- the programs ----------------------------------------------------------------------

def test_file_thrash_runs_and_prints_json(cache, tmp_path):
    exe = kb.compile_workload("file_thrash", cache_dir=cache)
    proc = subprocess.run([str(exe), "--threads", "2", "--file-mb", "4", "--duration-s", "1",
                           "--open-close", "--noise", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    rep = last_json(proc.stdout)
    assert rep["threads"] == 2 and rep["file_mb"] == 4 and rep["pages_per_round"] == 1024
    assert rep["rounds"] == sum(rep["per_thread_rounds"]) and rep["rounds"] > 0
    assert rep["wall_s"] > 0 and rep["error"] is None
    assert rep["cores_used"] == len(os.sched_getaffinity(0))
    assert rep["noise_threads"] == rep["cores_used"]
    assert list(tmp_path.iterdir()) == [], "file_thrash left its files behind"


def test_file_thrash_no_sparse(cache, tmp_path):
    exe = kb.compile_workload("file_thrash", cache_dir=cache)
    proc = subprocess.run([str(exe), "--threads", "1", "--file-mb", "1", "--duration-s", "1",
                           "--no-sparse", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    rep = last_json(proc.stdout)
    assert rep["sparse"] is False and rep["rounds"] > 0
    assert rep["checksum"] > 0, "real data is non-zero, holes read as zero"
    assert list(tmp_path.iterdir()) == []


def test_swapin_runs_without_swap(cache):
    exe = kb.compile_workload("swapin", cache_dir=cache)
    proc = subprocess.run([str(exe), "--mb", "8", "--writers", "1", "--readers", "1",
                           "--duration-s", "1"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    rep = last_json(proc.stdout)
    for key in ("pageout_rounds", "swapin_rounds", "wall_s"):
        assert key in rep
    assert rep["swapin_rounds"] > 0 and rep["pages"] == 8 * 256


def test_bad_option_is_usage_error(cache):
    exe = kb.compile_workload("file_thrash", cache_dir=cache)
    proc = subprocess.run([str(exe), "--bogus"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "usage" in proc.stderr


# ---- compiling -------------------------------------------------------------------------

def test_compile_cache_hit(tmp_path):
    first = kb.compile_workload("file_thrash", cache_dir=tmp_path)
    mtime = first.stat().st_mtime_ns
    # A hit must not need the compiler at all.
    second = kb.compile_workload("file_thrash", cache_dir=tmp_path, compiler="/nonexistent-cc")
    assert second == first and second.stat().st_mtime_ns == mtime
    assert first.parent.parent == tmp_path and len(first.parent.name) == 16
    assert [p.name for p in first.parent.iterdir()] == ["file_thrash"], "temp file left"


def test_missing_compiler_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(kb, "find_compiler", lambda: None)
    with pytest.raises(kb.KernelBackendError, match="no C compiler"):
        kb.compile_workload("swapin", cache_dir=tmp_path)
    with pytest.raises(kb.KernelBackendError, match="not runnable"):
        kb.compile_workload("swapin", cache_dir=tmp_path, compiler="/nonexistent-cc")
    with pytest.raises(kb.KernelBackendError, match="unknown kernel workload"):
        kb.compile_workload("nope", cache_dir=tmp_path)


# ---- run_point -------------------------------------------------------------------------

def test_run_point_reports_vmstat_deltas(cache, tmp_path):
    params = small_params(**{"machine.cores": 64})
    row = kb.run_point(params, seed=1, work_dir=tmp_path, cache_dir=cache)
    missing = [c for c in METRIC_COLUMNS if c not in row]
    assert missing == []
    for c in kb.EXTRA_COLUMNS:
        assert c in row
    assert row["backend"] == "kernel" and row["kernel_release"] == os.uname().release
    assert row["lru"] in ("mglru", "classic")
    assert row["rounds"] > 0 and row["throughput_rounds_s"] > 0
    assert row["sim_time_s"] == row["wall_s"] and row["events"] is None
    # machine.cores=64 is more than this machine has: capped and said so.
    assert row["cores_used"] == len(os.sched_getaffinity(0))
    assert "machine.cores=64" in row["params_ignored"]
    # Each full round reads every page; a read fault maps at most one fault-around window,
    # so there are at least pages/window faults per round. vmstat is system-wide, so only
    # a lower bound is safe; 0.9 allows for the round in flight at each window edge.
    pages_per_round = params.file_pages
    assert row["pgfault"] >= 0.9 * row["rounds"] * pages_per_round / fault_around_pages()
    assert row["pgmajfault"] is not None and row["refaults"] is not None
    assert row["pages_reclaimed"] is not None
    # What the kernel cannot measure is None, not 0.
    assert row["mmap_read_hist_0"] is None and row["fault_latency_p99_us"] is None
    present = {c for c in kb.OPTIONAL_COUNTERS if c in kb.read_vmstat()}
    for c in kb.OPTIONAL_COUNTERS:
        assert (row[c] is not None) == (c in present)
    assert list(tmp_path.iterdir()) == []


def test_run_point_rejects_what_the_kernel_cannot_be(cache, tmp_path):
    with pytest.raises(kb.KernelBackendError, match="policy.name"):
        kb.run_point(small_params(**{"policy.name": "vma_retry"}), 0, work_dir=tmp_path)
    with pytest.raises(kb.KernelBackendError, match="warmup_s"):
        kb.run_point(small_params(**{"sim.warmup_s": 2.0}), 0, work_dir=tmp_path)


def test_timeout_stops_the_program_and_cleans_up(cache, tmp_path):
    exe = kb.compile_workload("file_thrash", cache_dir=cache)
    argv = [str(exe), "--threads", "1", "--file-mb", "1", "--duration-s", "30",
            "--dir", str(tmp_path)]
    with pytest.raises(kb.KernelBackendError, match="did not finish"):
        kb.run_program(argv, timeout_s=0.5)
    assert list(tmp_path.iterdir()) == []


# ---- memcg, against a fake cgroup tree (tests never create real cgroups) ------------------

@pytest.fixture
def fake_cgroupfs(tmp_path, monkeypatch):
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.subtree_control").write_text("cpu memory\n")
    writes: list[tuple[str, str]] = []
    real_write = kb._write

    def recording_write(path: Path, value: str) -> None:
        writes.append((path.name, value))
        real_write(path, value)

    monkeypatch.setattr(kb, "_write", recording_write)
    # A real cgroup dir can be rmdir'ed with its control files in it; a fake one cannot.
    monkeypatch.setattr(kb, "_remove_cgroup_dir", lambda p: shutil.rmtree(p, True))
    return root, writes


def test_memcg_point_uses_and_removes_its_cgroup(cache, tmp_path, fake_cgroupfs):
    root, writes = fake_cgroupfs
    work = tmp_path / "work"
    work.mkdir()
    params = small_params(**{"memcg.high_mb": 64, "memcg.max_mb": 80, "workload.threads": 1,
                             "workload.file_mb": 1, "sim.duration_s": 1.0})
    row = kb.run_point(params, 0, work_dir=work, cache_dir=cache,
                       cgroup_parent=kb.CgroupParent(root, 2))
    written = dict(writes)
    assert written["memory.high"] == str(64 << 20)
    assert written["memory.max"] == str(80 << 20)
    assert int(written["cgroup.procs"]) > 0
    assert row["memcg_path"].startswith(str(root)) and row["rounds"] > 0
    assert [p.name for p in root.iterdir()] == ["cgroup.subtree_control"], "cgroup left"


def test_memcg_v1_limit(cache, tmp_path, fake_cgroupfs):
    root, _ = fake_cgroupfs
    with kb.point_memcg(high_mb=0, max_mb=100, swap_max_mb=0,
                        parent=kb.CgroupParent(root, 1)) as path:
        assert (path / "memory.limit_in_bytes").read_text() == str(100 << 20)
    assert not path.exists()


def test_memcg_without_permission_is_clear_error(tmp_path, fake_cgroupfs, monkeypatch):
    root, _ = fake_cgroupfs
    with (pytest.raises(kb.KernelBackendError, match="cannot create memory cgroup"),
          kb.point_memcg(64, 0, 0, kb.CgroupParent(root / "absent", 2))):
        pass
    (root / "cgroup.subtree_control").write_text("cpu\n")

    def busy(path: Path, value: str) -> None:
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr(kb, "_write", busy)
    with (pytest.raises(kb.KernelBackendError, match="no processes of its own"),
          kb.point_memcg(64, 0, 0, kb.CgroupParent(root, 2))):
        pass


def test_find_cgroup_parent_v1_and_v2(tmp_path):
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("cpu io memory pids\n")
    (tmp_path / "cgroup").write_text("0::/user.slice/run\n")
    (tmp_path / "mountinfo").write_text(
        f"30 25 0:26 / {unified} rw,nosuid - cgroup2 cgroup2 rw\n")
    parent = kb.find_cgroup_parent(tmp_path / "cgroup", tmp_path / "mountinfo")
    assert parent == kb.CgroupParent(unified / "user.slice" / "run", 2)

    (unified / "cgroup.controllers").write_text("cpu\n")  # memory bound to v1 instead
    (tmp_path / "cgroup").write_text("4:memory:/box/abc\n0::/\n")
    (tmp_path / "mountinfo").write_text(
        f"30 25 0:26 / {unified} rw - cgroup2 cgroup2 rw\n"
        f"31 25 0:27 /box {tmp_path}/mem rw - cgroup cgroup rw,memory\n")
    parent = kb.find_cgroup_parent(tmp_path / "cgroup", tmp_path / "mountinfo")
    assert parent == kb.CgroupParent(tmp_path / "mem" / "abc", 1)


# ---- machine facts ---------------------------------------------------------------------

def test_lru_kind(tmp_path):
    f = tmp_path / "enabled"
    f.write_text("0x0007\n")
    assert kb.lru_kind(f) == "mglru"
    f.write_text("0x0000\n")
    assert kb.lru_kind(f) == "classic"
    assert kb.lru_kind(tmp_path / "absent") == "classic"


def test_read_ahead_kb_of_real_dir(tmp_path):
    ra = kb.read_ahead_kb(tmp_path)
    assert ra is None or ra > 0


# ---- sim vs real ---------------------------------------------------------------------------

def test_sim_vs_real_table():
    rows = []
    for threads in (1, 2):
        for seed in (0, 1):
            rows.append({"backend": "sim", "workload.threads": threads, "rounds": 100 + seed,
                         "throughput_rounds_s": 50.0, "pgfault": 256 * (100 + seed),
                         "pgmajfault": 0, "retry_mmap_drop": 10, "error": None})
        rows.append({"backend": "kernel", "workload.threads": threads, "rounds": 200,
                     "throughput_rounds_s": 100.0, "pgfault": 256 * 200 * 2,
                     "pgmajfault": 4, "retry_mmap_drop": None, "error": None})
    # A failed kernel row and a point only the simulator has are left out.
    rows.append({"backend": "kernel", "workload.threads": 4, "rounds": None,
                 "throughput_rounds_s": None, "pgfault": None, "pgmajfault": None,
                 "retry_mmap_drop": None, "error": "boom"})
    rows.append({"backend": "sim", "workload.threads": 4, "rounds": 1,
                 "throughput_rounds_s": 1.0, "pgfault": 1, "pgmajfault": 0,
                 "retry_mmap_drop": 1, "error": None})
    table = kb.sim_vs_real_table(pl.DataFrame(rows), ["backend", "workload.threads"])
    assert table.columns == ["workload.threads", "metric", "simulated", "measured", "ratio",
                             "n_sim", "n_kernel"]
    assert table["workload.threads"].unique().sort().to_list() == [1, 2]
    metrics = table.filter(pl.col("workload.threads") == 1)["metric"].to_list()
    assert metrics == ["rounds", "throughput_rounds_s", "pgfault_per_round",
                       "pgmajfault_per_round", "pgfault", "pgmajfault"]
    r = table.filter((pl.col("workload.threads") == 1) & (pl.col("metric") == "rounds")).row(
        0, named=True)
    assert r["simulated"] == 100.5 and r["measured"] == 200.0 and r["n_sim"] == 2
    assert r["ratio"] == pytest.approx(100.5 / 200)
    per_round = table.filter((pl.col("workload.threads") == 2)
                             & (pl.col("metric") == "pgfault_per_round")).row(0, named=True)
    assert per_round["simulated"] == 256 and per_round["measured"] == 512
    zero = table.filter((pl.col("workload.threads") == 2)
                        & (pl.col("metric") == "pgmajfault_per_round")).row(0, named=True)
    assert zero["ratio"] == pytest.approx(0.0)
