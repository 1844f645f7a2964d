"""Row fingerprints: did an engine change leave the model's output bit for bit the same?

Simulates a fixed set of short points (every shipped preset under the three policies of the
series, two seeds each, plus the main job's smallest point) and prints one SHA-256 per row
over its model columns (host columns such as wall time left out, and columns that are None
in it, so that a column added for another workload leaves the fingerprint alone). Save the fingerprints
before a change that should not alter the model, check them after:

    python benchmarks/fingerprint.py --save /tmp/before.json
    ... change core/ ...
    python benchmarks/fingerprint.py --check /tmp/before.json   # exit 1 on any difference
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import core
from sweep.aggregate import HOST_COLUMNS
from sweep.app import scenario_params

PRESETS = ("seed_thrash", "seed_thrash_small", "seed_thrash_noise", "seed_swapin", "app_launch")
POLICIES = ("baseline", "vma_retry", "vma_retry_uptodate")
SEEDS = (1, 2)
DURATION_S = 1.0      # short: the set runs in about a minute; long enough for reclaim


def points() -> list[tuple[str, dict]]:
    presets = scenario_params()
    out = []
    for name in PRESETS:
        for policy in POLICIES:
            d = {g: dict(v) for g, v in presets[name].items()}
            d["policy"] = {"name": policy}
            if name != "app_launch":
                d.setdefault("sim", {}).update({"duration_s": DURATION_S,
                                                "warmup_s": DURATION_S / 4})
            out.append((f"{name}/{policy}", d))
    out.append(("memcg-small/baseline", {"machine": {"cores": 4}, "workload": {
        "threads": 8, "file_mb": 8}, "memcg": {"high_mb": 32, "max_mb": 40},
        "sim": {"duration_s": DURATION_S, "warmup_s": 0.1}}))
    return out


def fingerprint(row: dict) -> str:
    model = {k: v for k, v in row.items() if k not in HOST_COLUMNS and v is not None}
    return hashlib.sha256(json.dumps(model, sort_keys=True, default=str).encode()).hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--save", metavar="FILE", help="write the fingerprints to FILE")
    g.add_argument("--check", metavar="FILE", help="compare with fingerprints saved in FILE")
    args = ap.parse_args()
    saved = json.loads(open(args.check).read()) if args.check else {}
    out, differ = {}, []
    t0 = time.perf_counter()
    for label, d in points():
        p = core.Params.from_dict(d)
        for seed in SEEDS:
            key = f"{label}/seed{seed}"
            out[key] = fingerprint(core.simulate(p, seed))
            mark = ""
            if args.check:
                mark = "  same" if saved.get(key) == out[key] else "  DIFFERENT"
                if saved.get(key) != out[key]:
                    differ.append(key)
            print(f"{key:42s} {out[key]}{mark}", flush=True)
    print(f"{len(out)} rows in {time.perf_counter() - t0:.0f} s")
    if args.save:
        with open(args.save, "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
        print(f"saved to {args.save}")
    if args.check:
        print(f"{len(differ)} of {len(out)} rows differ" if differ else "every row is the same")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
