"""RMSprop: step sizes from a moving average of squared gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainlab.nn.module import Parameter
from trainlab.optim import functional as F
from trainlab.optim.optimizer import Optimizer, check_flag, check_hyperparameter

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop, with PyTorch's centered and momentum variants.

    With ``d = g + λ·w`` (``−g + λ·w`` with ``maximize=True``) and ``α_s`` = ``alpha``
    (the seed's decay rate γ)::

        G ← α_s·G + (1 − α_s)·d ⊙ d
        centered:   ḡ ← α_s·ḡ + (1 − α_s)·d;   G̃ = max(G − ḡ ⊙ ḡ, 0)   (else G̃ = G)
        r = √G̃ + ε          default: PyTorch's placement of ε
        r = √(G̃ + ε)        eps_inside_sqrt=True: the seed's formula
        momentum = 0:  w ← w − lr · d / r
        momentum > 0:  b ← μ·b + d / r;   w ← w − lr · b

    The defaults follow ``torch.optim.RMSprop`` (lr 0.01, alpha 0.99, ε = 1e-8
    outside the root; G starts at 0). ``RMSprop(eps_inside_sqrt=True)`` is
    exactly the seed's rule. State per parameter: ``"step"``,
    ``"square_avg"`` and, when used, ``"grad_avg"`` and ``"momentum_buffer"``.

    Args:
        params: Parameters or param-group dicts.
        lr: ``>= 0``.
        alpha: decay rate ``α_s`` in ``[0, 1)``.
        eps: ``ε > 0``.
        weight_decay: ``λ >= 0`` (L2, added to the gradient).
        momentum: ``μ`` in ``[0, 1)``.
        centered: divide by the root of an estimate of the variance.
        maximize: ascend the objective (PyTorch's ``maximize``).
        eps_inside_sqrt: the seed's ``√(G + ε)``.

    References:
        Tieleman & Hinton 2012, COURSERA "Neural Networks for Machine
        Learning", lecture 6e; Graves 2013, "Generating Sequences With
        Recurrent Neural Networks", eq. 38-45 (centered form with momentum).
    """

    name = "rmsprop"
    work_slots = 2

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], lr: float = 0.01,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, *, maximize: bool = False,
                 eps_inside_sqrt: bool = False) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize,
                                      eps_inside_sqrt=eps_inside_sqrt))

    def check_hyperparameters(self, hp: dict[str, Any]) -> None:
        where = type(self).__name__
        check_hyperparameter(where, "lr", hp["lr"], low=0)
        check_hyperparameter(where, "alpha", hp["alpha"], low=0, high=1, high_open=True)
        check_hyperparameter(where, "eps", hp["eps"], low=0, low_open=True)
        check_hyperparameter(where, "momentum", hp["momentum"], low=0, high=1, high_open=True)
        check_hyperparameter(where, "weight_decay", hp["weight_decay"], low=0)
        check_flag(where, "centered", hp["centered"])
        check_flag(where, "maximize", hp["maximize"])
        check_flag(where, "eps_inside_sqrt", hp["eps_inside_sqrt"])

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        momentum, centered = group["momentum"], group["centered"]
        weight_decay, inside, maximize = group["weight_decay"], group["eps_inside_sqrt"], group["maximize"]
        state = self.state
        for p in group["params"]:
            st = state.get(p)
            if st is None:
                st = state[p] = {"step": 0, "square_avg": self._zeros(p)}
            grad_avg = buf = None
            if centered:
                grad_avg = st.get("grad_avg")
                if grad_avg is None:
                    grad_avg = st["grad_avg"] = self._zeros(p)
            if momentum > 0:
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = self._zeros(p)
            st["step"] += 1
            F.rmsprop(p.data, p.grad, st["square_avg"], grad_avg, buf, lr=lr, alpha=alpha, eps=eps,
                      weight_decay=weight_decay, momentum=momentum, centered=centered,
                      eps_inside_sqrt=inside, maximize=maximize, work=self._workspace(p))
