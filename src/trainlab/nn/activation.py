"""Elementwise activations: ReLU, LeakyReLU, Tanh, Sigmoid.

Each caches the one array its backward needs (the output for Tanh and Sigmoid; the
boolean mask ``[y != 0]`` for ReLU and ``[x > 0]`` for LeakyReLU) and computes ``dx``
with in-place operations on one new array.

Inputs follow :mod:`trainlab.nn`'s dtype rule: float32 and float64 are computed in their
own precision, float16 in float32, and integer or bool arrays are refused with a
``TypeError`` (``Sigmoid`` of an int64 array would otherwise round to 0 or 1). NaN
propagates as in PyTorch.
"""

from __future__ import annotations

import numpy as np

from trainlab import _validate, kernels
from trainlab.nn.module import Module

__all__ = ["Activation", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "ACTIVATIONS", "get"]


class Activation(Module):
    """Base of the elementwise activations; ``activation_name`` keys the init recommendation."""

    is_activation = True
    activation_name = "linear"

    def __init__(self) -> None:
        super().__init__()
        self._out: np.ndarray | None = None

    def _saved(self, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cached array and ``dout`` (checked to have its shape)."""
        if self._out is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._out, _validate.upstream(dout, self._out.shape, type(self).__name__)


_ZEROS: dict[np.dtype, np.ndarray] = {}
_ROW = 16384     # rows of 2048-4096 values run ~40% slower than 8192+ (measured)


def _memory_order(x: np.ndarray) -> np.ndarray | None:
    """The 1-D view of ``x``'s memory when its elements fill one contiguous block, else None.

    True for C-contiguous arrays and for any axis permutation of one (such as the
    channel-major arrays Conv2d returns); ``np.empty_like(x)`` has the same layout.
    """
    if x.flags.c_contiguous:
        return x.reshape(-1)
    order = sorted(range(x.ndim), key=lambda axis: -x.strides[axis])
    permuted = x.transpose(order)
    return permuted.reshape(-1) if permuted.flags.c_contiguous else None


def _relu(x: np.ndarray) -> np.ndarray:
    """``np.maximum(x, 0)`` into a new array of the same memory layout, about 2x faster for floats.

    NumPy's SIMD loop for ``maximum`` runs when both operands advance
    (``maximum(x, 0)`` with a scalar does not vectorize), so the memory of ``x``
    is processed as rows of ``_ROW`` values against one row of zeros.
    """
    x = np.asarray(x)
    flat_x = _memory_order(x) if x.dtype in (np.float32, np.float64) and x.size >= 2 * _ROW else None
    if flat_x is None:
        return np.maximum(x, x.dtype.type(0) if np.issubdtype(x.dtype, np.number) else 0)
    zeros = _ZEROS.get(x.dtype)
    if zeros is None:
        zeros = _ZEROS[x.dtype] = np.zeros(_ROW, dtype=x.dtype)
        zeros.flags.writeable = False
    out = np.empty_like(x)
    flat_out = _memory_order(out)
    main = flat_x.size - flat_x.size % _ROW
    np.maximum(flat_x[:main].reshape(-1, _ROW), zeros, out=flat_out[:main].reshape(-1, _ROW))
    if main < flat_x.size:
        np.maximum(flat_x[main:], zeros[:flat_x.size - main], out=flat_out[main:])
    return out


def _compiled_operands(*arrays: np.ndarray) -> list[np.ndarray] | None:
    """Flat memory views of arrays of one shape and memory order, for a compiled kernel; else None.

    None (use the NumPy path) when the compiled kernels are off, the first array is not
    float32/float64, or the arrays' elements are not laid out alike in one block each.
    """
    if not kernels.active() or arrays[0].dtype not in (np.float32, np.float64):
        return None
    first = arrays[0]
    order = _axis_order(first)
    flats = []
    for a in arrays:
        if a.shape != first.shape or _axis_order(a) != order:
            return None
        flat = _memory_order(a)
        if flat is None:
            return None
        flats.append(flat)
    return flats


def _axis_order(a: np.ndarray) -> tuple[int, ...]:
    return tuple(sorted(range(a.ndim), key=lambda axis: -a.strides[axis]))


def _compiled_backward(kernel: str, dout: np.ndarray, saved: np.ndarray) -> np.ndarray | None:
    """``dx`` from the compiled kernel ``kernel(dout, saved, dx)`` in one pass, or None (the NumPy path)."""
    if saved.dtype != np.bool_ and dout.dtype != saved.dtype:
        return None
    flats = _compiled_operands(dout, saved)
    if flats is None:
        return None
    dx, flat_dx = _like(dout)
    getattr(kernels.jit(), kernel)(*flats, flat_dx)
    return dx


def _like(x: np.ndarray, dtype: np.dtype | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A new array with the memory layout of ``x`` and its flat view."""
    out = np.empty_like(x, dtype=dtype)
    return out, _memory_order(out)


class ReLU(Activation):
    """``y = max(0, x)``; ``dx = dy * [not y <= 0]``, as PyTorch's ``threshold_backward``.

    The subgradient at 0 is 0; at a NaN input ``y`` is NaN and the gradient passes
    through (``NaN <= 0`` is false), as in PyTorch.
    """

    activation_name = "relu"

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._out = None        # release the previous step's mask before allocating
        x = _validate.layer_input(x, "ReLU")
        flats = _compiled_operands(x)
        if flats is not None:   # one fused pass writes the output and the mask [not x <= 0]
            out, flat_out = _like(x)
            mask, flat_mask = _like(x, np.bool_)
            kernels.jit().relu_forward(flats[0], flat_out, flat_mask)
            self._out = mask
            return out
        out = _relu(x)
        # Backward needs only the mask: a bool array (a quarter of float32's size) lets the
        # output itself be freed as soon as the next layer is done with it. y is >= 0 or NaN,
        # so PyTorch's [not y <= 0] is [y != 0], one comparison.
        self._out = np.not_equal(out, 0)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        mask, dout = self._saved(dout)
        dx = _compiled_backward("masked_copy", dout, mask)
        return np.multiply(dout, mask) if dx is None else dx


class LeakyReLU(Activation):
    """``y = x`` for ``x > 0``, ``a x`` otherwise (``a = negative_slope``, default 0.01)."""

    activation_name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = _validate.real("LeakyReLU", "negative_slope", negative_slope, low=0)
        self._positive: np.ndarray | None = None

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _validate.layer_input(x, "LeakyReLU")
        flats = _compiled_operands(x)
        if flats is not None:   # one fused pass writes the output and the mask
            out, flat_out = _like(x)
            self._positive, flat_positive = _like(x, np.bool_)
            kernels.jit().leaky_relu_forward(flats[0], x.dtype.type(self.negative_slope), flat_out, flat_positive)
            self._out = out
            return out
        self._positive = x > 0
        self._out = np.where(self._positive, x, x * x.dtype.type(self.negative_slope))
        return self._out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        _, dout = self._saved(dout)
        slope = dout.dtype.type(self.negative_slope)
        flats = _compiled_operands(dout, self._positive)
        if flats is not None:
            dx, flat_dx = _like(dout)
            kernels.jit().leaky_relu_backward(flats[0], flats[1], slope, flat_dx)
            return dx
        return np.where(self._positive, dout, dout * slope)


class Tanh(Activation):
    """``y = tanh(x)``; ``dx = dy * (1 - y^2)``."""

    activation_name = "tanh"

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._out = np.tanh(_validate.layer_input(x, "Tanh"))
        return self._out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        out, dout = self._saved(dout)
        dx = _compiled_backward("tanh_backward", dout, out)     # one pass instead of three
        if dx is not None:
            return dx
        dx = np.square(out)
        np.subtract(1, dx, out=dx)
        dx *= dout
        return dx


class Sigmoid(Activation):
    """``y = 1 / (1 + exp(-x))`` computed without overflow; ``dx = dy * y (1 - y)``."""

    activation_name = "sigmoid"

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _validate.layer_input(x, "Sigmoid")
        flats = _compiled_operands(x)
        if flats is not None:   # one fused pass (the same formula), keeping x's memory layout
            out, flat_out = _like(x)
            kernels.jit().sigmoid_forward(flats[0], x.dtype.type(1), flat_out)
            self._out = out
            return out
        # exp(-|x|) never overflows; fold the sign back in
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)
        self._out = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        out, dout = self._saved(dout)
        dx = _compiled_backward("sigmoid_backward", dout, out)     # one pass instead of three
        if dx is not None:
            return dx
        dx = np.subtract(1, out)
        dx *= out
        dx *= dout
        return dx


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid}


def get(name: str, **kwargs) -> Activation:
    """Build an activation by name (``"relu"``, ``"leaky_relu"``, ``"tanh"``, ``"sigmoid"``).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if not isinstance(name, str) or name not in ACTIVATIONS:
        _validate.choice("nn.activation.get", "activation", name, ACTIVATIONS)
    return ACTIVATIONS[name](**kwargs)
