"""`python -m sweep.point [overrides]`: run one point in this process, print JSON rows.

One JSON object per replicate and line: the backend's row, the point's parameters as
flattened dotted keys, seed, replicate and point_hash. Replicates: `replicates=N` (1 by
default); their seeds derive from the root seed `seed=N` exactly as a grid's do, so a row
here equals the grid's row for the same point, root seed and replicate. Same config tree
as `python -m sweep`, no grid, no Ray, no store.
"""

from __future__ import annotations

import json
import math
import sys

import hydra
from omegaconf import DictConfig

from sweep.cli import CONF_DIR, guarded, run_main


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return v


def run_point(cfg: DictConfig) -> int:
    import core
    from sweep.app import base_params, replicates_of
    from sweep.backend import check_backend, get_backend
    from sweep.errors import SweepError
    from sweep.grid import point_hash, replicate_seed

    check_backend(cfg.backend)
    seeds_n, root_seed = replicates_of(cfg, default=1), int(cfg.seed)
    try:
        params = core.Params.from_dict(base_params(cfg))
    except core.ParamError as e:
        raise SweepError(str(e)) from None
    h = point_hash(params, cfg.backend)
    seeds = [replicate_seed(root_seed, h, r) for r in range(seeds_n)]
    rows = get_backend(cfg.backend)(params, seeds)
    flat = {f"{g}.{k}": v for g, sub in params.to_dict().items() for k, v in sub.items()}
    for r, (seed, row) in enumerate(zip(seeds, rows)):
        out = {**{k: _jsonable(v) for k, v in row.items()}, **flat, "seed": seed,
               "replicate": r, "point_hash": h}
        print(json.dumps(out), flush=True)
    return 0


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    guarded(run_point, cfg)


if __name__ == "__main__":
    run_main(main)
    sys.exit(0)
