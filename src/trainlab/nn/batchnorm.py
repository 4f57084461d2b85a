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

Inputs follow :mod:`trainlab.nn`'s dtype rule (float32/float64; float16 promoted; integer and
bool refused). An empty batch (``N = 0`` or ``L = 0``) gives an empty output as in PyTorch: in
training the running statistics keep their values and ``num_batches_tracked`` counts it.

Memory layout: a 3-D or 4-D input may be *channel-major*, i.e. ``x.swapaxes(0, 1)``
is C-contiguous (a ``(C, N, ...)`` buffer seen as ``(N, C, ...)``, as Conv2d
returns it). Such an input is normalized in place of layout, without a copy into
``(N, C, ...)`` order, and the output is returned in the same layout (same shape
and values, channel-major strides); backward returns ``dx`` in the layout of the
forward input, whatever the layout of ``dy``.

References:
    Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
    Reducing Internal Covariate Shift", ICML 2015. https://arxiv.org/abs/1502.03167
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from trainlab import _validate, kernels
from trainlab.nn.module import Module, Parameter, check_float_dtype, is_channel_major

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BNCache(NamedTuple):
    centered: np.ndarray       # x - mean, C-contiguous (n, c, s) (see _BatchNorm._as_ncs); a reused buffer
    inv_std: np.ndarray        # 1 / sqrt(var + eps), shape (C,)
    input_shape: tuple[int, ...]
    batch_stats: bool          # True when normalized with batch statistics
    channel_major: bool        # True when the input was channel-major: centered is (1, C, N*S)


class _BNKernelCache(NamedTuple):
    x3: np.ndarray             # the input as C-contiguous (n, c, s) (the compiled path recomputes x - mean)
    mean: np.ndarray           # float64 (C,): the mean used to normalize
    inv_std: np.ndarray        # float64 (C,): 1 / sqrt(var + eps)
    input_shape: tuple[int, ...]
    batch_stats: bool
    channel_major: bool


_VECDOT = getattr(np, "vecdot", None)     # NumPy >= 2.0
_ONES: dict[tuple[int, np.dtype], np.ndarray] = {}


def _from_ncs(a3: np.ndarray, shape: tuple[int, ...], channel_major: bool) -> np.ndarray:
    """The ``(n, c, s)`` array ``a3`` seen with the ``(N, C, ...)`` shape ``shape`` (a view).

    Channel-major data (``(1, C, N*S)``) comes back as a channel-major view.
    """
    if channel_major:
        return a3.reshape((shape[1], shape[0]) + tuple(shape[2:])).swapaxes(0, 1)
    return a3.reshape(shape)


def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    """A cached read-only vector of ``n`` ones (the left operand of BLAS column sums)."""
    key = (n, np.dtype(dtype))
    ones = _ONES.get(key)
    if ones is None:
        if len(_ONES) >= 64:
            _ONES.clear()
        ones = np.ones(n, dtype=dtype)
        ones.flags.writeable = False
        _ONES[key] = ones
    return ones


def _channel_sum(x3: np.ndarray) -> np.ndarray:
    """``x3.sum(axis=(0, 2))`` of a C-contiguous float ``(N, C, S)`` array, as BLAS products with ones.

    ``1_N^T X`` (and ``X_(NC,S) 1_S`` first when ``S > 1``) stream the array once
    at BLAS speed; ``np.sum`` over the outer axis is several times slower.
    """
    n, c, s = x3.shape
    if s == 1:
        return _ones(n, x3.dtype) @ x3.reshape(n, c)
    per_sample = x3.reshape(n * c, s) @ _ones(s, x3.dtype)
    return _ones(n, x3.dtype) @ per_sample.reshape(n, c)


def _channel_dot(a3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """``(a3 * b3).sum(axis=(0, 2))`` without an ``(N, C, S)`` temporary."""
    n, c, s = a3.shape
    if s == 1:
        return np.einsum("nc,nc->c", a3.reshape(n, c), b3.reshape(n, c))
    per_sample = _VECDOT(a3, b3) if _VECDOT is not None else np.einsum("ncs,ncs->nc", a3, b3)
    return _ones(n, a3.dtype) @ per_sample


class _Views:
    """Elementwise layout of (N, C, S) data for per-channel operations.

    A per-channel vector broadcast over ``(N, C, S)`` (``v[:, None]``) or over short
    ``(N, C)`` rows runs up to 2x slower in NumPy than a row broadcast over long rows.
    So the data is viewed as ``(N / k, k*C*S)`` rows of at least ``_ROW`` values
    (``k`` a power of two dividing N) and each per-channel vector is expanded once
    to one such row (``tile(repeat(v, S), k)``, a few KiB), written into one row
    buffer kept with the views: each :meth:`channel` result must be used before the
    next call.

    When ``S >= _ROW`` each ``(N*C, S)`` row is already long, so the data is viewed
    that way and the vector broadcast as a column (``v[:, None]``, tiled N times when
    N > 1) rather than expanded to a row of ``C*S`` values. The same holds when
    ``N == 1`` (a channel-major input is seen as ``(1, C, N*S)``) and ``C*S >= _ROW``:
    the expanded row would be as large as the data, and building it costs more than
    the column broadcast saves, whatever ``S``.
    """

    _ROW = 16384

    def __init__(self, n: int, c: int, s: int, dtype: np.dtype) -> None:
        self.n, self.c, self.s = n, c, s
        self.long_rows = s >= self._ROW or (n == 1 and c * s >= self._ROW)
        if self.long_rows:
            self.k = 1
            self.shape = (n * c, s)
            self.row = np.empty((n, c), dtype=dtype) if n > 1 else None
            return
        k = 1
        while 0 < c * s * k < self._ROW and n % (2 * k) == 0:
            k *= 2
        self.k = k
        self.shape = (n // k, k * c * s)
        self.row = np.empty((k, c, s), dtype=dtype) if k * s > 1 else None

    def data(self, a3: np.ndarray) -> np.ndarray:
        return a3.reshape(self.shape)

    def channel(self, v: np.ndarray) -> np.ndarray:
        """The per-channel vector ``v`` laid out to broadcast against :meth:`data` (in the row buffer)."""
        row = self.row
        if self.long_rows:
            if row is None:
                return v[:, None]
            np.copyto(row, v)
            return row.reshape(-1, 1)
        if row is None:
            return v
        np.copyto(row, v[:, None])
        return row.reshape(-1)


class _BatchNorm(Module):
    transparent_to_init = True
    _ranks: tuple[int, ...] = ()
    _layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, dtype: Any = np.float32) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = _validate.count(name, "num_features", num_features)
        self.eps = _validate.real(name, "eps", eps, low=0, low_open=True)
        self.momentum = None if momentum is None else _validate.real(name, "momentum (or None)", momentum,
                                                                     low=0, high=1, argument="momentum")
        self.affine = _validate.flag(name, "affine", affine)
        self.track_running_stats = _validate.flag(name, "track_running_stats", track_running_stats)
        dtype = check_float_dtype(dtype, name)
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=dtype), init="ones")
            self.bias = Parameter(np.zeros(self.num_features, dtype=dtype), init="zeros")
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        self._cache: _BNCache | None = None
        self._views_cache: tuple[tuple, _Views] | None = None    # ((n, c, s, dtype), views)
        self._centered: np.ndarray | None = None   # x - mean, reused while the shape holds

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

    def _on_dtype_change(self, dtype: np.dtype) -> None:
        self._centered = None
        self._cache = None
        self._views_cache = None

    # ---------------------------------------------------------------- helpers
    def _as_ncs(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        """Validate ``x`` and view it as a C-contiguous float ``(n, c, s)`` array; also return whether
        ``x`` is channel-major.

        An ``(N, C, ...)`` input is seen as ``(N, C, S)`` (``S`` the spatial size, 1 for
        2-D input), copied to C order first if it is neither C-contiguous nor channel-major.
        A channel-major input (3-D or 4-D, ``x.swapaxes(0, 1)`` C-contiguous but ``x``
        not) is seen without a copy as ``(1, C, N*S)``: the same per-channel statistics
        over ``m = N*S`` values.
        """
        x = _validate.layer_input(x, type(self).__name__)
        if x.ndim not in self._ranks or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input of shape "
                             f"{self._layout.format(C=self.num_features)}, got {x.shape}")
        n, c = x.shape[:2]
        s = math.prod(x.shape[2:])
        if is_channel_major(x):
            return x.swapaxes(0, 1).reshape(1, c, n * s), True
        return np.ascontiguousarray(x).reshape(n, c, s), False

    def _views(self, n: int, c: int, s: int, dtype: np.dtype) -> _Views:
        """The :class:`_Views` of an ``(n, c, s)`` batch, kept while the shape and dtype hold."""
        key = (n, c, s, np.dtype(dtype))
        if self._views_cache is None or self._views_cache[0] != key:
            self._views_cache = (key, _Views(n, c, s, dtype))
        return self._views_cache[1]

    def _use_batch_stats(self) -> bool:
        return self.training or not self.track_running_stats

    def _centered_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The array ``x - mean`` is written to: kept between calls while the shape holds."""
        buf = self._centered
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._centered = np.empty(shape, dtype=dtype)
        return buf

    # ---------------------------------------------------------------- forward
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Normalize per channel in five passes over the data; only the output is allocated.

        ``mean`` is a BLAS reduction; ``xc = x - mean`` goes into a buffer reused
        across steps (backward reads it); ``var = sum(xc^2) / m`` (two-pass, as
        PyTorch's CPU kernel, so a large mean costs no precision); then
        ``y = xc * (gamma / sqrt(var + eps)) + beta``. A channel-major ``x`` is read
        without a copy and ``y`` is returned channel-major (see the module docstring).
        """
        x3, channel_major = self._as_ncs(x)
        n, c, s = x3.shape
        dtype = x3.dtype
        batch_stats = self._use_batch_stats()
        if x3.size == 0:
            return self._forward_empty(x3, np.shape(x), channel_major)
        if batch_stats:
            m = n * s
            if m == 1:
                raise ValueError(f"{type(self).__name__}({self.num_features}): expected more than 1 value "
                                 f"per channel when training, got input of shape {np.shape(x)}")
        if kernels.active():
            return self._forward_compiled(x3, channel_major, np.shape(x), batch_stats)
        views = self._views(n, c, s, dtype)
        if batch_stats:
            mean = _channel_sum(x3)
            mean *= dtype.type(1.0 / m)
        else:
            mean = self.running_mean.astype(dtype, copy=False)
        centered = self._centered_buffer(x3.shape, dtype)
        cv = views.data(centered)
        np.subtract(views.data(x3), views.channel(mean), out=cv)
        if batch_stats:
            var = _channel_dot(centered, centered)
            var *= dtype.type(1.0 / m)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, m)
        else:
            var = self.running_var.astype(dtype, copy=False)
        inv_std = (var + dtype.type(self.eps)).astype(dtype, copy=False)
        np.sqrt(inv_std, out=inv_std)
        np.divide(dtype.type(1), inv_std, out=inv_std)
        self._cache = _BNCache(centered, inv_std, np.shape(x), batch_stats, channel_major)
        out = np.empty(x3.shape, dtype=dtype)
        ov = views.data(out)
        if self.affine:
            np.multiply(cv, views.channel(self.weight.data.astype(dtype, copy=False) * inv_std), out=ov)
            np.add(ov, views.channel(self.bias.data.astype(dtype, copy=False)), out=ov)
        else:
            np.multiply(cv, views.channel(inv_std), out=ov)
        return _from_ncs(out, np.shape(x), channel_major)

    def _forward_empty(self, x3: np.ndarray, shape: tuple[int, ...], channel_major: bool) -> np.ndarray:
        """An empty batch (``N = 0`` or ``L = 0``), as PyTorch: an empty output.

        In training the running statistics keep their values and ``num_batches_tracked``
        still counts the batch. Backward adds zeros to ``weight.grad``/``bias.grad`` and
        returns an empty ``dx``.
        """
        if self.training and self.track_running_stats:
            self._buffers["num_batches_tracked"] = self._buffers["num_batches_tracked"] + 1
        c = x3.shape[1]
        self._cache = _BNCache(x3, np.ones(c, x3.dtype), shape, False, channel_major)
        return _from_ncs(np.empty(x3.shape, x3.dtype), shape, channel_major)

    def _affine_vectors(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """``(gamma, beta)`` in ``dtype`` (ones and zeros when the layer is not affine)."""
        if self.affine:
            return (self.weight.data.astype(dtype, copy=False), self.bias.data.astype(dtype, copy=False))
        ones = _ones(self.num_features, dtype)
        return ones, np.zeros_like(ones)

    def _forward_compiled(self, x3: np.ndarray, channel_major: bool, input_shape: tuple[int, ...],
                          batch_stats: bool) -> np.ndarray:
        """The forward as one fused kernel (statistics and normalization; see :mod:`trainlab.kernels`).

        Same equations as the NumPy path: the batch variance comes from float64 sums
        shifted by the channel's first value, ``y = (x - mean) * (gamma * inv_std) + beta``.
        """
        n, c, s = x3.shape
        jit = kernels.jit()
        gamma, beta = self._affine_vectors(x3.dtype)
        if batch_stats:
            mean, var = np.empty(c), np.empty(c)
        else:
            mean = self.running_mean.astype(np.float64)
            var = self.running_var.astype(np.float64)
        out = np.empty(x3.shape, dtype=x3.dtype)
        kernel = jit.bn_forward_rows if s == 1 else jit.bn_forward_planes
        sizes = (n, c) if s == 1 else (n, c, s)
        kernel(x3.reshape(-1), *sizes, gamma, beta, self.eps, out.reshape(-1), mean, var, batch_stats)
        if batch_stats and self.training and self.track_running_stats:
            self._update_running_stats(mean, var, n * s)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        self._cache = _BNKernelCache(x3, mean, inv_std, input_shape, batch_stats, channel_major)
        return _from_ncs(out, input_shape, channel_major)

    def _update_running_stats(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        buffers = self._buffers      # read directly: attribute access through Module.__getattr__ costs more
        count = buffers["num_batches_tracked"] + 1
        buffers["num_batches_tracked"] = count
        factor = 1.0 / float(count) if self.momentum is None else self.momentum
        rm, rv = buffers["running_mean"], buffers["running_var"]
        rm *= rm.dtype.type(1.0 - factor)
        rm += (factor * mean).astype(rm.dtype, copy=False)
        rv *= rv.dtype.type(1.0 - factor)
        unbiased = var * (m / (m - 1))
        rv += (factor * unbiased).astype(rv.dtype, copy=False)

    # ---------------------------------------------------------------- backward
    def backward(self, dout: np.ndarray) -> np.ndarray:
        """The closed form: two reductions, then ``dx`` in four in-place passes over one new array.

        With ``xc = x - mean``, ``k1 = inv_std^2 * sum(dy * xc) / m`` and ``k0 = sum(dy) / m``::

            dx = gamma * inv_std * (dy - k0 - xc * k1)

        ``dx`` has the layout of the forward input. After a channel-major forward a
        channel-major ``dy`` is read without a copy (any other ``dy`` is copied once
        into that layout); after a C-ordered forward ``dy`` is read in C order.
        """
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        cache = self._cache
        compiled = isinstance(cache, _BNKernelCache)
        data = cache.x3 if compiled else cache.centered
        input_shape, channel_major = cache.input_shape, cache.channel_major
        n, c, s = data.shape
        dtype = data.dtype
        if data.size == 0:              # an empty batch (see _forward_empty)
            if self.affine:
                self.bias.accumulate_grad(np.zeros(c, dtype))
                self.weight.accumulate_grad(np.zeros(c, dtype))
            return np.empty(input_shape, dtype)
        dy = _validate.upstream(dout, input_shape, type(self).__name__)
        if channel_major:
            dyt = dy.reshape(input_shape).swapaxes(0, 1)
            if dyt.dtype != dtype or not dyt.flags.c_contiguous:
                dyt = np.ascontiguousarray(dyt, dtype=dtype)
            dy3 = dyt.reshape(n, c, s)
        else:
            if dy.dtype != dtype or not dy.flags.c_contiguous:
                dy = np.ascontiguousarray(dy, dtype=dtype)
            dy3 = dy.reshape(n, c, s)
        if compiled:
            return self._backward_compiled(dy3)
        centered, inv_std, batch_stats = data, cache.inv_std, cache.batch_stats
        views = self._views(n, c, s, dtype)
        sum_dy = _channel_sum(dy3)
        sum_dy_xhat = _channel_dot(dy3, centered)
        sum_dy_xhat *= inv_std
        if self.affine:
            self.bias.accumulate_grad(sum_dy)
            self.weight.accumulate_grad(sum_dy_xhat)
            scale = self.weight.data.astype(dtype, copy=False) * inv_std
        else:
            scale = inv_std
        dx = np.empty(dy3.shape, dtype=dtype)
        dyv, dxv = views.data(dy3), views.data(dx)
        if not batch_stats:
            np.multiply(dyv, views.channel(scale), out=dxv)
            return _from_ncs(dx, input_shape, channel_major)
        inv_m = dtype.type(1.0 / (n * s))
        k1 = sum_dy_xhat * inv_std
        k1 *= inv_m
        k0 = sum_dy * inv_m
        np.multiply(views.data(centered), views.channel(k1), out=dxv)   # xc * k1
        np.add(dxv, views.channel(k0), out=dxv)                         # + k0
        np.subtract(dyv, dxv, out=dxv)                                  # dy - k0 - xc * k1
        np.multiply(dxv, views.channel(scale), out=dxv)                 # * gamma * inv_std
        return _from_ncs(dx, input_shape, channel_major)

    def _backward_compiled(self, dy3: np.ndarray) -> np.ndarray:
        """The closed-form backward as one fused kernel: both reductions, then ``dx``."""
        x3, mean, inv_std, input_shape, batch_stats, channel_major = self._cache
        n, c, s = x3.shape
        jit = kernels.jit()
        gamma, _ = self._affine_vectors(x3.dtype)
        dx = np.empty(x3.shape, dtype=x3.dtype)
        dgamma, dbeta = np.empty(c), np.empty(c)
        kernel = jit.bn_backward_rows if s == 1 else jit.bn_backward_planes
        sizes = (n, c) if s == 1 else (n, c, s)
        kernel(dy3.reshape(-1), x3.reshape(-1), *sizes, gamma, mean, inv_std, dx.reshape(-1), dgamma, dbeta,
               batch_stats)
        if self.affine:
            self.bias.accumulate_grad(dbeta)
            self.weight.accumulate_grad(dgamma)
        return _from_ncs(dx, input_shape, channel_major)


class BatchNorm1d(_BatchNorm):
    """Batch normalization over ``(N, C)`` or ``(N, C, L)`` inputs, per channel ``C``.

    A channel-major ``(N, C, L)`` input (``x.swapaxes(0, 1)`` C-contiguous) is
    normalized without a copy and the output returned in the same layout.

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

    A channel-major input (a C-contiguous ``(C, N, H, W)`` buffer seen as ``(N, C, H, W)``,
    as Conv2d returns it) is normalized without a copy and the output returned in the
    same layout.

    Arguments as :class:`BatchNorm1d`.
    """

    _ranks = (4,)
    _layout = "(N, {C}, H, W)"
