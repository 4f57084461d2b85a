"""Stochastic gradient descent with optional (Nesterov) momentum: the seed's first three rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainlab import _blas, _validate
from trainlab.nn.module import Parameter
from trainlab.optim import functional as F
from trainlab.optim.functional import MOMENTUM_FORMS
from trainlab.optim.optimizer import Optimizer, check_flag, check_hyperparameter

__all__ = ["SGD", "Momentum", "Nesterov"]


class SGD(Optimizer):
    r"""Gradient descent, with classical or Nesterov momentum, as ``torch.optim.SGD``.

    With ``d = g + λ·w`` (``λ`` = ``weight_decay``, an L2 penalty; ``d = −g + λ·w`` with
    ``maximize=True``) and dampening ``τ``::

        gradient descent:  w ← w − α·d
        momentum:          b ← μ·b + (1 − τ)·d;   w ← w − α·b          (first step: b = d)
        Nesterov:          b ← μ·b + d;           w ← w − α·(d + μ·b)

    This is PyTorch's *buffer* form (state key ``"momentum_buffer"``), the default
    ``momentum_form="buffer"``: every default is ``torch.optim.SGD``'s (lr 1e-3), so the
    trajectory equals PyTorch's under any learning-rate schedule.

    The seed writes momentum with a *velocity* ``v`` instead, one flag away
    (``momentum_form="velocity"``, state key ``"velocity"``)::

        momentum:   v ← μ·v − α(1 − τ)·d;   w ← w + v                 (first step: v = −α·d)
        Nesterov:   v ← μ·v − α·d;          w ← w + μ·v − α·d

    While α is constant, ``v = −α·b`` at every step and the two trajectories are equal
    (up to rounding). They differ once α changes between steps (a schedule): the
    velocity keeps each step's own α inside ``v``, whereas PyTorch multiplies the whole
    buffer by the *current* α.

    Args:
        params: Parameters or param-group dicts.
        lr: ``α >= 0`` (default 1e-3, PyTorch's).
        momentum: ``μ`` in ``[0, 1)``; 0 is plain gradient descent.
        dampening: ``τ`` in ``[0, 1]``; not applied on the first step (as PyTorch).
        nesterov: Nesterov's look-ahead form; requires ``momentum > 0`` and ``dampening == 0``.
        weight_decay: ``λ >= 0``.
        maximize: ascend the objective (the gradient is negated first).
        momentum_form: ``"buffer"`` (PyTorch's, default) or ``"velocity"`` (the seed's).

    References:
        Polyak 1964, "Some methods of speeding up the convergence of iteration
        methods"; Sutskever, Martens, Dahl & Hinton 2013, "On the importance of
        initialization and momentum in deep learning" (ICML), the Nesterov form.
    """

    name = "sgd"

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, *, maximize: bool = False, momentum_form: str = "buffer") -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                                      weight_decay=weight_decay, maximize=maximize, momentum_form=momentum_form))

    def check_hyperparameters(self, hp: dict[str, Any]) -> None:
        where = type(self).__name__
        check_hyperparameter(where, "lr", hp["lr"], low=0)
        check_hyperparameter(where, "momentum", hp["momentum"], low=0, high=1, high_open=True)
        check_hyperparameter(where, "dampening", hp["dampening"], low=0, high=1)
        check_hyperparameter(where, "weight_decay", hp["weight_decay"], low=0)
        check_flag(where, "nesterov", hp["nesterov"])
        check_flag(where, "maximize", hp["maximize"])
        if hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
            raise _validate.argument_error(
                ValueError, where, "nesterov", f"nesterov=True requires momentum > 0 and dampening = 0, "
                f"got momentum={hp['momentum']!r} and dampening={hp['dampening']!r}")
        _validate.choice(where, "momentum_form", hp["momentum_form"], MOMENTUM_FORMS)

    def _split(self, group: dict[str, Any]) -> list[list[Parameter]] | None:
        # With BLAS's axpy the passes already run on the BLAS threads: no lanes on top of them.
        return None if _blas.available() else super()._split(group)

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, momentum, dampening, nesterov = group["lr"], group["momentum"], group["dampening"], group["nesterov"]
        weight_decay, maximize, form = group["weight_decay"], group["maximize"], group["momentum_form"]
        key = "velocity" if form == "velocity" else "momentum_buffer"
        state = self.state
        for p in group["params"]:
            buf = None
            damp = dampening
            if momentum != 0:
                st = state.get(p)
                if st is None:
                    st = state[p] = {}
                buf = st.get(key)
                if buf is None:
                    buf = st[key] = self._zeros(p)
                    damp = 0.0              # PyTorch's first step: b = d, undamped
            F.sgd(p.data, p.grad, buf, lr=lr, momentum=momentum, dampening=damp, nesterov=nesterov,
                  weight_decay=weight_decay, maximize=maximize, momentum_form=form, work=self._workspace(p))


class Momentum(SGD):
    """Classical momentum: ``SGD(params, lr, momentum=0.9)``; see :class:`SGD`.

    PyTorch's buffer form by default (``b ← μ·b + d;  w ← w − α·b``); the seed's
    ``v ← μ·v − α·d;  w ← w + v`` is ``momentum_form="velocity"`` (Polyak 1964;
    Sutskever et al. 2013). The two agree while the learning rate is constant.
    """

    name = "momentum"

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 momentum: float = 0.9, dampening: float = 0.0, weight_decay: float = 0.0, *,
                 maximize: bool = False, momentum_form: str = "buffer") -> None:
        super().__init__(params, lr, momentum=momentum, dampening=dampening, nesterov=False,
                         weight_decay=weight_decay, maximize=maximize, momentum_form=momentum_form)


class Nesterov(SGD):
    """Nesterov momentum: ``SGD(params, lr, momentum=0.9, nesterov=True)``; see :class:`SGD`.

    PyTorch's buffer form by default (``b ← μ·b + d;  w ← w − α·(d + μ·b)``); the seed's
    ``v ← μ·v − α·d;  w ← w + μ·v − α·d`` is ``momentum_form="velocity"`` (Sutskever
    et al. 2013). The two agree while the learning rate is constant.
    """

    name = "nesterov"

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 momentum: float = 0.9, weight_decay: float = 0.0, *, maximize: bool = False,
                 momentum_form: str = "buffer") -> None:
        super().__init__(params, lr, momentum=momentum, nesterov=True,
                         weight_decay=weight_decay, maximize=maximize, momentum_form=momentum_form)
