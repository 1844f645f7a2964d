"""sweep.report: plots and report.html from a stored run directory, and its errors.

One small synthetic sweep (seconds) is the stored run: the smoke grid with memory.high as a
second axis and two failing replicates, so every plot kind except fault latency (null in
the synthetic backend) applies, and the failed-runs table has rows.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from _sweep_util import REPO, latest, run_sweep

from sweep.report import ReportError, markdown_to_html, write_report

# Both replicates of one point fail: a fixed count, whatever the seeds (which follow the
# point hash and so MODEL_VERSION) turn out to be.
FAIL = "policy.name=vma_retry,workload.threads=8,memcg.high_mb=16"
EXPECTED = {"throughput_vs_workload_threads.png", "throughput_vs_memcg_high_mb.png",
            "miss_drop_pct_vs_memcg_high_mb.png", "mmap_read_wait_hist.png",
            "mmap_write_wait_hist.png"}
INPUTS = ["config.yaml", "summary.md", "aggregate.csv", "histograms.csv", "points.parquet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    proc = run_sweep(["+grid=smoke", "backend=synthetic", "grid.axes.memcg.high_mb=[8,16]",
                      "grid.axes.memcg.max_mb=[20]"], root,
                     env={"SWEEP_SYNTHETIC_FAIL": FAIL})
    assert proc.returncode == 1, proc.stderr  # 1: some runs failed, by design
    return latest(root)


@pytest.fixture
def copy(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst, ignore=shutil.ignore_patterns("plots", "report.html"))
    return dst


def _pngs(d):
    return sorted(p.name for p in (d / "plots").glob("*.png"))


def test_sweep_writes_the_report_at_the_end(run_dir):
    assert (run_dir / "report.html").is_file()
    assert set(_pngs(run_dir)) == EXPECTED


def test_sweep_without_report(tmp_path):
    run_sweep(["+grid=smoke", "backend=synthetic", "output.report=false"], tmp_path,
              check=True)
    d = latest(tmp_path)
    assert not (d / "report.html").exists() and not (d / "plots").exists()


def test_cli_writes_plots_that_decode_and_are_not_blank(copy):
    import matplotlib.image as mpimg
    proc = subprocess.run([sys.executable, "-m", "sweep.report", str(copy)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "report.html" in proc.stdout
    assert set(_pngs(copy)) == EXPECTED and len(_pngs(copy)) == 5
    for name in _pngs(copy):
        img = mpimg.imread(copy / "plots" / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, name
        assert float(np.var(img[..., :3])) > 0, f"{name} is blank"


def test_html_is_self_contained_with_every_plot_and_table(copy):
    html = write_report(copy, quiet=True).read_text()
    # Every plot is embedded byte for byte.
    for name in EXPECTED:
        data = base64.b64encode((copy / "plots" / name).read_bytes()).decode()
        assert f"data:image/png;base64,{data}" in html, name
    assert html.count("<img ") == len(EXPECTED)
    # Nothing to fetch: no external scripts, styles or images.
    assert "<script" not in html and "<link" not in html
    assert not re.findall(r'(?:src|href)="(?!data:|#)', html)
    # Every table of summary.md, with its header cells and rows.
    md = (copy / "summary.md").read_text()
    md_tables = re.findall(r"^\|.*\|\n\|[-|]+\|\n((?:\|.*\|\n?)+)", md, flags=re.MULTILINE)
    # Per point, policy vs baseline, and the cover letter's table for each of the 4
    # combinations of threads and memory.high.
    assert len(md_tables) == 6
    for heading in ("Per point (mean ± 95% CI half-width over replicates)",
                    "Policy vs baseline", "file_thrash as the series cover letter"):
        assert heading in html
    md_lines = md.splitlines()
    for i, line in enumerate(md_lines):
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            header = i + 1 < len(md_lines) and md_lines[i + 1].startswith("|---")
            tag = "th" if header else "td"
            row = "".join(f"<{tag}>{c.replace('`', '')}</{tag}>" for c in cells)
            assert row in html, line
    # The parameters and the failed runs (both replicates of vma_retry, 8 threads, 16 MB).
    assert "config.yaml" in html and "<td>workload.threads</td><td>4, 8</td>" in html
    assert "<td>memcg.high_mb</td><td>8, 16</td>" in html
    assert "Failed runs (2)" in html
    assert html.count("synthetic failure for policy vma_retry") == 2


def test_single_value_axis_and_null_metric_are_skipped(copy):
    for name in ("aggregate.csv", "histograms.csv"):
        df = pl.read_csv(copy / name, infer_schema_length=None)
        df.filter(pl.col("memcg.high_mb") == 16).write_csv(copy / name)
    write_report(copy, quiet=True)
    # memory.high now has one value: no plot against it.
    assert _pngs(copy) == ["mmap_read_wait_hist.png", "mmap_write_wait_hist.png",
                           "throughput_vs_workload_threads.png"]
    # A workload without rounds: throughput null everywhere, its plots go (and stale PNGs
    # of the previous report with them).
    agg = pl.read_csv(copy / "aggregate.csv", infer_schema_length=None)
    agg.with_columns(pl.lit(None, pl.Float64).alias("throughput_rounds_s_mean")).write_csv(
        copy / "aggregate.csv")
    html = write_report(copy, quiet=True).read_text()
    assert _pngs(copy) == ["mmap_read_wait_hist.png", "mmap_write_wait_hist.png"]
    assert html.count("<img ") == 2


def test_policy_only_grid_gets_throughput_bars(copy):
    for name in ("aggregate.csv", "histograms.csv"):
        df = pl.read_csv(copy / name, infer_schema_length=None)
        df.filter((pl.col("memcg.high_mb") == 16) & (pl.col("workload.threads") == 4)
                  ).write_csv(copy / name)
    write_report(copy, quiet=True)
    assert _pngs(copy) == ["mmap_read_wait_hist.png", "mmap_write_wait_hist.png",
                           "throughput_per_policy.png"]


def test_html_tags_are_balanced(run_dir):
    from html.parser import HTMLParser
    void = {"meta", "img", "br", "hr", "link", "input"}

    class Check(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag not in void:
                self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
            self.stack.pop()

    c = Check()
    c.feed((run_dir / "report.html").read_text())
    assert c.stack == []


def test_fault_latency_plot_when_the_backend_reports_it(copy):
    import matplotlib.image as mpimg
    agg = pl.read_csv(copy / "aggregate.csv", infer_schema_length=None)
    p99 = pl.when(pl.col("policy") == "baseline").then(1800.0).otherwise(600.0)
    agg.with_columns(p99.alias("fault_latency_p99_us_mean"),
                     pl.lit(50.0).alias("fault_latency_p99_us_ci95")).write_csv(
        copy / "aggregate.csv")
    html = write_report(copy, quiet=True).read_text()
    assert set(_pngs(copy)) == EXPECTED | {"fault_latency_p99.png"}
    img = mpimg.imread(copy / "plots" / "fault_latency_p99.png")
    assert float(np.var(img[..., :3])) > 0
    assert html.count("<img ") == len(EXPECTED) + 1


@pytest.mark.parametrize("name", INPUTS)
def test_missing_file_is_one_line_naming_it(copy, name):
    (copy / name).unlink()
    with pytest.raises(ReportError) as e:
        write_report(copy, quiet=True)
    msg = str(e.value)
    assert "\n" not in msg and str(copy / name) in msg and "missing" in msg


_CORRUPT = {
    "config.yaml": b"machine: [unclosed\n  cores: 8\n",
    "summary.md": b"\xff\xfe\x00 not utf-8 \xc3\x28",
    "aggregate.csv": b"this is,not\nthe aggregate,csv\n",
    "histograms.csv": b"\x00\x01\x02",
}


@pytest.mark.parametrize("name", INPUTS)
def test_corrupt_file_is_one_line_naming_it(copy, name):
    path = copy / name
    if name == "points.parquet":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    else:
        path.write_bytes(_CORRUPT[name])
    with pytest.raises(ReportError) as e:
        write_report(copy, quiet=True)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert not (copy / "report.html").exists()


def test_cli_error_is_one_line_and_nonzero(copy):
    (copy / "histograms.csv").unlink()
    proc = subprocess.run([sys.executable, "-m", "sweep.report", str(copy)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "histograms.csv" in lines[0], proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sweep.report", str(copy / "nope")],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1


def test_markdown_tables_lists_and_code():
    out = markdown_to_html("# T\n\nSome `a<b` text.\n\n| x | y |\n|---|---|\n| 1 | 2 |\n"
                           "| 3 | 4 |\n\n- one\n- two\n")
    assert "<h2>T</h2>" in out and "<code>a&lt;b</code>" in out
    assert "<tr><th>x</th><th>y</th></tr>" in out
    assert "<tr><td>1</td><td>2</td></tr>" in out and "<tr><td>3</td><td>4</td></tr>" in out
    assert "<li>one</li>" in out and "<li>two</li>" in out
