"""Linear (fully connected) layer, and the weight-initialization plumbing shared with Conv2d."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from trainlab import _validate
from trainlab import init as initializers
from trainlab.nn.module import Module, Parameter, check_float_dtype

__all__ = ["Linear", "InitializedLayer"]


class InitializedLayer(Module):
    """Base for layers whose ``weight`` is drawn by an initializer (Linear, Conv2d).

    ``init`` is a registry name (``"he"``, ``"xavier"``, ``"small_random"``, ...),
    a callable ``f(shape, *, rng, dtype)``, or ``"auto"``. With ``"auto"`` the
    weight is drawn as xavier at construction and, inside a
    :class:`~trainlab.nn.Sequential`, redrawn from the *same* generator state with
    the seed's recommendation for the activation that follows (he for ReLU and
    LeakyReLU, xavier for tanh and sigmoid). The result is bit-identical to
    passing that initializer by name. The bias starts at zero.
    """

    init_is_auto: bool = False

    def _init_weight(self, shape: tuple[int, ...], init: str | Callable[..., np.ndarray],
                     rng: np.random.Generator | None, dtype: np.dtype) -> None:
        name = type(self).__name__
        self.init_is_auto = isinstance(init, str) and init == "auto"
        fn = initializers.get("xavier" if self.init_is_auto else init)
        if rng is not None or fn not in (initializers.zeros, initializers.ones):
            _validate.generator(name, "rng", rng, purpose="to draw the weights")
        self._rng_state = None if rng is None else rng.bit_generator.state
        self._rng_type = None if rng is None else type(rng.bit_generator)
        self.weight = Parameter(fn(shape, rng=rng, dtype=dtype),
                                init=initializers.describe("xavier" if self.init_is_auto else init)
                                + (" [auto]" if self.init_is_auto else ""))

    def resolve_auto_init(self, activation: Module | None) -> None:
        """Redraw an ``init="auto"`` weight for ``activation`` (None: no activation follows)."""
        if not self.init_is_auto or self._rng_state is None:
            return
        act_name = getattr(activation, "activation_name", "linear") if activation is not None else "linear"
        kwargs: dict[str, Any] = {}
        chosen = initializers.for_activation(act_name)
        if act_name == "leaky_relu":
            kwargs["negative_slope"] = float(activation.negative_slope)
        replay = np.random.Generator(self._rng_type())
        replay.bit_generator.state = self._rng_state
        shape, dtype = self.weight.data.shape, self.weight.data.dtype
        self.weight.data[...] = initializers.get(chosen)(shape, rng=replay, dtype=dtype, **kwargs)
        self.weight.init = initializers.describe(chosen, **kwargs) + f" [auto: {act_name}]"


class _LinearCache(NamedTuple):
    x2d: np.ndarray          # the input viewed as (N, in_features)
    input_shape: tuple[int, ...]


class Linear(InitializedLayer):
    """``y = x W^T + b``, weight ``(out_features, in_features)`` as in ``torch.nn.Linear``.

    Args:
        in_features: size of the last input dimension.
        out_features: size of the last output dimension.
        bias: add a learnable bias ``(out_features,)`` (starts at 0).
        init: initializer for the weight (name, callable or ``"auto"``); see
            :class:`InitializedLayer`.
        rng: the ``numpy.random.Generator`` the weight is drawn from.
        dtype: float32 (default) or float64.

    Shapes:
        x: ``(N, *, in_features)`` -> y: ``(N, *, out_features)``; x float32 or float64
        (float16 is promoted, integer and bool inputs are refused: the rule of :mod:`trainlab.nn`).

    Backward:
        ``dx = dy W``, ``dW += dy^T x``, ``db += sum_N dy``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 init: str | Callable[..., np.ndarray] = "auto",
                 rng: np.random.Generator | None = None, dtype: Any = np.float32) -> None:
        super().__init__()
        self.in_features = _validate.count("Linear", "in_features", in_features)
        self.out_features = _validate.count("Linear", "out_features", out_features)
        bias = _validate.flag("Linear", "bias", bias)
        dtype = check_float_dtype(dtype, "Linear")
        self._init_weight((self.out_features, self.in_features), init, rng, dtype)
        self.bias = Parameter(np.zeros(self.out_features, dtype=dtype), init="zeros") if bias else None
        self._cache: _LinearCache | None = None

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}" + ("" if self.bias is not None else ", bias=False")

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = _validate.layer_input(x, "Linear")
        if x.ndim < 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): expected input of shape "
                             f"(N, ..., {self.in_features}), got {x.shape}")
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x)
        x2d = x.reshape(-1, self.in_features)
        weight = self.weight.data
        out = np.matmul(x2d, weight.T)                  # one GEMM (W^T is a free transposed view)
        if self.bias is not None:
            np.add(out, self.bias.data, out=out)        # in place, no temporary
        self._cache = _LinearCache(x2d, x.shape)
        return out.reshape(*x.shape[:-1], self.out_features)

    #: ``backward(dout, input_grad=False)`` skips dx (used by Sequential for data inputs)
    can_skip_input_grad = True

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """``dW += dy^T x``, ``db += 1^T dy`` and (unless ``input_grad=False``) ``dx = dy W``."""
        if self._cache is None:
            raise RuntimeError("Linear.backward called before forward")
        x2d, input_shape = self._cache
        d2d = _validate.upstream(dout, (*input_shape[:-1], self.out_features), "Linear").reshape(-1, self.out_features)
        self.weight.matmul_into_grad(d2d.T, x2d)
        if self.bias is not None:
            self.bias.sum_into_grad(d2d, axis=0)
        if not input_grad:
            return None
        return np.matmul(d2d, self.weight.data).reshape(input_shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*tuple(input_shape)[:-1], self.out_features)

    @property
    def fan_in(self) -> int:
        return math.prod(self.weight.data.shape[1:])
