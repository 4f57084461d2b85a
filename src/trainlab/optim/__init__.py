"""Optimizers (update rules) and learning-rate schedules.

The seed's six rules, each one kernel in :mod:`trainlab.optim.functional`:

==============  =====================================  ==========================================
name            class                                  the seed's exact formula
==============  =====================================  ==========================================
``sgd``         ``SGD(params, lr)``                    as is
``momentum``    ``Momentum(params, lr)``               ``momentum_form="velocity"`` (``v ← μv − αg``)
``nesterov``    ``Nesterov(params, lr)``               ``momentum_form="velocity"``
``adagrad``     ``Adagrad(params)``                    ``eps_inside_sqrt=True``
``rmsprop``     ``RMSprop(params)``                    ``eps_inside_sqrt=True``
``adam``        ``Adam(params)``                       ``bias_correction=False, eps_inside_sqrt=True``
``adamw``       ``AdamW(params)``                      (decoupled weight decay; not in the seed)
``adam_seed``   ``Adam(..., bias_correction=False, eps_inside_sqrt=True)``
==============  =====================================  ==========================================

Defaults, argument names and positional order follow ``torch.optim`` (SGD's ``lr=1e-3``,
``dampening``, momentum kept as PyTorch's buffer, ``maximize`` for every rule), so
``optim.SGD(params, momentum=0.9)`` steps like ``torch.optim.SGD`` under any learning-rate
schedule, and ``optim.Adam(params)`` like ``torch.optim.Adam``; the seed-exact forms are
keyword flags. Arguments are validated once, at construction (errors name the argument:
``exc.argument``); a step pays no checks.
``create(name, params, **kwargs)`` builds one by name; ``get(name)`` returns its class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from trainlab import _validate
from trainlab.optim import functional
from trainlab.optim.adagrad import Adagrad
from trainlab.optim.adam import Adam, AdamW
from trainlab.optim.functional import clip_grad_norm
from trainlab.optim.optimizer import Optimizer
from trainlab.optim.rmsprop import RMSprop
from trainlab.optim.schedule import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LinearWarmup,
    LRScheduler,
    ReduceLROnPlateau,
    StepLR,
)
from trainlab.optim.sgd import SGD, Momentum, Nesterov


def adam_seed(params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
              eps: float = 1e-8, weight_decay: float = 0.0, *, maximize: bool = False) -> Adam:
    """The seed's Adam: ``m, v`` moving averages, then ``w ← w − α·m/√(v + ε)`` (no bias correction)."""
    return Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize,
                bias_correction=False, eps_inside_sqrt=True)


_REGISTRY: dict[str, Callable[..., Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
    "adam_seed": adam_seed,
}

#: the names :func:`create` accepts
names: list[str] = list(_REGISTRY)


def get(name: str) -> Callable[..., Optimizer]:
    """The class (or factory) registered as ``name``, one of :data:`names`.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    key = name.lower() if isinstance(name, str) else None
    if key not in _REGISTRY:
        raise _validate.argument_error(ValueError, "optim.get", "name", f"unknown optimizer {name!r}; "
                                       f"valid names: {', '.join(names)}")
    return _REGISTRY[key]


def create(name: str, params: Iterable[Any], **kwargs: Any) -> Optimizer:
    """Build the optimizer registered as ``name`` (one of :data:`names`) over ``params``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    return get(name)(params, **kwargs)


__all__ = [
    "Optimizer", "SGD", "Momentum", "Nesterov", "Adagrad", "RMSprop", "Adam", "AdamW",
    "adam_seed", "create", "get", "names", "clip_grad_norm", "functional",
    "LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearWarmup", "LinearLR",
    "ReduceLROnPlateau",
]
