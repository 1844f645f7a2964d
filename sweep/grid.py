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
from core.params import build_group, group_dict
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


def point_hash(params: core.Params, backend: str) -> str:
    """sha256 of the canonical JSON of {backend, model_version, params}."""
    d = params.to_dict()
    groups = sorted(d)
    return hash_of_groups(backend, [canonical_json(d[g]) for g in groups], groups)


def hash_of_groups(backend: str, group_json: Sequence[str], groups: Sequence[str]) -> str:
    """point_hash from each group's canonical JSON (`groups` sorted, `group_json` in that
    order): the canonical JSON of the whole, put together without writing it again (a
    group's name is a Python identifier: quoting it is its JSON)."""
    params = ",".join(f'"{g}":{j}' for g, j in zip(groups, group_json))
    ident = (f'{{"backend":{canonical_json(backend)},"model_version":'
             f'{canonical_json(core.MODEL_VERSION)},"params":{{{params}}}}}')
    return hashlib.sha256(ident.encode()).hexdigest()


def replicate_seed(root_seed: int, phash: str, replicate: int) -> int:
    """A 63-bit seed (fits int64 everywhere) for replicate `replicate` of a point."""
    ss = np.random.SeedSequence(root_seed, spawn_key=(int(phash, 16), replicate))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


# numpy's SeedSequence (numpy/random/bit_generator.pyx), for replicate_seeds.
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R, _XSHIFT, _POOL = 0xCA01F9DD, 0x4973F715, 16, 4


def _words(n: int) -> list[int]:
    """A non-negative int as uint32 words, lowest first ([0] for 0): _int_to_uint32_array."""
    out = [n & 0xFFFFFFFF]
    n >>= 32
    while n:
        out.append(n & 0xFFFFFFFF)
        n >>= 32
    return out


def replicate_seeds(root_seed: int, keys: Sequence[tuple[str, int]]) -> list[int]:
    """replicate_seed of many (point hash, replicate) pairs at once, bit for bit: numpy's
    SeedSequence(root_seed, spawn_key=(hash, replicate)).generate_state(1, uint64) >> 1,
    its mixing done on arrays of units instead of one object per unit (a 300,000-point
    plan spent 9 s building SeedSequences). The hash constant advances with the number
    of words mixed, not their values, so the units are grouped by their entropy's length
    (a hash with high zero words is shorter)."""
    root = _words(root_seed)
    root += [0] * (_POOL - len(root))      # padded when there is a spawn key (numpy 1.19)
    out = [0] * len(keys)
    if not keys:
        return out
    # The hash as uint32 words, lowest first, without its high zero words (at least one).
    hw = np.frombuffer(b"".join(bytes.fromhex(h) for h, _ in keys), dtype=">u4"
                       ).reshape(-1, 8)[:, ::-1].astype(np.uint32)
    nonzero = hw != 0
    n_words = np.where(nonzero.any(axis=1), 8 - np.argmax(nonzero[:, ::-1], axis=1), 1)
    reps = [r for _, r in keys]
    small = np.array([r < 2**32 for r in reps])
    for i in np.flatnonzero(~small):       # a replicate number of two words: one by one
        out[i] = replicate_seed(root_seed, keys[i][0], reps[i])
    rep_words = np.array([r if r < 2**32 else 0 for r in reps], dtype=np.uint32)
    for nw in np.unique(n_words[small]):
        idx = np.flatnonzero(small & (n_words == nw))
        ent = np.concatenate([np.tile(np.array(root, dtype=np.uint32), (len(idx), 1)),
                              hw[idx, :nw], rep_words[idx, None]], axis=1)
        n = ent.shape[1]
        hc = _INIT_A

        def hashmix(v: np.ndarray) -> np.ndarray:
            nonlocal hc
            v = v ^ np.uint32(hc)
            hc = (hc * _MULT_A) & 0xFFFFFFFF
            v = v * np.uint32(hc)
            return v ^ (v >> np.uint32(_XSHIFT))

        def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            r = np.uint32(_MIX_MULT_L) * x - np.uint32(_MIX_MULT_R) * y
            return r ^ (r >> np.uint32(_XSHIFT))

        pool = [hashmix(ent[:, i]) for i in range(_POOL)]     # n >= _POOL always
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    pool[dst] = mix(pool[dst], hashmix(pool[src]))
        for src in range(_POOL, n):
            for dst in range(_POOL):
                pool[dst] = mix(pool[dst], hashmix(ent[:, src]))
        # generate_state(1, uint64): two uint32 words from the pool, low word first.
        hb = _INIT_B
        words = []
        for i in range(2):
            v = pool[i] ^ np.uint32(hb)
            hb = (hb * _MULT_B) & 0xFFFFFFFF
            v = v * np.uint32(hb)
            words.append(v ^ (v >> np.uint32(_XSHIFT)))
        seeds = (words[0].astype(np.uint64) | (words[1].astype(np.uint64) << np.uint64(32))
                 ) >> np.uint64(1)
        for i, seed in zip(idx.tolist(), seeds.tolist()):
            out[i] = seed
    return out


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
    # A point's groups are built once per distinct set of values: most of a large grid's
    # points share most of their groups (300,000 points of six axes have a few dozen
    # distinct groups), so each group is coerced, checked, checked finite and written as
    # canonical JSON once, and a point costs its cross-group checks and its hash.
    group_names = sorted(base)             # sorted: the canonical JSON's order
    axis_keys = [k for k in flat if k not in (BACKEND_KEY, SCENARIO_KEY)]
    # An axis of one value is a constant: it joins the group's fixed values, not its key.
    axes_of = {g: [(k, k.partition(".")[2]) for k in axis_keys
                   if k.partition(".")[0] == g and len(flat[k]) > 1] for g in group_names}
    const_of = {g: [(k.partition(".")[2], flat[k][0]) for k in axis_keys
                    if k.partition(".")[0] == g and len(flat[k]) == 1] for g in group_names}
    pinned_of = {g: [(k.partition(".")[2], v) for k, v in (pinned or {}).items()
                     if k.partition(".")[0] == g] for g in group_names}
    scenario_groups = {g for name in flat.get(SCENARIO_KEY, ()) for g in scenarios[name]}
    varying = [g for g in group_names if axes_of[g] or g in scenario_groups]
    # key: (the scenario if it sets this group, the group's axis values)
    keys: dict[str, tuple] = {g: (None,) for g in group_names}
    raw_cache: dict[str, dict[tuple, dict[str, Any]]] = {g: {} for g in group_names}
    built_cache: dict[str, dict[tuple, tuple[Any, str]]] = {g: {} for g in group_names}
    points: list[Point] = []
    seen: set[str] = set()
    for combo in itertools.product(*blocks):
        values: dict[str, Any] = {}
        for part in combo:
            values.update(part)
        point_backend = values.get(BACKEND_KEY, backend)
        scen = values.get(SCENARIO_KEY)
        for g in varying:
            sc = scenarios[scen].get(g) if scen is not None else None
            keys[g] = (scen if sc else None, *[values[k] for k, _ in axes_of[g]])
        for g in group_names:
            if keys[g] not in raw_cache[g]:
                sub = dict(base[g])
                if scen is not None and scenarios[scen].get(g):
                    sub.update(scenarios[scen][g])
                for name, v in const_of[g]:
                    sub[name] = v
                for k, name in axes_of[g]:
                    sub[name] = values[k]
                for name, v in pinned_of[g]:
                    sub[name] = v
                raw_cache[g][keys[g]] = sub
        if exclude:
            resolved = {f"{g}.{k}": v for g in group_names
                        for k, v in raw_cache[g][keys[g]].items()}
            resolved[BACKEND_KEY] = point_backend
            if any(_matches(rule, resolved) for rule in exclude):
                continue
        groups, frags = {}, []
        try:
            for g in group_names:
                entry = built_cache[g].get(keys[g])
                if entry is None:
                    inst = build_group(g, raw_cache[g][keys[g]])
                    as_dict = group_dict(inst)
                    check_finite({g: as_dict}, f"invalid point ({_at(values)})")
                    entry = built_cache[g][keys[g]] = (inst, canonical_json(as_dict))
                groups[g] = entry[0]
                frags.append(entry[1])
            params = core.Params(**groups)
        except core.ParamError as e:
            raise SweepError(f"invalid point ({_at(values)}): {e}") from None
        h = hash_of_groups(point_backend, frags, group_names)
        if h in seen:
            continue  # two axis combinations resolving to the same parameters: run once
        seen.add(h)
        points.append(Point(params=params, point_hash=h,
                            axes={k: values[k] for k in flat}, backend=point_backend))
    if not points:
        raise SweepError("grid.exclude removes every point of the grid")
    return points


def _at(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _matches(rule: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    for k, want in flatten_axes(rule).items():
        if k not in values:
            return False
        allowed = want if isinstance(want, Sequence) and not isinstance(want, str) else [want]
        if values[k] not in allowed:
            return False
    return True


def units_of(points: Sequence[Point], seeds: int, root_seed: int) -> list[Unit]:
    keys = [(p.point_hash, r) for p in points for r in range(seeds)]
    return [Unit(h, r, s) for (h, r), s in zip(keys, replicate_seeds(root_seed, keys))]

