"""Expanding a sweep's search space: ``[grid]`` (cartesian), ``[random]`` (n samples) and repeats.

Keys are config keys with dotted names (``"optimizer.lr"``), written either quoted in one
table or as sub-tables::

    [grid]
    "optimizer.lr" = [0.01, 0.1, 1.0]        # same as: [grid.optimizer] lr = [0.01, 0.1, 1.0]
    "model.batchnorm" = [true, false]

    [random]
    n = 8
    "optimizer.weight_decay" = { loguniform = [1e-6, 1e-3] }
    "model.dropout" = { uniform = [0.0, 0.5] }
    "model.activation" = { choice = ["relu", "tanh"] }
    "train.batch_size" = { randint = [16, 128] }    # inclusive

Order and determinism: the grid is the cartesian product of its keys in file order (the
first key varies slowest), each key's values deduplicated in their order; every grid point
is combined with each of the ``n`` random samples. Sample ``k`` is drawn, key by key in
file order, from ``default_rng(SeedSequence(seed, spawn_key=(0, k)))``, so it is the same for
every grid point and does not change when ``n`` grows (``--extend`` runs only the new
samples). Assignments that come out equal are kept once.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["GridError", "flatten_space", "expand", "repeat_seed", "unique", "DISTRIBUTIONS", "draw"]

DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint")


class GridError(ValueError):
    """A grid or random space is malformed (names the key and what was expected)."""


def _is_distribution(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS


def flatten_space(table: dict[str, Any], where: str, *, random: bool = False) -> dict[str, Any]:
    """``{"optimizer": {"lr": [...]}}`` or ``{"optimizer.lr": [...]}`` -> ``{"optimizer.lr": [...]}``."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        leaf = _is_distribution(value) if random else isinstance(value, list)
        if random and not leaf and isinstance(value, dict) and len(value) == 1 \
                and isinstance(next(iter(value.values())), list):
            name = next(iter(value))
            raise GridError(f"{where}.{prefix}: unknown distribution {name!r}; valid: {', '.join(DISTRIBUTIONS)}")
        if leaf:
            key = prefix
            if key.count(".") != 1:
                raise GridError(f"{where}.{key}: expected a config key TABLE.KEY such as optimizer.lr")
            if key in out:
                raise GridError(f"{where}.{key}: given twice")
            out[key] = value
        elif isinstance(value, dict) and value:
            for name, item in value.items():
                walk(f"{prefix}.{name}" if prefix else str(name), item)
        else:
            expected = (f"a distribution {{{' | '.join(f'{d} = [...]' for d in DISTRIBUTIONS)}}}" if random
                        else "a list of values")
            raise GridError(f"{where}.{prefix}: expected {expected}, got {value!r}")

    if not isinstance(table, dict):
        raise GridError(f"{where}: expected a table of config keys, got {table!r}")
    if table:
        walk("", table)
    for key, value in out.items():
        if random:
            _check_distribution(f"{where}.{key}", value)
        elif not value:
            raise GridError(f"{where}.{key}: the list of values is empty")
    return out


def _check_distribution(where: str, dist: dict[str, Any]) -> None:
    (kind, args), = dist.items()
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise GridError(f"{where}: choice needs a non-empty list of options, got {args!r}")
        return
    if (not isinstance(args, list) or len(args) != 2
            or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)):
        raise GridError(f"{where}: {kind} needs [low, high], got {args!r}")
    lo, hi = args
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise GridError(f"{where}: {kind} needs finite low < high, got [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise GridError(f"{where}: loguniform needs low > 0, got {lo}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise GridError(f"{where}: randint needs integer bounds, got {args!r}")


def draw(dist: dict[str, Any], rng: np.random.Generator) -> Any:
    """One value of a distribution ``{"loguniform": [lo, hi]}`` (etc.) from ``rng``."""
    (kind, args), = dist.items()
    if kind == "choice":
        return args[int(rng.integers(len(args)))]
    lo, hi = args
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if kind == "uniform":
        return float(rng.uniform(lo, hi))
    return int(rng.integers(lo, hi + 1))


def unique(values: list[Any]) -> list[Any]:
    """``values`` without repeats, in order (``1``, ``1.0`` and ``True`` count as different)."""
    out: list[Any] = []
    for v in values:
        if not any(type(v) is type(u) and v == u for u in out):
            out.append(v)
    return out


def expand(grid: dict[str, list[Any]], random: dict[str, dict[str, Any]] | None = None, samples: int = 0,
           seed: int = 0) -> Iterator[dict[str, Any]]:
    """Every assignment ``{dotted key: value}`` of the space, in the documented order, without duplicates."""
    random = random or {}
    if random and samples < 1:
        raise GridError(f"random.n: expected the number of samples (>= 1) for {', '.join(random)}, got {samples}")
    clash = sorted(set(grid) & set(random))
    if clash:
        raise GridError(f"{clash[0]}: in both [grid] and [random]; give each key one place")
    keys = list(grid)
    draws = []
    for k in range(samples):
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0, k)))
        draws.append({key: draw(dist, rng) for key, dist in random.items()})
    seen: set[str] = set()
    for point in itertools.product(*(unique(grid[k]) for k in keys)):
        base = dict(zip(keys, point, strict=True))
        for sample in draws or [{}]:
            assignment = {**base, **sample}
            text = json.dumps(assignment, sort_keys=True)  # 1 and 1.0 and true stay apart
            if text in seen:
                continue
            seen.add(text)
            yield assignment


def repeat_seed(seed: int, repeat: int) -> int:
    """``run.seed`` of repeat ``repeat``: ``SeedSequence(seed, spawn_key=(1, repeat))``'s first 32-bit word.

    Every configuration of a sweep gets the same seed for the same repeat (a paired
    comparison: the same split, initial-weight stream and batch order wherever shapes allow).
    """
    return int(np.random.SeedSequence(int(seed), spawn_key=(1, int(repeat))).generate_state(1, np.uint32)[0])
