"""Batch normalization (Ioffe & Szegedy 2015): BatchNorm1d and BatchNorm2d.

Training mode, over the ``m`` values of each channel in the mini-batch (the seed's
algorithm)::

    mu      = (1/m) sum_i x_i                      # mini-batch mean
    var     = (1/m) sum_i (x_i - mu)^2             # mini-batch (biased) variance
    x_hat_i = (x_i - mu) / sqrt(var + eps)         # normalize
    y_i     = gamma * x_hat_i + beta               # scale and shift (learnable)

Backward is the closed form, with two reductions per channel::

    dbeta  = sum_i dy_i
    dgamma = sum_i dy_i x_hat_i
    dx_i   = gamma / sqrt(var + eps) * (dy_i - dbeta / m - x_hat_i * dgamma / m)

Running statistics follow PyTorch: with ``momentum = 0.1``,
``running = (1 - momentum) * running + momentum * batch_stat``; ``running_var`` is
updated with the *unbiased* variance ``var * m / (m - 1)`` (the buffer starts at 1,
``running_mean`` at 0); ``momentum=None`` makes them a cumulative average over the
``num_batches_tracked`` batches. Eval mode normalizes with the running statistics;
``track_running_stats=False`` keeps no buffers and uses batch statistics in both modes.

Placement (the seed): after a Linear or Conv2d layer, before the activation.

References:
    Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
    Reducing Internal Covariate Shift", ICML 2015. https://arxiv.org/abs/1502.03167
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from trainlab.nn.module import Module, Parameter, check_float_dtype

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BNCache(NamedTuple):
    x_hat: np.ndarray          # normalized input, viewed as (N, C, S)
    inv_std: np.ndarray        # 1 / sqrt(var + eps), shape (C,)
    input_shape: tuple[int, ...]
    batch_stats: bool          # True when normalized with batch statistics


class _BatchNorm(Module):
    transparent_to_init = True
    _ranks: tuple[int, ...] = ()
    _layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, dtype: Any = np.float32) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_features, (int, np.integer)) or num_features <= 0:
            raise ValueError(f"{name}: num_features must be a positive int, got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps}")
        if momentum is not None and not (0.0 <= momentum <= 1.0):
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum}")
        dtype = check_float_dtype(dtype, name)
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=dtype), init="ones")
            self.bias = Parameter(np.zeros(self.num_features, dtype=dtype), init="zeros")
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        self._cache: _BNCache | None = None

    def extra_repr(self) -> str:
        parts = [str(self.num_features), f"eps={self.eps:g}", f"momentum={self.momentum}"]
        if not self.affine:
            parts.append("affine=False")
        if not self.track_running_stats:
            parts.append("track_running_stats=False")
        return ", ".join(parts)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked = np.array(0, dtype=np.int64)

    # ---------------------------------------------------------------- helpers
    def _as_ncs(self, x: np.ndarray) -> np.ndarray:
        """Validate ``x`` and view it as (N, C, S) with S = prod of trailing dims (1 for 2-D)."""
        x = np.asarray(x)
        if x.ndim not in self._ranks or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input of shape "
                             f"{self._layout.format(C=self.num_features)}, got {x.shape}")
        n, c = x.shape[:2]
        return x.reshape(n, c, -1)

    def _use_batch_stats(self) -> bool:
        return self.training or not self.track_running_stats

    # ---------------------------------------------------------------- forward
    def forward(self, x: np.ndarray) -> np.ndarray:
        x3 = self._as_ncs(x)
        n, c, s = x3.shape
        dtype = x3.dtype
        batch_stats = self._use_batch_stats()
        if batch_stats:
            m = n * s
            if m <= 1:
                raise ValueError(f"{type(self).__name__}({self.num_features}): expected more than 1 value "
                                 f"per channel when training, got input of shape {np.shape(x)}")
            mean = x3.mean(axis=(0, 2))
            x_hat = x3 - mean[:, None]
            sq = np.square(x_hat)
            var = sq.mean(axis=(0, 2))
            del sq
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, m)
        else:
            mean, var = self.running_mean.astype(dtype, copy=False), self.running_var.astype(dtype, copy=False)
            x_hat = x3 - mean[:, None]
        inv_std = 1.0 / np.sqrt(var + dtype.type(self.eps))
        inv_std = inv_std.astype(dtype, copy=False)
        x_hat *= inv_std[:, None]
        self._cache = _BNCache(x_hat, inv_std, x.shape, batch_stats)
        if self.affine:
            out = x_hat * self.weight.data.astype(dtype, copy=False)[:, None]
            out += self.bias.data.astype(dtype, copy=False)[:, None]
        else:
            out = x_hat.copy()
        return out.reshape(np.shape(x))

    def _update_running_stats(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        self.num_batches_tracked = self.num_batches_tracked + 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (m / (m - 1))
        rm, rv = self.running_mean, self.running_var
        rm *= rm.dtype.type(1.0 - factor)
        rm += (factor * mean).astype(rm.dtype, copy=False)
        rv *= rv.dtype.type(1.0 - factor)
        rv += (factor * unbiased).astype(rv.dtype, copy=False)

    # ---------------------------------------------------------------- backward
    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        x_hat, inv_std, input_shape, batch_stats = self._cache
        n, c, s = x_hat.shape
        dy = np.asarray(dout).reshape(n, c, s)
        dtype = x_hat.dtype
        sum_dy = dy.sum(axis=(0, 2))
        sum_dy_xhat = np.einsum("ncs,ncs->c", dy, x_hat)
        if self.affine:
            self.bias.accumulate_grad(sum_dy)
            self.weight.accumulate_grad(sum_dy_xhat)
            scale = self.weight.data.astype(dtype, copy=False) * inv_std
        else:
            scale = inv_std
        if not batch_stats:
            return (dy * scale[:, None]).reshape(input_shape)
        m = n * s
        # dx = scale * (dy - sum_dy/m - x_hat * sum_dy_xhat/m)
        dx = x_hat * (sum_dy_xhat / dtype.type(m))[:, None]
        np.subtract(dy, dx, out=dx)
        dx -= (sum_dy / dtype.type(m))[:, None]
        dx *= scale[:, None]
        return dx.reshape(input_shape)


class BatchNorm1d(_BatchNorm):
    """Batch normalization over ``(N, C)`` or ``(N, C, L)`` inputs, per channel ``C``.

    Args:
        num_features: ``C``.
        eps: added to the variance inside the square root (1e-5).
        momentum: running-statistics factor (0.1), or ``None`` for a cumulative average.
        affine: learn ``gamma`` (``weight``, starts at 1) and ``beta`` (``bias``, starts at 0).
        track_running_stats: keep ``running_mean``/``running_var``/``num_batches_tracked``.
        dtype: float32 (default) or float64.
    """

    _ranks = (2, 3)
    _layout = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization over ``(N, C, H, W)`` inputs, per channel (statistics over N, H, W).

    Arguments as :class:`BatchNorm1d`.
    """

    _ranks = (4,)
    _layout = "(N, {C}, H, W)"
