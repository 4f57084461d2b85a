"""The optimizer tab: update rules on the optimizers study's 2-D surfaces, each with its own hyperparameters.

The surfaces (saddle ``x² − y²``, the ill-conditioned valley ``½(x² + 100y²)``, Rosenbrock) and
their exact gradients are :mod:`trainlab.experiments.surfaces`'. A point is a float64
:class:`trainlab.nn.Parameter` moved by the very optimizers that train the networks
(``optim.create(rule, [p], **hyperparameters)``), one step per gradient, as the study does;
the study's ``surfaces.trajectory`` takes a learning rate only, so :func:`path` is the same loop
with every hyperparameter of the rule (momentum, decay, betas, ε and its placement, bias
correction, weight decay).

A path runs all the requested steps, or until it diverges (non-finite, or farther than
``surfaces.DIVERGED_NORM`` from the origin). ``reached`` is the first step at which the study's
goal holds: the valley solved (f < 1e-6), the saddle escaped (f ≤ −1), Rosenbrock's minimum
(1, 1) within 1e-3.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from trainlab.experiments import surfaces
from trainlab.playground.config import State, rule_kwargs

__all__ = ["path", "trajectories", "GOALS", "FIELD_GRID"]

FIELD_GRID = 120   #: the surface is drawn from FIELD_GRID x FIELD_GRID values

#: the goal of each surface, as in the optimizers study (its thresholds)
GOALS: dict[str, tuple[str, Callable[[np.ndarray, float], bool]]] = {
    "valley": ("f < 1e-6", lambda w, f: f < 1e-6),
    "saddle": ("f ≤ −1 (escaped)", lambda w, f: f <= -1.0),
    "rosenbrock": ("‖w − (1, 1)‖ < 1e-3", lambda w, f: math.hypot(w[0] - 1.0, w[1] - 1.0) < 1e-3),
}


def path(surface: surfaces.Surface, rule: str, hyperparameters: dict[str, Any], steps: int) -> dict[str, Any]:
    """``steps`` updates of ``optim.create(rule, [p], **hyperparameters)`` from the surface's start.

    Returns ``{"points": [[x, y], ...], "f": [...], "reached": step | None, "diverged": bool}``
    (the points end at the last finite iterate).
    """
    kwargs = dict(hyperparameters)
    run = surfaces.trajectory(surface, rule, kwargs.pop("lr"), steps, **kwargs)
    points = run.points[:-1] if run.diverged else run.points      # end at the last finite iterate
    goal = GOALS[surface.name][1]
    with np.errstate(all="ignore"):
        values = [float(surface.f(w)) for w in points]
    reached = next((step for step in range(1, len(points)) if goal(points[step], values[step])), None)
    return {"points": points.tolist(), "f": values, "reached": reached, "diverged": run.diverged}


def _field(surface: surfaces.Surface) -> dict[str, Any]:
    """The surface on a grid (row 0 at the top), as 0..255 levels of sign(f)·log10(1 + |f|)."""
    xs = np.linspace(*surface.xlim, FIELD_GRID)
    ys = np.linspace(surface.ylim[1], surface.ylim[0], FIELD_GRID)
    gx, gy = np.meshgrid(xs, ys)
    f = surface.f(np.stack([gx, gy]))
    level = np.sign(f) * np.log10(1.0 + np.abs(f))
    lo, hi = float(level.min()), float(level.max())
    q = np.round((level - lo) / (hi - lo) * 255).astype(np.uint8)
    return {"n": FIELD_GRID, "levels": base64.b64encode(q.tobytes()).decode(), "lo": lo, "hi": hi}


def trajectories(state: State) -> dict[str, Any]:
    """The ``trajectories`` message for the optimizer tab of ``state``."""
    surface = surfaces.SURFACES[state.surface["surf"]]
    steps = state.surface["osteps"]
    paths = {rule: {"hyperparameters": {k: list(v) if isinstance(v, tuple) else v
                                        for k, v in rule_kwargs(rule, values).items()},
                    **path(surface, rule, rule_kwargs(rule, values), steps)}
             for rule, values in state.rules.items()}
    return {"type": "trajectories", "surface": surface.name, "formula": surface.formula,
            "xlim": list(surface.xlim), "ylim": list(surface.ylim),
            "minimum": list(surface.minimum) if surface.minimum else None, "start": list(surface.start),
            "goal": GOALS[surface.name][0], "steps": steps, "field": _field(surface), "paths": paths}
