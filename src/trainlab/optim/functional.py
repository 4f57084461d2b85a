"""The update rules as in-place kernels over NumPy arrays: one function per rule.

Every kernel updates ``param`` and its state arrays **in place** and never
writes into ``grad`` (the gradient belongs to the caller). Temporaries go into
``work``: a sequence of preallocated scratch arrays shaped like ``param`` (the
optimizer classes pass views of a shared per-dtype workspace); when ``work``
is None or too short the kernel allocates what it lacks. Each kernel states
how many scratch arrays it can use.

Python scalars are "weak" in NumPy >= 2 (NEP 50), so a float32 ``param`` keeps
float32 state and float32 arithmetic throughout.

Notation: ``w`` parameter, ``g`` gradient, ``d = g + λ·w`` the gradient with
(coupled, L2) weight decay ``λ``, ``α`` the learning rate. With ``maximize=True``
every rule ascends: ``d = −g + λ·w`` (PyTorch's ``maximize``: the gradient is
negated first, then everything proceeds as usual).

The kernels trust their arguments: the optimizer classes validate them once, at
construction (see :mod:`trainlab._validate`), so a step pays no checks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from trainlab import _blas, _validate

__all__ = ["sgd", "adagrad", "rmsprop", "adam", "clip_grad_norm", "MOMENTUM_FORMS"]

#: the two ways :func:`sgd` keeps momentum (see there); the first is the default
MOMENTUM_FORMS = ("buffer", "velocity")


def _denominator(src: np.ndarray, eps: float, eps_inside_sqrt: bool, *, out: np.ndarray) -> np.ndarray:
    """``sqrt(src + eps)`` (the seed's placement) or ``sqrt(src) + eps`` (PyTorch's), into ``out``."""
    if eps_inside_sqrt:
        np.add(src, eps, out=out)
        np.sqrt(out, out=out)
    else:
        np.sqrt(src, out=out)
        out += eps
    return out

def _scratch(work: Sequence[np.ndarray] | None, i: int, like: np.ndarray) -> np.ndarray:
    """The ``i``-th scratch array, or a fresh one shaped like ``like``."""
    if work is not None and len(work) > i:
        return work[i]
    return np.empty_like(like)


def _decayed_grad(param: np.ndarray, grad: np.ndarray, weight_decay: float,
                  work: Sequence[np.ndarray] | None, maximize: bool = False) -> tuple[np.ndarray, int]:
    """``d = ±g + λ·w`` in scratch slot 0 (``g`` itself when λ = 0 and not maximizing); returns
    ``(d, next free slot)``. ``−g + λ·w`` is computed as ``λ·w − g``, the same rounding."""
    if weight_decay == 0 and not maximize:
        return grad, 0
    d = _scratch(work, 0, param)
    if weight_decay == 0:
        np.negative(grad, out=d)
        return d, 1
    np.multiply(param, weight_decay, out=d)
    if maximize:
        d -= grad
    else:
        d += grad
    return d, 1


def sgd(param: np.ndarray, grad: np.ndarray, momentum_buffer: np.ndarray | None, *,
        lr: float, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, maximize: bool = False, momentum_form: str = "buffer",
        work: Sequence[np.ndarray] | None = None) -> None:
    """Gradient descent, classical momentum and Nesterov momentum (in place).

    With ``d = ±g + λ·w`` and dampening ``τ``::

        plain:      w ← w − α·d
        momentum:   b ← μ·b + (1 − τ)·d;   w ← w − α·b          (momentum_form="buffer", PyTorch's)
        Nesterov:   b ← μ·b + d;           w ← w − α·(d + μ·b)
        momentum:   v ← μ·v − α(1 − τ)·d;  w ← w + v            (momentum_form="velocity", the seed's)
        Nesterov:   v ← μ·v − α·d;         w ← w + μ·v − α·d

    The two forms are the same trajectory while α is constant (``v = −α·b``);
    they part ways when α changes between steps: the velocity keeps the old
    α inside ``v``, PyTorch's buffer applies the new α to the whole buffer.
    PyTorch's first step sets ``b = d`` (no dampening): a zero buffer updated
    with ``dampening=0`` gives exactly that, which is what :class:`~trainlab.optim.SGD`
    passes on a parameter's first step.

    Where the arrays allow it (float, C-contiguous, at least ``_blas.MIN_SIZE``
    values, NumPy's own OpenBLAS found), each ``←`` above is one BLAS
    ``axpy``/``axpby`` pass on the BLAS threads (see :mod:`trainlab._blas`:
    a fused multiply-add, so the last bit may differ from the NumPy passes).

    Args:
        param: weights ``w``, updated in place.
        grad: ``g``, same shape; not modified.
        momentum_buffer: ``v`` (velocity form) or ``b`` (buffer form), same
            shape, updated in place; ignored (may be None) when ``momentum == 0``.
        lr: ``α``. momentum: ``μ``. dampening: ``τ`` (0 with Nesterov).
        nesterov: use the look-ahead update.
        weight_decay: ``λ`` (L2 penalty added to the gradient).
        maximize: ascend (``d = −g + λ·w``).
        momentum_form: ``"buffer"`` or ``"velocity"``, as above.
        work: up to 2 scratch arrays.

    References:
        Polyak 1964; Sutskever, Martens, Dahl & Hinton 2013, "On the importance
        of initialization and momentum in deep learning" (ICML).
    """
    if momentum_form not in MOMENTUM_FORMS:
        raise ValueError(f"sgd: momentum_form must be one of {list(MOMENTUM_FORMS)}, got {momentum_form!r}")
    d, k = _decayed_grad(param, grad, weight_decay, work, maximize)
    buf = momentum_buffer
    blas = _blas.for_arrays(d, param) if momentum == 0 else _blas.for_arrays(d, param, buf)
    if blas is not None:
        _sgd_blas(blas, param, d, buf, lr, momentum, dampening, nesterov, momentum_form)
        return
    s = _scratch(work, k, param)
    if momentum == 0:
        np.multiply(d, lr, out=s)
        param -= s
        return
    if momentum_form == "velocity":
        buf *= momentum
        np.multiply(d, lr * (1 - dampening) if dampening else lr, out=s)   # s = α(1 − τ)·d
        buf -= s                             # v = μ·v − α(1 − τ)·d
        if nesterov:
            param -= s
            np.multiply(buf, momentum, out=s)
            param += s                       # w = w − α·d + μ·v
        else:
            param += buf
    elif momentum_form == "buffer":
        buf *= momentum
        if dampening:
            np.multiply(d, 1 - dampening, out=s)
            buf += s                         # b = μ·b + (1 − τ)·d
        else:
            buf += d                         # b = μ·b + d
        if nesterov:
            np.multiply(buf, momentum, out=s)
            s += d                           # d + μ·b
            s *= lr
            param -= s
        else:
            np.multiply(buf, lr, out=s)
            param -= s


def _sgd_blas(blas: _blas.Level1, param: np.ndarray, d: np.ndarray, buf: np.ndarray | None, lr: float,
              momentum: float, dampening: float, nesterov: bool, momentum_form: str) -> None:
    """:func:`sgd` as BLAS ``axpy``/``axpby`` calls: one pass over memory per line below."""
    if momentum == 0:
        blas.axpy(-lr, d, param)                   # w = w − α·d
    elif momentum_form == "velocity":
        blas.axpby(-lr * (1 - dampening), d, momentum, buf)   # v = μ·v − α(1 − τ)·d
        if nesterov:
            blas.axpy(-lr, d, param)
            blas.axpy(momentum, buf, param)        # w = w − α·d + μ·v
        else:
            blas.axpy(1.0, buf, param)             # w = w + v
    else:
        blas.axpby(1.0 - dampening, d, momentum, buf)         # b = μ·b + (1 − τ)·d
        if nesterov:
            blas.axpy(-lr, d, param)
            blas.axpy(-lr * momentum, buf, param)  # w = w − α·(d + μ·b)
        else:
            blas.axpy(-lr, buf, param)             # w = w − α·b


def adagrad(param: np.ndarray, grad: np.ndarray, state_sum: np.ndarray, *, step: int, lr: float,
            eps: float = 1e-10, weight_decay: float = 0.0, lr_decay: float = 0.0,
            eps_inside_sqrt: bool = False, maximize: bool = False,
            work: Sequence[np.ndarray] | None = None) -> None:
    """Adagrad (in place).

    With ``d = g + λ·w`` and ``α_t = α / (1 + (t − 1)·lr_decay)``::

        G ← G + d ⊙ d
        w ← w − α_t · d / (√G + ε)        (default, PyTorch's)
        w ← w − α_t · d / √(G + ε)        (eps_inside_sqrt=True, the seed's)

    Args:
        param: ``w``, updated in place. grad: ``g``, not modified.
        state_sum: ``G``, the running sum of squared gradients, updated in place.
        step: ``t``, the 1-based index of this step (used only by ``lr_decay``).
        lr, eps, weight_decay, lr_decay: ``α``, ``ε``, ``λ`` and PyTorch's lr decay.
        eps_inside_sqrt: place ``ε`` under the root as the seed writes it.
        maximize: ascend (``d = −g + λ·w``).
        work: up to 2 scratch arrays.

    References:
        Duchi, Hazan & Singer 2011, "Adaptive Subgradient Methods for Online
        Learning and Stochastic Optimization" (JMLR 12).
    """
    d, k = _decayed_grad(param, grad, weight_decay, work, maximize)
    s = _scratch(work, k, param)
    blas = _blas.for_arrays(d, state_sum, s, param)     # see sgd: axpy passes where possible
    clr = lr / (1 + (step - 1) * lr_decay)
    np.multiply(d, d, out=s)
    state_sum += s
    _denominator(state_sum, eps, eps_inside_sqrt, out=s)
    np.divide(d, s, out=s)
    if blas is not None:
        blas.axpy(-clr, s, param)
    else:
        s *= clr
        param -= s


def rmsprop(param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray,
            grad_avg: np.ndarray | None = None, momentum_buffer: np.ndarray | None = None, *,
            lr: float, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
            momentum: float = 0.0, centered: bool = False, eps_inside_sqrt: bool = False,
            maximize: bool = False, work: Sequence[np.ndarray] | None = None) -> None:
    """RMSprop (in place), with PyTorch's centered and momentum variants.

    With ``d = g + λ·w``::

        G ← α_s·G + (1 − α_s)·d ⊙ d                  (α_s = ``alpha``, the seed's γ)
        centered:   ḡ ← ḡ + (1 − α_s)·(d − ḡ);   G̃ = max(G − ḡ ⊙ ḡ, 0)   (else G̃ = G)
        r = √G̃ + ε                                   (default, PyTorch's)
        r = √(G̃ + ε)                                 (eps_inside_sqrt=True, the seed's)
        no momentum:  w ← w − lr · d / r
        momentum:     b ← μ·b + d / r;   w ← w − lr · b

    Args:
        param: ``w``, updated in place. grad: ``g``, not modified.
        square_avg: ``G``, updated in place.
        grad_avg: ``ḡ`` (required when ``centered``), updated in place.
        momentum_buffer: ``b`` (required when ``momentum > 0``), updated in place.
        lr, alpha, eps, weight_decay, momentum: as above.
        centered: normalise by an estimate of the gradient's variance. ``G − ḡ²``
            is clamped at 0 (it can round to −1 ulp for a constant gradient,
            where PyTorch yields NaN); otherwise identical to PyTorch.
        eps_inside_sqrt: place ``ε`` under the root as the seed writes it.
        maximize: ascend (``d = −g + λ·w``).
        work: up to 2 scratch arrays.

    References:
        Tieleman & Hinton 2012, COURSERA "Neural Networks for Machine Learning",
        lecture 6e; Graves 2013, "Generating Sequences With Recurrent Neural
        Networks" (the centered form).
    """
    d, k = _decayed_grad(param, grad, weight_decay, work, maximize)
    s = _scratch(work, k, param)
    state = [a for a in (grad_avg if centered else None, momentum_buffer if momentum > 0 else None)
             if a is not None]
    blas = _blas.for_arrays(d, square_avg, s, param, *state)   # see sgd: axpy passes where possible
    one_minus_alpha = 1 - alpha
    np.multiply(d, d, out=s)
    if blas is not None:
        blas.axpby(one_minus_alpha, s, alpha, square_avg)      # G ← α·G + (1 − α)·d²
    else:
        square_avg *= alpha
        s *= one_minus_alpha
        square_avg += s
    if centered:
        if blas is not None:
            blas.axpby(one_minus_alpha, d, alpha, grad_avg)    # ḡ ← α·ḡ + (1 − α)·d
        else:
            np.subtract(d, grad_avg, out=s)
            s *= one_minus_alpha
            grad_avg += s
        np.multiply(grad_avg, grad_avg, out=s)
        np.subtract(square_avg, s, out=s)
        np.maximum(s, 0, out=s)              # G − ḡ² ≥ 0 exactly; rounding can make it −1 ulp
        denom_src = s
    else:
        denom_src = square_avg
    _denominator(denom_src, eps, eps_inside_sqrt, out=s)
    np.divide(d, s, out=s)
    if blas is not None:
        if momentum > 0:
            blas.axpby(1.0, s, momentum, momentum_buffer)      # b ← μ·b + d / denominator
            blas.axpy(-lr, momentum_buffer, param)
        else:
            blas.axpy(-lr, s, param)
        return
    if momentum > 0:
        momentum_buffer *= momentum
        momentum_buffer += s
        np.multiply(momentum_buffer, lr, out=s)
    else:
        s *= lr
    param -= s


def adam(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
         max_exp_avg_sq: np.ndarray | None = None, *, step: int, lr: float, beta1: float = 0.9,
         beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
         decoupled_weight_decay: bool = False, bias_correction: bool = True,
         eps_inside_sqrt: bool = False, maximize: bool = False,
         work: Sequence[np.ndarray] | None = None) -> None:
    """Adam / AdamW / AMSGrad (in place).

    With ``d = g + λ·w`` (coupled decay; AdamW instead first does ``w ← w·(1 − α·λ)``
    and uses ``d = g``)::

        m ← β1·m + (1 − β1)·d
        v ← β2·v + (1 − β2)·d ⊙ d
        amsgrad:  v_max ← max(v_max, v), used in place of v below
        m̂ = m / (1 − β1^t),   v̂ = v / (1 − β2^t)     (bias_correction=False: m̂ = m, v̂ = v)
        w ← w − α · m̂ / (√v̂ + ε)                     (default, PyTorch's)
        w ← w − α · m̂ / √(v̂ + ε)                     (eps_inside_sqrt=True, the seed's)

    ``Adam(bias_correction=False, eps_inside_sqrt=True)`` is exactly the seed's
    rule ``w ← w − α·m/√(v + ε)``. The kernel folds the corrections into
    scalars (Kingma & Ba §2, "efficient version"), with ``c2 = 1 − β2^t`` and
    ``α_t = α·√c2/(1 − β1^t)``: ``w ← w − α_t · m / (√v + ε·√c2)``, or with ε
    under the root ``w ← w − α_t · m / √(v + ε·c2)``; equal to the forms above
    up to rounding (measured ≤ 1e-15 relative to PyTorch over 100 steps).
    Where the arrays allow it (as in :func:`sgd`), the two moment updates and the
    step on ``w`` are BLAS ``axpby``/``axpy`` passes; otherwise ``m`` follows
    PyTorch's ``lerp`` form ``m + (1 − β1)(d − m)``.

    Args:
        param: ``w``, updated in place. grad: ``g``, not modified.
        exp_avg, exp_avg_sq: ``m`` and ``v``, updated in place.
        max_exp_avg_sq: ``v_max`` (required when ``amsgrad``), updated in place.
        step: ``t``, the 1-based index of this step.
        lr, beta1, beta2, eps, weight_decay: ``α, β1, β2, ε, λ``.
        amsgrad: use the running maximum of ``v`` (Reddi, Kale & Kumar 2018).
        decoupled_weight_decay: AdamW's decay of the weights, not the gradient.
        bias_correction: divide by ``1 − β^t`` (Kingma & Ba); off in the seed.
        eps_inside_sqrt: place ``ε`` under the root as the seed writes it.
        maximize: ascend (``d = −g + λ·w``; AdamW: ``d = −g``).
        work: up to 2 scratch arrays.

    References:
        Kingma & Ba 2014, "Adam: A Method for Stochastic Optimization" (ICLR 2015);
        Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (ICLR).
    """
    if weight_decay != 0 and decoupled_weight_decay:
        param *= 1 - lr * weight_decay
        d, k = _decayed_grad(param, grad, 0.0, work, maximize)
    else:
        d, k = _decayed_grad(param, grad, weight_decay, work, maximize)
    s = _scratch(work, k, param)
    blas = _blas.for_arrays(d, exp_avg, exp_avg_sq, s, param)
    if blas is not None:
        blas.axpby(1 - beta1, d, beta1, exp_avg)     # m ← β1·m + (1 − β1)·d, one BLAS pass
        np.multiply(d, d, out=s)
        blas.axpby(1 - beta2, s, beta2, exp_avg_sq)  # v ← β2·v + (1 − β2)·d²
    else:
        np.subtract(d, exp_avg, out=s)           # m ← m + (1 − β1)(d − m), PyTorch's lerp
        s *= 1 - beta1
        exp_avg += s
        exp_avg_sq *= beta2
        np.multiply(d, d, out=s)
        s *= 1 - beta2
        exp_avg_sq += s
    second = exp_avg_sq
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    if bias_correction:
        bc1 = 1 - beta1 ** step
        bc2 = 1 - beta2 ** step
    else:
        bc1 = bc2 = 1.0
    bc2_sqrt = math.sqrt(bc2)
    if eps_inside_sqrt:
        np.add(second, eps * bc2, out=s)     # √(v̂ + ε) = √(v + ε·bc2) / √bc2
        np.sqrt(s, out=s)
    else:
        np.sqrt(second, out=s)               # √v̂ + ε = (√v + ε·√bc2) / √bc2
        s += eps * bc2_sqrt
    np.divide(exp_avg, s, out=s)
    if blas is not None:
        blas.axpy(-lr * bc2_sqrt / bc1, s, param)
    else:
        s *= lr * bc2_sqrt / bc1
        param -= s


def clip_grad_norm(params, max_norm: float, norm_type: float | str = 2.0,
                   error_if_nonfinite: bool = False) -> float:
    """Scale gradients in place so that their joint norm is at most ``max_norm``.

    ``total = ‖(‖g_1‖, …, ‖g_n‖)‖_p`` over every parameter's gradient; every gradient
    is multiplied by ``min(1, max_norm / (total + 1e-6))``, as
    ``torch.nn.utils.clip_grad_norm_`` does. A NaN in any gradient makes ``total`` NaN
    and so every gradient NaN (an infinite one makes the coefficient 0), as in PyTorch,
    unless ``error_if_nonfinite`` asks for an error instead.

    Args:
        params: a Parameter or an iterable of Parameters (anything with ``.grad``).
        max_norm: the largest allowed norm, ``>= 0`` (``inf`` never clips).
        norm_type: ``p`` of the p-norm, ``> 0``, or ``inf`` / ``"inf"`` for the max-norm.
        error_if_nonfinite: raise ``RuntimeError`` (PyTorch's type) when ``total`` is NaN
            or infinite, leaving the gradients untouched.

    Returns:
        The total norm before clipping, as a Python float.

    References:
        Pascanu, Mikolov & Bengio 2013, "On the difficulty of training
        recurrent neural networks" (ICML).
    """
    where = "clip_grad_norm"
    if hasattr(params, "grad"):
        params = [params]
    elif isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise _validate.argument_error(TypeError, where, "params", f"params must be a Parameter or an iterable "
                                       f"of Parameters, got {type(params).__name__}")
    params = list(params)
    for i, p in enumerate(params):
        if not hasattr(p, "grad"):
            raise _validate.argument_error(TypeError, where, "params", f"params[{i}] must be a Parameter "
                                           f"(with .grad), got {type(p).__name__}")
    if isinstance(norm_type, str):
        if norm_type.lower() != "inf":
            raise _validate.argument_error(ValueError, where, "norm_type", f"norm_type must be a positive "
                                           f"number or 'inf', got {norm_type!r}")
        norm_type = math.inf
    norm_type = _validate.real(where, "norm_type", norm_type, low=0, low_open=True, finite=False)
    max_norm = _validate.real(where, "max_norm", max_norm, low=0, finite=False)
    error_if_nonfinite = _validate.flag(where, "error_if_nonfinite", error_if_nonfinite)
    if not params:
        return 0.0
    norms = [_array_norm(p.grad, norm_type) for p in params]
    total = _array_norm(np.asarray(norms, dtype=np.float64), norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm: the total norm of order {norm_type} of the gradients is non-finite "
                           f"({total}), so it cannot be clipped; pass error_if_nonfinite=False to scale "
                           f"the gradients by it anyway")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1:               # NaN too: every gradient becomes NaN, as in PyTorch
        with np.errstate(invalid="ignore"):      # inf * 0 and 0 * NaN are NaN by intent, as in PyTorch
            for p in params:
                p.grad *= coef
                if hasattr(p, "mark_grad_written"):
                    p.mark_grad_written()   # a lazily zero gradient is now an array (0 * NaN is NaN)
    return total


def _array_norm(x: np.ndarray, norm_type: float) -> float:
    flat = np.asarray(x).reshape(-1)
    if flat.size == 0:
        return 0.0
    if norm_type == 2.0:
        return float(np.sqrt(np.dot(flat, flat)))
    return float(np.linalg.norm(flat, ord=norm_type))

