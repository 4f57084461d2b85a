"""Inverted dropout."""

from __future__ import annotations

import numpy as np

from trainlab import _validate, kernels
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
        if kernels.active() and x.dtype in (np.float32, np.float64):
            # one compiled pass for mask = [keep >= p] / (1 - p) and y = x * mask (same values)
            x = np.ascontiguousarray(x)
            mask, out = np.empty_like(x), np.empty_like(x)
            kernels.jit().scale_by_mask(x.reshape(-1), keep.reshape(-1), keep.dtype.type(self.p),
                                        x.dtype.type(1.0 / (1.0 - self.p)), out.reshape(-1), mask.reshape(-1))
            self._mask = mask
            return out
        mask = (keep >= self.p).astype(x.dtype)
        mask *= x.dtype.type(1.0 / (1.0 - self.p))
        self._mask = mask
        return x * mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._mask is None:
            return dout
        dout = _validate.upstream(dout, self._mask.shape, "Dropout")
        if kernels.active() and dout.dtype == self._mask.dtype and dout.flags.c_contiguous:
            dx = np.empty_like(dout)
            kernels.jit().multiply(dout.reshape(-1), self._mask.reshape(-1), dx.reshape(-1))
            return dx
        return dout * self._mask
