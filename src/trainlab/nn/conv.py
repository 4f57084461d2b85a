"""Conv2d, MaxPool2d and Flatten: the layers of a small convolutional network (NCHW, like PyTorch).

Memory layout. Arrays are ``(N, C, H, W)``-shaped as in PyTorch, but Conv2d returns
its output (and its input gradient) **channel-major**: the memory is a C-contiguous
``(C, N, H, W)`` buffer and the returned array is its ``transpose(1, 0, 2, 3)`` view,
the way PyTorch tensors carry a memory format. Shape, values and indexing are those
of any NCHW array; only the strides differ (``np.ascontiguousarray`` gives the NCHW
order). The GEMMs below produce exactly this layout, so no transposing copy is made;
BatchNorm2d, the activations and MaxPool2d keep the layout they receive.

Conv2d is an im2col convolution arranged so that each pass is one large GEMM:

* the input is copied once into a reused, zero-padded buffer in channel-major
  layout ``(C, N, H + 2p + 1, W')`` (the extra zero row and the width ``W'``, a
  multiple of the stride, give the strided reads below room to run);
* forward: ``cols (C*kh*kw, N*Ho*Wo)`` is one strided-view copy of that buffer and
  ``y = W (F, K) @ cols`` is one BLAS call whose ``(F, N*Ho*Wo)`` result *is* the
  channel-major output; the bias is added in place;
* backward: ``dY`` is the ``(F, N*Ho*Wo)`` view of a channel-major upstream gradient
  (one copy otherwise); ``dW = dY @ cols^T`` is one BLAS call and ``db = dY @ 1``
  one matrix-vector product;
* ``dx = col2im(W^T dY)``: ``W^T dY`` is computed a few samples at a time into one
  reused block of a few MiB (so the full ``(K, N*L)`` ``dcols`` never exists), and
  each kernel tap of the block is added (strided) into a zero-padded gradient buffer.
  For stride-1 rows the upstream gradient is first widened to ``Wr = W' / s``
  columns (the padded width, zeros in the extra ``Wr - Wo`` columns), which makes
  every tap's add one long contiguous run per sample; where the extra columns
  would waste more than they save, ``Wr = Wo``.

Only ``cols`` (which backward needs) is kept per layer between calls while the
shapes stay the same; the other scratch arrays (padded input, a copied upstream
gradient, the ``W^T dY`` block, the padded input gradient) are views of one
per-thread arena shared by all Conv2d layers (see ``_Scratch``). Arrays handed to
the caller are always new.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from trainlab import _validate, kernels
from trainlab.nn.linear import InitializedLayer
from trainlab.nn.module import Module, Parameter, check_float_dtype, is_channel_major

__all__ = ["Conv2d", "MaxPool2d", "Flatten"]

# Use wide rows when they add at most this fraction of extra GEMM columns.
_WIDE_ROWS_MAX_WASTE = 0.35
# Compute W^T dY for at most this many bytes of dcols at a time (cache-sized blocks).
_DX_BLOCK_BYTES = 4 << 20
# Compiled path: im2col (and W^T dY) in blocks of at most this many bytes (see Conv2d._cols_block).
# Paired A/B on 2 cores (conv2 of benchmark workloads 3 and 6, forward + backward): 1 MiB blocks
# made the GEMMs too thin (backward 1.8x the whole-matrix GEMMs, against 1.4-1.7x at 4 MiB, which
# was as fast as one whole matrix); 4 MiB keeps two blocks far below the whole im2col matrix.
_COLS_BLOCK_BYTES = 4 << 20


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
    """``3 -> (3, 3)``, ``(3, 5) -> (3, 5)``; each entry an int ``>= minimum``.

    Raises ``TypeError`` for entries that are not ints (``2.5``, ``"3"``, ``True``) and
    ``ValueError`` for a wrong length or an entry below ``minimum``; both name ``name``.
    """
    kind = "positive" if minimum > 0 else "non-negative"
    what = f"a {kind} int or a pair of them"
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    is_int = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if isinstance(value, (str, bytes)) or not isinstance(pair, (tuple, list)) or not all(map(is_int, pair)):
        raise _validate.argument_error(TypeError, where, name, f"{name} must be {what}, got {value!r}")
    if len(pair) != 2 or any(v < minimum for v in pair):
        raise _validate.argument_error(ValueError, where, name, f"{name} must be {what}, got {value!r}")
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
    wr: int        # positions per output row of the widened dY in backward (Wo, or W' / sw)


class _Conv2dCache(NamedTuple):
    cols: np.ndarray | None     # (C*kh*kw, N*Ho*Wo), the im2col of the input (NumPy path)
    geometry: _Geometry
    dtype: np.dtype             # the dtype the GEMMs ran in
    x: np.ndarray | None = None  # the input itself (compiled path: backward rebuilds cols block by block)


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
        weight ``(F, C, kh, kw)`` (PyTorch's); x ``(N, C, H, W)`` -> y ``(N, F, Ho, Wo)``; x float32
        or float64 (float16 is promoted, integer and bool inputs are refused: see :mod:`trainlab.nn`).
        ``N = 0`` gives an empty output and input gradient and zero parameter gradients.

    Backward:
        ``dW += dY cols^T``, ``db += sum_{n,i,j} dY``, ``dx = col2im(W^T dY)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 bias: bool = True, *, init: str | Callable[..., np.ndarray] = "auto",
                 rng: np.random.Generator | None = None, dtype: Any = np.float32) -> None:
        super().__init__()
        self.in_channels = _validate.count("Conv2d", "in_channels", in_channels)
        self.out_channels = _validate.count("Conv2d", "out_channels", out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d", 1)
        self.stride = _pair(stride, "stride", "Conv2d", 1)
        self.padding = _pair(padding, "padding", "Conv2d", 0)
        bias = _validate.flag("Conv2d", "bias", bias)
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

    def _windows(self, padded: np.ndarray, g: _Geometry, width: int) -> np.ndarray:
        """Read-only ``(C, kh, kw, N, Ho, width)`` view of a padded ``(C, N, rows, W')`` buffer.

        Element ``[c, u, v, n, y, x]`` is ``padded[c, n, s_h y + u, s_w x + v]`` (flattened
        over rows, so ``x >= Wo`` runs on into the padding).
        """
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        e = padded.itemsize
        sc, sn = g.n * g.rows * g.row_len * e, g.rows * g.row_len * e
        return as_strided(padded, (g.c, kh, kw, g.n, g.ho, width),
                          (sc, g.row_len * e, e, sn, sh * g.row_len * e, sw * e), writeable=False)

    def _tap_window(self, padded: np.ndarray, g: _Geometry, i: int, j: int, n0: int, count: int,
                    width: int) -> np.ndarray:
        """Writable ``(C, count, Ho, width)`` view of kernel tap ``(i, j)`` for samples ``n0..``."""
        (sh, sw) = self.stride
        if (sh, sw) == (1, 1) and width == g.row_len:
            # stride-1 wide rows: Ho consecutive padded rows, one plain slice per sample (cheaper than as_strided)
            offset = i * g.row_len + j
            window = padded.reshape(g.c, g.n, -1)[:, n0:n0 + count, offset:offset + g.ho * g.row_len]
            return window.reshape(g.c, count, g.ho, width)
        e = padded.itemsize
        start = padded.reshape(-1)[(n0 * g.rows + i) * g.row_len + j:]
        return as_strided(start, (g.c, count, g.ho, width),
                          (g.n * g.rows * g.row_len * e, g.rows * g.row_len * e, sh * g.row_len * e, sw * e))

    # ----------------------------------------------------------------- forward / backward
    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _validate.layer_input(x, "Conv2d")
        g = self._geometry(x.shape)
        weight = self.weight.data
        dtype = np.result_type(x.dtype, weight.dtype) if np.issubdtype(x.dtype, np.floating) \
            else weight.dtype
        if dtype not in (np.float32, np.float64):
            dtype = weight.dtype
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        f, k, positions = self.out_channels, g.c * kh * kw, g.n * g.ho * g.wo

        self._cache = None      # release the previous step's cols before building new ones
        out = np.empty((f, positions), dtype=dtype)    # channel-major (F, N, Ho, Wo)
        weight2d = weight.reshape(f, k).astype(dtype, copy=False)
        if kernels.active():
            # cols block by block (a cache-sized block: one compiled pass from x, either layout, then
            # one GEMM into the block's columns of out); backward keeps x, not the 9x larger cols
            self._scratch.pop("cols", None)
            chunk, shape = self._cols_block(g, dtype)
            block = _Scratch([shape], dtype).views[0]
            im2col = kernels.jit().im2col
            per_sample = g.ho * g.wo
            for n0 in range(0, g.n, chunk):
                count = min(chunk, g.n - n0)
                cols = block.reshape(-1)[:k * count * per_sample].reshape(k, count * per_sample)
                im2col(x[n0:n0 + count], kh, kw, *self.stride, ph, pw, g.ho, g.wo, cols.reshape(-1))
                np.matmul(weight2d, cols, out=out[:, n0 * per_sample:(n0 + count) * per_sample])
            del block
            cache = _Conv2dCache(None, g, np.dtype(dtype), x)
        else:
            # cols is what backward needs; it is reused across steps (never handed out).
            cols = self._buffer("cols", (k, positions), dtype)
            padded = _Scratch([(g.c, g.n, g.rows, g.row_len)], dtype).views[0]
            padded.fill(0)
            np.copyto(padded[:, :, ph:ph + g.h, pw:pw + g.w], x.transpose(1, 0, 2, 3), casting="unsafe")
            np.copyto(cols.reshape(g.c, kh, kw, g.n, g.ho, g.wo), self._windows(padded, g, g.wo))
            del padded
            np.matmul(weight2d, cols, out=out)
            cache = _Conv2dCache(cols, g, np.dtype(dtype))
        if self.bias is not None:
            bias = self.bias.data.astype(dtype, copy=False)
            if kernels.active():
                kernels.jit().add_bias_rows(out.reshape(-1), bias, f, positions)
            else:
                np.add(out, bias[:, None], out=out)
        self._cache = cache
        return out.reshape(f, g.n, g.ho, g.wo).transpose(1, 0, 2, 3)

    #: ``backward(dout, input_grad=False)`` skips dx (used by Sequential for data inputs)
    can_skip_input_grad = True

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._cache is None:
            raise RuntimeError("Conv2d.backward called before forward")
        cols, g, dtype, x = self._cache
        dout = np.asarray(dout)
        expected = (g.n, self.out_channels, g.ho, g.wo)
        if dout.shape != expected:
            raise ValueError(f"Conv2d({self.extra_repr()}).backward: expected dout of shape "
                             f"{expected}, got {dout.shape}")
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        f, k = self.out_channels, g.c * kh * kw
        compiled = cols is None
        wide = input_grad and g.wr > g.wo and not compiled
        width = g.wr if wide else g.wo
        per_sample = g.ho * width
        chunk = max(1, min(g.n, _DX_BLOCK_BYTES // max(1, k * per_sample * dtype.itemsize)))

        # dY as (F, N*Ho*Wo): a view of a channel-major dout, else one copy
        dout_t = dout.transpose(1, 0, 2, 3)
        copy_dy = dout.dtype != dtype or not dout_t.flags.c_contiguous
        shapes = [(f, g.n, g.ho, g.wo)] if copy_dy else []
        if compiled:        # the im2col block, and the W^T dY block with input_grad
            chunk, block_shape = self._cols_block(g, dtype)
            shapes += [block_shape] * (2 if input_grad else 1)
        elif input_grad:
            shapes += [(f, g.n, g.ho, width)] if wide else []
            shapes += [(g.c, g.n, g.rows, g.row_len), (k, chunk * per_sample)]
        scratch = _Scratch(shapes, dtype).views
        if copy_dy:
            dy = scratch.pop(0)
            np.copyto(dy, dout_t, casting="unsafe")
        else:
            dy = dout_t
        dy = dy.reshape(f, -1)
        if compiled:
            return self._backward_compiled(x, dy, g, dtype, chunk, scratch)

        wgrad = self.weight
        if wgrad._grad_is_zero and wgrad._grad.dtype == dtype:
            np.matmul(dy, cols.T, out=wgrad._grad.reshape(f, k))
            wgrad.mark_grad_written()
        else:
            wgrad.accumulate_grad((dy @ cols.T).reshape(self.weight.data.shape))
        if self.bias is not None:
            self.bias.sum_into_grad(dy, axis=1)
        if not input_grad:
            return None

        if wide:    # dY widened to Wr columns per output row (zeros beyond Wo)
            dy_wide = scratch.pop(0)
            dy_wide[..., g.wo:] = 0
            np.copyto(dy_wide[..., :g.wo], dy.reshape(f, g.n, g.ho, g.wo))
            dy = dy_wide.reshape(f, -1)
        dpadded, block = scratch
        dpadded.fill(0)
        # dx = col2im(W^T dY), `chunk` samples at a time: the (K, N*Ho*width) dcols never exists.
        weight_t = np.ascontiguousarray(self.weight.data.reshape(f, k).T, dtype=dtype)
        dcols = taps = None         # an empty batch runs no block
        for n0 in range(0, g.n, chunk):
            count = min(chunk, g.n - n0)
            dcols = block.reshape(-1)[:k * count * per_sample].reshape(k, count * per_sample)
            np.matmul(weight_t, dy[:, n0 * per_sample:(n0 + count) * per_sample], out=dcols)
            taps = dcols.reshape(g.c, kh, kw, count, g.ho, width)
            for i in range(kh):
                for j in range(kw):
                    window = self._tap_window(dpadded, g, i, j, n0, count, width)
                    window += taps[:, i, j]
        del block, dy, taps, scratch, dcols
        dx = np.empty((g.c, g.n, g.h, g.w), dtype=dtype)      # channel-major, as the output
        np.copyto(dx, dpadded[:, :, ph:ph + g.h, pw:pw + g.w])
        return dx.transpose(1, 0, 2, 3)

    def _cols_block(self, g: _Geometry, dtype: np.dtype) -> tuple[int, tuple[int, int]]:
        """``chunk`` (samples per block) and the ``(K, chunk*Ho*Wo)`` shape of a block, compiled path.

        ``chunk`` is the most samples whose columns fit in ``_COLS_BLOCK_BYTES`` (at least one): a
        block small enough to stay in the caches between the im2col pass that writes it and the
        GEMM that reads it, large enough for the GEMMs to run at full speed. It depends on the shapes
        only, so results never depend on the thread count.
        """
        (kh, kw), per_sample = self.kernel_size, g.ho * g.wo
        k = g.c * kh * kw
        chunk = max(1, min(g.n, _COLS_BLOCK_BYTES // max(1, k * per_sample * dtype.itemsize)))
        return chunk, (k, chunk * per_sample)

    def _backward_compiled(self, x: np.ndarray, dy: np.ndarray, g: _Geometry, dtype: np.dtype, chunk: int,
                           blocks: list[np.ndarray]) -> np.ndarray | None:
        """The backward on the compiled path, one block of ``chunk`` samples at a time.

        ``blocks``: the im2col block, and the ``W^T dY`` block when ``dx`` is wanted.

        For each block: ``cols_b = im2col(x_b)`` (one compiled pass into a cache-sized block),
        ``dW += dY_b cols_b^T`` (BLAS), and with ``input_grad`` ``dcols_b = W^T dY_b`` (BLAS) whose
        taps one compiled pass adds straight into the channel-major ``dx`` (no padded buffer, no
        copy). ``db = dY 1``. Neither ``cols`` nor ``dcols`` ever exists whole.
        """
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        f, k, per_sample = self.out_channels, g.c * kh * kw, g.ho * g.wo
        input_grad = len(blocks) == 2
        cols_block, dcols_block = blocks[0], blocks[-1]
        jit = kernels.jit()
        wgrad = self.weight
        direct = wgrad._grad_is_zero and wgrad._grad.dtype == dtype
        dw = wgrad._grad.reshape(f, k) if direct else np.zeros((f, k), dtype=dtype)
        part = np.empty((f, k), dtype=dtype) if g.n > chunk or not direct else None
        if input_grad:
            weight_t = np.ascontiguousarray(self.weight.data.reshape(f, k).T, dtype=dtype)
            dx = np.empty((g.c, g.n, g.h, g.w), dtype=dtype)
        for n0 in range(0, g.n, chunk):
            count = min(chunk, g.n - n0)
            width = count * per_sample
            dy_b = dy[:, n0 * per_sample:n0 * per_sample + width]
            cols = cols_block.reshape(-1)[:k * width].reshape(k, width)
            jit.im2col(x[n0:n0 + count], kh, kw, sh, sw, ph, pw, g.ho, g.wo, cols.reshape(-1))
            if n0 == 0 and direct:
                np.matmul(dy_b, cols.T, out=dw)
            else:
                np.matmul(dy_b, cols.T, out=part)
                dw += part
            if input_grad:
                dcols = dcols_block.reshape(-1)[:k * width].reshape(k, width)
                np.matmul(weight_t, dy_b, out=dcols)
                jit.col2im(dcols.reshape(-1), g.n, n0, count, g.c, g.h, g.w, kh, kw, sh, sw, ph, pw, g.ho,
                           g.wo, dx.reshape(-1))
        del blocks, cols_block, dcols_block
        if direct:
            if g.n == 0:
                dw.fill(0)
            wgrad.mark_grad_written()
        else:
            wgrad.accumulate_grad(dw.reshape(self.weight.data.shape))
        if self.bias is not None:
            self.bias.sum_into_grad(dy, axis=1)
        return dx.transpose(1, 0, 2, 3) if input_grad else None


class _MaxPoolCache(NamedTuple):
    argmax: np.ndarray | None     # (B, Ho, Wo): window tap u*kw + v of each maximum
    planes: np.ndarray | None     # the (-inf padded) (B, Hp, Wp) input, kept instead when argmax is deferred
    input_shape: tuple[int, ...]
    channel_major: bool           # the planes are ordered (C, N), not (N, C)
    compiled: bool = False        # made by the compiled path: planes unpadded, taps never in the padding


def _planes(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """The ``H x W`` planes of an ``(N, C, H, W)`` array as a C-contiguous ``(B, H, W)`` view.

    ``B = N*C`` in the array's memory order: ``(N, C)`` for a C-contiguous array,
    ``(C, N)`` (the flag ``True``) for a channel-major one; other layouts are copied
    to C order first.
    """
    if is_channel_major(x):
        n, c, h, w = x.shape
        return x.transpose(1, 0, 2, 3).reshape(c * n, h, w), True
    x = np.ascontiguousarray(x)
    return x.reshape(-1, *x.shape[2:]), False


def _from_planes(planes: np.ndarray, shape: tuple[int, ...], channel_major: bool) -> np.ndarray:
    """``(B, h, w)`` planes back to an ``(N, C, h, w)`` array (a view) in the given order."""
    n, c = shape[:2]
    if channel_major:
        return planes.reshape(c, n, *planes.shape[1:]).transpose(1, 0, 2, 3)
    return planes.reshape(n, c, *planes.shape[1:])


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

    The input is handled as ``B = N*C`` planes in its own memory order, so a
    channel-major input (see the module docstring) gives a channel-major output and
    input gradient. One strided copy gathers the ``kh*kw`` window taps into contiguous
    ``(B, Ho, Wo)`` arrays (in a scratch arena shared with Conv2d); the maximum and
    the index of the winning tap (``uint8``) are then running comparisons over
    contiguous arrays. With disjoint windows the backward scatters each output
    gradient to its input position in one indexed assignment; overlapping windows
    add tap by tap. The winning taps are found in ``forward`` in training mode and
    on demand in ``backward`` in eval mode.
    """

    transparent_to_init = True

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", "MaxPool2d", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", "MaxPool2d", 1)
        self.padding = _pair(padding, "padding", "MaxPool2d", 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise _validate.argument_error(ValueError, "MaxPool2d", "padding", f"padding must be at most half of "
                                           f"kernel_size, got padding={_show(self.padding)} for "
                                           f"kernel_size={_show(self.kernel_size)}")
        self._cache: _MaxPoolCache | None = None
        self._base: tuple[tuple, np.ndarray] | None = None   # (shape key, flat index of each window's corner)

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

    def _tap_views(self, planes: np.ndarray, ho: int, wo: int, writeable: bool = False) -> np.ndarray:
        """``(kh, kw, B, Ho, Wo)`` view: ``[u, v, b, i, j] = planes[b, s_h i + u, s_w j + v]``."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        b, hp, wp = planes.shape
        e = planes.itemsize
        return as_strided(planes, (kh, kw, b, ho, wo), (wp * e, e, hp * wp * e, sh * wp * e, sw * e),
                          writeable=writeable)

    @staticmethod
    def _max_and_argmax(taps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Elementwise max over ``taps`` and the index of the tap PyTorch routes the gradient to."""
        out = taps[0].copy()
        code_dtype = np.uint8 if len(taps) <= 256 else np.uint16
        argmax = np.zeros(out.shape, dtype=code_dtype)
        wins = np.empty(out.shape, dtype=bool)
        code = np.empty(out.shape, dtype=code_dtype)
        wins_as_code = wins.view(np.uint8) if code_dtype == np.uint8 else wins
        for t, tap in enumerate(taps[1:], start=1):
            # A later tap wins only if strictly greater, so ties keep the first maximum; t grows,
            # so argmax = max(argmax, t * wins) records the last win.
            np.greater(tap, out, out=wins)
            np.maximum(out, tap, out=out)
            np.multiply(wins_as_code, code_dtype(t), out=code)
            np.maximum(argmax, code, out=argmax)
        if np.isnan(out).any():
            # np.maximum has already made those outputs NaN; PyTorch routes to the last NaN.
            best = taps[0].copy()
            argmax.fill(0)
            won = np.empty(out.shape, dtype=bool)
            for t, tap in enumerate(taps[1:], start=1):
                np.greater(tap, best, out=won)
                won |= np.isnan(tap)
                np.copyto(best, tap, where=won)
                np.copyto(argmax, t, where=won, casting="unsafe")
        return out, argmax

    def _padded_planes(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        planes, channel_major = _planes(x)
        ph, pw = self.padding
        if ph or pw:
            b, h, w = planes.shape
            padded = np.full((b, h + 2 * ph, w + 2 * pw), -np.inf, planes.dtype)
            padded[:, ph:ph + h, pw:pw + w] = planes
            planes = padded
        return planes, channel_major

    def _gather_taps(self, planes: np.ndarray, ho: int, wo: int) -> tuple[list[np.ndarray], _Scratch]:
        """The ``kh*kw`` taps copied to contiguous ``(B, Ho, Wo)`` arrays (views of the scratch arena)."""
        kh, kw = self.kernel_size
        scratch = _Scratch([(kh * kw, planes.shape[0], ho, wo)], planes.dtype)
        gathered = scratch.views[0]
        np.copyto(gathered.reshape(kh, kw, *gathered.shape[1:]), self._tap_views(planes, ho, wo))
        return list(gathered), scratch

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _validate.layer_input(x, "MaxPool2d")
        ho, wo = self._output_hw(x.shape)
        self._cache = None      # release the previous step's argmax first
        if kernels.active() and x.dtype in (np.float32, np.float64):
            return self._forward_compiled(x, ho, wo)
        planes, channel_major = self._padded_planes(x)
        taps, scratch = self._gather_taps(planes, ho, wo)
        if self.training:
            out, argmax = self._max_and_argmax(taps)
            self._cache = _MaxPoolCache(argmax, None, x.shape, channel_major)
        else:
            out = np.maximum(taps[0], taps[1]) if len(taps) > 1 else taps[0].copy()
            for tap in taps[2:]:
                np.maximum(out, tap, out=out)
            self._cache = _MaxPoolCache(None, planes, x.shape, channel_major)
        del taps, scratch
        return _from_planes(out, x.shape, channel_major)

    def _pool_compiled(self, planes: np.ndarray, ho: int, wo: int,
                       want_argmax: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Maximum (and winning tap) of every window, in one compiled pass over the planes."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        b, h, w = planes.shape
        out = np.empty((b, ho, wo), dtype=planes.dtype)
        code_dtype = np.uint8 if kh * kw <= 256 else np.uint16
        argmax = np.empty((b, ho, wo), dtype=code_dtype) if want_argmax else np.empty(1, dtype=code_dtype)
        jit = kernels.jit()
        flat, flat_out, flat_argmax = planes.reshape(-1), out.reshape(-1), argmax.reshape(-1)
        if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):
            jit.maxpool2x2_forward(flat, b, h, w, ho, wo, flat_out, flat_argmax, want_argmax)
        else:
            jit.maxpool_forward(flat, b, h, w, kh, kw, sh, sw, ph, pw, ho, wo, flat_out, flat_argmax,
                                want_argmax)
        return out, (argmax if want_argmax else None)

    def _forward_compiled(self, x: np.ndarray, ho: int, wo: int) -> np.ndarray:
        """The forward on the compiled path: no padded copy, no gathered taps (see :mod:`trainlab.kernels`)."""
        planes, channel_major = _planes(x)
        out, argmax = self._pool_compiled(planes, ho, wo, self.training)
        self._cache = _MaxPoolCache(argmax, None if self.training else planes, x.shape, channel_major, True)
        return _from_planes(out, x.shape, channel_major)

    def _corner_index(self, b: int, ho: int, wo: int, hp: int, wp: int) -> np.ndarray:
        """Flat index ``b*Hp*Wp + s_h i Wp + s_w j`` of each window's first element (cached)."""
        sh, sw = self.stride
        dtype = np.int32 if b * hp * wp < 2 ** 31 else np.intp
        key = (b, ho, wo, hp, wp, self.stride)
        if self._base is None or self._base[0] != key:
            rows = (np.arange(b, dtype=dtype)[:, None] * hp + sh * np.arange(ho, dtype=dtype)) * wp
            self._base = (key, rows[:, :, None] + sw * np.arange(wo, dtype=dtype))
        return self._base[1]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("MaxPool2d.backward called before forward")
        argmax, planes, shape, channel_major, compiled = self._cache
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = self.output_shape(shape)[2:]
        if argmax is None and compiled:
            argmax = self._pool_compiled(planes, ho, wo, True)[1]
            self._cache = _MaxPoolCache(argmax, None, shape, channel_major, True)
        if argmax is None:
            taps, scratch = self._gather_taps(planes, ho, wo)
            argmax = self._max_and_argmax(taps)[1]
            del taps, scratch
            self._cache = _MaxPoolCache(argmax, None, shape, channel_major)
        dout = np.asarray(dout)
        expected = (*shape[:2], ho, wo)
        if dout.shape != expected:
            raise ValueError(f"MaxPool2d({self.extra_repr()}).backward: expected dout of shape "
                             f"{expected}, got {dout.shape}")
        # the upstream gradient as (B, Ho, Wo) planes in the order of the cached argmax
        d_planes = np.ascontiguousarray(dout.transpose(1, 0, 2, 3) if channel_major else dout)
        d_planes = d_planes.reshape(argmax.shape)
        b = argmax.shape[0]
        if compiled and d_planes.dtype in (np.float32, np.float64):
            dx = np.empty((b, shape[2], shape[3]), dtype=d_planes.dtype)
            kernels.jit().maxpool_backward(d_planes.reshape(-1), argmax.reshape(-1), b, shape[2], shape[3],
                                           kh, kw, sh, sw, ph, pw, ho, wo, dx.reshape(-1))
            return _from_planes(dx, shape, channel_major)
        hp, wp = shape[2] + 2 * ph, shape[3] + 2 * pw
        crop = (ph or pw) or (sh * ho, sw * wo) != (hp, wp)
        dpadded = np.zeros((b, hp, wp), dtype=dout.dtype)
        if sh >= kh and sw >= kw:       # disjoint windows: one input position per output at most
            offsets = (np.arange(kh)[:, None] * wp + np.arange(kw)).reshape(-1)
            base = self._corner_index(b, ho, wo, hp, wp)
            index = np.take(offsets.astype(base.dtype), argmax, mode="clip")   # no bounds check: codes < kh*kw
            index += base
            dpadded.reshape(-1)[index.reshape(-1)] = d_planes.reshape(-1)
        else:
            windows = self._tap_views(dpadded, ho, wo, writeable=True)
            chosen = np.empty(argmax.shape, dtype=bool)
            for t in range(kh * kw):
                np.equal(argmax, t, out=chosen)
                window = windows[t // kw, t % kw]
                window += d_planes * chosen
        if crop:
            dx = np.empty((b, shape[2], shape[3]), dtype=dout.dtype)
            np.copyto(dx, dpadded[:, ph:ph + shape[2], pw:pw + shape[3]])
        else:
            dx = dpadded
        return _from_planes(dx, shape, channel_major)


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
        self.start_dim = _validate.integer("Flatten", "start_dim", start_dim, low=0)
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
        x = _validate.layer_input(x, "Flatten")
        out_shape = self.output_shape(x.shape)
        self._cache = _FlattenCache(x.shape)
        return x.reshape(out_shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("Flatten.backward called before forward")
        shape = self._cache.input_shape
        return _validate.upstream(dout, self.output_shape(shape), "Flatten").reshape(shape)
