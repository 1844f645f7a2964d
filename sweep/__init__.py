"""sweep: Hydra grids of core.Params points, fanned out on Ray, stored and aggregated.

`python -m sweep +grid=<name>` runs a grid (sweep.app); `python -m sweep.point` runs one
point. Modules: config (the Hydra schema), grid (expansion, hashes, seeds), runner (Ray),
store (the content-addressed point store), aggregate (Polars outputs), backend (sim, kernel,
synthetic), cli (one-line user errors).
"""
