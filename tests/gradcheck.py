"""Float64 central-difference gradient checks with a random upstream gradient.

For a layer ``f`` and a random upstream gradient ``G`` the scalar ``L = sum(G * f(x))``
has ``dL/dx = layer.backward(G)``; each entry is compared with
``(L(x + h e_i) - L(x - h e_i)) / 2h``. The relative error is
``|num - ana|_2 / max(|num|_2 + |ana|_2, 1e-30)`` over the whole array.
"""

from __future__ import annotations

import numpy as np


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30))


def numerical_grad(loss, array: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``loss()`` with respect to ``array`` (perturbed in place)."""
    grad = np.zeros_like(array, dtype=np.float64)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = loss()
        flat[i] = old - h
        minus = loss()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def check_layer(layer, x: np.ndarray, rng: np.random.Generator, h: float = 1e-6) -> dict[str, float]:
    """Return the relative error of dx and of every parameter gradient of ``layer`` at ``x``.

    The layer must be in float64. A fresh forward runs before every loss evaluation, so
    layers whose forward depends on batch statistics (BatchNorm) are checked exactly.
    """
    x = np.array(x, dtype=np.float64)
    out = layer(x)
    upstream = rng.standard_normal(out.shape)

    def loss() -> float:
        return float(np.sum(upstream * layer(x)))

    layer.zero_grad()
    layer(x)
    dx = layer.backward(upstream)
    errors = {"x": relative_error(numerical_grad(loss, x, h), dx)}
    for name, p in layer.named_parameters():
        analytic = p.grad.copy()
        errors[name] = relative_error(numerical_grad(loss, p.data, h), analytic)
    return errors
