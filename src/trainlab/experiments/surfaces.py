"""Two-dimensional test surfaces and optimizer trajectories on them (for the ``optimizers`` study).

Each surface is a function of a point ``w = (x, y)`` with its exact gradient. A
trajectory wraps the point in a :class:`trainlab.nn.Parameter` (float64), so the very
optimizers that train networks (``trainlab.optim``) move it::

    p.grad[...] = surface.grad(p.data);  optimizer.step()

=============  ==============================  ============================================
surface        f(x, y)                         what it shows
=============  ==============================  ============================================
``saddle``     x² − y²                         a saddle at the origin: the gradient vanishes
                                               there, so gradient descent started on the
                                               stable axis (y ≈ 0) crawls away from it
``valley``     ½ (x² + 100 y²)                 an ill-conditioned quadratic (condition
                                               number 100): gradient descent zig-zags across
                                               the steep y-direction and crawls along x
``rosenbrock`` (1 − x)² + 100 (y − x²)²        a curved, flat-bottomed valley (minimum (1, 1))
=============  ==============================  ============================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from trainlab import nn, optim

__all__ = ["Surface", "SADDLE", "VALLEY", "ROSENBROCK", "SURFACES", "Trajectory", "trajectory"]

#: an iterate this far from the origin (or non-finite) has diverged
DIVERGED_NORM = 1e6


class Surface(NamedTuple):
    """A 2-D function, its gradient, a start point and the plotting window.

    ``f(w)`` takes ``w`` of shape ``(2, ...)`` (a point, or two coordinate grids) and
    ``grad(w)`` a point of shape ``(2,)``.
    """

    name: str
    formula: str
    f: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    minimum: tuple[float, float] | None


def _saddle(w: np.ndarray) -> Any:
    return w[0] ** 2 - w[1] ** 2


def _saddle_grad(w: np.ndarray) -> np.ndarray:
    return np.array([2.0 * w[0], -2.0 * w[1]])


def _valley(w: np.ndarray) -> Any:
    return 0.5 * (w[0] ** 2 + 100.0 * w[1] ** 2)


def _valley_grad(w: np.ndarray) -> np.ndarray:
    return np.array([w[0], 100.0 * w[1]])


def _rosenbrock(w: np.ndarray) -> Any:
    return (1.0 - w[0]) ** 2 + 100.0 * (w[1] - w[0] ** 2) ** 2


def _rosenbrock_grad(w: np.ndarray) -> np.ndarray:
    x, y = w
    return np.array([-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)])


#: x² − y², started on the stable axis with a 1e-6 nudge along the unstable one
SADDLE = Surface("saddle", "x² − y²", _saddle, _saddle_grad, (1.0, 1e-6), (-1.2, 1.2), (-1.6, 1.6), None)
#: ½(x² + 100 y²): condition number 100
VALLEY = Surface(
    "valley", "½(x² + 100y²)", _valley, _valley_grad, (-10.0, 1.0), (-11.0, 11.0), (-1.6, 1.6), (0.0, 0.0)
)
#: Rosenbrock's banana, from the classic start (−1.5, 2)
ROSENBROCK = Surface(
    "rosenbrock",
    "(1 − x)² + 100(y − x²)²",
    _rosenbrock,
    _rosenbrock_grad,
    (-1.5, 2.0),
    (-2.0, 2.0),
    (-1.0, 3.0),
    (1.0, 1.0),
)

SURFACES = {s.name: s for s in (SADDLE, VALLEY, ROSENBROCK)}


class Trajectory(NamedTuple):
    """The iterates ``points`` (steps + 1, 2) of one run and how it ended.

    ``stopped_at`` is the step at which ``stop`` first held (None if it never did);
    ``diverged`` is True when the iterate became non-finite or left the
    ``DIVERGED_NORM`` ball (the points end there).
    """

    points: np.ndarray
    stopped_at: int | None
    diverged: bool


def trajectory(
    surface: Surface,
    optimizer: str,
    lr: float,
    steps: int,
    *,
    stop: Callable[[np.ndarray], bool] | None = None,
    **hyperparameters: Any,
) -> Trajectory:
    """Run ``optim.create(optimizer, [p], lr=lr, **hyperparameters)`` on ``surface`` for up to ``steps`` steps.

    Args:
        surface: the function and start point.
        optimizer: a name in :data:`trainlab.optim.names`.
        lr: the learning rate.
        steps: the most updates to take.
        stop: a predicate on the point; the run ends at the first step where it holds.
        hyperparameters: the rule's other arguments (``momentum``, ``betas``, ...; defaults otherwise).
    """
    p = nn.Parameter(np.array(surface.start, dtype=np.float64))
    opt = optim.create(optimizer, [p], lr=lr, **hyperparameters)
    points = [p.data.copy()]
    stopped_at, diverged = None, False
    with np.errstate(all="ignore"):
        for step in range(1, steps + 1):
            p.grad[...] = surface.grad(p.data)
            p.mark_grad_written()
            opt.step()
            points.append(p.data.copy())
            if not np.all(np.isfinite(p.data)) or np.abs(p.data).max() > DIVERGED_NORM:
                diverged = True
                break
            if stop is not None and stop(p.data):
                stopped_at = step
                break
    return Trajectory(np.array(points), stopped_at, diverged)
