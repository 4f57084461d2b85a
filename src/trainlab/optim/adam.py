"""Adam and AdamW: moving averages of the gradient and of its square."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainlab import _validate
from trainlab.nn.module import Parameter
from trainlab.optim import functional as F
from trainlab.optim.optimizer import Optimizer, check_flag, check_hyperparameter

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (with optional AMSGrad, L2 or decoupled weight decay).

    With ``d = g + λ·w`` (or, decoupled, ``w ← w·(1 − α·λ)`` first and ``d = g``; with
    ``maximize=True`` the gradient is negated first, ``−g`` for ``g``)::

        m ← β1·m + (1 − β1)·d
        v ← β2·v + (1 − β2)·d ⊙ d
        amsgrad:  v_max ← max(v_max, v), used in place of v
        m̂ = m / (1 − β1^t),   v̂ = v / (1 − β2^t)     bias_correction=True (default)
        m̂ = m,                v̂ = v                  bias_correction=False (the seed)
        w ← w − α · m̂ / (√v̂ + ε)                     default: PyTorch's placement of ε
        w ← w − α · m̂ / √(v̂ + ε)                     eps_inside_sqrt=True (the seed)

    The defaults are Kingma & Ba's and ``torch.optim.Adam``'s (lr 1e-3,
    betas (0.9, 0.999), ε = 1e-8 outside the root, bias correction on).
    ``Adam(params, bias_correction=False, eps_inside_sqrt=True)`` is exactly
    the seed's rule ``m, v, then w ← w − α·m/√(v + ε)``; note that without bias
    correction the first steps are ``√(1 − β2)/(1 − β1)`` ≈ 0.32 times
    smaller than Adam's. State per parameter: ``"step"``, ``"exp_avg"``,
    ``"exp_avg_sq"`` and, with amsgrad, ``"max_exp_avg_sq"``.

    Args:
        params: Parameters or param-group dicts.
        lr: ``α >= 0``.
        betas: ``(β1, β2)``, each in ``[0, 1)``.
        eps: ``ε > 0``.
        weight_decay: ``λ >= 0``; an L2 penalty added to the gradient unless
            ``decoupled_weight_decay`` (then AdamW's decay of the weights).
        amsgrad: Reddi, Kale & Kumar 2018, "On the Convergence of Adam and Beyond".
        maximize: ascend the objective (PyTorch's ``maximize``).
        bias_correction: divide the moments by ``1 − β^t``.
        eps_inside_sqrt: the seed's ``√(v + ε)``.
        decoupled_weight_decay: as :class:`AdamW`.

    References:
        Kingma & Ba 2014, "Adam: A Method for Stochastic Optimization", ICLR 2015,
        https://arxiv.org/abs/1412.6980.
    """

    name = "adam"
    tuple_hyperparameters = ("betas",)
    work_slots = 2

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 bias_correction: bool = True, eps_inside_sqrt: bool = False,
                 decoupled_weight_decay: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, bias_correction=bias_correction,
                                      eps_inside_sqrt=eps_inside_sqrt,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def check_hyperparameters(self, hp: dict[str, Any]) -> None:
        where = type(self).__name__
        check_hyperparameter(where, "lr", hp["lr"], low=0)
        betas = _validate.real_tuple(where, "betas", hp["betas"], 2)
        for i, beta in enumerate(betas):
            check_hyperparameter(where, f"betas[{i}]", beta, low=0, high=1, high_open=True, argument="betas")
        check_hyperparameter(where, "eps", hp["eps"], low=0, low_open=True)
        check_hyperparameter(where, "weight_decay", hp["weight_decay"], low=0)
        for flag in ("amsgrad", "maximize", "bias_correction", "eps_inside_sqrt", "decoupled_weight_decay"):
            check_flag(where, flag, hp[flag])

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
        bias_correction, inside = group["bias_correction"], group["eps_inside_sqrt"]
        decoupled, maximize = group["decoupled_weight_decay"], group["maximize"]
        state = self.state
        for p in group["params"]:
            st = state.get(p)
            if st is None:
                st = state[p] = {"step": 0, "exp_avg": self._zeros(p), "exp_avg_sq": self._zeros(p)}
            max_sq = None
            if amsgrad:
                max_sq = st.get("max_exp_avg_sq")
                if max_sq is None:
                    max_sq = st["max_exp_avg_sq"] = self._zeros(p)
            st["step"] += 1
            F.adam(p.data, p.grad, st["exp_avg"], st["exp_avg_sq"], max_sq, step=st["step"], lr=lr,
                   beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                   decoupled_weight_decay=decoupled, bias_correction=bias_correction,
                   eps_inside_sqrt=inside, maximize=maximize, work=self._workspace(p))


class AdamW(Adam):
    """Adam with decoupled weight decay: ``w ← w·(1 − α·λ)``, then Adam's step on ``g``.

    Same as :class:`Adam` with ``decoupled_weight_decay=True``; the default
    ``weight_decay`` is 1e-2 as in ``torch.optim.AdamW``. Decoupling makes the
    decay independent of the adaptive step size (with L2 in Adam, weights with
    large gradient history are decayed less).

    References:
        Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization",
        ICLR, https://arxiv.org/abs/1711.05101.
    """

    name = "adamw"

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 bias_correction: bool = True, eps_inside_sqrt: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, bias_correction=bias_correction,
                         eps_inside_sqrt=eps_inside_sqrt, decoupled_weight_decay=True)
