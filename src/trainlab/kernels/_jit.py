"""The Numba kernels (imported by :func:`trainlab.kernels.jit` on first use, never at ``import trainlab``).

Conventions shared by every kernel:

* Arrays are passed flat (1-D, C-contiguous) with their sizes as ints, so each kernel
  compiles once per dtype; outputs are preallocated by the caller.
* Every kernel is a serial loop (``parallel=False``) that runs in the calling thread and
  releases the GIL: one fused pass where NumPy needs several. Why not Numba's thread pool:
  on 2 cores a parallel launch cost about 150 us (``workqueue`` layer), more than the
  whole pass for the sizes of a training step, and in paired A/B steps (one process,
  interleaved) the serial kernels made the README loop 0.76x, MLP b128 0.83x, b1024 0.93x,
  CNN b64 0.93x the time of the parallel ones and CNN 3x32x32 1.02x; the spinning ``omp``
  layer fought OpenBLAS's worker (see :mod:`trainlab.kernels`). The second core is BLAS's.
* No optimizer kernels: a fused one-pass Adam (and SGD) computing each element in
  float64 took 1.75x (1.19x over 5M parameters) the time of the NumPy/BLAS float32
  passes in paired runs (SGD 0.95x and 1.36x), so the updates stay on that path.
* Elementwise kernels are one flat loop over the elements, which LLVM vectorizes (an
  explicit loop over fixed-size blocks, whose inner bounds kept LLVM from vectorizing, was
  2-4x slower).
* Reductions run in blocks whose size depends only on the shapes (``CHANNEL_BLOCK``
  channels, one channel, one plane) in a fixed order, with per-block results combined in a
  fixed order: results never depend on the thread count or the thread that runs them.
* Elementwise arithmetic runs in the data's dtype with ``fastmath=False`` (IEEE
  semantics: NaN and inf propagate as in NumPy). Reductions accumulate in float64; the
  reductions over one contiguous run (``_run_sums``, ``_run_dot``) are compiled with
  ``fastmath={"reassoc"}`` alone, which lets LLVM keep several SIMD partial sums
  (a fixed association for a given machine; no assumption about NaN or inf).
* The row layout ``(n, c)`` loops row by row and vectorizes across the channels of a
  block (the loop order that makes per-channel statistics fast; a column-wise loop is
  several times slower than NumPy).

"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit

CHANNEL_BLOCK = 64       # channels per block in the (n, c) row layout

_SERIAL = dict(parallel=False, fastmath=False, cache=True, nogil=True)
_SUM = dict(parallel=False, fastmath={"reassoc"}, cache=True, nogil=True, inline="never")


def set_threads(n: int) -> None:
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


def get_threads() -> int:
    return numba.get_num_threads()


# ----------------------------------------------------------------------------- reductions
@njit(**_SUM)
def _run_sums(x, start, length, shift):
    """``(sum(x - shift), sum((x - shift)^2))`` over ``x[start:start+length]`` in float64."""
    s1 = 0.0
    s2 = 0.0
    for k in range(start, start + length):
        d = np.float64(x[k]) - shift
        s1 += d
        s2 += d * d
    return s1, s2


@njit(**_SUM)
def _run_dot(dy, x, start, length, center):
    """``(sum(dy), sum(dy * (x - center)))`` over one contiguous run, in float64."""
    s1 = 0.0
    s2 = 0.0
    for k in range(start, start + length):
        g = np.float64(dy[k])
        s1 += g
        s2 += g * (np.float64(x[k]) - center)
    return s1, s2


@njit(**_SERIAL)
def _row_block_sums(a, a_shift, x, center, n, c, lo, w):
    """Float64 sums over the rows of channels ``lo .. lo+w`` of ``(n, c)`` data, row by row.

    ``s1[j] = sum_i (a[i, lo+j] - a_shift[j])`` and
    ``s2[j] = sum_i (a[i, lo+j] - a_shift[j]) (x[i, lo+j] - center[j])``: the forward's
    shifted sums (``a = x``, both shifts the first row) and the backward's ``sum dy`` and
    ``sum dy (x - mu)`` (``a = dy``, no shift, ``center = mu``).
    """
    s1 = np.zeros(w)
    s2 = np.zeros(w)
    for i in range(n):
        row = i * c + lo
        for j in range(w):
            d = np.float64(a[row + j]) - a_shift[j]
            s1[j] += d
            s2[j] += d * (np.float64(x[row + j]) - center[j])
    return s1, s2


# ----------------------------------------------------------------------------- batch norm
@njit(**_SERIAL)
def bn_forward_rows(x, n, c, gamma, beta, eps, y, mean, var, batch_stats):
    """BatchNorm over ``(n, c)`` rows: per-channel statistics, then ``y = (x - mu) a + beta``.

    ``a = gamma / sqrt(var + eps)``. With ``batch_stats`` the biased batch mean and
    variance (shifted sums: ``var = S2/m - (S1/m)^2`` with ``S = sum(x - x_0)``) are
    written to ``mean``/``var`` (float64); otherwise ``mean``/``var`` are read (the
    running statistics). Blocks of ``CHANNEL_BLOCK`` channels, each over all rows.
    """
    nblocks = (c + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
    for b in range(nblocks):
        lo = b * CHANNEL_BLOCK
        w = min(CHANNEL_BLOCK, c - lo)
        mu = np.empty(w, dtype=y.dtype)
        scale = np.empty(w, dtype=y.dtype)
        shift_out = np.empty(w, dtype=y.dtype)
        if batch_stats:
            shift = np.empty(w)
            for j in range(w):
                shift[j] = x[lo + j]
            s1, s2 = _row_block_sums(x, shift, x, shift, n, c, lo, w)
            for j in range(w):
                m1 = s1[j] / n
                v = s2[j] / n - m1 * m1
                mean[lo + j] = shift[j] + m1
                var[lo + j] = v if v > 0.0 else (0.0 if v == v else v)
        for j in range(w):
            mu[j] = mean[lo + j]
            scale[j] = gamma[lo + j] / math.sqrt(var[lo + j] + eps)
            shift_out[j] = beta[lo + j]
        for i in range(n):
            row = i * c + lo
            for j in range(w):
                y[row + j] = (x[row + j] - mu[j]) * scale[j] + shift_out[j]


@njit(**_SERIAL)
def bn_forward_planes(x, n, c, s, gamma, beta, eps, y, mean, var, batch_stats):
    """BatchNorm over ``(n, c, s)`` data (``s > 1``, or ``(1, C, N*S)`` channel-major): one channel per block."""
    for ch in range(c):
        if batch_stats:
            shift = np.float64(x[ch * s])
            s1 = 0.0
            s2 = 0.0
            for i in range(n):
                a1, a2 = _run_sums(x, (i * c + ch) * s, s, shift)
                s1 += a1
                s2 += a2
            m = n * s
            m1 = s1 / m
            v = s2 / m - m1 * m1
            mean[ch] = shift + m1
            var[ch] = v if v > 0.0 else (0.0 if v == v else v)
        tmp = np.empty(3, dtype=y.dtype)
        tmp[0] = mean[ch]
        tmp[1] = gamma[ch] / math.sqrt(var[ch] + eps)
        tmp[2] = beta[ch]
        mu, scale, shift_out = tmp[0], tmp[1], tmp[2]
        for i in range(n):
            base = (i * c + ch) * s
            for k in range(base, base + s):
                y[k] = (x[k] - mu) * scale + shift_out


@njit(**_SERIAL)
def bn_backward_rows(dy, x, n, c, gamma, mean, inv_std, dx, dgamma, dbeta, batch_stats):
    """The closed-form BatchNorm backward over ``(n, c)`` rows (see :mod:`trainlab.nn.batchnorm`).

    ``dbeta = sum dy``, ``dgamma = inv_std * sum dy (x - mu)`` (float64) and, with batch
    statistics, ``dx = gamma inv_std (dy - dbeta/m - (x - mu) inv_std^2 sum(dy (x - mu))/m)``;
    with running statistics ``dx = gamma inv_std dy``.
    """
    nblocks = (c + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
    for b in range(nblocks):
        lo = b * CHANNEL_BLOCK
        w = min(CHANNEL_BLOCK, c - lo)
        center = np.empty(w)
        for j in range(w):
            center[j] = mean[lo + j]
        s1, s2 = _row_block_sums(dy, np.zeros(w), x, center, n, c, lo, w)
        mu = np.empty(w, dtype=dx.dtype)
        k0 = np.empty(w, dtype=dx.dtype)
        k1 = np.empty(w, dtype=dx.dtype)
        scale = np.empty(w, dtype=dx.dtype)
        for j in range(w):
            inv = inv_std[lo + j]
            dbeta[lo + j] = s1[j]
            dgamma[lo + j] = s2[j] * inv
            mu[j] = center[j]
            k0[j] = s1[j] / n
            k1[j] = s2[j] * inv * inv / n
            scale[j] = gamma[lo + j] * inv
        if batch_stats:
            for i in range(n):
                row = i * c + lo
                for j in range(w):
                    dx[row + j] = (dy[row + j] - k0[j] - (x[row + j] - mu[j]) * k1[j]) * scale[j]
        else:
            for i in range(n):
                row = i * c + lo
                for j in range(w):
                    dx[row + j] = dy[row + j] * scale[j]


@njit(**_SERIAL)
def bn_backward_planes(dy, x, n, c, s, gamma, mean, inv_std, dx, dgamma, dbeta, batch_stats):
    """:func:`bn_backward_rows` for ``(n, c, s)`` data, one channel per block."""
    for ch in range(c):
        center = mean[ch]
        s1 = 0.0
        s2 = 0.0
        for i in range(n):
            a1, a2 = _run_dot(dy, x, (i * c + ch) * s, s, center)
            s1 += a1
            s2 += a2
        inv = inv_std[ch]
        m = n * s
        dbeta[ch] = s1
        dgamma[ch] = s2 * inv
        tmp = np.empty(4, dtype=dx.dtype)
        tmp[0] = center
        tmp[1] = s1 / m
        tmp[2] = s2 * inv * inv / m
        tmp[3] = gamma[ch] * inv
        mu, k0, k1, scale = tmp[0], tmp[1], tmp[2], tmp[3]
        for i in range(n):
            base = (i * c + ch) * s
            if batch_stats:
                for k in range(base, base + s):
                    dx[k] = (dy[k] - k0 - (x[k] - mu) * k1) * scale
            else:
                for k in range(base, base + s):
                    dx[k] = dy[k] * scale


# ----------------------------------------------------------------------------- activations
@njit(**_SERIAL)
def relu_forward(x, y, mask):
    """``y = max(x, 0)`` (NaN stays NaN) and ``mask = not (x <= 0)`` (NaN passes the gradient, as in PyTorch)."""
    size = x.size
    for k in range(size):
        v = x[k]
        keep = not (v <= 0)
        mask[k] = keep
        y[k] = v if keep else 0


@njit(**_SERIAL)
def masked_copy(dy, mask, dx):
    """``dx = dy`` where ``mask``, else 0 (the ReLU backward)."""
    size = dy.size
    for k in range(size):
        dx[k] = dy[k] if mask[k] else 0


@njit(**_SERIAL)
def leaky_relu_forward(x, slope, y, positive):
    """``y = x`` where ``x > 0``, else ``slope * x``; ``positive = x > 0``."""
    size = x.size
    for k in range(size):
        v = x[k]
        p = v > 0
        positive[k] = p
        y[k] = v if p else v * slope


@njit(**_SERIAL)
def leaky_relu_backward(dy, positive, slope, dx):
    size = dy.size
    for k in range(size):
        g = dy[k]
        dx[k] = g if positive[k] else g * slope


@njit(**_SERIAL)
def tanh_backward(dy, y, dx):
    """``dx = dy (1 - y^2)``."""
    size = dy.size
    for k in range(size):
        v = y[k]
        dx[k] = (1 - v * v) * dy[k]


@njit(**_SERIAL)
def sigmoid_forward(x, one, y):
    """``y = 1 / (1 + e)`` where ``x >= 0``, else ``e / (1 + e)``, with ``e = exp(-|x|)`` (never overflows).

    ``one`` is 1 in the data's dtype, so the arithmetic runs in that dtype as NumPy's does;
    NaN stays NaN, ``sigmoid(±inf) = 1, 0``.
    """
    size = x.size
    for k in range(size):
        v = x[k]
        e = math.exp(-abs(v))
        y[k] = one / (one + e) if v >= 0 else e / (one + e)


@njit(**_SERIAL)
def sigmoid_backward(dy, y, dx):
    """``dx = dy y (1 - y)``."""
    size = dy.size
    for k in range(size):
        v = y[k]
        dx[k] = ((1 - v) * v) * dy[k]


@njit(**_SERIAL)
def scale_by_mask(x, keep, p, scale, y, mask):
    """Inverted dropout: ``mask = (keep >= p) * scale``, ``y = x * mask``."""
    size = x.size
    for k in range(size):
        m = scale if keep[k] >= p else 0
        mask[k] = m
        y[k] = x[k] * m


@njit(**_SERIAL)
def multiply(a, b_, out):
    size = a.size
    for k in range(size):
        out[k] = a[k] * b_[k]


# ----------------------------------------------------------------------------- max pooling
@njit(**_SERIAL)
def maxpool_forward(x, planes, h, w, kh, kw, sh, sw, ph, pw, ho, wo, y, argmax, want_argmax):
    """Max over each window of each ``(h, w)`` plane; ``argmax`` gets the tap ``u*kw + v``.

    Padding positions never win (PyTorch's windows are clipped to the plane). The first
    maximum in row-major order wins a tie; a NaN wins, the last NaN if several.
    """
    for p in range(planes):
        xb = p * h * w
        yb = p * ho * wo
        for i in range(ho):
            r0 = i * sh - ph
            u0 = max(0, -r0)
            u1 = min(kh, h - r0)
            for j in range(wo):
                c0 = j * sw - pw
                v0 = max(0, -c0)
                v1 = min(kw, w - c0)
                best = x[xb + (r0 + u0) * w + c0 + v0]
                code = u0 * kw + v0
                for u in range(u0, u1):
                    row = xb + (r0 + u) * w + c0
                    for v in range(v0, v1):
                        val = x[row + v]
                        if val > best or val != val:
                            best = val
                            code = u * kw + v
                y[yb + i * wo + j] = best
                if want_argmax:
                    argmax[yb + i * wo + j] = code


@njit(**_SERIAL)
def maxpool2x2_forward(x, planes, h, w, ho, wo, y, argmax, want_argmax):
    """:func:`maxpool_forward` for 2 x 2 windows, stride 2, no padding (the common case)."""
    for p in range(planes):
        xb = p * h * w
        yb = p * ho * wo
        for i in range(ho):
            r = xb + 2 * i * w
            o = yb + i * wo
            for j in range(wo):
                a = x[r + 2 * j]
                b = x[r + 2 * j + 1]
                c = x[r + w + 2 * j]
                d = x[r + w + 2 * j + 1]
                best = a
                code = 0
                if b > best or b != b:
                    best = b
                    code = 1
                if c > best or c != c:
                    best = c
                    code = 2
                if d > best or d != d:
                    best = d
                    code = 3
                y[o + j] = best
                if want_argmax:
                    argmax[o + j] = code


@njit(**_SERIAL)
def maxpool_backward(dy, argmax, planes, h, w, kh, kw, sh, sw, ph, pw, ho, wo, dx):
    """Route each output gradient to its window's winning input (overlaps add, plane by plane)."""
    for p in range(planes):
        xb = p * h * w
        yb = p * ho * wo
        for k in range(xb, xb + h * w):
            dx[k] = 0
        for i in range(ho):
            for j in range(wo):
                code = np.int64(argmax[yb + i * wo + j])
                u = code // kw
                v = code - u * kw
                dx[xb + (i * sh - ph + u) * w + j * sw - pw + v] += dy[yb + i * wo + j]


# ----------------------------------------------------------------------------- convolution
@njit(**_SERIAL)
def im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, cols):
    """``cols[(c*kh + u)*kw + v, (n*Ho + i)*Wo + j] = x[n, c, i*sh + u - ph, j*sw + v - pw]`` (0 outside).

    ``x`` is a 4-D ``(N, C, H, W)`` array of any strides (C-ordered or channel-major);
    ``cols`` is the flat ``(C*kh*kw, N*Ho*Wo)`` matrix. One row of ``cols`` per block.
    """
    n, c, h, w = x.shape
    rows = c * kh * kw
    per = ho * wo
    for r in range(rows):
        ch = r // (kh * kw)
        u = (r // kw) % kh
        v = r % kw
        j0 = min(wo, max(0, (pw - v + sw - 1) // sw))           # first j with j*sw + v - pw >= 0
        j1 = max(j0, min(wo, (w - 1 + pw - v) // sw + 1))       # one past the last j with it < w
        for s_ in range(n):
            base = (r * n + s_) * per
            for i in range(ho):
                yy = i * sh + u - ph
                o = base + i * wo
                if yy < 0 or yy >= h:
                    for j in range(wo):
                        cols[o + j] = 0
                    continue
                for j in range(j0):
                    cols[o + j] = 0
                for j in range(j0, j1):
                    cols[o + j] = x[s_, ch, yy, j * sw + v - pw]
                for j in range(j1, wo):
                    cols[o + j] = 0


@njit(**_SERIAL)
def col2im(dcols, n_total, n0, count, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo, dx):
    """Add the taps of ``dcols`` (``(C*kh*kw, count*Ho*Wo)``, samples ``n0..``) into ``dx``.

    ``dx`` is the flat channel-major ``(C, N, H, W)`` input gradient; the planes of the
    ``count`` samples are zeroed first. One channel per block; taps in a fixed order.
    """
    per = ho * wo
    for ch in range(c):
        for s_ in range(count):
            dbase = (ch * n_total + n0 + s_) * h * w
            for k in range(dbase, dbase + h * w):
                dx[k] = 0
            for u in range(kh):
                for v in range(kw):
                    r = (ch * kh + u) * kw + v
                    src = (r * count + s_) * per
                    j0 = min(wo, max(0, (pw - v + sw - 1) // sw))
                    j1 = max(j0, min(wo, (w - 1 + pw - v) // sw + 1))
                    for i in range(ho):
                        yy = i * sh + u - ph
                        if yy < 0 or yy >= h:
                            continue
                        drow = dbase + yy * w + v - pw
                        srow = src + i * wo
                        for j in range(j0, j1):
                            dx[drow + j * sw] += dcols[srow + j]


@njit(**_SERIAL)
def add_bias_rows(out, bias, rows, length):
    """``out[f, :] += bias[f]`` over a flat ``(rows, length)`` array, one row per block."""
    for f in range(rows):
        b = bias[f]
        for k in range(f * length, (f + 1) * length):
            out[k] += b
