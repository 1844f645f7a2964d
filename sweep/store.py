"""The point store: content-addressed rows, one per (point hash, replicate), per output root.

A row answers a unit only if it was computed with the unit's seed: the seed derives from the
root seed, so a run with another `seed=N` finds nothing of this one and computes its own.

Layout under `<output.root>/.store/`: `parts/*.parquet`, one part per finished chunk, each
written under a temporary name, flushed and renamed into place (a part is whole or absent),
and `index.sqlite` (the standard library's SQLite, WAL journal): `parts` (name, sha256,
size) and `entries` (which keys each part holds, appended per commit; for a key the newest
entry wins). A part and its entries are recorded in one transaction after the rename, so a
kill loses at most the chunks in flight, and an index can never be torn.

What the store guarantees, each with a test (tests/test_sweep_store.py):
- a part is read only if its bytes match the sha256 recorded when it was committed; a
  damaged, truncated, replaced or unreadable part is moved to `.store/quarantine/`, one
  line on stderr names it, and its rows count as not computed, so the same run computes
  them again; a file in `parts/` the index does not know is never read;
- a writer killed inside its index transaction leaves the index as it was (the part
  unknown and never read, its runs not done): the store's form of a torn manifest line;
- temporary files of writers that are gone are removed on the next start;
- two sweeps on one store at once compute each run once: a sweep claims the runs it is
  about to compute, and waits for the runs another live sweep has claimed;
- failed rows are stored (a run directory shows them) but do not count as done: the next
  run retries them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from core.metrics import METRIC_COLUMNS
from sweep.errors import SweepError

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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS parts(name TEXT PRIMARY KEY, sha256 TEXT NOT NULL,
                                 bytes INTEGER NOT NULL, committed REAL NOT NULL);
CREATE TABLE IF NOT EXISTS entries(id INTEGER PRIMARY KEY AUTOINCREMENT, part TEXT NOT NULL,
                                   point_hash TEXT NOT NULL, replicate INTEGER NOT NULL,
                                   seed INTEGER, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entries_key ON entries(point_hash, replicate);
CREATE TABLE IF NOT EXISTS claims(point_hash TEXT NOT NULL, replicate INTEGER NOT NULL,
                                  seed INTEGER NOT NULL, owner TEXT NOT NULL,
                                  host TEXT NOT NULL, pid INTEGER NOT NULL,
                                  claimed REAL NOT NULL,
                                  PRIMARY KEY(point_hash, replicate, seed));
"""
HOST = socket.gethostname()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PointStore:
    def __init__(self, root: Path):
        self.dir = Path(root) / ".store"
        self.parts_dir = self.dir / "parts"
        self.quarantine_dir = self.dir / "quarantine"
        self.index_path = self.dir / "index.sqlite"
        self.owner = uuid.uuid4().hex
        self._index: dict[tuple[str, int], tuple[str, str, int | None]] | None = None
        self._verified: set[str] = set()
        self._db: sqlite3.Connection | None = None

    # -- the index ----------------------------------------------------------------------------
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.index_path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._db = db
            self._clean_temporary_files()
        return self._db

    def _clean_temporary_files(self) -> None:
        """Remove `.part-*.<pid>.tmp` files whose writer is gone (a killed driver's)."""
        for tmp in self.parts_dir.glob(".part-*.tmp"):
            try:
                pid = int(tmp.name.rsplit(".", 2)[-2])
            except ValueError:
                pid = -1
            if pid < 0 or not _pid_alive(pid):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def refresh(self) -> None:
        """Read the index again on next use (another sweep may have committed since)."""
        self._index = None

    def index(self) -> dict[tuple[str, int], tuple[str, str, int | None]]:
        """(point hash, replicate) -> (part file name, status, seed), the newest entry
        winning, for parts the index records."""
        if self._index is None:
            if not self.index_path.exists():
                self._index = {}
                return self._index
            rows = self.db().execute(
                "SELECT e.point_hash, e.replicate, e.part, e.status, e.seed FROM entries e "
                "JOIN parts p ON p.name = e.part ORDER BY e.id").fetchall()
            self._index = {(h, int(r)): (part, status, seed) for h, r, part, status, seed in rows}
        return self._index

    def entries(self) -> list[tuple[str, int]]:
        """Every committed (point hash, replicate), in commit order (re-commits included)."""
        if not self.index_path.exists():
            return []
        return [(h, int(r)) for h, r in self.db().execute(
            "SELECT point_hash, replicate FROM entries ORDER BY id")]

    # -- reading ------------------------------------------------------------------------------
    def verify(self, part: str) -> bool:
        """Whether `part` is the file that was committed (size and sha256); if not, it is
        moved to quarantine, its entries dropped, and a line says so."""
        if part in self._verified:
            return True
        row = self.db().execute("SELECT sha256, bytes FROM parts WHERE name = ?",
                                (part,)).fetchone()
        path = self.parts_dir / part
        reason = None
        if row is None:
            reason = "not in the index"
        else:
            try:
                size = path.stat().st_size
                if size != row[1]:
                    reason = f"{size} bytes, {row[1]} committed"
                elif _sha256(path) != row[0]:
                    reason = "its checksum differs from the committed one"
            except OSError as e:
                reason = f"unreadable ({e.strerror or e})"
        if reason is None:
            self._verified.add(part)
            return True
        self._quarantine(part, reason)
        return False

    def _quarantine(self, part: str, reason: str) -> None:
        path = self.parts_dir / part
        n = self.db().execute("SELECT COUNT(*) FROM entries WHERE part = ?", (part,)).fetchone()[0]
        if path.exists():
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                os.replace(path, self.quarantine_dir / part)
        with self.db():
            self.db().execute("DELETE FROM entries WHERE part = ?", (part,))
            self.db().execute("DELETE FROM parts WHERE name = ?", (part,))
        self.refresh()
        print(f"store: {path} is damaged ({reason}); moved to {self.quarantine_dir}/, its "
              f"{n} rows will be computed again", file=sys.stderr, flush=True)

    def _has(self, h: str, r: int, seed: int) -> bool:
        e = self.index().get((h, r))
        return e is not None and e[2] == seed

    def _verify_parts(self, keys: Sequence[tuple[str, int, int]]) -> None:
        """Check every part holding one of `keys` (quarantining the damaged ones)."""
        for part in sorted({self.index()[k[:2]][0] for k in keys if self._has(*k)}):
            self.verify(part)

    def done(self, keys: Iterable[tuple[str, int, int]]) -> set[tuple[str, int, int]]:
        """The (point hash, replicate, seed) keys stored with status ok and that seed, in
        parts whose checksum holds (a damaged part is quarantined first)."""
        keys = list(keys)
        self._verify_parts(keys)
        idx = self.index()
        return {k for k in keys if self._has(*k) and idx[k[:2]][1] == "ok"}

    def rows(self, keys: Sequence[tuple[str, int, int]]) -> pl.LazyFrame:
        """The stored rows of `keys` (hash, replicate, seed; those present), one per key."""
        self._verify_parts(keys)
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
        frames = []
        for part in sorted({e[0] for e in idx.values() if e[1] == "ok"}):
            try:  # for estimates only: a part that does not read is skipped, not quarantined
                frames.append(pl.read_parquet(self.parts_dir / part, columns=columns))
            except Exception:  # noqa: BLE001
                continue
        if not frames:
            return pl.DataFrame(schema={c: STORE_SCHEMA[c] for c in columns})
        return (pl.concat(frames, how="vertical_relaxed")
                .filter((pl.col("status") == "ok") & pl.col("point_wall_s").is_not_null()))

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

    # -- claims: two sweeps on one store ------------------------------------------------------
    def claim(self, keys: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        """Claim `keys` for this sweep; returns those another live sweep holds (on this host,
        its process still runs; on another, for a day). Stale claims are taken over."""
        db = self.db()
        now = time.time()
        others = []
        with db:
            for h, r, seed in keys:
                row = db.execute("SELECT owner, host, pid, claimed FROM claims WHERE "
                                 "point_hash = ? AND replicate = ? AND seed = ?",
                                 (h, r, seed)).fetchone()
                if row is not None and row[0] != self.owner:
                    live = _pid_alive(row[2]) if row[1] == HOST else now - row[3] < 86_400
                    if live:
                        others.append((h, r, seed))
                        continue
                db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (h, r, seed, self.owner, HOST, os.getpid(), now))
        return others

    def release(self) -> None:
        if self._db is not None:
            with self._db:
                self._db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))

    # -- writing ------------------------------------------------------------------------------
    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write one part holding `rows` and record it in the index, in one transaction."""
        if not rows:
            return
        db = self.db()
        records = []
        for r in rows:
            extra = {k: v for k, v in r.items() if k not in STORE_SCHEMA}
            rec = {c: r.get(c) for c in STORE_SCHEMA}
            rec["extra_json"] = json.dumps(extra, default=str, sort_keys=True) if extra else None
            records.append(rec)
        frame = pl.DataFrame(records, schema=STORE_SCHEMA, strict=False)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = self.parts_dir / f".{name}.{os.getpid()}.tmp"
        final = self.parts_dir / name
        try:
            buf = io.BytesIO()
            frame.write_parquet(buf)
            data = buf.getvalue()
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            digest, size = hashlib.sha256(data).hexdigest(), len(data)
            entries = [(name, r["point_hash"], int(r["replicate"]), int(r["seed"]),
                        r["status"]) for r in rows]
            with db:
                db.execute("INSERT INTO parts VALUES (?, ?, ?, ?)",
                           (name, digest, size, time.time()))
                db.executemany("INSERT INTO entries(part, point_hash, replicate, seed, status) "
                               "VALUES (?, ?, ?, ?, ?)", entries)
        except (OSError, sqlite3.Error) as e:
            # The transaction is the try's last step: failing anywhere, the part is not in
            # the index, so its file (under either name) goes.
            for path in (tmp, final):
                with contextlib.suppress(OSError):
                    path.unlink()
            reason = getattr(e, "strerror", None) or e
            raise SweepError(f"cannot write the store at {self.dir} ({reason}): "
                             f"{len(self.entries())} rows are saved there; free space or fix "
                             "the directory and run the same command to resume") from None
        self._verified.add(name)
        idx = self.index()
        for _, h, r, seed, status in entries:
            idx[(h, r)] = (name, status, seed)
