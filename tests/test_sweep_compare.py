"""`python -m sweep.compare`: two runs point by point, and a run beside the published rows.
Runs are built in this process on the synthetic backend (no Ray)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from test_sweep_outputs import _run_dir

from sweep.compare import main


def test_two_runs_point_by_point(tmp_path, capsys):
    a = _run_dir(tmp_path / "a", "replicates=3")
    b = _run_dir(tmp_path / "b", "replicates=3", "seed=9")
    assert main([str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "4 points in both; 0 only in A, 0 only in B" in out
    assert "## throughput_rounds_s" in out and "| apart |" in out
    # One row per point under each metric: threads x policy.
    block = out.split("## throughput_rounds_s")[1].split("##")[0]
    assert len([ln for ln in block.splitlines() if ln.startswith("| ") and "---" not in ln]) == 5
    assert (tmp_path / "cmp" / "compare.md").is_file()
    assert (tmp_path / "cmp" / "compare_throughput_rounds_s.png").stat().st_size > 1000


def test_a_run_against_itself_changes_nothing(tmp_path, capsys):
    a = _run_dir(tmp_path / "a", "replicates=3")
    assert main([str(a), str(a)]) == 0
    out = capsys.readouterr().out
    block = out.split("## rounds")[0].split("## throughput_rounds_s")[1]
    assert "+0.0%" in block and "| yes |" not in block


def test_against_published(tmp_path, capsys):
    a = _run_dir(tmp_path / "a")
    assert main([str(a), "--published"]) == 0
    out = capsys.readouterr().out
    published = pl.read_csv(Path(__file__).resolve().parent.parent / "data" / "published"
                            / "seed_thrash.csv")
    for case in published["case"]:
        assert f"published {case}" in out
    assert "model baseline" in out and "model vma_retry" in out


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert main([str(tmp_path), str(tmp_path)]) == 2
    a = _run_dir(tmp_path / "a")
    assert main([str(a), "--published", "--preset", "nope"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln]
    assert len(err) == 3 and all(ln.startswith("sweep.compare: error: ") for ln in err)
    assert "no published rows for 'nope'" in err[-1]
