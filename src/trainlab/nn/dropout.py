"""Inverted dropout."""

from __future__ import annotations

import numpy as np

from trainlab import _validate
from trainlab.nn.module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Inverted dropout (Srivastava et al. 2014): ``y = x * mask / (1 - p)`` in training.

    Each unit is zeroed with probability ``p`` and the survivors are scaled by
    ``1 / (1 - p)`` so that the expected activation is unchanged; in eval mode
    the layer is the identity. The mask is drawn from ``rng``. Inputs follow
    :mod:`trainlab.nn`'s dtype rule (integer and bool arrays are refused: their
    survivors could not be scaled).

    Args:
        p: drop probability, ``0 <= p < 1``.
        rng: a ``numpy.random.Generator`` (required when ``p > 0``).

    References:
        Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
        Overfitting", JMLR 2014. https://jmlr.org/papers/v15/srivastava14a.html
    """

    transparent_to_init = True

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        p = _validate.real("Dropout", "p", p, low=0, high=1, high_open=True)
        if p > 0 or rng is not None:
            _validate.generator("Dropout", "rng", rng, purpose="to draw the masks")
        self.p = p
        self.rng = rng
        self._mask: np.ndarray | None = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _validate.layer_input(x, "Dropout")
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64)
        mask = (keep >= self.p).astype(x.dtype)
        mask *= x.dtype.type(1.0 / (1.0 - self.p))
        self._mask = mask
        return x * mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._mask is None:
            return dout
        return _validate.upstream(dout, self._mask.shape, "Dropout") * self._mask
