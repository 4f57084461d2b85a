"""Losses: ``loss_fn(prediction, target) -> float`` then ``loss_fn.backward() -> dL/dprediction``.

Predictions (and MSE targets) follow :mod:`trainlab.nn`'s dtype rule: float32/float64,
float16 computed in float32, integer and bool arrays refused with a ``TypeError``. An empty
batch gives a NaN loss (the mean of nothing, as PyTorch) and an empty gradient.
"""

from __future__ import annotations

import numpy as np

from trainlab import _validate
from trainlab.nn.module import Module

__all__ = ["CrossEntropyLoss", "MSELoss"]


def _row_max(z: np.ndarray) -> np.ndarray:
    """``z.max(axis=1)``; for few classes, a running maximum over the columns (several times faster)."""
    n, c = z.shape
    if c > 32 or n < 64 or c == 0:
        return z.max(axis=1)
    out = z[:, 0].copy()
    for j in range(1, c):
        np.maximum(out, z[:, j], out=out)
    return out


class CrossEntropyLoss(Module):
    """Softmax cross-entropy on logits, averaged over the batch (``torch.nn.CrossEntropyLoss``).

    ``L = -(1/N) sum_i log softmax(z_i)[y_i]``, with
    ``log softmax(z) = z - max(z) - log sum exp(z - max(z))`` (the log-sum-exp trick,
    so large logits never overflow).  ``dL/dz = (softmax(z) - onehot(y)) / N``.

    Args:
        label_smoothing: ``eps`` in [0, 1); the target becomes
            ``(1 - eps) onehot(y) + eps / C`` (PyTorch's definition).

    Shapes:
        logits ``(N, C)``, float; target ``(N,)`` of integer class indices in ``[0, C)``.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = _validate.real("CrossEntropyLoss", "label_smoothing", label_smoothing,
                                              low=0, high=1, high_open=True)
        self._probs: np.ndarray | None = None
        self._target: np.ndarray | None = None

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""

    def forward(self, logits: np.ndarray, target: np.ndarray) -> float:
        logits = _validate.layer_input(logits, "CrossEntropyLoss", "logits")
        target = np.asarray(target)
        if logits.ndim != 2:
            raise ValueError(f"CrossEntropyLoss: expected logits of shape (N, C), got {logits.shape}")
        n, c = logits.shape
        if target.shape != (n,):
            raise ValueError(f"CrossEntropyLoss: expected target of shape ({n},) to match logits "
                             f"{logits.shape}, got {target.shape}")
        if not np.issubdtype(target.dtype, np.integer):
            raise TypeError(f"CrossEntropyLoss: target must hold integer class indices, got {target.dtype}")
        if n and (target.min() < 0 or target.max() >= c):
            raise ValueError(f"CrossEntropyLoss: target values must be in [0, {c}), "
                             f"got min {target.min()} and max {target.max()}")
        shifted = np.subtract(logits, _row_max(logits)[:, None])
        rows = np.arange(n)
        picked = shifted[rows, target]
        if self.label_smoothing:
            eps = self.label_smoothing
            mean_shifted = shifted.mean(axis=1)
        exp = np.exp(shifted, out=shifted)
        sum_exp = exp @ np.ones(c, dtype=exp.dtype)     # row sums through BLAS
        log_sum_exp = np.log(sum_exp)
        if self.label_smoothing:
            # per sample: -((1 - eps) * picked + eps * mean_shifted) + log_sum_exp
            total = (log_sum_exp.sum(dtype=np.float64) - (1 - eps) * picked.sum(dtype=np.float64)
                     - eps * mean_shifted.sum(dtype=np.float64))
        else:
            total = log_sum_exp.sum(dtype=np.float64) - picked.sum(dtype=np.float64)
        exp /= sum_exp[:, None]
        self._probs, self._target = exp, target
        return float(total / n) if n else float("nan")

    def backward(self, dout: float = 1.0) -> np.ndarray:
        """dL/dlogits ``= dout * (softmax - target distribution) / N``."""
        if self._probs is None:
            raise RuntimeError("CrossEntropyLoss.backward called before the loss was computed")
        probs, target = self._probs, self._target
        n, c = probs.shape
        grad = probs.copy()
        if self.label_smoothing:
            grad -= self.label_smoothing / c
            grad[np.arange(n), target] -= 1 - self.label_smoothing
        else:
            grad[np.arange(n), target] -= 1
        if n:
            grad *= grad.dtype.type(dout / n)
        return grad


class MSELoss(Module):
    """Mean squared error ``L = mean((pred - target)^2)`` over every element.

    ``dL/dpred = 2 (pred - target) / numel``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._diff: np.ndarray | None = None

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        prediction = _validate.layer_input(prediction, "MSELoss", "prediction")
        target = _validate.layer_input(target, "MSELoss", "target")
        if prediction.shape != target.shape:
            raise ValueError(f"MSELoss: prediction shape {prediction.shape} and target shape "
                             f"{target.shape} differ")
        self._diff = prediction - target
        if not self._diff.size:
            return float("nan")         # the mean of nothing (PyTorch's value), without NumPy's warning
        return float(np.mean(np.square(self._diff), dtype=np.float64))

    def backward(self, dout: float = 1.0) -> np.ndarray:
        if self._diff is None:
            raise RuntimeError("MSELoss.backward called before the loss was computed")
        return self._diff * self._diff.dtype.type(2.0 * dout / max(self._diff.size, 1))
