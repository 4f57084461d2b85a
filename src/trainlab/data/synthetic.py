"""Synthetic 2-D classification sets drawn with an explicit ``numpy.random.Generator``.

Every generator returns ``(x, y)``: ``x`` float32 of shape (n_samples, n_features) and
``y`` int64 of shape (n_samples,), rows shuffled. Samples are split over the classes as
evenly as possible (the first ``n_samples % classes`` classes get one more).
The same ``rng`` state gives the same set; nothing uses the global ``np.random``.
"""

from __future__ import annotations

import numpy as np

from trainlab.data._checks import nonnegative_float, positive_int, require_rng

__all__ = ["make_spiral", "make_circles", "make_moons", "make_blobs"]


def _per_class(n_samples: int, classes: int) -> list[int]:
    return [n_samples // classes + (k < n_samples % classes) for k in range(classes)]


def _finish(parts_x: list[np.ndarray], parts_y: list[np.ndarray], rng: np.random.Generator):
    x, y = np.concatenate(parts_x), np.concatenate(parts_y)
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order].astype(np.int64)


def make_spiral(n_samples: int = 300, classes: int = 3, noise: float = 0.2,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """K interleaved spiral arms, the CS231n "spiral data" set.

    Arm ``k`` with ``m`` points: radius ``r = linspace(0, 1, m)``, angle
    ``t = linspace(4k, 4(k+1), m) + noise * N(0, 1)``, point ``(r sin t, r cos t)``.

    Args:
        n_samples: total points (>= classes).
        classes: number of arms K (>= 2), labels 0..K-1.
        noise: std of the Gaussian angle noise in radians (CS231n: 0.2).
        rng: required generator.

    Returns:
        x (n_samples, 2) float32 in [-1, 1]^2, y (n_samples,) int64.

    References:
        CS231n, "Putting it together: Minimal Neural Network Case Study".
        https://cs231n.github.io/neural-networks-case-study/
    """
    rng = require_rng(rng, "make_spiral")
    classes = positive_int(classes, "classes", minimum=2)
    n_samples = positive_int(n_samples, "n_samples", minimum=classes)
    noise = nonnegative_float(noise, "noise")
    xs, ys = [], []
    for k, m in enumerate(_per_class(n_samples, classes)):
        radius = np.linspace(0.0, 1.0, m)
        angle = np.linspace(4.0 * k, 4.0 * (k + 1), m) + noise * rng.standard_normal(m)
        xs.append(np.column_stack([radius * np.sin(angle), radius * np.cos(angle)]))
        ys.append(np.full(m, k))
    return _finish(xs, ys, rng)


def make_circles(n_samples: int = 300, noise: float = 0.1, factor: float = 0.5,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric circles: outer radius 1 (label 0), inner radius ``factor`` (label 1).

    Points are evenly spaced in angle, then ``noise * N(0, I)`` is added (as
    ``sklearn.datasets.make_circles``).

    Args:
        n_samples: total points (>= 2).
        noise: std of the Gaussian noise added to each coordinate.
        factor: inner radius relative to the outer, in (0, 1).
        rng: required generator.

    Returns:
        x (n_samples, 2) float32, y (n_samples,) int64 in {0, 1}.
    """
    rng = require_rng(rng, "make_circles")
    n_samples = positive_int(n_samples, "n_samples", minimum=2)
    noise = nonnegative_float(noise, "noise")
    if not 0 < factor < 1:
        raise ValueError(f"factor must be in (0, 1), got {factor!r}")
    xs, ys = [], []
    for label, (m, radius) in enumerate(zip(_per_class(n_samples, 2), (1.0, factor), strict=True)):
        angle = np.linspace(0.0, 2 * np.pi, m, endpoint=False)
        xs.append(radius * np.column_stack([np.cos(angle), np.sin(angle)]))
        ys.append(np.full(m, label))
    xs = [part + noise * rng.standard_normal(part.shape) for part in xs]
    return _finish(xs, ys, rng)


def make_moons(n_samples: int = 300, noise: float = 0.1,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (as ``sklearn.datasets.make_moons``).

    Upper moon (label 0): ``(cos s, sin s)``; lower moon (label 1):
    ``(1 - cos s, 0.5 - sin s)``, ``s`` evenly spaced in [0, pi]; plus ``noise * N(0, I)``.

    Args:
        n_samples: total points (>= 2).
        noise: std of the Gaussian noise added to each coordinate.
        rng: required generator.

    Returns:
        x (n_samples, 2) float32, y (n_samples,) int64 in {0, 1}.
    """
    rng = require_rng(rng, "make_moons")
    n_samples = positive_int(n_samples, "n_samples", minimum=2)
    noise = nonnegative_float(noise, "noise")
    m_upper, m_lower = _per_class(n_samples, 2)
    s_upper, s_lower = np.linspace(0, np.pi, m_upper), np.linspace(0, np.pi, m_lower)
    xs = [np.column_stack([np.cos(s_upper), np.sin(s_upper)]),
          np.column_stack([1 - np.cos(s_lower), 0.5 - np.sin(s_lower)])]
    xs = [part + noise * rng.standard_normal(part.shape) for part in xs]
    return _finish(xs, [np.zeros(m_upper), np.ones(m_lower)], rng)


def make_blobs(n_samples: int = 300, centers: int | np.ndarray = 3, n_features: int = 2,
               cluster_std: float = 1.0, center_box: tuple[float, float] = (-10.0, 10.0),
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian clusters, one class per center.

    Args:
        n_samples: total points (>= number of centers).
        centers: number of centers K (>= 2), drawn uniformly from ``center_box`` per
            coordinate, or an explicit (K, n_features) array of centers.
        n_features: dimension of each point (ignored when ``centers`` is an array).
        cluster_std: std of each cluster's Gaussian.
        center_box: (low, high) bounds for random centers.
        rng: required generator.

    Returns:
        x (n_samples, n_features) float32, y (n_samples,) int64 in [0, K).
    """
    rng = require_rng(rng, "make_blobs")
    cluster_std = nonnegative_float(cluster_std, "cluster_std")
    if isinstance(centers, np.ndarray) or isinstance(centers, (list, tuple)):
        points = np.asarray(centers, dtype=np.float64)
        if points.ndim != 2 or len(points) < 2 or not np.isfinite(points).all():
            raise ValueError(f"centers must be a finite (K >= 2, n_features) array, got shape {points.shape}")
    else:
        count = positive_int(centers, "centers", minimum=2)
        n_features = positive_int(n_features, "n_features")
        low, high = center_box
        points = rng.uniform(low, high, size=(count, n_features))
    n_samples = positive_int(n_samples, "n_samples", minimum=len(points))
    xs, ys = [], []
    for k, m in enumerate(_per_class(n_samples, len(points))):
        xs.append(points[k] + cluster_std * rng.standard_normal((m, points.shape[1])))
        ys.append(np.full(m, k))
    return _finish(xs, ys, rng)
