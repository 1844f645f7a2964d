"""Grid expansion: axes, zip groups and exclude rules into validated points with stable ids.

A point is a full `core.Params` (the config's values with the point's axis values applied)
and the backend that runs it (the `backend` axis if the grid has one, else the top-level
setting); its identity is the sha256 of canonical JSON of `Params.to_dict()`,
`core.MODEL_VERSION` and that backend, so reordering or extending a grid never changes an existing point's hash, and a
new model version misses every cached row. Replicate seeds come from
`numpy.random.SeedSequence(root_seed, spawn_key=(hash, replicate))` for the same reason.
Every check runs before anything is computed; a failure is one `SweepError` line.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import core
from sweep.errors import SweepError
from sweep.limits import LARGE_GRID_POINTS, check_finite

# Column name of the policy axis in every output (it is always present, axis or not).
POLICY_KEY = "policy.name"
# The one axis that is not a parameter of core.Params: which backend runs the point
# (`axes: {backend: [sim, kernel]}`); without it every point runs on the top-level `backend`.
BACKEND_KEY = "backend"
# An axis of presets (`axes: {scenario: [seed_thrash, seed_swapin]}`): each value's
# conf/scenario/<name>.yaml is applied to the point before the grid's other axes, so one
# grid can hold several presets, each from the same core defaults.
SCENARIO_KEY = "scenario"


@dataclass(frozen=True)
class Point:
    params: core.Params
    point_hash: str
    # The grid's axis values of this point, in axis order (dotted key -> value).
    axes: dict[str, Any]
    # The backend that runs this point (the `backend` axis, else the top-level setting).
    backend: str = "sim"


@dataclass(frozen=True)
class Unit:
    """One replicate of one point: the unit of work and of storage."""
    point_hash: str
    replicate: int
    seed: int

    @property
    def key(self) -> tuple[str, int, int]:
        """How the store knows this unit's row: (point hash, replicate, seed)."""
        return (self.point_hash, self.replicate, self.seed)


def valid_keys() -> list[str]:
    """Every dotted parameter key a grid axis may name."""
    return [f"{g}.{k}" for g, sub in core.Params().to_dict().items() for k in sub]


def nearest(key: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def flatten_axes(axes: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'workload': {'threads': [8]}} or {'workload.threads': [8]} -> {'workload.threads': [8]}."""
    flat: dict[str, Any] = {}
    for k, v in axes.items():
        key = f"{prefix}{k}"
        sub = flatten_axes(v, key + ".") if isinstance(v, Mapping) else {key: v}
        for k2, v2 in sub.items():
            if k2 in flat:
                raise SweepError(f"grid key '{k2}' is given twice (dotted and nested); "
                                 "write it one way (nested, as command-line overrides do)")
            flat[k2] = v2
    return flat


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def point_hash(params: core.Params, backend: str,
               params_dict: dict[str, dict[str, Any]] | None = None) -> str:
    """`params_dict`: params.to_dict() where the caller has it already."""
    ident = {"params": params_dict if params_dict is not None else params.to_dict(),
             "model_version": core.MODEL_VERSION, "backend": backend}
    return hashlib.sha256(canonical_json(ident).encode()).hexdigest()


def replicate_seed(root_seed: int, phash: str, replicate: int) -> int:
    """A 63-bit seed (fits int64 everywhere) for replicate `replicate` of a point."""
    ss = np.random.SeedSequence(root_seed, spawn_key=(int(phash, 16), replicate))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _set(d: dict[str, dict[str, Any]], key: str, value: Any) -> None:
    group, _, name = key.partition(".")
    d[group][name] = value


def _check_keys(keys: Sequence[str], where: str) -> None:
    known = valid_keys() + [BACKEND_KEY, SCENARIO_KEY]
    for k in keys:
        if k not in known:
            raise SweepError(f"{where}: unknown key '{k}'{nearest(k, known)}")


def expand(base: Mapping[str, Mapping[str, Any]], axes: Mapping[str, Any],
           zip_groups: Sequence[Sequence[str]] = (), exclude: Sequence[Mapping[str, Any]] = (),
           backend: str = "sim",
           scenarios: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
           pinned: Mapping[str, Any] | None = None, allow_large: bool = False,
           ) -> list[Point]:
    """All points of a grid, in axis order, validated by `core.Params`.

    `base` is the nested parameter dict of the config (every group of core.Params); axis
    values override it. A `scenario` axis names presets whose parameter values
    (`scenarios[name]`, nested like `base`) are applied first. `pinned` (dotted key ->
    value: what the command line set) is applied last, over presets and axes. Raises
    SweepError naming the first problem found.
    """
    flat = flatten_axes(axes)
    if not flat:
        raise SweepError("grid.axes is empty: a grid needs at least one axis with values")
    _check_keys(list(flat), "grid.axes")
    for k, values in flat.items():
        if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
            raise SweepError(f"grid.axes.{k}: expected a list of values, got {values!r}")
        if len(values) == 0:
            raise SweepError(f"grid.axes.{k}: empty list of values")
    if BACKEND_KEY in flat:
        from sweep.backend import BACKENDS
        for v in flat[BACKEND_KEY]:
            if not isinstance(v, str) or v not in BACKENDS:
                raise SweepError(f"grid.axes.backend: unknown backend {v!r}; one of "
                                 f"{', '.join(sorted(BACKENDS))}")
    if SCENARIO_KEY in flat:
        for v in flat[SCENARIO_KEY]:
            if not isinstance(v, str) or v not in (scenarios or {}):
                raise SweepError(f"grid.axes.scenario: unknown scenario {v!r}; one of "
                                 f"{', '.join(sorted(scenarios or {}))}")
    # Blocks of axes that move together: each zip group is one block, every other axis its own.
    zipped: dict[str, int] = {}
    for gi, group in enumerate(zip_groups):
        group = list(group)
        if len(group) < 2:
            raise SweepError(f"grid.zip[{gi}]: a zip group needs at least two axes, got {group}")
        for k in group:
            if k not in flat:
                hint = nearest(k, list(flat))
                raise SweepError(f"grid.zip[{gi}]: '{k}' is not an axis of this grid{hint}")
            if k in zipped:
                raise SweepError(f"grid.zip[{gi}]: '{k}' is already in zip group {zipped[k]}")
            zipped[k] = gi
        lengths = {k: len(flat[k]) for k in group}
        if len(set(lengths.values())) != 1:
            desc = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            raise SweepError(f"grid.zip[{gi}]: axes of unequal length ({desc} values)")
    for ri, rule in enumerate(exclude):
        rule_flat = flatten_axes(rule)
        if not rule_flat:
            raise SweepError(f"grid.exclude[{ri}]: empty rule would exclude every point")
        _check_keys(list(rule_flat), f"grid.exclude[{ri}]")
    n_points = 1
    for k, values in flat.items():
        if k not in zipped:
            n_points *= len(values)
    for group in zip_groups:
        n_points *= len(flat[list(group)[0]])
    if n_points > LARGE_GRID_POINTS and not allow_large:
        raise SweepError(f"the grid has {n_points:,} points, over {LARGE_GRID_POINTS:,}: "
                         "write sweep.allow_large=true if you mean it")
    blocks: list[list[dict[str, Any]]] = []
    seen_groups: set[int] = set()
    for k in flat:
        if k in zipped:
            gi = zipped[k]
            if gi in seen_groups:
                continue
            seen_groups.add(gi)
            group = list(zip_groups[gi])
            blocks.append([dict(zip(group, vals)) for vals in zip(*(flat[g] for g in group))])
        else:
            blocks.append([{k: v} for v in flat[k]])
    points: list[Point] = []
    seen: set[str] = set()
    for combo in itertools.product(*blocks):
        values: dict[str, Any] = {}
        for part in combo:
            values.update(part)
        d = {g: dict(sub) for g, sub in base.items()}
        point_backend = values.get(BACKEND_KEY, backend)
        if SCENARIO_KEY in values:
            for g, sub in scenarios[values[SCENARIO_KEY]].items():
                d[g].update(sub)
        for k, v in values.items():
            if k not in (BACKEND_KEY, SCENARIO_KEY):
                _set(d, k, v)
        for k, v in (pinned or {}).items():
            _set(d, k, v)
        if exclude:
            resolved = {f"{g}.{k}": v for g, sub in d.items() for k, v in sub.items()}
            resolved[BACKEND_KEY] = point_backend
            if any(_matches(rule, resolved) for rule in exclude):
                continue
        at = ", ".join(f"{k}={v}" for k, v in values.items())
        try:
            params = core.Params.from_dict(d)
        except core.ParamError as e:
            raise SweepError(f"invalid point ({at}): {e}") from None
        as_dict = params.to_dict()
        check_finite(as_dict, f"invalid point ({at})")
        h = point_hash(params, point_backend, as_dict)
        if h in seen:
            continue  # two axis combinations resolving to the same parameters: run once
        seen.add(h)
        points.append(Point(params=params, point_hash=h,
                            axes={k: values[k] for k in flat}, backend=point_backend))
    if not points:
        raise SweepError("grid.exclude removes every point of the grid")
    return points


def _matches(rule: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    for k, want in flatten_axes(rule).items():
        if k not in values:
            return False
        allowed = want if isinstance(want, Sequence) and not isinstance(want, str) else [want]
        if values[k] not in allowed:
            return False
    return True


def units_of(points: Sequence[Point], seeds: int, root_seed: int) -> list[Unit]:
    return [Unit(p.point_hash, r, replicate_seed(root_seed, p.point_hash, r))
            for p in points for r in range(seeds)]

