"""Containers for train/val/test splits, the stratified split and the standardization.

Conventions (shared by every dataset that :func:`trainlab.data.load` returns):

* Inputs ``x`` are float32, labels ``y`` are int64 in ``[0, num_classes)``.
* **Standardization** ``x' = (x - mean) / std`` with ``mean`` and ``std`` computed on the
  *train split only* (in float64) and applied to train, val and test alike. Two modes:

  - ``"global"``: one scalar mean and std over every value of every training sample.
    Used for images (digits, MNIST, Fashion-MNIST, ``.npz`` inputs with more than one
    axis per sample), where pixels share one scale.
  - ``"per_feature"``: one mean and std per input feature (``x.shape[1:]``), the
    convention for tabular and synthetic data whose columns have their own units.

  A std below ``1e-8`` (a constant feature or image) is replaced by 1, so the feature
  maps to 0 instead of NaN. ``std`` is the population standard deviation (ddof=0).
  The fitted :class:`Standardizer` is stored in ``splits.info["standardizer"]``;
  ``splits.info["standardizer"].apply(x_raw)`` reapplies it to new raw data.
* **Stratified split**: :func:`stratified_split` gives exact split sizes and keeps each
  class's count in every split within two samples of its proportional share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Dataset", "Splits", "Standardizer", "stratified_split", "split_sizes", "build_splits"]

STANDARDIZATION_MODES = ("global", "per_feature", "none")
_STD_FLOOR = 1e-8
_CHUNK_ROWS = 4096


class Dataset(NamedTuple):
    """One split: inputs ``x`` (N, *input_shape) float32 and labels ``y`` (N,) int64.

    Unpacks like a tuple: ``x, y = splits.train``.
    """

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True, eq=False)
class Splits:
    """Train, validation and test sets of one dataset, standardized with train statistics.

    Attributes:
        train, val, test: :class:`Dataset` ``(x, y)``; ``x`` float32 of shape
            ``(N, *input_shape)``, ``y`` int64 of shape ``(N,)`` in ``[0, num_classes)``.
        num_classes: number of classes ``K``.
        input_shape: shape of one sample, e.g. ``(64,)`` or ``(1, 8, 8)``.
        name: the dataset's name or the path of the user's file.
        info: provenance and the fitted :class:`Standardizer` under ``"standardizer"``;
            also ``"sizes"``, ``"source"``, ``"split"`` and, where known, ``"class_names"``.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    name: str
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{part}={len(getattr(self, part).y)}" for part in ("train", "val", "test"))
        mode = getattr(self.info.get("standardizer"), "mode", "?")
        return (
            f"Splits(name={self.name!r}, {sizes}, num_classes={self.num_classes}, "
            f"input_shape={self.input_shape}, standardization={mode!r})"
        )


class Standardizer(NamedTuple):
    """``x' = (x - mean) / std`` with statistics fitted on the training inputs.

    Attributes:
        mode: ``"global"`` (scalar mean/std), ``"per_feature"`` (shape ``x.shape[1:]``)
            or ``"none"`` (mean 0, std 1: only casts to float32).
        mean: float64 array, shape ``()`` or ``x.shape[1:]``.
        std: float64 array of the same shape; entries below 1e-8 are replaced by 1.
    """

    mode: str
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, mode: str) -> Standardizer:
        """Fit on training inputs ``x`` of shape (N, ...) with N >= 1 (float64 accumulation)."""
        if mode not in STANDARDIZATION_MODES:
            raise ValueError(f"standardization mode must be one of {STANDARDIZATION_MODES}, got {mode!r}")
        x = np.asarray(x)
        if mode == "none":
            return cls("none", np.zeros((), np.float64), np.ones((), np.float64))
        if x.ndim < 1 or len(x) == 0:
            raise ValueError("cannot fit a standardization on an empty training split")
        axis = None if mode == "global" else 0
        count = x.size if axis is None else x.shape[0]
        mean = np.sum(x, axis=axis, dtype=np.float64) / count
        # Second pass in row chunks: no full-size float64 temporary for large image sets.
        sq = np.zeros_like(mean)
        for start in range(0, len(x), _CHUNK_ROWS):
            diff = x[start:start + _CHUNK_ROWS].astype(np.float64) - mean
            sq += np.sum(diff * diff, axis=axis)
        std = np.sqrt(sq / count)
        std = np.where(std < _STD_FLOOR, 1.0, std)
        return cls(mode, np.asarray(mean, np.float64), np.asarray(std, np.float64))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Return ``(x - mean) / std`` as a new float32 array of ``x``'s shape."""
        out = np.array(x, dtype=np.float32, copy=True)
        if self.mode != "none":
            out -= self.mean.astype(np.float32)
            out /= self.std.astype(np.float32)
        return out


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Sizes ``(n_train, n_val, n_test)`` for ``n`` samples.

    The held-out sizes are ``ceil(fraction * n)`` (rounded up, so a held-out split never
    falls below its fraction); train gets the rest. 1,797 digits at 0.1/0.2 -> 1257/180/360.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    n_val = math.ceil(val_fraction * n - 1e-9)
    n_test = math.ceil(test_fraction * n - 1e-9)
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training "
            f"samples out of {n}"
        )
    return n_train, n_val, n_test


def stratified_split(
    y: np.ndarray, sizes: tuple[int, ...], *, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Split sample indices into parts of exactly ``sizes``, stratified by class.

    Method: shuffle each class (of size ``n_c``) and give its ``i``-th member the key
    ``(i + u_c) / n_c`` with ``u_c ~ U(0, 1)``; sorting all keys interleaves the classes
    evenly, so every prefix holds each class within one sample of its proportional share.
    The held-out parts (``sizes[1:]``) are consecutive runs from the front of that order
    (each within two samples of proportional), the first part (train) is the rest; each
    part is shuffled again.

    Args:
        y: (N,) integer labels.
        sizes: non-negative part sizes summing to N, e.g. ``(n_train, n_val, n_test)``.
        rng: the generator that decides the split.

    Returns:
        One int64 index array per part, in the order of ``sizes``.
    """
    y = np.asarray(y)
    if sum(sizes) != len(y) or min(sizes) < 0:
        raise ValueError(f"sizes {tuple(sizes)} must be >= 0 and sum to the {len(y)} samples")
    keys = np.empty(len(y), dtype=np.float64)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        keys[members] = (np.arange(len(members)) + rng.random()) / len(members)
    order = np.argsort(keys, kind="stable")
    held_out, train = order[: len(y) - sizes[0]], order[len(y) - sizes[0]:]
    parts, start = [rng.permutation(train)], 0
    for size in sizes[1:]:
        parts.append(rng.permutation(held_out[start:start + size]))
        start += size
    return tuple(part.astype(np.int64) for part in parts)


def resolve_mode(standardize: bool | str, default: str) -> str:
    """Map the ``standardize`` argument of ``load`` to a mode: True -> the dataset's default."""
    if standardize is True:
        return default
    if standardize is False or standardize is None:
        return "none"
    if standardize in STANDARDIZATION_MODES:
        return str(standardize)
    raise ValueError(
        f"standardize must be True, False or one of {STANDARDIZATION_MODES}, got {standardize!r}"
    )


def build_splits(
    name: str,
    parts: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    mode: str,
    num_classes: int,
    info: dict[str, Any],
) -> Splits:
    """Standardize raw ``parts`` (``"train"``, ``"val"``, ``"test"`` -> ``(x, y)``) with train stats.

    Checks the result: float32 finite ``x`` with one sample shape, int64 ``y`` in range.
    """
    standardizer = Standardizer.fit(parts["train"][0], mode)
    datasets = {}
    for part, (x, y) in parts.items():
        x = standardizer.apply(x)
        y = np.asarray(y).astype(np.int64, copy=False)
        _check_part(name, part, x, y, num_classes, parts["train"][0].shape[1:])
        datasets[part] = Dataset(x, y)
    info = {
        "standardizer": standardizer,
        "sizes": {part: len(d.y) for part, d in datasets.items()},
        **info,
    }
    return Splits(
        train=datasets["train"], val=datasets["val"], test=datasets["test"],
        num_classes=int(num_classes), input_shape=tuple(int(s) for s in datasets["train"].x.shape[1:]),
        name=name, info=info,
    )


def _check_part(name: str, part: str, x: np.ndarray, y: np.ndarray, num_classes: int,
                sample_shape: tuple[int, ...]) -> None:
    where = f"{name} {part} split"
    if x.dtype != np.float32 or y.dtype != np.int64:
        raise ValueError(f"{where}: expected float32 x and int64 y, got {x.dtype} and {y.dtype}")
    if x.shape[1:] != sample_shape or y.shape != (len(x),):
        raise ValueError(f"{where}: x {x.shape} and y {y.shape} do not match sample shape {sample_shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{where}: labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    if not np.isfinite(x).all():
        raise ValueError(f"{where}: inputs contain NaN or Inf after standardization")
