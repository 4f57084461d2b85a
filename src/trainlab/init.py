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

import difflib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "compute_fans", "calculate_gain", "variance_scaling", "small_random", "normal", "xavier",
    "xavier_uniform", "glorot", "glorot_uniform", "he", "he_uniform", "orthogonal", "zeros", "ones",
    "for_activation", "get", "names", "describe",
]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "uniform")
ACTIVATIONS = ("linear", "identity", "sigmoid", "tanh", "relu", "leaky_relu", "conv1d", "conv2d", "selu")


def _shape(shape: Any, where: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise TypeError(f"{where}: shape must be a tuple of ints, got {shape!r}") from exc
    if any(s < 0 for s in shape):
        raise ValueError(f"{where}: shape must have non-negative sizes, got {shape}")
    return shape


def _rng(rng: Any, where: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{where}: rng must be a numpy.random.Generator "
                        f"(e.g. np.random.default_rng(0)), got {type(rng).__name__}")
    return rng


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a weight of ``shape``.

    ``fan_in = prod(shape[1:])`` and ``fan_out = shape[0] * prod(shape[2:])``: a
    Linear weight ``(out, in)`` has fans ``(in, out)``; a Conv2d weight
    ``(out, in, kh, kw)`` has ``(in*kh*kw, out*kh*kw)`` (PyTorch's convention).

    Raises:
        ValueError: for shapes with fewer than 2 dimensions.
    """
    shape = _shape(shape, "compute_fans")
    if len(shape) < 2:
        raise ValueError(f"compute_fans: a weight needs at least 2 dimensions (out, in, ...), "
                         f"got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain that keeps activations' variance for ``nonlinearity`` (PyTorch's table).

    ==================  =====================
    nonlinearity        gain
    ==================  =====================
    linear, conv, sigm  1
    tanh                5/3
    relu                sqrt(2)
    leaky_relu          sqrt(2 / (1 + a^2)), a = ``param`` (default 0.01)
    selu                3/4
    ==================  =====================
    """
    name = _check_name(nonlinearity, ACTIVATIONS, "calculate_gain", "nonlinearity")
    if name in ("linear", "identity", "sigmoid", "conv1d", "conv2d"):
        return 1.0
    if name == "tanh":
        return 5.0 / 3.0
    if name == "relu":
        return math.sqrt(2.0)
    if name == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope ** 2))
    return 0.75  # selu


def _check_name(name: Any, valid: tuple[str, ...], where: str, arg: str) -> str:
    if not isinstance(name, str) or name not in valid:
        near = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"{where}: unknown {arg} {name!r}{hint}; valid: {', '.join(valid)}")
    return name


def _draw(shape: tuple[int, ...], std: float, distribution: str, rng: np.random.Generator,
          dtype: Any) -> np.ndarray:
    """N(0, std^2) or U(-sqrt(3) std, sqrt(3) std), drawn in float64 then cast."""
    if distribution == "normal":
        out = rng.standard_normal(shape)
        out *= std
    else:
        bound = math.sqrt(3.0) * std
        out = rng.uniform(-bound, bound, shape)
    return out.astype(dtype, copy=False)


def variance_scaling(shape: tuple[int, ...], *, rng: np.random.Generator, gain: float = 1.0,
                     mode: str = "fan_in", distribution: str = "normal",
                     dtype: Any = np.float32) -> np.ndarray:
    """The one core behind xavier and he: ``std = gain / sqrt(fan)``.

    Args:
        shape: weight shape ``(out, in, *kernel)``.
        rng: the generator to draw from.
        gain: multiplier on the standard deviation.
        mode: ``"fan_in"`` (default), ``"fan_out"`` or ``"fan_avg"`` ((in + out) / 2).
        distribution: ``"normal"`` (N(0, std^2)) or ``"uniform"`` (U(-a, a), a = sqrt(3) std).
        dtype: float32 (default) or float64.
    """
    shape = _shape(shape, "variance_scaling")
    _check_name(mode, MODES, "variance_scaling", "mode")
    _check_name(distribution, DISTRIBUTIONS, "variance_scaling", "distribution")
    fan_in, fan_out = compute_fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    if fan == 0:
        raise ValueError(f"variance_scaling: {mode} of shape {shape} is zero")
    return _draw(shape, gain / math.sqrt(fan), distribution, _rng(rng, "variance_scaling"), dtype)


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
    if scale < 0:
        raise ValueError(f"small_random: scale must be >= 0, got {scale}")
    return _draw(_shape(shape, "small_random"), float(scale), "normal", _rng(rng, "small_random"), dtype)


def normal(shape: tuple[int, ...], *, rng: np.random.Generator, std: float = 1.0,
           dtype: Any = np.float32) -> np.ndarray:
    """``W = randn(shape) * std``, std 1 by default (the "N(0, 1)" baseline that saturates tanh)."""
    if std < 0:
        raise ValueError(f"normal: std must be >= 0, got {std}")
    return _draw(_shape(shape, "normal"), float(std), "normal", _rng(rng, "normal"), dtype)


def xavier(shape: tuple[int, ...], *, rng: np.random.Generator, gain: float = 1.0,
           mode: str = "fan_in", distribution: str = "normal", dtype: Any = np.float32) -> np.ndarray:
    """Xavier: ``W = randn(shape) * gain * sqrt(1 / n_prev)`` (the seed's formula).

    Best for tanh; with ReLU the activations shrink by about 1/sqrt(2) a layer.
    ``mode="fan_avg"`` gives Glorot & Bengio's ``2 / (fan_in + fan_out)`` variance;
    ``distribution="uniform"`` draws the same variance from U(-a, a).
    """
    return variance_scaling(shape, rng=rng, gain=gain, mode=mode, distribution=distribution, dtype=dtype)


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
    if negative_slope < 0:
        raise ValueError(f"he: negative_slope must be >= 0, got {negative_slope}")
    gain = math.sqrt(2.0 / (1.0 + float(negative_slope) ** 2))
    return variance_scaling(shape, rng=rng, gain=gain, mode=mode, distribution=distribution, dtype=dtype)


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
    shape = _shape(shape, "orthogonal")
    if len(shape) < 2:
        raise ValueError(f"orthogonal: needs at least 2 dimensions, got shape {shape}")
    rows, cols = shape[0], math.prod(shape[1:])
    flat = _rng(rng, "orthogonal").standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(dtype, copy=False)


def zeros(shape: tuple[int, ...], *, rng: np.random.Generator | None = None,
          dtype: Any = np.float32) -> np.ndarray:
    """All zeros (``rng`` is accepted and ignored, so every initializer has one signature)."""
    return np.zeros(_shape(shape, "zeros"), dtype=dtype)


def ones(shape: tuple[int, ...], *, rng: np.random.Generator | None = None,
         dtype: Any = np.float32) -> np.ndarray:
    """All ones (``rng`` is accepted and ignored)."""
    return np.ones(_shape(shape, "ones"), dtype=dtype)


_REGISTRY: dict[str, Callable[..., np.ndarray]] = {
    "small_random": small_random,
    "normal": normal,
    "xavier": xavier,
    "xavier_uniform": xavier_uniform,
    "glorot": glorot,
    "glorot_uniform": glorot_uniform,
    "he": he,
    "he_uniform": he_uniform,
    "kaiming": he, "kaiming_normal": he, "kaiming_uniform": he_uniform,   # torch's names (a=0, fan_in)
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
