"""Conv2d, MaxPool2d and Flatten: the layers of a small convolutional network (NCHW, like PyTorch).

Conv2d is an im2col convolution arranged so that each pass is one large GEMM:

* the input is copied once into a reused, zero-padded buffer in **channel-major**
  layout ``(C, N, H + 2p + 1, W')`` (the extra zero row and the width ``W'``,
  a multiple of the stride, give the strided reads below room to run);
* ``cols (C*kh*kw, N*L)`` is one strided-view copy of that buffer, where the
  ``L`` positions of a sample are ``Ho`` output rows of ``Wr`` columns. For
  stride-1 rows ``Wr = W' / s`` ("wide" rows: the padded width, not ``Wo``), so
  each ``(c, i, j)`` row of ``cols`` is one contiguous run per sample and the
  col2im adds are long contiguous runs; the ``Wr - Wo`` extra columns per row
  are computed and dropped (the upstream gradient is zero there). Where the
  extra columns would waste more than they save, ``Wr = Wo`` (exact im2col);
* forward ``W (F, K) @ cols`` and ``dW = dY (F, N*L) @ cols^T`` are one BLAS call
  each; ``dx`` is ``kh*kw`` products ``W[:, :, u, v]^T @ dY``, each added (strided) into
  the padded gradient, so the ``(K, N*L)`` ``dcols`` is never materialized.

Only ``cols`` (which backward needs) is kept per layer between calls while the
shapes stay the same; the other scratch arrays (padded input, ``W cols``, the
transposed upstream gradient, the ``W^T dY`` blocks, the padded input gradient)
are views of one per-thread arena shared by all Conv2d layers (see ``_Scratch``),
and the full ``dcols`` is never built. Arrays handed to the caller are always new.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from trainlab.nn.linear import InitializedLayer
from trainlab.nn.module import Module, Parameter, check_float_dtype

__all__ = ["Conv2d", "MaxPool2d", "Flatten"]

# Use wide rows when they add at most this fraction of extra GEMM columns.
_WIDE_ROWS_MAX_WASTE = 0.35


_ARENA = threading.local()


class _Scratch:
    """Views carved out of one per-thread byte arena shared by every Conv2d layer.

    The temporaries of a forward or backward (padded input, ``W cols``, the transposed
    upstream gradient, the ``W^T dY`` blocks, the padded input gradient) live only
    during that call, so all layers can share one arena sized for the largest call:
    touching fresh memory (page faults) each step costs more than the arithmetic,
    while per-layer buffers would keep the sum of all layers' sizes alive. Views of
    the arena are never returned to the caller nor kept in a cache.
    """

    _ALIGN = 64

    def __init__(self, shapes: list[tuple[int, ...]], dtype: np.dtype) -> None:
        itemsize = np.dtype(dtype).itemsize
        self.sizes = [-(-math.prod(sh) * itemsize // self._ALIGN) * self._ALIGN for sh in shapes]
        need = sum(self.sizes)
        arena = getattr(_ARENA, "buf", None)
        if arena is None or arena.nbytes < need:
            arena = _ARENA.buf = None
            arena = _ARENA.buf = np.empty(need + self._ALIGN, dtype=np.uint8)
        start = (-arena.ctypes.data) % self._ALIGN
        self.views = []
        for shape, size in zip(shapes, self.sizes, strict=True):
            nbytes = math.prod(shape) * itemsize
            self.views.append(arena[start:start + nbytes].view(dtype).reshape(shape))
            start += size


def _pair(value: Any, name: str, where: str, minimum: int) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(3, 5) -> (3, 5)``; each entry an int ``>= minimum``."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        ok = len(pair) == 2 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                    and v >= minimum for v in pair)
    except TypeError:
        ok = False
    if isinstance(value, bool) or not ok:
        kind = "positive" if minimum > 0 else "non-negative"
        raise ValueError(f"{where}: {name} must be a {kind} int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _show(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else str(pair)


def _conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class _Geometry(NamedTuple):
    """Sizes of one Conv2d call (all ints); see the module docstring for the layout."""
    n: int
    c: int
    h: int
    w: int
    ho: int
    wo: int
    rows: int      # rows of the padded buffer: H + 2 ph + 1
    row_len: int   # W' = padded width rounded up to a multiple of the column stride
    wr: int        # positions per output row in cols (Wo, or W' / sw for wide rows)


class _Conv2dCache(NamedTuple):
    cols: np.ndarray        # (C*kh*kw, N*Ho*Wr), the im2col of the input
    geometry: _Geometry
    dtype: np.dtype         # the dtype the GEMMs ran in


class Conv2d(InitializedLayer):
    """2-D cross-correlation ``y[n, f] = b[f] + sum_c W[f, c] (*) x[n, c]``, as ``torch.nn.Conv2d``.

    With stride ``s`` and zero padding ``p``::

        y[n, f, i, j] = b[f] + sum_{c, u, v} W[f, c, u, v] * xpad[n, c, s_h i + u, s_w j + v]
        Ho = (H + 2 p_h - kh) // s_h + 1,   Wo = (W + 2 p_w - kw) // s_w + 1

    Args:
        in_channels: input channels ``C``.
        out_channels: output channels ``F``.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(s_h, s_w)``, default 1.
        padding: zeros added on each side, ``p`` or ``(p_h, p_w)``, default 0.
        bias: add a learnable bias ``(F,)`` (starts at 0).
        init: initializer for the weight (name, callable or ``"auto"``); see
            :class:`~trainlab.nn.linear.InitializedLayer`. The fan-in is ``C*kh*kw``.
        rng: the ``numpy.random.Generator`` the weight is drawn from.
        dtype: float32 (default) or float64.

    Shapes:
        weight ``(F, C, kh, kw)`` (PyTorch's); x ``(N, C, H, W)`` -> y ``(N, F, Ho, Wo)``.

    Backward:
        ``dW += dY cols^T``, ``db += sum_{n,i,j} dY``, ``dx = col2im(W^T dY)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 bias: bool = True, *, init: str | Callable[..., np.ndarray] = "auto",
                 rng: np.random.Generator | None = None, dtype: Any = np.float32) -> None:
        super().__init__()
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"Conv2d: {arg} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d", 1)
        self.stride = _pair(stride, "stride", "Conv2d", 1)
        self.padding = _pair(padding, "padding", "Conv2d", 0)
        dtype = check_float_dtype(dtype, "Conv2d")
        self._init_weight((self.out_channels, self.in_channels, *self.kernel_size), init, rng, dtype)
        self.bias = Parameter(np.zeros(self.out_channels, dtype=dtype), init="zeros") if bias else None
        self._cache: _Conv2dCache | None = None
        self._scratch: dict[str, np.ndarray] = {}

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={_show(self.kernel_size)}"
        if self.stride != (1, 1):
            s += f", stride={_show(self.stride)}"
        if self.padding != (0, 0):
            s += f", padding={_show(self.padding)}"
        return s + ("" if self.bias is not None else ", bias=False")

    @property
    def fan_in(self) -> int:
        return math.prod(self.weight.data.shape[1:])

    # ----------------------------------------------------------------- shapes
    def _shape_error(self, shape: tuple[int, ...], why: str = "") -> ValueError:
        return ValueError(f"Conv2d({self.extra_repr()}): expected input of shape "
                          f"(N, {self.in_channels}, H, W){why}, got {tuple(shape)}")

    def _output_hw(self, shape: tuple[int, ...]) -> tuple[int, int]:
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise self._shape_error(shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        h, w = int(shape[2]), int(shape[3])
        if h + 2 * ph < kh or w + 2 * pw < kw:
            raise self._shape_error(shape, f" with H + 2*{ph} >= {kh} and W + 2*{pw} >= {kw}")
        return _conv_out_size(h, kh, sh, ph), _conv_out_size(w, kw, sw, pw)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        ho, wo = self._output_hw(tuple(input_shape))
        return (input_shape[0], self.out_channels, ho, wo)

    def _geometry(self, shape: tuple[int, ...]) -> _Geometry:
        ho, wo = self._output_hw(shape)
        n, c, h, w = (int(s) for s in shape)
        (ph, pw), sw = self.padding, self.stride[1]
        row_len = -(-(w + 2 * pw) // sw) * sw
        wide = row_len // sw
        wr = wide if wide <= (1 + _WIDE_ROWS_MAX_WASTE) * wo else wo
        return _Geometry(n, c, h, w, ho, wo, h + 2 * ph + 1, row_len, wr)

    # ----------------------------------------------------------------- scratch buffers
    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A scratch array kept between calls; zero-filled when (re)allocated."""
        buf = self._scratch.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.zeros(shape, dtype=dtype)
            self._scratch[name] = buf
        return buf

    def _on_dtype_change(self, dtype: np.dtype) -> None:
        self._scratch.clear()
        self._cache = None

    def _windows(self, padded: np.ndarray, g: _Geometry, i: int = 0, j: int = 0,
                 taps: bool = True) -> np.ndarray:
        """Strided view of a padded ``(C, N, rows, W')`` buffer.

        ``taps=True``: ``(C, kh, kw, N, Ho, Wr)``, element ``[c, u, v, n, y, x]`` at
        ``[c, n, s_h y + u, s_w x + v]`` (flattened over rows). ``taps=False``: the
        ``(C, N, Ho, Wr)`` slice for kernel tap ``(i, j)``.
        """
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        e = padded.itemsize
        sc, sn = g.n * g.rows * g.row_len * e, g.rows * g.row_len * e
        sy, sx = sh * g.row_len * e, sw * e
        if taps:
            return as_strided(padded, (g.c, kh, kw, g.n, g.ho, g.wr),
                              (sc, g.row_len * e, e, sn, sy, sx), writeable=False)
        start = padded.reshape(-1)[i * g.row_len + j:]
        return as_strided(start, (g.c, g.n, g.ho, g.wr), (sc, sn, sy, sx))

    # ----------------------------------------------------------------- forward / backward
    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        g = self._geometry(x.shape)
        weight = self.weight.data
        dtype = np.result_type(x.dtype, weight.dtype) if np.issubdtype(x.dtype, np.floating) \
            else weight.dtype
        if dtype not in (np.float32, np.float64):
            dtype = weight.dtype
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        k = g.c * kh * kw

        self._cache = None      # release the previous step's cols before building new ones
        padded, out_t = _Scratch([(g.c, g.n, g.rows, g.row_len),
                                  (self.out_channels, g.n * g.ho * g.wr)], dtype).views
        padded.fill(0)
        np.copyto(padded[:, :, ph:ph + g.h, pw:pw + g.w], x.transpose(1, 0, 2, 3), casting="unsafe")
        # cols is what backward needs; it is reused across steps (never handed out).
        cols = self._buffer("cols", (k, g.n * g.ho * g.wr), dtype)
        np.copyto(cols.reshape(g.c, kh, kw, g.n, g.ho, g.wr), self._windows(padded, g))

        np.matmul(weight.reshape(self.out_channels, k).astype(dtype, copy=False), cols, out=out_t)
        out_t = out_t.reshape(self.out_channels, g.n, g.ho, g.wr)[..., :g.wo].transpose(1, 0, 2, 3)
        out = np.empty((g.n, self.out_channels, g.ho, g.wo), dtype=dtype)
        if self.bias is not None:
            np.add(out_t, self.bias.data.astype(dtype, copy=False)[:, None, None], out=out)
        else:
            np.copyto(out, out_t)
        del out_t, padded
        self._cache = _Conv2dCache(cols, g, np.dtype(dtype))
        return out

    #: ``backward(dout, input_grad=False)`` skips dx (used by Sequential for data inputs)
    can_skip_input_grad = True

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._cache is None:
            raise RuntimeError("Conv2d.backward called before forward")
        cols, g, dtype = self._cache
        dout = np.asarray(dout)
        expected = (g.n, self.out_channels, g.ho, g.wo)
        if dout.shape != expected:
            raise ValueError(f"Conv2d({self.extra_repr()}).backward: expected dout of shape "
                             f"{expected}, got {dout.shape}")
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        f, k = self.out_channels, g.c * kh * kw

        # dY as (F, N*Ho*Wr); the Wr - Wo extra columns are zero.
        shapes = [(f, g.n, g.ho, g.wr)]
        if input_grad:
            shapes += [(g.c, g.n, g.rows, g.row_len), (g.c, g.n * g.ho * g.wr)]
        scratch = _Scratch(shapes, dtype).views
        dout_t = scratch[0]
        if g.wr > g.wo:
            dout_t[..., g.wo:] = 0
        np.copyto(dout_t[..., :g.wo], dout.transpose(1, 0, 2, 3), casting="unsafe")
        dout_t = dout_t.reshape(f, -1)

        wgrad = self.weight
        if wgrad._grad_is_zero and wgrad._grad.dtype == dtype:
            np.matmul(dout_t, cols.T, out=wgrad._grad.reshape(f, k))
            wgrad.mark_grad_written()
        else:
            wgrad.accumulate_grad((dout_t @ cols.T).reshape(self.weight.data.shape))
        if self.bias is not None:
            self.bias.sum_into_grad(dout_t, axis=1)
        if not input_grad:
            return None

        # dx = col2im(W^T dY), one kernel tap at a time: (C, F) @ (F, N*Ho*Wr) per tap (u, v)
        # into one reused block, so the full (C*kh*kw, N*Ho*Wr) dcols never exists.
        taps_w = np.ascontiguousarray(self.weight.data.transpose(2, 3, 1, 0), dtype=dtype)
        dpadded, block = scratch[1:]
        dpadded.fill(0)
        taps = block.reshape(g.c, g.n, g.ho, g.wr)
        for i in range(kh):
            for j in range(kw):
                np.matmul(taps_w[i, j], dout_t, out=block)
                window = self._windows(dpadded, g, i, j, taps=False)
                window += taps
        del block, dout_t, taps, scratch
        dx = np.empty((g.n, g.c, g.h, g.w), dtype=dtype)
        np.copyto(dx, dpadded[:, :, ph:ph + g.h, pw:pw + g.w].transpose(1, 0, 2, 3))
        return dx


class _MaxPoolCache(NamedTuple):
    argmax: np.ndarray | None     # (N, C, Ho, Wo): window tap u*kw + v of each maximum
    padded: np.ndarray | None     # the (-inf padded) input, kept instead when argmax is deferred
    input_shape: tuple[int, ...]


class MaxPool2d(Module):
    """2-D max pooling over ``kh x kw`` windows, as ``torch.nn.MaxPool2d`` (dilation 1, floor mode).

    ``y[n, c, i, j] = max_{u, v} xpad[n, c, s_h i + u, s_w j + v]`` with ``-inf`` padding;
    ``Ho = (H + 2 p_h - kh) // s_h + 1``.

    Args:
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(s_h, s_w)``; default ``kernel_size`` (as in PyTorch).
        padding: ``-inf`` padding on each side, at most half the kernel (PyTorch's rule).

    Backward:
        The gradient of each output goes to the one input that was the maximum. Ties go
        to the first maximum in row-major window order, and a NaN wins (the last NaN if
        several), exactly as PyTorch's CPU kernel chooses. Overlapping windows add up.

    Each window tap ``(u, v)`` is a strided view of the input; with ``stride ==
    kernel_size`` and no padding these are the slices of ``x.reshape(N, C, Ho, kh, Wo, kw)``
    and nothing is copied. The position of each maximum is found in ``forward`` in training
    mode and on demand in ``backward`` in eval mode.
    """

    transparent_to_init = True

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", "MaxPool2d", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", "MaxPool2d", 1)
        self.padding = _pair(padding, "padding", "MaxPool2d", 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError(f"MaxPool2d: padding must be at most half of kernel_size, got "
                             f"padding={_show(self.padding)} for kernel_size={_show(self.kernel_size)}")
        self._cache: _MaxPoolCache | None = None

    def extra_repr(self) -> str:
        s = f"kernel_size={_show(self.kernel_size)}, stride={_show(self.stride)}"
        return s + (f", padding={_show(self.padding)}" if self.padding != (0, 0) else "")

    def _output_hw(self, shape: tuple[int, ...]) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if len(shape) != 4 or shape[2] + 2 * ph < kh or shape[3] + 2 * pw < kw:
            raise ValueError(f"MaxPool2d({self.extra_repr()}): expected input of shape (N, C, H, W) "
                             f"with H + 2*{ph} >= {kh} and W + 2*{pw} >= {kw}, got {tuple(shape)}")
        return _conv_out_size(shape[2], kh, sh, ph), _conv_out_size(shape[3], kw, sw, pw)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        ho, wo = self._output_hw(tuple(input_shape))
        return (*tuple(input_shape)[:2], ho, wo)

    def _taps(self, padded: np.ndarray, ho: int, wo: int) -> list[np.ndarray]:
        """The ``kh*kw`` strided views ``padded[:, :, u + s_h i, v + s_w j]``, row-major in ``(u, v)``."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return [padded[:, :, u:u + sh * (ho - 1) + 1:sh, v:v + sw * (wo - 1) + 1:sw]
                for u in range(kh) for v in range(kw)]

    @staticmethod
    def _max_and_argmax(taps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Elementwise max over ``taps`` and the index of the tap PyTorch routes the gradient to."""
        out = taps[0].copy()
        argmax = np.zeros(out.shape, dtype=np.uint8 if len(taps) <= 256 else np.uint16)
        wins = np.empty(out.shape, dtype=bool)
        code = np.empty_like(argmax)
        for t, tap in enumerate(taps[1:], start=1):
            # A later tap wins only if strictly greater, so ties keep the first maximum; t grows,
            # so argmax = max(argmax, t * wins) records the last win.
            np.greater(tap, out, out=wins)
            np.maximum(out, tap, out=out)
            np.multiply(wins, argmax.dtype.type(t), out=code)
            np.maximum(argmax, code, out=argmax)
        if np.isnan(out).any():
            # np.maximum has already made those outputs NaN; PyTorch routes to the last NaN.
            best = taps[0].copy()
            argmax.fill(0)
            for t, tap in enumerate(taps[1:], start=1):
                np.greater(tap, best, out=wins)
                wins |= np.isnan(tap)
                np.copyto(best, tap, where=wins)
                np.copyto(argmax, t, where=wins, casting="unsafe")
        return out, argmax

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        ho, wo = self._output_hw(x.shape)
        self._cache = None      # release the previous step's argmax first
        (ph, pw) = self.padding
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        if ph or pw:
            padded = np.full((*x.shape[:2], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), -np.inf, x.dtype)
            padded[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]] = x
        else:
            padded = x
        taps = self._taps(padded, ho, wo)
        if self.training:
            out, argmax = self._max_and_argmax(taps)
            self._cache = _MaxPoolCache(argmax, None, x.shape)
        else:
            out = np.maximum(taps[0], taps[1]) if len(taps) > 1 else taps[0].copy()
            for tap in taps[2:]:
                np.maximum(out, tap, out=out)
            self._cache = _MaxPoolCache(None, padded, x.shape)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("MaxPool2d.backward called before forward")
        argmax, padded, shape = self._cache
        if argmax is None:
            argmax = self._max_and_argmax(self._taps(padded, *self.output_shape(shape)[2:]))[1]
            self._cache = _MaxPoolCache(argmax, None, shape)
        dout = np.asarray(dout)
        if dout.shape != argmax.shape:
            raise ValueError(f"MaxPool2d({self.extra_repr()}).backward: expected dout of shape "
                             f"{argmax.shape}, got {dout.shape}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = argmax.shape[2:]
        padded_shape = (*shape[:2], shape[2] + 2 * ph, shape[3] + 2 * pw)
        tiles = (sh, sw) == (kh, kw) and (sh * ho, sw * wo) == padded_shape[2:]
        dpadded = (np.empty if tiles else np.zeros)(padded_shape, dtype=dout.dtype)
        overlapping = sh < kh or sw < kw
        chosen = np.empty(argmax.shape, dtype=bool)
        for t, window in enumerate(self._taps(dpadded, ho, wo)):
            np.equal(argmax, t, out=chosen)
            if overlapping:
                window += dout * chosen
            else:   # disjoint windows: each input position belongs to one tap at most
                np.multiply(dout, chosen, out=window)
        if ph or pw:
            return np.ascontiguousarray(dpadded[:, :, ph:ph + shape[2], pw:pw + shape[3]])
        return dpadded


class _FlattenCache(NamedTuple):
    input_shape: tuple[int, ...]


class Flatten(Module):
    """Merge dimensions ``start_dim..`` into one: ``(N, C, H, W) -> (N, C*H*W)``, as ``torch.nn.Flatten``.

    Args:
        start_dim: first dimension to flatten (default 1, keeping the batch dimension).

    Backward reshapes the gradient back to the input's shape.
    """

    transparent_to_init = True

    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        if not isinstance(start_dim, (int, np.integer)) or isinstance(start_dim, bool) or start_dim < 0:
            raise ValueError(f"Flatten: start_dim must be a non-negative int, got {start_dim!r}")
        self.start_dim = int(start_dim)
        self._cache: _FlattenCache | None = None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        if len(shape) <= self.start_dim:
            raise ValueError(f"Flatten({self.extra_repr()}): expected input with more than "
                             f"{self.start_dim} dimensions, got shape {shape}")
        return (*shape[:self.start_dim], math.prod(shape[self.start_dim:]))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        out_shape = self.output_shape(x.shape)
        self._cache = _FlattenCache(x.shape)
        return x.reshape(out_shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("Flatten.backward called before forward")
        return np.asarray(dout).reshape(self._cache.input_shape)
