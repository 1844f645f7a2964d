"""core.Params validation: one ParamError line naming the field, the value and the range;
every cost default carries a unit and a physical reason (docs/calibration.md)."""

from __future__ import annotations

import pytest

import core
from core.costs import cost_reasons
from core.params import ADDRESS_SPACE_MB
from core.simulator import build_state
from core.state import G_PEAK_USAGE, G_USAGE


@pytest.mark.parametrize("overrides, field, fragment", [
    ({"workload": {"threads": 0}}, "workload.threads", "1..100000"),
    ({"memcg": {"high_mb": 1024, "max_mb": 512}}, "memcg.max_mb", ">= memcg.high_mb (1024)"),
    ({"workload": {"file_mb": ADDRESS_SPACE_MB + 1}}, "workload.file_mb", "address space"),
    ({"policy": {"name": "vma_retyr"}}, "policy.name", "vma_retry"),
    ({"device": {"io_median_us": -1.0}}, "device.io_median_us", ">= 0"),
    ({"costs": {"zero_fill_ns": -5}}, "costs.zero_fill_ns", ">= 0"),
    ({"costs": {"lru_add_batch": 32}}, "costs.lru_add_batch", "1..31"),
    ({"machine": {"lru": "lru2q"}}, "machine.lru", "mglru"),
    ({"device": {"ra_kb": 6}}, "device.ra_kb", "multiple of 4"),
    ({"sim": {"duration_s": 0}}, "sim.duration_s", "> 0"),
    ({"machine": {"corez": 4}}, "machine.corez", "valid keys: "),
    ({"machin": {"cores": 4}}, "machin", "valid groups: "),
    ({"workload": {"threads": "many"}}, "workload.threads", "type int"),
    ({"workload": {"readers": 0, "writers": 0, "name": "swapin"}}, "workload.readers",
     "writers + readers >= 1"),
    ({"device": {"swap": "nvme"}}, "device.swap", "zram"),
    ({"memcg": {"swap_max_mb": 64, "high_mb": 160, "max_mb": 176},
      "workload": {"name": "swapin"}}, "memcg.swap_max_mb", "not modelled"),
    ({"memcg": {"high_mb": 64, "max_mb": 80}, "workload": {"name": "app_launch"}},
     "memcg.high_mb", "warm page cache"),
    ({"workload": {"app_anon_pct": 120}}, "workload.app_anon_pct", "0..100"),
])
def test_bad_value_is_one_line_naming_field_value_and_range(overrides, field, fragment):
    with pytest.raises(core.ParamError) as exc:
        core.Params.from_dict(overrides)
    msg = str(exc.value)
    assert "\n" not in msg
    assert exc.value.field == field and msg.startswith(f"{field}=")
    assert repr(next(iter(next(iter(overrides.values())).values()))) in msg
    assert fragment in msg


def test_round_trip_and_dotted_override():
    p = core.Params.from_dict({"machine": {"cores": 8}, "memcg": {"high_mb": 64,
                                                                  "max_mb": 77}})
    assert core.Params.from_dict(p.to_dict()) == p
    q = p.with_(**{"workload.threads": 12, "policy.name": "vma_retry"})
    assert q.workload.threads == 12 and q.policy.name == "vma_retry"
    assert q.machine.cores == 8
    with pytest.raises(core.ParamError):
        p.with_(**{"workload.thread": 12})
    # YAML writes 3000 for a float field; an int field accepts 4.0 but not 4.5.
    assert core.Params.from_dict({"machine": {"sched_slice_us": 3000}}).machine.sched_slice_us \
        == 3000.0
    with pytest.raises(core.ParamError):
        core.Params.from_dict({"machine": {"cores": 4.5}})


def test_every_cost_has_a_unit_and_a_reason():
    reasons = cost_reasons()
    assert reasons, "no cost fields"
    for name, (unit, reason) in reasons.items():
        assert unit, f"costs.{name} has no unit"
        assert len(reason) >= 20, f"costs.{name} has no physical reason"


def test_kmem_pages_counts_stacks_slab_objects_and_xarray_nodes():
    """file_thrash's kernel memory charged when the run starts: per thread a 16 KiB kernel
    stack (4 pages) and a task_struct (5,888 + 8 bytes); per file its inode, dentry, struct
    file and VMA (1,128 + 3 x 192 + 4 x 8 bytes) and the xarray nodes over its slots (64
    per node, 576 bytes each). Page tables are charged by the faults that need them
    (test_core_fault_retry)."""
    p = core.Params.from_dict({"workload": {"threads": 2, "file_mb": 1}})
    # 256 pages: 4 leaf nodes + 1 root = 5 nodes a file; 2 x (5 x 576 + 5,896 + 1,736)
    # = 21,024 bytes = 6 pages
    assert p.kmem_pages == 2 * 4 + 6
    seed = core.Params.from_dict({"machine": {"cores": 256},
                                  "workload": {"threads": 500, "file_mb": 16}})
    # 64 + 1 nodes; 500 x (65 x 576 + 7,632) B = 22,536,000 B = 5,502 pages
    assert seed.kmem_pages == 500 * 4 + 5502
    swapin = core.Params.from_dict({"workload": {"name": "swapin"}})
    assert swapin.kmem_pages == 0
    S = build_state(p)
    assert S.g[G_USAGE] == S.g[G_PEAK_USAGE] == p.kmem_pages


def test_every_cost_has_a_source_and_the_calibration_page_lists_them():
    """Each cost says where it comes from (probe, cited, kernel, fitted, estimate), and
    docs/calibration.md carries the current table (`core.costs.calibration_table()`): a
    default that moves without its page moving fails here."""
    from dataclasses import fields
    from pathlib import Path

    from core.costs import SOURCE_KINDS, Costs, calibration_table
    for f in fields(Costs):
        assert f.metadata.get("source") in SOURCE_KINDS, f"costs.{f.name} has no source"
    page = (Path(__file__).resolve().parent.parent / "docs" / "calibration.md").read_text()
    assert calibration_table() in page, \
        "docs/calibration.md's cost table is stale: paste core.costs.calibration_table()"
