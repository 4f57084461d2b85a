"""Stochastic gradient descent with optional (Nesterov) momentum: the seed's first three rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainlab import _blas
from trainlab.nn.module import Parameter
from trainlab.optim import functional as F
from trainlab.optim.functional import MOMENTUM_FORMS
from trainlab.optim.optimizer import Optimizer, check_flag, check_hyperparameter

__all__ = ["SGD", "Momentum", "Nesterov"]


class SGD(Optimizer):
    r"""Gradient descent, with classical or Nesterov momentum.

    With ``d = g + λ·w`` (``λ`` = ``weight_decay``, an L2 penalty)::

        gradient descent:  w ← w − α·d
        momentum:          v ← μ·v − α·d;   w ← w + v
        Nesterov:          v ← μ·v − α·d;   w ← w + μ·v − α·d

    These are the seed's formulas, with the velocity ``v`` (state key
    ``"velocity"``) as the default convention (``momentum_form="velocity"``).

    PyTorch's ``torch.optim.SGD`` (dampening 0) keeps a buffer ``b`` instead::

        b ← μ·b + d;   w ← w − α·b            (Nesterov: w ← w − α·(d + μ·b))

    While α is constant, ``v = −α·b`` at every step and the two trajectories
    are equal (up to rounding). They differ once α changes between steps (a
    schedule): the velocity keeps each step's own α inside ``v``, whereas
    PyTorch multiplies the whole buffer by the *current* α. Pass
    ``momentum_form="buffer"`` for PyTorch's form (state key
    ``"momentum_buffer"``), which then matches PyTorch under any schedule.

    Args:
        params: Parameters or param-group dicts.
        lr: ``α >= 0``.
        momentum: ``μ`` in ``[0, 1)``; 0 is plain gradient descent.
        nesterov: Nesterov's look-ahead form; requires ``momentum > 0``.
        weight_decay: ``λ >= 0``.
        momentum_form: ``"velocity"`` (the seed's) or ``"buffer"`` (PyTorch's).

    References:
        Polyak 1964, "Some methods of speeding up the convergence of iteration
        methods"; Sutskever, Martens, Dahl & Hinton 2013, "On the importance of
        initialization and momentum in deep learning" (ICML), the Nesterov form.
    """

    name = "sgd"

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], lr: float,
                 momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 momentum_form: str = "velocity") -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay, momentum_form=momentum_form))

    def check_hyperparameters(self, hp: dict[str, Any]) -> None:
        where = type(self).__name__
        check_hyperparameter(where, "lr", hp["lr"], low=0)
        check_hyperparameter(where, "momentum", hp["momentum"], low=0, high=1, high_open=True)
        check_hyperparameter(where, "weight_decay", hp["weight_decay"], low=0)
        check_flag(where, "nesterov", hp["nesterov"])
        if hp["nesterov"] and hp["momentum"] <= 0:
            raise ValueError(f"{where}: nesterov=True requires momentum > 0, "
                             f"got momentum={hp['momentum']!r}")
        if hp["momentum_form"] not in MOMENTUM_FORMS:
            raise ValueError(f"{where}: invalid momentum_form={hp['momentum_form']!r}; "
                             f"expected one of {list(MOMENTUM_FORMS)}")

    def _split(self, group: dict[str, Any]) -> list[list[Parameter]] | None:
        # With BLAS's axpy the passes already run on the BLAS threads: no lanes on top of them.
        return None if _blas.available() else super()._split(group)

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, momentum, nesterov = group["lr"], group["momentum"], group["nesterov"]
        weight_decay, form = group["weight_decay"], group["momentum_form"]
        key = "velocity" if form == "velocity" else "momentum_buffer"
        state = self.state
        for p in group["params"]:
            buf = None
            if momentum != 0:
                st = state.get(p)
                if st is None:
                    st = state[p] = {}
                buf = st.get(key)
                if buf is None:
                    buf = st[key] = self._zeros(p)
            F.sgd(p.data, p.grad, buf, lr=lr, momentum=momentum, nesterov=nesterov,
                  weight_decay=weight_decay, momentum_form=form, work=self._workspace(p))


class Momentum(SGD):
    """Classical momentum: ``SGD(params, lr, momentum=0.9)``; see :class:`SGD`.

    ``v ← μ·v − α·d;  w ← w + v`` (Polyak 1964; Sutskever et al. 2013).
    """

    name = "momentum"

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], lr: float,
                 momentum: float = 0.9, weight_decay: float = 0.0,
                 momentum_form: str = "velocity") -> None:
        super().__init__(params, lr, momentum=momentum, nesterov=False,
                         weight_decay=weight_decay, momentum_form=momentum_form)


class Nesterov(SGD):
    """Nesterov momentum: ``SGD(params, lr, momentum=0.9, nesterov=True)``; see :class:`SGD`.

    ``v ← μ·v − α·d;  w ← w + μ·v − α·d`` (Sutskever et al. 2013).
    """

    name = "nesterov"

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], lr: float,
                 momentum: float = 0.9, weight_decay: float = 0.0,
                 momentum_form: str = "velocity") -> None:
        super().__init__(params, lr, momentum=momentum, nesterov=True,
                         weight_decay=weight_decay, momentum_form=momentum_form)
