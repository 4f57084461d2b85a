"""Inverted dropout."""

from __future__ import annotations

import numpy as np

from trainlab.nn.module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Inverted dropout (Srivastava et al. 2014): ``y = x * mask / (1 - p)`` in training.

    Each unit is zeroed with probability ``p`` and the survivors are scaled by
    ``1 / (1 - p)`` so that the expected activation is unchanged; in eval mode
    the layer is the identity. The mask is drawn from ``rng``.

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
        if not (0.0 <= p < 1.0):
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        if p > 0 and not isinstance(rng, np.random.Generator):
            raise TypeError("Dropout: rng must be a numpy.random.Generator "
                            "(e.g. rng=np.random.default_rng(0)) to draw the masks")
        self.p = float(p)
        self.rng = rng
        self._mask: np.ndarray | None = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
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
        return dout * self._mask
