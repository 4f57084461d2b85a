"""Learning-rate schedules: change each param group's ``lr`` between optimizer steps.

The schedules follow ``torch.optim.lr_scheduler`` exactly, including its
recursive ("chainable") update forms, so that the same settings give the same
sequence of learning rates::

    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    sched = optim.CosineAnnealingLR(opt, T_max=100)
    for epoch in range(100):
        train_one_epoch(opt)          # opt.step() calls
        sched.step()                  # after the optimizer's steps

As in PyTorch, constructing a schedule performs its step 0 (``LinearWarmup``
multiplies ``lr`` by ``start_factor`` at once) and records the group's
starting ``lr`` under ``group["initial_lr"]`` (kept if already there, so
that a second schedule on the same optimizer sees the same base).
``state_dict()`` holds JSON-able values only.

Note on momentum: SGD keeps PyTorch's momentum buffer by default, which applies the
current α to the whole buffer, so every rule under every schedule follows
``torch.optim``'s trajectory. The seed's velocity form (``momentum_form="velocity"``,
``v ← μv − α·g``) keeps past learning rates inside ``v``: under a schedule it takes a
different path (see :class:`~trainlab.optim.SGD`).

Arguments are validated at construction: errors are ``ValueError``/``TypeError`` naming
the schedule and the argument (``exc.argument``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trainlab import _validate
from trainlab.optim.optimizer import Optimizer, check_hyperparameter

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearWarmup",
           "LinearLR", "ReduceLROnPlateau"]


def _check_int(where: str, name: str, value: Any, low: int) -> None:
    _validate.integer(where, name, value, low=low)


def _check_optimizer(where: str, optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise _validate.argument_error(TypeError, where, "optimizer", f"optimizer must be a trainlab "
                                       f"Optimizer, got {type(optimizer).__name__}")


class LRScheduler:
    """Base of the epoch-indexed schedules.

    Subclasses implement :meth:`get_lr`, the learning rates for
    ``last_epoch`` computed from the groups' current ``lr`` (PyTorch's
    recursive forms). ``hyperparameters`` names the attributes saved in the
    state dict besides the counters.
    """

    hyperparameters: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer) -> None:
        _check_optimizer(type(self).__name__, optimizer)
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self._step_count = 0
        self._is_initial = True
        self.step()
        self._is_initial = False

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch (or one iteration) and set every group's ``lr``."""
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last :meth:`step` (one per group)."""
        return list(self._last_lr)

    def _group_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Counters, base and last learning rates and hyperparameters (JSON-able)."""
        out: dict[str, Any] = {"last_epoch": self.last_epoch, "step_count": self._step_count,
                               "base_lrs": list(self.base_lrs), "last_lr": list(self._last_lr)}
        out.update({name: getattr(self, name) for name in self.hyperparameters})
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (does not touch the optimizer's ``lr``)."""
        expected = {"last_epoch", "step_count", "base_lrs", "last_lr", *self.hyperparameters}
        if set(state_dict) != expected:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected keys "
                             f"{sorted(expected)}, got {sorted(state_dict)}")
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["step_count"])
        self.base_lrs = [float(v) for v in state_dict["base_lrs"]]
        self._last_lr = [float(v) for v in state_dict["last_lr"]]
        for name in self.hyperparameters:
            setattr(self, name, state_dict[name])


class StepLR(LRScheduler):
    """Multiply ``lr`` by ``gamma`` every ``step_size`` epochs.

    ``lr_t = base_lr · gamma^⌊t / step_size⌋`` (applied recursively: at every
    non-zero multiple of ``step_size`` the current ``lr`` is multiplied by ``gamma``).

    Args:
        optimizer: the optimizer whose groups' ``lr`` this sets.
        step_size: period in epochs, an integer ``>= 1``.
        gamma: factor ``> 0`` (default 0.1).
    """

    hyperparameters = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        _check_int("StepLR", "step_size", step_size, 1)
        check_hyperparameter("StepLR", "gamma", gamma, low=0, low_open=True)
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._group_lrs()
        return [lr * self.gamma for lr in self._group_lrs()]


class ExponentialLR(LRScheduler):
    """Multiply ``lr`` by ``gamma`` every epoch: ``lr_t = base_lr · gamma^t``.

    Args:
        optimizer: the optimizer whose groups' ``lr`` this sets.
        gamma: factor ``> 0``.
    """

    hyperparameters = ("gamma",)

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        check_hyperparameter("ExponentialLR", "gamma", gamma, low=0, low_open=True)
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._group_lrs()
        return [lr * self.gamma for lr in self._group_lrs()]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_max`` epochs (no restarts).

    Closed form (SGDR without restarts):
    ``lr_t = eta_min + (base_lr − eta_min)·(1 + cos(π·t/T_max))/2``, computed
    as PyTorch does by the recursion
    ``lr_t = eta_min + (lr_{t−1} − eta_min)·(1 + cos(π t/T_max))/(1 + cos(π (t−1)/T_max))``
    (with PyTorch's special case at ``t − 1 − T_max ≡ 0 (mod 2·T_max)``, where the
    ratio is 0/0). Past ``T_max`` the rate rises again with period ``2·T_max``.

    Args:
        optimizer: the optimizer whose groups' ``lr`` this sets.
        T_max: half-period in epochs, an integer ``>= 1``.
        eta_min: the smallest ``lr``, ``>= 0``.

    References:
        Loshchilov & Hutter 2017, "SGDR: Stochastic Gradient Descent with Warm
        Restarts", ICLR, https://arxiv.org/abs/1608.03983.
    """

    hyperparameters = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        _check_int("CosineAnnealingLR", "T_max", T_max, 1)
        check_hyperparameter("CosineAnnealingLR", "eta_min", eta_min, low=0)
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._group_lrs()
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if (t - 1 - T) % (2 * T) == 0:
            return [lr + (base - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for lr, base in zip(self._group_lrs(), self.base_lrs, strict=True)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (lr - eta_min) + eta_min for lr in self._group_lrs()]


class LinearWarmup(LRScheduler):
    """Linear warmup: scale ``lr`` from ``start_factor`` to ``end_factor`` over ``total_iters`` steps.

    ``lr_t = base_lr · (start_factor + (end_factor − start_factor)·min(t, total_iters)/total_iters)``,
    computed by PyTorch ``LinearLR``'s recursion, so step 0 (at construction)
    already uses ``base_lr · start_factor`` and from step ``total_iters`` on
    ``lr = base_lr · end_factor``. Same arguments and defaults as
    ``torch.optim.lr_scheduler.LinearLR`` (also exported as ``LinearLR``).

    Args:
        optimizer: the optimizer whose groups' ``lr`` this sets.
        start_factor: in ``(0, 1]`` (default 1/3).
        end_factor: in ``[0, 1]`` (default 1).
        total_iters: number of steps of the ramp, an integer ``>= 1`` (default 5).

    References:
        Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in
        1 Hour", §2.2 (gradual warmup).
    """

    hyperparameters = ("start_factor", "end_factor", "total_iters")

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5) -> None:
        check_hyperparameter("LinearWarmup", "start_factor", start_factor, low=0, high=1,
                             low_open=True)
        check_hyperparameter("LinearWarmup", "end_factor", end_factor, low=0, high=1)
        _check_int("LinearWarmup", "total_iters", total_iters, 1)
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._group_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._group_lrs()
        delta = self.end_factor - self.start_factor
        factor = 1.0 + delta / (self.total_iters * self.start_factor + (self.last_epoch - 1) * delta)
        return [lr * factor for lr in self._group_lrs()]


LinearLR = LinearWarmup


def _encode_float(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)          # 'inf' / '-inf' / 'nan' stay JSON-able


def _decode_float(x: float | str) -> float:
    return float(x)


class ReduceLROnPlateau:
    """Multiply ``lr`` by ``factor`` when a metric has stopped improving for ``patience`` epochs.

    Same rules and defaults as ``torch.optim.lr_scheduler.ReduceLROnPlateau``:
    a metric is an improvement when it beats ``best`` by the threshold
    (``rel``: ``a < best·(1 − threshold)`` in min mode, ``a > best·(1 + threshold)``
    in max mode; ``abs``: ``best ∓ threshold``). After more than ``patience``
    non-improving epochs each group's ``lr`` becomes ``max(lr·factor, min_lr)``
    (skipped when the change is at most ``eps``), then ``cooldown`` epochs
    are ignored.

    Args:
        optimizer: the optimizer whose groups' ``lr`` this sets.
        mode: ``"min"`` or ``"max"``.
        factor: in ``[0, 1)`` (default 0.1).
        patience: integer ``>= 0`` (default 10).
        threshold: ``>= 0`` (default 1e-4).
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: integer ``>= 0``.
        min_lr: a number or one number per group, ``>= 0``.
        eps: the smallest change of ``lr`` that is applied (default 1e-8).
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float | list[float] = 0.0, eps: float = 1e-8) -> None:
        where = "ReduceLROnPlateau"
        _check_optimizer(where, optimizer)
        _validate.choice(where, "mode", mode, ("min", "max"))
        _validate.choice(where, "threshold_mode", threshold_mode, ("rel", "abs"))
        check_hyperparameter(where, "factor", factor, low=0, high=1, high_open=True)
        _check_int(where, "patience", patience, 0)
        _check_int(where, "cooldown", cooldown, 0)
        check_hyperparameter(where, "threshold", threshold, low=0)
        check_hyperparameter(where, "eps", eps, low=0)
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise _validate.argument_error(ValueError, where, "min_lr", f"min_lr must be a number or {n} "
                                               f"numbers, one per group, got {min_lr!r}")
            min_lrs = list(min_lr)
        else:
            min_lrs = [min_lr] * n
        for value in min_lrs:
            check_hyperparameter(where, "min_lr", value, low=0)
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.min_lrs, self.eps = cooldown, min_lrs, eps
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metric: float) -> None:
        """Record one epoch's ``metric`` and reduce ``lr`` if it has plateaued.

        ``metric`` is a real number; NaN is allowed and never counts as an improvement.
        """
        if isinstance(metric, np.ndarray) and metric.shape == ():
            metric = metric.item()
        current = _validate.real("ReduceLROnPlateau.step", "metric", metric, finite=False, allow_nan=True)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                old_lr = float(group["lr"])
                new_lr = max(old_lr * self.factor, min_lr)
                if old_lr - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The groups' learning rates after the last :meth:`step`."""
        return list(self._last_lr)

    _keys = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lrs",
             "eps", "last_epoch", "best", "num_bad_epochs", "cooldown_counter", "last_lr")

    def state_dict(self) -> dict[str, Any]:
        """Settings and counters (JSON-able: an infinite ``best`` is stored as ``'inf'``/``'-inf'``)."""
        out = {k: getattr(self, k) for k in self._keys if k not in ("best", "last_lr", "min_lrs")}
        out["min_lrs"] = list(self.min_lrs)
        out["best"] = _encode_float(self.best)
        out["last_lr"] = list(self._last_lr)
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        if set(state_dict) != set(self._keys):
            raise ValueError(f"ReduceLROnPlateau.load_state_dict: expected keys {sorted(self._keys)}, "
                             f"got {sorted(state_dict)}")
        for k in self._keys:
            if k == "best":
                self.best = _decode_float(state_dict[k])
            elif k == "last_lr":
                self._last_lr = list(state_dict[k])
            elif k == "min_lrs":
                self.min_lrs = list(state_dict[k])
            else:
                setattr(self, k, state_dict[k])
