"""Adagrad: per-coordinate step sizes from the sum of past squared gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainlab.nn.module import Parameter
from trainlab.optim import functional as F
from trainlab.optim.optimizer import Optimizer, check_flag, check_hyperparameter

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad.

    With ``d = g + λ·w`` (``−g + λ·w`` with ``maximize=True``) and
    ``α_t = α / (1 + (t − 1)·lr_decay)``::

        G ← G + d ⊙ d                      (G starts at initial_accumulator_value)
        w ← w − α_t · d / (√G + ε)         default: PyTorch's placement of ε
        w ← w − α_t · d / √(G + ε)         eps_inside_sqrt=True: the seed's formula

    The defaults follow ``torch.optim.Adagrad`` (lr 0.01, ε = 1e-10 outside the
    root). With ``eps_inside_sqrt=True`` (and ``lr_decay=0``, ``weight_decay=0``)
    this is exactly the seed's rule. State per parameter: ``"step"`` and
    ``"sum"`` (``G``).

    Args:
        params: Parameters or param-group dicts.
        lr: ``α >= 0``.
        lr_decay: PyTorch's ``lr_decay >= 0``.
        weight_decay: ``λ >= 0`` (L2, added to the gradient).
        initial_accumulator_value: initial ``G``, ``>= 0``.
        eps: ``ε > 0``.
        maximize: ascend the objective (PyTorch's ``maximize``).
        eps_inside_sqrt: the seed's ``√(G + ε)``.

    References:
        Duchi, Hazan & Singer 2011, "Adaptive Subgradient Methods for Online
        Learning and Stochastic Optimization", JMLR 12:2121-2159.
    """

    name = "adagrad"
    work_slots = 2

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], lr: float = 0.01,
                 lr_decay: float = 0.0, weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, *, maximize: bool = False, eps_inside_sqrt: bool = False) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize, eps_inside_sqrt=eps_inside_sqrt))

    def check_hyperparameters(self, hp: dict[str, Any]) -> None:
        where = type(self).__name__
        check_hyperparameter(where, "lr", hp["lr"], low=0)
        check_hyperparameter(where, "eps", hp["eps"], low=0, low_open=True)
        check_hyperparameter(where, "initial_accumulator_value", hp["initial_accumulator_value"], low=0)
        check_hyperparameter(where, "weight_decay", hp["weight_decay"], low=0)
        check_hyperparameter(where, "lr_decay", hp["lr_decay"], low=0)
        check_flag(where, "eps_inside_sqrt", hp["eps_inside_sqrt"])
        check_flag(where, "maximize", hp["maximize"])

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        lr_decay, inside, maximize = group["lr_decay"], group["eps_inside_sqrt"], group["maximize"]
        state = self.state
        for p in group["params"]:
            st = state.get(p)
            if st is None:
                st = state[p] = {"step": 0, "sum": self._zeros(p, group["initial_accumulator_value"])}
            st["step"] += 1
            F.adagrad(p.data, p.grad, st["sum"], step=st["step"], lr=lr, eps=eps,
                      weight_decay=weight_decay, lr_decay=lr_decay, eps_inside_sqrt=inside,
                      maximize=maximize, work=self._workspace(p))
