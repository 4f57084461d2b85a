"""Models built from a small spec: an MLP and a small CNN (used by the CLI and the lab)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from trainlab import nn
from trainlab.nn.activation import ACTIVATIONS
from trainlab.nn.activation import get as get_activation

__all__ = ["mlp", "cnn"]


def _check_common(where: str, activation: str, dropout: float, rng: Any) -> None:
    if activation not in ACTIVATIONS:
        get_activation(activation)  # raises the ValueError listing valid names
    if not (0.0 <= dropout < 1.0):
        raise ValueError(f"{where}: dropout must be in [0, 1), got {dropout}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{where}: rng must be a numpy.random.Generator (e.g. np.random.default_rng(0))")


def mlp(in_features: int, hidden: Sequence[int], classes: int, *, activation: str = "relu",
        batchnorm: bool = False, dropout: float = 0.0, init: str | Callable[..., np.ndarray] = "auto",
        rng: np.random.Generator, dtype: Any = np.float32) -> nn.Sequential:
    """A multilayer perceptron: ``[Linear -> (BatchNorm1d) -> activation -> (Dropout)] * len(hidden) -> Linear``.

    BatchNorm sits after each hidden Linear and before its activation (the seed's
    placement). With ``init="auto"`` each hidden layer gets the seed's recommendation for
    ``activation`` and the output layer gets xavier; any other name applies to every layer.

    Args:
        in_features: input size (e.g. 64 for 8x8 digits, 784 for MNIST).
        hidden: widths of the hidden layers, e.g. ``[128, 128]``.
        classes: number of outputs.
        activation: ``"relu"``, ``"leaky_relu"``, ``"tanh"`` or ``"sigmoid"``.
        batchnorm: insert BatchNorm1d before every hidden activation.
        dropout: drop probability after every hidden activation (0 disables).
        init: initializer name, callable, or ``"auto"``.
        rng: generator for the weights and the dropout masks.
        dtype: float32 (default) or float64.
    """
    _check_common("mlp", activation, dropout, rng)
    if any(int(h) <= 0 for h in hidden):
        raise ValueError(f"mlp: hidden sizes must be positive, got {list(hidden)}")
    layers: list[nn.Module] = []
    width = int(in_features)
    for h in hidden:
        layers.append(nn.Linear(width, int(h), bias=not batchnorm, init=init, rng=rng, dtype=dtype))
        if batchnorm:
            layers.append(nn.BatchNorm1d(int(h), dtype=dtype))
        layers.append(get_activation(activation))
        if dropout:
            layers.append(nn.Dropout(dropout, rng=rng))
        width = int(h)
    layers.append(nn.Linear(width, int(classes), init=init, rng=rng, dtype=dtype))
    return nn.Sequential(*layers)


def cnn(input_shape: Sequence[int], classes: int, *, channels: Sequence[int] = (32, 64),
        kernel_size: int = 3, activation: str = "relu", batchnorm: bool = True, dropout: float = 0.0,
        init: str | Callable[..., np.ndarray] = "auto", rng: np.random.Generator,
        dtype: Any = np.float32) -> nn.Sequential:
    """A small CNN: ``[Conv2d -> (BatchNorm2d) -> activation -> MaxPool2d(2)] * len(channels) -> Flatten -> Linear``.

    Convolutions use "same" padding (``kernel_size // 2``), so each block halves H and W
    (rounding down) through its pooling only.

    Args:
        input_shape: ``(C, H, W)`` of one sample, e.g. ``(1, 28, 28)``.
        classes: number of outputs.
        channels: output channels of each conv block.
        kernel_size: odd square kernel size.
        activation, batchnorm, dropout, init, rng, dtype: as in :func:`mlp` (dropout
            is applied before the final Linear).
    """
    _check_common("cnn", activation, dropout, rng)
    if len(input_shape) != 3:
        raise ValueError(f"cnn: input_shape must be (C, H, W), got {tuple(input_shape)}")
    if kernel_size % 2 != 1:
        raise ValueError(f"cnn: kernel_size must be odd, got {kernel_size}")
    c, h, w = (int(s) for s in input_shape)
    layers: list[nn.Module] = []
    for out_c in channels:
        if h < 2 or w < 2:
            raise ValueError(f"cnn: input {tuple(input_shape)} is too small for {len(channels)} pooling blocks")
        layers.append(nn.Conv2d(c, int(out_c), kernel_size, padding=kernel_size // 2, bias=not batchnorm,
                                init=init, rng=rng, dtype=dtype))
        if batchnorm:
            layers.append(nn.BatchNorm2d(int(out_c), dtype=dtype))
        layers.append(get_activation(activation))
        layers.append(nn.MaxPool2d(2))
        c, h, w = int(out_c), h // 2, w // 2
    layers.append(nn.Flatten())
    if dropout:
        layers.append(nn.Dropout(dropout, rng=rng))
    layers.append(nn.Linear(c * h * w, int(classes), init=init, rng=rng, dtype=dtype))
    return nn.Sequential(*layers)
