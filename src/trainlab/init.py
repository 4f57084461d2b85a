"""Weight initializers: small random numbers, Xavier and He, as special cases of one core.

Every initializer is a function of a shape, ``f(shape, *, rng, dtype=np.float32, ...)``,
that returns a new array. All of them but :func:`zeros`, :func:`ones` draw from an
explicit ``numpy.random.Generator``; nothing touches the global ``np.random`` state.

The seed's three rules (``W = randn(shape) * s``):

=============  ==========================  ==============================
name           s                           suits
=============  ==========================  ==============================
small_random   0.01                        small/shallow nets only
xavier         sqrt(1 / n_prev)            tanh, sigmoid, linear
he             sqrt(2 / n_prev)            ReLU (LeakyReLU: sqrt(2/(1+a^2)/n_prev))
=============  ==========================  ==============================

``n_prev`` is the fan-in, ``prod(shape[1:])``: the input features of a Linear
weight ``(out, in)`` and ``in * kh * kw`` for a Conv2d weight ``(out, in, kh, kw)``.

Both Xavier and He are *variance scaling*: ``std = gain / sqrt(fan)`` with
``fan`` chosen by ``mode`` (``"fan_in"``, ``"fan_out"`` or ``"fan_avg"`` =
(fan_in + fan_out) / 2), drawn either from a normal distribution or from
U(-a, a) with ``a = sqrt(3) * std`` (the same variance).

Conventions:
    * ``xavier`` defaults to the seed's fan-in form (LeCun et al. 1998, as used
      in CS231n); ``mode="fan_avg"`` is Glorot & Bengio's 2 / (fan_in + fan_out).
      The gain defaults to 1, not PyTorch's ``calculate_gain("tanh") = 5/3``.
    * ``he`` is He et al.'s fan-in form, ``torch.nn.init.kaiming_normal_``'s default.

References:
    Glorot & Bengio, "Understanding the difficulty of training deep feedforward
    neural networks", AISTATS 2010. https://proceedings.mlr.press/v9/glorot10a.html
    He et al., "Delving Deep into Rectifiers", ICCV 2015. https://arxiv.org/abs/1502.01852
    Saxe et al., "Exact solutions to the nonlinear dynamics of learning in deep
    linear neural networks", ICLR 2014. https://arxiv.org/abs/1312.6120
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from trainlab import _validate

__all__ = [
    "compute_fans", "calculate_gain", "variance_scaling", "small_random", "normal", "xavier",
    "xavier_uniform", "glorot", "glorot_uniform", "he", "he_uniform", "orthogonal", "zeros", "ones",
    "for_activation", "get", "names", "describe",
]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "uniform")
ACTIVATIONS = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")
_UNIT_GAIN = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")


def _shape(shape: Any, where: str) -> tuple[int, ...]:
    return _validate.shape(where, "shape", shape)


def _rng(rng: Any, where: str) -> np.random.Generator:
    return _validate.generator(where, "rng", rng)


def _dtype(dtype: Any, where: str) -> np.dtype:
    """A real floating dtype (float16, float32 or float64) for the returned array."""
    return _validate.float_dtype(where, "dtype", dtype, allowed=_validate.INIT_DTYPES)


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a weight of ``shape``.

    ``fan_in = prod(shape[1:])`` and ``fan_out = shape[0] * prod(shape[2:])``: a
    Linear weight ``(out, in)`` has fans ``(in, out)``; a Conv2d weight
    ``(out, in, kh, kw)`` has ``(in*kh*kw, out*kh*kw)`` (PyTorch's convention).

    Raises:
        TypeError: a shape that is not a sequence of ints.
        ValueError: for shapes with fewer than 2 dimensions.
    """
    shape = _shape(shape, "compute_fans")
    if len(shape) < 2:
        raise _validate.argument_error(ValueError, "compute_fans", "shape", f"a weight needs at least 2 "
                                       f"dimensions (out, in, ...), got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain that keeps activations' variance for ``nonlinearity`` (``torch.nn.init.calculate_gain``).

    ==========================================  =====================
    nonlinearity                                gain
    ==========================================  =====================
    linear, identity, conv*, conv_transpose*,   1
    sigmoid
    tanh                                        5/3
    relu                                        sqrt(2)
    leaky_relu                                  sqrt(2 / (1 + a^2)), a = ``param`` (default 0.01)
    selu                                        3/4
    ==========================================  =====================

    As in PyTorch, ``param`` is read only for ``leaky_relu``, where it must be a number
    (not a bool, list or dict); negative slopes are allowed (the formula holds for them).
    Unlike PyTorch, a NaN or infinite slope is refused rather than turned into a NaN gain.

    Raises:
        ValueError: an unknown ``nonlinearity`` (the valid ones are listed), or a
            ``leaky_relu`` slope that is not a finite number (as PyTorch, a ValueError
            for a bool, list or dict too).
    """
    name = _check_name(nonlinearity, ACTIVATIONS, "calculate_gain", "nonlinearity")
    if name in _UNIT_GAIN:
        return 1.0
    if name == "tanh":
        return 5.0 / 3.0
    if name == "relu":
        return math.sqrt(2.0)
    if name == "leaky_relu":
        if param is None:
            slope = 0.01
        else:
            try:
                slope = _validate.real("calculate_gain", "param", param)
            except TypeError:
                raise _validate.argument_error(ValueError, "calculate_gain", "param",
                                               f"negative_slope {param!r} is not a valid number") from None
        return math.sqrt(2.0 / (1.0 + slope ** 2))
    return 0.75  # selu


def _check_name(name: Any, valid: tuple[str, ...], where: str, arg: str) -> str:
    """``name`` if it is one of ``valid`` (ValueError listing them and the nearest, otherwise)."""
    if not isinstance(name, str):
        raise _validate.argument_error(ValueError, where, arg, f"unknown {arg} {name!r} (not a string); "
                                       f"valid: {', '.join(valid)}")
    return _validate.choice(where, arg, name, valid)


def _scale(where: str, name: str, value: Any) -> float:
    """A standard deviation or scale: a finite real number ``>= 0``."""
    return _validate.real(where, name, value, low=0)


#: values drawn per float64 block when the result has another dtype (see :func:`_draw`)
_DRAW_BLOCK = 1 << 16


def _draw_float64(size: int, std: float, distribution: str, rng: np.random.Generator) -> np.ndarray:
    if distribution == "normal":
        out = rng.standard_normal(size)
        out *= std
        return out
    bound = math.sqrt(3.0) * std
    return rng.uniform(-bound, bound, size)


def _draw(shape: tuple[int, ...], std: float, distribution: str, rng: np.random.Generator,
          dtype: Any) -> np.ndarray:
    """N(0, std^2) or U(-sqrt(3) std, sqrt(3) std), drawn in float64 then cast to ``dtype`` (checked).

    For another dtype the float64 values are drawn ``_DRAW_BLOCK`` at a time and cast into the
    result block by block: the generator yields the same stream whatever the block sizes, so the
    values are those of one whole float64 draw, without a float64 copy of the whole tensor.
    """
    size = math.prod(shape)
    if np.dtype(dtype) == np.float64 or size <= _DRAW_BLOCK:
        return _draw_float64(size, std, distribution, rng).reshape(shape).astype(dtype, copy=False)
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    for start in range(0, size, _DRAW_BLOCK):
        stop = min(size, start + _DRAW_BLOCK)
        flat[start:stop] = _draw_float64(stop - start, std, distribution, rng)
    return out


def variance_scaling(shape: tuple[int, ...], *, rng: np.random.Generator, gain: float = 1.0,
                     mode: str = "fan_in", distribution: str = "normal",
                     dtype: Any = np.float32) -> np.ndarray:
    """The one core behind xavier and he: ``std = gain / sqrt(fan)``.

    Args:
        shape: weight shape ``(out, in, *kernel)``.
        rng: the generator to draw from.
        gain: multiplier on the standard deviation, a finite number.
        mode: ``"fan_in"`` (default), ``"fan_out"`` or ``"fan_avg"`` ((in + out) / 2).
        distribution: ``"normal"`` (N(0, std^2)) or ``"uniform"`` (U(-a, a), a = sqrt(3) std).
        dtype: float32 (default), float64 or float16.

    Raises:
        TypeError: a shape that is not a sequence of ints, a non-numeric gain, a dtype
            that is not a real floating type, an ``rng`` that is not a Generator.
        ValueError: negative sizes, fewer than 2 dimensions, a zero fan, a NaN or
            infinite gain, an unknown mode or distribution.
    """
    return _variance_scaling("variance_scaling", shape, rng, gain, mode, distribution, dtype)


def _variance_scaling(where: str, shape: Any, rng: Any, gain: Any, mode: Any, distribution: Any,
                      dtype: Any) -> np.ndarray:
    """:func:`variance_scaling`, its errors naming ``where`` (the function the user called)."""
    shape = _shape(shape, where)
    _check_name(mode, MODES, where, "mode")
    _check_name(distribution, DISTRIBUTIONS, where, "distribution")
    gain = _validate.real(where, "gain", gain)
    dtype = _dtype(dtype, where)
    rng = _rng(rng, where)
    fan_in, fan_out = compute_fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    if fan == 0:
        raise _validate.argument_error(ValueError, where, "shape", f"{mode} of shape {shape} is zero")
    return _draw(shape, gain / math.sqrt(fan), distribution, rng, dtype)


def target_std(name: str, shape: tuple[int, ...], **kwargs: Any) -> float:
    """The standard deviation that initializer ``name`` aims for on ``shape`` (used by tests/lab)."""
    fn = get(name)
    if fn is small_random:
        return float(kwargs.get("scale", 0.01))
    if fn is normal:
        return float(kwargs.get("std", 1.0))
    fan_in, fan_out = compute_fans(shape)
    mode = kwargs.get("mode", "fan_in" if fn not in (glorot, glorot_uniform) else "fan_avg")
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    if fn in (he, he_uniform):
        gain = math.sqrt(2.0 / (1.0 + kwargs.get("negative_slope", 0.0) ** 2))
    else:
        gain = kwargs.get("gain", 1.0)
    return gain / math.sqrt(fan)


def small_random(shape: tuple[int, ...], *, rng: np.random.Generator, scale: float = 0.01,
                 dtype: Any = np.float32) -> np.ndarray:
    """The seed's "small random numbers": ``W = randn(shape) * scale`` (scale 0.01).

    Fine for small networks; through 10 layers the activations and gradients shrink
    geometrically (vanishing gradients). See :mod:`trainlab.experiments`.
    """
    where = "small_random"
    shape, scale, dtype = _shape(shape, where), _scale(where, "scale", scale), _dtype(dtype, where)
    return _draw(shape, scale, "normal", _rng(rng, where), dtype)


def normal(shape: tuple[int, ...], *, rng: np.random.Generator, std: float = 1.0,
           dtype: Any = np.float32) -> np.ndarray:
    """``W = randn(shape) * std``, std 1 by default (the "N(0, 1)" baseline that saturates tanh)."""
    shape, std, dtype = _shape(shape, "normal"), _scale("normal", "std", std), _dtype(dtype, "normal")
    return _draw(shape, std, "normal", _rng(rng, "normal"), dtype)


def xavier(shape: tuple[int, ...], *, rng: np.random.Generator, gain: float = 1.0,
           mode: str = "fan_in", distribution: str = "normal", dtype: Any = np.float32) -> np.ndarray:
    """Xavier: ``W = randn(shape) * gain * sqrt(1 / n_prev)`` (the seed's formula).

    Best for tanh; with ReLU the activations shrink by about 1/sqrt(2) a layer.
    ``mode="fan_avg"`` gives Glorot & Bengio's ``2 / (fan_in + fan_out)`` variance;
    ``distribution="uniform"`` draws the same variance from U(-a, a).
    """
    return _variance_scaling("xavier", shape, rng, gain, mode, distribution, dtype)


def xavier_uniform(shape: tuple[int, ...], *, rng: np.random.Generator, gain: float = 1.0,
                   mode: str = "fan_in", dtype: Any = np.float32) -> np.ndarray:
    """:func:`xavier` with ``distribution="uniform"``."""
    return xavier(shape, rng=rng, gain=gain, mode=mode, distribution="uniform", dtype=dtype)


def glorot(shape: tuple[int, ...], *, rng: np.random.Generator, gain: float = 1.0,
           distribution: str = "normal", dtype: Any = np.float32) -> np.ndarray:
    """Glorot & Bengio (2010): variance ``gain^2 * 2 / (fan_in + fan_out)``."""
    return xavier(shape, rng=rng, gain=gain, mode="fan_avg", distribution=distribution, dtype=dtype)


def glorot_uniform(shape: tuple[int, ...], *, rng: np.random.Generator, gain: float = 1.0,
                   dtype: Any = np.float32) -> np.ndarray:
    """Glorot & Bengio's uniform form, ``torch.nn.init.xavier_uniform_``'s default."""
    return glorot(shape, rng=rng, gain=gain, distribution="uniform", dtype=dtype)


def he(shape: tuple[int, ...], *, rng: np.random.Generator, mode: str = "fan_in",
       distribution: str = "normal", negative_slope: float = 0.0, dtype: Any = np.float32) -> np.ndarray:
    """He: ``W = randn(shape) * sqrt(2 / n_prev)`` (the seed's formula), best for ReLU.

    For LeakyReLU with slope ``a`` the gain is ``sqrt(2 / (1 + a^2))``.
    """
    slope = _validate.real("he", "negative_slope", negative_slope, low=0)
    gain = math.sqrt(2.0 / (1.0 + slope ** 2))
    return _variance_scaling("he", shape, rng, gain, mode, distribution, dtype)


def he_uniform(shape: tuple[int, ...], *, rng: np.random.Generator, mode: str = "fan_in",
               negative_slope: float = 0.0, dtype: Any = np.float32) -> np.ndarray:
    """:func:`he` with ``distribution="uniform"``."""
    return he(shape, rng=rng, mode=mode, distribution="uniform", negative_slope=negative_slope, dtype=dtype)


def orthogonal(shape: tuple[int, ...], *, rng: np.random.Generator, gain: float = 1.0,
               dtype: Any = np.float32) -> np.ndarray:
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014).

    The weight is viewed as ``(shape[0], prod(shape[1:]))``; its rows (or columns,
    whichever are fewer) are orthonormal. Drawn as the Q of a QR decomposition of a
    Gaussian matrix, with signs fixed by ``diag(R)`` so that Q is Haar-distributed.
    """
    where = "orthogonal"
    shape, gain, dtype, rng = _shape(shape, where), _validate.real(where, "gain", gain), _dtype(dtype, where), \
        _rng(rng, where)
    if len(shape) < 2:
        raise _validate.argument_error(ValueError, where, "shape", f"needs at least 2 dimensions, got shape {shape}")
    rows, cols = shape[0], math.prod(shape[1:])
    if rows * cols == 0:
        return np.zeros(shape, dtype=dtype)       # nothing to draw (PyTorch: a no-op on an empty tensor)
    flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(dtype, copy=False)


def zeros(shape: tuple[int, ...], *, rng: np.random.Generator | None = None,
          dtype: Any = np.float32) -> np.ndarray:
    """All zeros (``rng`` is accepted and ignored, so every initializer has one signature)."""
    return np.zeros(_shape(shape, "zeros"), dtype=_dtype(dtype, "zeros"))


def ones(shape: tuple[int, ...], *, rng: np.random.Generator | None = None,
         dtype: Any = np.float32) -> np.ndarray:
    """All ones (``rng`` is accepted and ignored)."""
    return np.ones(_shape(shape, "ones"), dtype=_dtype(dtype, "ones"))


_REGISTRY: dict[str, Callable[..., np.ndarray]] = {
    "small_random": small_random,
    "normal": normal,
    "xavier": xavier,
    "xavier_uniform": xavier_uniform,
    "glorot": glorot,
    "glorot_uniform": glorot_uniform,
    "he": he,
    "he_uniform": he_uniform,
    "orthogonal": orthogonal,
    "zeros": zeros,
    "ones": ones,
}

_RECOMMENDED = {"linear": "xavier", "identity": "xavier", "tanh": "xavier", "sigmoid": "xavier",
                "relu": "he", "leaky_relu": "he"}


def names() -> list[str]:
    """The names :func:`get` accepts."""
    return list(_REGISTRY)


def get(identifier: str | Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Resolve an initializer by name (``"he"``, ``"xavier"``, ...); callables pass through.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if callable(identifier):
        return identifier
    _check_name(identifier, tuple(_REGISTRY), "init.get", "initializer")
    return _REGISTRY[identifier]


def for_activation(name: str) -> str:
    """The seed's recommended initializer name for an activation.

    tanh, sigmoid, linear -> ``"xavier"``; relu, leaky_relu -> ``"he"``.

    Raises:
        ValueError: for an unknown activation name, listing the valid ones.
    """
    return _RECOMMENDED[_check_name(name, tuple(_RECOMMENDED), "init.for_activation", "activation")]


def describe(identifier: str | Callable[..., np.ndarray], **kwargs: Any) -> str:
    """A short label such as ``"he(fan_in, normal)"`` for summaries and logs."""
    if callable(identifier) and not isinstance(identifier, str):
        name = next((k for k, v in _REGISTRY.items() if v is identifier),
                    getattr(identifier, "__name__", type(identifier).__name__))
    else:
        name = identifier
    if name in ("xavier", "he", "glorot"):
        mode = kwargs.get("mode", "fan_avg" if name == "glorot" else "fan_in")
        dist = kwargs.get("distribution", "normal")
        extra = "".join(f", {k}={v}" for k, v in kwargs.items()
                        if k not in ("mode", "distribution") and v not in (0.0, 1.0))
        return f"{name}({mode}, {dist}{extra})"
    if kwargs:
        return f"{name}(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
    return str(name)
