"""sweep: Hydra grids of core.Params points, fanned out on Ray, stored and aggregated.

`python -m sweep +grid=<name>` runs a grid (sweep.app); `python -m sweep.point` runs one
point, `python -m sweep.compare` compares runs, `python -m sweep.validity` tabulates the
validity run. Modules: config (the Hydra schema), grid (expansion, hashes, seeds), limits
(checks before computing), runner (Ray), store (the checksummed point store, SQLite index),
aggregate (Polars outputs), report (plots, HTML), backend (sim, kernel, synthetic),
resources (where conf/ and the C workloads are), cli (one-line user errors).
"""
