"""The point store: content-addressed rows, one per (point hash, replicate), per output root.

A row answers a unit only if it was computed with the unit's seed: the seed derives from the
root seed, so a run with another `seed=N` finds nothing of this one and computes its own.

Layout under `<output.root>/.store/`: `parts/*.parquet`, append-only, one part per finished
chunk, each written to a temporary name and renamed into place (a part is whole or absent);
`manifest.jsonl`, one line per part listing the keys it holds, appended after the rename with
a single write. The manifest is the index: a part whose line never made it (the driver died
between rename and append) is ignored and its rows computed again, so a kill loses at most
the chunks in flight. Failed rows are stored too (a run dir shows them) but do not count as
done: the next run retries them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from core.metrics import METRIC_COLUMNS

# Columns of every stored row besides the metrics.
KEY_COLUMNS = ["point_hash", "replicate"]
META_SCHEMA: dict[str, pl.DataType] = {
    "point_hash": pl.String, "replicate": pl.Int64, "seed": pl.Int64,
    "backend": pl.String, "model_version": pl.String, "params_json": pl.String,
    "status": pl.String, "error_type": pl.String, "error": pl.String,
    # Wall and CPU seconds per replicate in the worker (a batch's time split evenly).
    "node_id": pl.String, "point_wall_s": pl.Float64, "point_cpu_s": pl.Float64,
    # Columns a backend adds beyond core.METRIC_COLUMNS (the kernel backend's kernel_release,
    # read_ahead_kb, params_ignored, ...), as one JSON object per row.
    "extra_json": pl.String,
}
# Metrics are stored as Float64: columns may be int, float or null depending on the
# workload, and one dtype keeps every part concatenable.
STORE_SCHEMA = {**META_SCHEMA, **{c: pl.Float64 for c in METRIC_COLUMNS}}


class PointStore:
    def __init__(self, root: Path):
        self.dir = Path(root) / ".store"
        self.parts_dir = self.dir / "parts"
        self.manifest_path = self.dir / "manifest.jsonl"
        self._index: dict[tuple[str, int], tuple[str, str, int | None]] | None = None

    # -- reading ------------------------------------------------------------------------------
    def index(self) -> dict[tuple[str, int], tuple[str, str, int | None]]:
        """(point hash, replicate) -> (part file name, status, seed), the newest line winning."""
        if self._index is None:
            idx: dict[tuple[str, int], tuple[str, str, int | None]] = {}
            if self.manifest_path.exists():
                for line in self.manifest_path.read_text().splitlines():
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a torn last line from a killed writer
                    if not (self.parts_dir / entry["part"]).exists():
                        continue
                    for h, r, status, *seed in entry["keys"]:
                        idx[(h, int(r))] = (entry["part"], status, seed[0] if seed else None)
            self._index = idx
        return self._index

    def _has(self, h: str, r: int, seed: int) -> bool:
        e = self.index().get((h, r))
        return e is not None and e[2] == seed

    def done(self, keys: Iterable[tuple[str, int, int]]) -> set[tuple[str, int, int]]:
        """The (point hash, replicate, seed) keys stored with status ok and that seed."""
        idx = self.index()
        return {k for k in keys if self._has(*k) and idx[k[:2]][1] == "ok"}

    def rows(self, keys: Sequence[tuple[str, int, int]]) -> pl.LazyFrame:
        """The stored rows of `keys` (hash, replicate, seed; those present), one per key."""
        idx = self.index()
        wanted = [(h, r, idx[(h, r)][0]) for h, r, seed in keys if self._has(h, r, seed)]
        if not wanted:
            return pl.LazyFrame(schema=STORE_SCHEMA)
        key_frame = pl.LazyFrame({"point_hash": [w[0] for w in wanted],
                                  "replicate": [w[1] for w in wanted],
                                  "_part": [w[2] for w in wanted]},
                                 schema={"point_hash": pl.String, "replicate": pl.Int64,
                                         "_part": pl.String})
        parts = sorted({w[2] for w in wanted})
        scans = [pl.scan_parquet(self.parts_dir / p).with_columns(_part=pl.lit(p))
                 for p in parts]
        return (pl.concat(scans, how="diagonal_relaxed")
                .join(key_frame, on=["point_hash", "replicate", "_part"], how="semi")
                .unique(subset=KEY_COLUMNS, keep="last")
                .drop("_part"))

    def _ok_rows(self, columns: list[str]) -> pl.DataFrame:
        idx = self.index()
        parts = sorted({e[0] for e in idx.values() if e[1] == "ok"})
        if not parts:
            return pl.DataFrame(schema={c: STORE_SCHEMA[c] for c in columns})
        return (pl.concat([pl.scan_parquet(self.parts_dir / p).select(columns) for p in parts],
                          how="vertical_relaxed")
                .filter((pl.col("status") == "ok") & pl.col("point_wall_s").is_not_null())
                .collect())

    def measured_walls(self) -> dict[str, float]:
        """Point hash -> median wall seconds of its stored ok replicates (for estimates)."""
        rows = self._ok_rows(["point_hash", "status", "point_wall_s"])
        if rows.height == 0:
            return {}
        med = rows.group_by("point_hash").agg(pl.col("point_wall_s").median())
        return dict(zip(med["point_hash"], med["point_wall_s"], strict=True))

    def measured_rates(self, backend: str) -> list[tuple[float, float]]:
        """(wall seconds, cost) of every stored ok run of `backend`, the cost being its
        simulated (or measured) seconds, as sweep.runner.unit_cost."""
        rows = self._ok_rows(["backend", "status", "point_wall_s", "params_json"])
        rows = rows.filter(pl.col("backend") == backend)
        out = []
        for wall, pj in zip(rows["point_wall_s"], rows["params_json"], strict=True):
            try:
                d = json.loads(pj)
                cost = max(float(d["sim"]["duration_s"]), 1e-3)
            except (TypeError, ValueError, KeyError):
                continue
            out.append((wall, cost))
        return out

    # -- writing ------------------------------------------------------------------------------
    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write one part holding `rows` and record it in the manifest."""
        if not rows:
            return
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        records = []
        for r in rows:
            extra = {k: v for k, v in r.items() if k not in STORE_SCHEMA}
            rec = {c: r.get(c) for c in STORE_SCHEMA}
            rec["extra_json"] = json.dumps(extra, default=str, sort_keys=True) if extra else None
            records.append(rec)
        frame = pl.DataFrame(records, schema=STORE_SCHEMA, strict=False)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = self.parts_dir / f".{name}.tmp"
        frame.write_parquet(tmp)
        os.replace(tmp, self.parts_dir / name)
        entry = {"part": name, "keys": [[r["point_hash"], int(r["replicate"]), r["status"],
                                         int(r["seed"])] for r in rows]}
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.manifest_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        idx = self.index()
        for h, r, status, seed in entry["keys"]:
            idx[(h, r)] = (name, status, seed)
