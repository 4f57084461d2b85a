"""Trial specs: what a trial is, its stable id, and the seed it derives from the spec alone.

A *trial* is a pure function of a JSON-able spec::

    {"trial": "package.module:function", "params": {...}}

``trial`` names a module-level function ``fn(params: dict, ctx: TrialContext) -> dict`` that
any worker can import; ``params`` is everything the function needs (a config, a seed, a
repeat index). The function returns a JSON-able dict of metrics (numbers, or small lists of
numbers) and may report per-epoch metrics as it goes with ``ctx.report(...)``.

Identity and seeds:

* ``trial_id(spec)`` is the first 16 hex digits of SHA-256 over the spec's canonical JSON
  (sorted keys, no whitespace) and the trainlab version: the same spec under the same
  version is the same trial wherever and whenever it runs.
* ``spec_seed(spec)`` is a 64-bit integer from SHA-256 over the canonical spec *without*
  the version, so a trial that draws from ``ctx.rng()`` gets the same numbers on every
  worker, in every scheduling order and across versions. A spec that should be repeated
  with fresh randomness carries its repeat index in ``params`` (the sweep does), so the
  seed is ``SeedSequence(hash(spec))`` with the repeat inside the hash. A trial may also
  carry an explicit seed in its params (the studies carry the seeds they always used).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TrialError", "make_spec", "canonical_json", "trial_id", "spec_seed", "resolve", "jsonable",
           "ID_LENGTH"]

ID_LENGTH = 16  #: hex digits of a trial id (64 bits)


class TrialError(ValueError):
    """A trial spec is malformed, or its trial function cannot be found."""


def jsonable(value: Any, where: str = "value") -> Any:
    """``value`` with NumPy scalars/arrays, tuples and paths turned into plain JSON types.

    Floats stay floats (NaN and infinities included: results may hold them); dict keys
    must be strings. Anything else raises :class:`TrialError` naming ``where``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TrialError(f"{where}: keys must be strings, got {key!r}")
            out[key] = jsonable(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TrialError(f"{where}: {type(value).__name__} is not JSON-able (use numbers, strings, lists, dicts)")


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise TrialError(f"{where}: a spec cannot hold {value} (it would not hash stably)")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}[{i}]")


def make_spec(trial: str | Callable[..., Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A checked spec ``{"trial": "module:function", "params": {...}}``.

    Args:
        trial: ``"package.module:function"`` or the module-level function itself.
        params: the function's JSON-able parameters (NumPy scalars are converted; NaN and
            infinities are refused, since a spec must hash stably).
    """
    if callable(trial):
        module, name = getattr(trial, "__module__", None), getattr(trial, "__qualname__", "")
        if not module or "." in name or "<" in name:
            raise TrialError(f"trial {trial!r}: a trial must be a module-level function (importable by name)")
        trial = f"{module}:{name}"
    if not isinstance(trial, str) or trial.count(":") != 1:
        raise TrialError(f"trial: expected 'package.module:function', got {trial!r}")
    if not isinstance(params, Mapping):
        raise TrialError(f"params: expected a dict, got {type(params).__name__}")
    spec = {"trial": trial, "params": jsonable(dict(params), "params")}
    _check_finite(spec["params"], "params")
    return spec


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: the text that ids and seeds are hashed from."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _check(spec: Any) -> None:
    if not isinstance(spec, dict) or set(spec) != {"trial", "params"}:
        raise TrialError(f"spec: expected {{'trial': ..., 'params': {{...}}}}, got {spec!r:.200}")


def trial_id(spec: dict[str, Any], version: str | None = None) -> str:
    """The stable id of ``spec``: SHA-256 over its canonical JSON and the trainlab version."""
    _check(spec)
    if version is None:
        from trainlab import __version__ as version
    digest = hashlib.sha256(canonical_json({"spec": spec, "version": version}).encode()).hexdigest()
    return digest[:ID_LENGTH]


def spec_seed(spec: dict[str, Any]) -> int:
    """A 64-bit seed from the spec alone (no version, worker or order): feed it to ``SeedSequence``."""
    _check(spec)
    return int(hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:16], 16)


def resolve(name: str) -> Callable[..., Any]:
    """Import the trial function ``"package.module:function"``; a clear error if it is not there."""
    if not isinstance(name, str) or name.count(":") != 1:
        raise TrialError(f"trial: expected 'package.module:function', got {name!r}")
    module_name, attr = name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrialError(f"trial {name!r}: cannot import module {module_name!r} ({exc}); "
                         "a worker must be able to import it (install it, or put it on PYTHONPATH)") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise TrialError(f"trial {name!r}: module {module_name!r} has no function {attr!r}")
    return fn
