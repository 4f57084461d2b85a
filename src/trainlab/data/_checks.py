"""Small argument checks shared by the data modules (not public)."""

from __future__ import annotations

import numbers

import numpy as np


def require_rng(rng: object, where: str) -> np.random.Generator:
    """Return ``rng`` if it is a ``numpy.random.Generator``, else raise ``TypeError``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise TypeError(f"{where} needs an explicit random generator: pass rng=np.random.default_rng(seed)")
    raise TypeError(
        f"{where}: rng must be a numpy.random.Generator, got {type(rng).__name__}; "
        "pass rng=np.random.default_rng(seed)"
    )


def positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def nonnegative_float(value: object, name: str) -> float:
    """Return ``value`` as a float if it is a finite real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)
