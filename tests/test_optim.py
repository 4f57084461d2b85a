"""Tests of trainlab.optim: parity with PyTorch and with the seed, convergence, state dicts, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trainlab import optim
from trainlab.nn.module import Parameter
from trainlab.optim import functional as F

SHAPES = [(7,), (5, 3), (4, 3, 3, 3)]          # vector, matrix, 4-d conv weight
PARITY_STEPS = 100
PARITY_RTOL = 1e-12                             # max |Δw| relative to the parameter scale


def make_params(seed: int = 0, dtype=np.float64, shapes=SHAPES) -> list[Parameter]:
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def gradient_sequence(steps: int, seed: int = 1, shapes=SHAPES) -> list[list[np.ndarray]]:
    """Random gradients whose scale varies over four decades across steps (exercises ε and adaptivity)."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) * 10.0 ** rng.uniform(-2, 2) for s in shapes]
            for _ in range(steps)]


def run_ours(make, params: list[Parameter], grads: list[list[np.ndarray]]) -> optim.Optimizer:
    opt = make(params)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad[...] = g
            p.mark_grad_written()
        opt.step()
    return opt


# A table of every optimizer and its main variants (used by the round-trip, in-place, float32 tests).
CONFIGS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.05),
    "sgd_wd": lambda ps: optim.SGD(ps, lr=0.05, weight_decay=0.1),
    "sgd_maximize_dampening": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.3, maximize=True),
    "momentum": lambda ps: optim.Momentum(ps, lr=0.05),
    "nesterov": lambda ps: optim.Nesterov(ps, lr=0.05, weight_decay=0.01),
    "momentum_velocity": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, momentum_form="velocity"),
    "nesterov_velocity": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True,
                                              momentum_form="velocity"),
    "velocity_dampening_maximize": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.5,
                                                        maximize=True, momentum_form="velocity"),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1),
    "adagrad_seed": lambda ps: optim.Adagrad(ps, lr=0.1, eps_inside_sqrt=True, lr_decay=0.01),
    "rmsprop": lambda ps: optim.RMSprop(ps, lr=0.01),
    "rmsprop_centered_momentum": lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.9,
                                                          weight_decay=0.01),
    "rmsprop_seed": lambda ps: optim.RMSprop(ps, lr=0.01, eps_inside_sqrt=True),
    "adam": lambda ps: optim.Adam(ps, lr=0.01),
    "adam_amsgrad_wd": lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True, weight_decay=0.01),
    "adam_maximize": lambda ps: optim.Adam(ps, lr=0.01, maximize=True),
    "adagrad_maximize": lambda ps: optim.Adagrad(ps, lr=0.1, maximize=True, weight_decay=0.01),
    "rmsprop_maximize": lambda ps: optim.RMSprop(ps, lr=0.01, maximize=True, centered=True),
    "adamw_maximize": lambda ps: optim.AdamW(ps, lr=0.01, maximize=True),
    "adam_seed": lambda ps: optim.create("adam_seed", ps, lr=0.01),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.01),
}


# ---------------------------------------------------------------------------- parity with PyTorch
def torch_cases():
    """(id, ours, torch kwargs builder) — the same hyperparameters on both sides."""
    torch = pytest.importorskip("torch")
    T = torch.optim
    c = [
        ("sgd", lambda ps: optim.SGD(ps, lr=0.05), lambda ts: T.SGD(ts, lr=0.05)),
        ("sgd_momentum", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9),
         lambda ts: T.SGD(ts, lr=0.05, momentum=0.9)),
        ("sgd_nesterov", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
         lambda ts: T.SGD(ts, lr=0.05, momentum=0.9, nesterov=True)),
        ("sgd_weight_decay", lambda ps: optim.SGD(ps, lr=0.05, weight_decay=0.1),
         lambda ts: T.SGD(ts, lr=0.05, weight_decay=0.1)),
        ("sgd_momentum_wd", lambda ps: optim.Momentum(ps, lr=0.05, momentum=0.8, weight_decay=0.1),
         lambda ts: T.SGD(ts, lr=0.05, momentum=0.8, weight_decay=0.1)),
        ("sgd_nesterov_wd", lambda ps: optim.Nesterov(ps, lr=0.05, weight_decay=0.1),
         lambda ts: T.SGD(ts, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
        ("sgd_nesterov_velocity", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True,
                                                       momentum_form="velocity"),
         lambda ts: T.SGD(ts, lr=0.05, momentum=0.9, nesterov=True)),
        ("sgd_default_lr", lambda ps: optim.SGD(ps), lambda ts: T.SGD(ts)),
        ("sgd_default_lr_momentum", lambda ps: optim.SGD(ps, momentum=0.9), lambda ts: T.SGD(ts, momentum=0.9)),
        ("sgd_dampening", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.5),
         lambda ts: T.SGD(ts, lr=0.05, momentum=0.9, dampening=0.5)),
        ("sgd_dampening_wd", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.1, weight_decay=0.1),
         lambda ts: T.SGD(ts, lr=0.05, momentum=0.8, dampening=0.1, weight_decay=0.1)),
        ("sgd_dampening_velocity", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.5,
                                                        momentum_form="velocity"),
         lambda ts: T.SGD(ts, lr=0.05, momentum=0.9, dampening=0.5)),
        ("sgd_maximize", lambda ps: optim.SGD(ps, lr=0.05, maximize=True),
         lambda ts: T.SGD(ts, lr=0.05, maximize=True)),
        ("sgd_maximize_momentum_wd", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.1,
                                                          dampening=0.2, maximize=True),
         lambda ts: T.SGD(ts, lr=0.05, momentum=0.9, weight_decay=0.1, dampening=0.2, maximize=True)),
        ("sgd_maximize_nesterov", lambda ps: optim.Nesterov(ps, lr=0.05, maximize=True),
         lambda ts: T.SGD(ts, lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
        ("adagrad", lambda ps: optim.Adagrad(ps), lambda ts: T.Adagrad(ts)),
        ("adagrad_all", lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01, weight_decay=0.1,
                                                 initial_accumulator_value=0.5, eps=1e-6),
         lambda ts: T.Adagrad(ts, lr=0.1, lr_decay=0.01, weight_decay=0.1,
                              initial_accumulator_value=0.5, eps=1e-6)),
        ("rmsprop", lambda ps: optim.RMSprop(ps), lambda ts: T.RMSprop(ts)),
        ("rmsprop_centered", lambda ps: optim.RMSprop(ps, lr=0.01, centered=True),
         lambda ts: T.RMSprop(ts, lr=0.01, centered=True)),
        ("rmsprop_momentum", lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.9, alpha=0.9),
         lambda ts: T.RMSprop(ts, lr=0.01, momentum=0.9, alpha=0.9)),
        ("rmsprop_centered_momentum_wd",
         lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5, weight_decay=0.1),
         lambda ts: T.RMSprop(ts, lr=0.01, centered=True, momentum=0.5, weight_decay=0.1)),
        ("rmsprop_maximize", lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5, weight_decay=0.1,
                                                      maximize=True),
         lambda ts: T.RMSprop(ts, lr=0.01, centered=True, momentum=0.5, weight_decay=0.1, maximize=True)),
        ("adagrad_maximize", lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01, weight_decay=0.1, maximize=True),
         lambda ts: T.Adagrad(ts, lr=0.1, lr_decay=0.01, weight_decay=0.1, maximize=True)),
        ("adam", lambda ps: optim.Adam(ps), lambda ts: T.Adam(ts)),
        ("adam_lr_betas", lambda ps: optim.Adam(ps, lr=0.05, betas=(0.8, 0.99), eps=1e-6),
         lambda ts: T.Adam(ts, lr=0.05, betas=(0.8, 0.99), eps=1e-6)),
        ("adam_amsgrad", lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True),
         lambda ts: T.Adam(ts, lr=0.01, amsgrad=True)),
        ("adam_weight_decay", lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1),
         lambda ts: T.Adam(ts, lr=0.01, weight_decay=0.1)),
        ("adamw", lambda ps: optim.AdamW(ps, lr=0.01), lambda ts: T.AdamW(ts, lr=0.01)),
        ("adamw_amsgrad", lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1, amsgrad=True),
         lambda ts: T.AdamW(ts, lr=0.01, weight_decay=0.1, amsgrad=True)),
        ("adam_maximize", lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True),
         lambda ts: T.Adam(ts, lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
        ("adamw_maximize", lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1, maximize=True),
         lambda ts: T.AdamW(ts, lr=0.01, weight_decay=0.1, maximize=True)),
    ]
    return c


TORCH_IDS = ["sgd", "sgd_momentum", "sgd_nesterov", "sgd_weight_decay", "sgd_momentum_wd",
             "sgd_nesterov_wd", "sgd_nesterov_velocity", "sgd_default_lr", "sgd_default_lr_momentum",
             "sgd_dampening", "sgd_dampening_wd", "sgd_dampening_velocity", "sgd_maximize",
             "sgd_maximize_momentum_wd", "sgd_maximize_nesterov", "adagrad", "adagrad_all", "rmsprop",
             "rmsprop_centered", "rmsprop_momentum", "rmsprop_centered_momentum_wd", "rmsprop_maximize",
             "adagrad_maximize", "adam", "adam_lr_betas", "adam_amsgrad", "adam_weight_decay", "adamw",
             "adamw_amsgrad", "adam_maximize", "adamw_maximize"]


def torch_parity(case_id: str, steps: int = PARITY_STEPS, shapes=SHAPES) -> float:
    """Run ours and torch (float64, single-tensor path) on the same gradients; max relative |Δw|."""
    torch = pytest.importorskip("torch")
    _, make_ours, make_torch = next(c for c in torch_cases() if c[0] == case_id)
    grads = gradient_sequence(steps, shapes=shapes)
    params = make_params(shapes=shapes)
    tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    topt = make_torch(tensors)
    for group in topt.param_groups:
        group["foreach"] = False
    for step_grads in grads:
        for t, g in zip(tensors, step_grads, strict=True):
            t.grad = torch.tensor(g)
        topt.step()
    run_ours(make_ours, params, grads)
    worst = 0.0
    for p, t in zip(params, tensors, strict=True):
        ref = t.detach().numpy()
        worst = max(worst, float(np.abs(p.data - ref).max() / max(1.0, np.abs(ref).max())))
    return worst


@pytest.mark.usefixtures("kernel_path")
@pytest.mark.parametrize("case_id", TORCH_IDS)
def test_parity_with_torch(case_id):
    assert torch_parity(case_id) <= PARITY_RTOL


# Large parameters go through BLAS axpy/axpby (trainlab._blas) when NumPy's OpenBLAS is found.
BLAS_SHAPES = [(7,), (64, 80), (3, 40, 40)]        # 7 values stay on the NumPy path, the others do not


@pytest.mark.usefixtures("kernel_path")
@pytest.mark.parametrize("case_id", TORCH_IDS)
def test_parity_with_torch_on_the_blas_path(case_id):
    from trainlab import _blas
    assert all(math.prod(s) >= _blas.MIN_SIZE for s in BLAS_SHAPES[1:])
    assert torch_parity(case_id, steps=30, shapes=BLAS_SHAPES) <= PARITY_RTOL


BLAS_CONFIGS = list(CONFIGS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", BLAS_CONFIGS)
def test_blas_path_matches_the_numpy_path(name, dtype, monkeypatch, numpy_kernels):
    from trainlab import _blas
    if not _blas.available():
        pytest.skip("no OpenBLAS level-1 functions in this NumPy build")
    grads = [[g.astype(dtype) for g in step] for step in gradient_sequence(40, shapes=BLAS_SHAPES)]
    fast = run_ours(CONFIGS[name], make_params(dtype=dtype, shapes=BLAS_SHAPES), grads)
    calls = []
    real = _blas.for_arrays
    monkeypatch.setattr(_blas, "for_arrays", lambda *a: calls.append(a) and None)
    slow = run_ours(CONFIGS[name], make_params(dtype=dtype, shapes=BLAS_SHAPES), grads)
    assert calls                                       # the NumPy path ran ...
    assert all(real(*a) is None for a in calls if a[0].size < _blas.MIN_SIZE)
    assert any(real(*a) is not None for a in calls)    # ... where the BLAS path would have
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for p, q in zip(fast.param_groups[0]["params"], slow.param_groups[0]["params"], strict=True):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, q.data, rtol=0, atol=tol * max(1.0, np.abs(q.data).max()))


def test_torch_case_table_is_complete():
    pytest.importorskip("torch")
    assert [c[0] for c in torch_cases()] == TORCH_IDS


def test_param_groups_match_torch():
    torch = pytest.importorskip("torch")
    grads = gradient_sequence(30)
    params = make_params()
    tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    topt = torch.optim.Adam([{"params": tensors[:1], "lr": 0.1}, {"params": tensors[1:]}],
                            lr=0.01, foreach=False)
    for step_grads in grads:
        for t, g in zip(tensors, step_grads, strict=True):
            t.grad = torch.tensor(g)
        topt.step()
    opt = run_ours(lambda ps: optim.Adam([{"params": ps[:1], "lr": 0.1}, {"params": ps[1:]}], lr=0.01),
                   params, grads)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    for p, t in zip(params, tensors, strict=True):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- parity with the seed
# The six formulas of SEED.md, transcribed literally, one line each; state in, state out.
def seed_gradient_descent(w, g, lr):
    w = w - lr * g
    return (w,)


def seed_momentum(w, v, g, lr, mu):
    v = mu * v - lr * g; w = w + v  # noqa: E702
    return w, v


def seed_nesterov(w, v, g, lr, mu):
    v = mu * v - lr * g; w = w + mu * v - lr * g  # noqa: E702
    return w, v


def seed_adagrad(w, G, g, lr, eps):
    G = G + g * g; w = w - lr / np.sqrt(G + eps) * g  # noqa: E702
    return w, G


def seed_rmsprop(w, G, g, lr, gamma, eps):
    G = gamma * G + (1 - gamma) * g * g; w = w - lr / np.sqrt(G + eps) * g  # noqa: E702
    return w, G


def seed_adam(w, m, v, g, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * g; v = beta2 * v + (1 - beta2) * g * g; w = w - lr / np.sqrt(v + eps) * m  # noqa: E501, E702
    return w, m, v


# name: (seed rule, its hyperparameters, number of state arrays, our optimizer with the seed's flags)
SEED_CASES = {
    "gradient_descent": (seed_gradient_descent, dict(lr=0.05), 0,
                         lambda ps: optim.SGD(ps, lr=0.05)),
    "momentum": (seed_momentum, dict(lr=0.05, mu=0.9), 1,
                 lambda ps: optim.Momentum(ps, lr=0.05, momentum=0.9, momentum_form="velocity")),
    "nesterov": (seed_nesterov, dict(lr=0.05, mu=0.9), 1,
                 lambda ps: optim.Nesterov(ps, lr=0.05, momentum=0.9, momentum_form="velocity")),
    "adagrad": (seed_adagrad, dict(lr=0.1, eps=1e-10), 1,
                lambda ps: optim.Adagrad(ps, lr=0.1, eps=1e-10, eps_inside_sqrt=True)),
    "rmsprop": (seed_rmsprop, dict(lr=0.01, gamma=0.9, eps=1e-8), 1,
                lambda ps: optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-8, eps_inside_sqrt=True)),
    "adam": (seed_adam, dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8), 2,
             lambda ps: optim.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8,
                                   bias_correction=False, eps_inside_sqrt=True)),
}


def seed_parity(name: str, steps: int = PARITY_STEPS) -> float:
    rule, hp, n_state, make = SEED_CASES[name]
    grads = gradient_sequence(steps, seed=2)
    params = make_params(seed=3)
    states = [(p.data.copy(),) + tuple(np.zeros_like(p.data) for _ in range(n_state)) for p in params]
    for step_grads in grads:
        states = [rule(*st, g, **hp) for st, g in zip(states, step_grads, strict=True)]
    run_ours(make, params, grads)
    return max(float(np.abs(p.data - st[0]).max() / max(1.0, np.abs(st[0]).max()))
               for p, st in zip(params, states, strict=True))


@pytest.mark.parametrize("name", list(SEED_CASES))
@pytest.mark.usefixtures("kernel_path")
def test_parity_with_seed(name):
    assert seed_parity(name) <= PARITY_RTOL


def test_adam_seed_registry_entry_is_the_seed_rule():
    opt = optim.create("adam_seed", make_params())
    assert opt.param_groups[0]["bias_correction"] is False
    assert opt.param_groups[0]["eps_inside_sqrt"] is True


def test_velocity_and_buffer_forms_agree_at_constant_lr():
    grads = gradient_sequence(100)
    a, b = make_params(), make_params()
    run_ours(lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, momentum_form="velocity"), a, grads)
    run_ours(lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), b, grads)
    for p, q in zip(a, b, strict=True):
        np.testing.assert_allclose(p.data, q.data, rtol=0, atol=1e-12 * max(1, np.abs(q.data).max()))


# ---------------------------------------------------------------------------- convergence
rng_q = np.random.default_rng(42)
_Q, _ = np.linalg.qr(rng_q.standard_normal((5, 5)))
QUAD_A = _Q @ np.diag(np.linspace(1.0, 10.0, 5)) @ _Q.T        # SPD, condition number 10
QUAD_MIN = rng_q.standard_normal(5)


def quadratic_grad(w):
    """∇ of f(w) = ½ (w − w*)ᵀ A (w − w*)."""
    return QUAD_A @ (w - QUAD_MIN)


def rosenbrock_grad(w):
    """∇ of f(x, y) = (1 − x)² + 100 (y − x²)²; minimum at (1, 1)."""
    x, y = w
    return np.array([-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)])


def exp_decay(gamma):
    return lambda opt: optim.ExponentialLR(opt, gamma=gamma)


# name: (factory, step budget, schedule or None). The lrs and budgets below are tuned by hand;
# the steps each needed when tuned are noted. AdamW runs with weight_decay=0: decoupled decay moves
# the fixed point by O(weight_decay) (~0.05·wd here), see test_adamw_decay_converges_to_origin.
QUADRATIC_TABLE = {   # start w = 0, target ‖w − w*‖∞ ≤ 1e-6
    "sgd": (lambda ps: optim.SGD(ps, lr=0.15), 200, None),                       # ~80 steps
    "momentum": (lambda ps: optim.Momentum(ps, lr=0.05, momentum=0.9), 400, None),  # ~250
    "nesterov": (lambda ps: optim.Nesterov(ps, lr=0.05, momentum=0.9), 400, None),  # ~140
    "adagrad": (lambda ps: optim.Adagrad(ps, lr=1.0), 200, None),                # ~50
    "rmsprop": (lambda ps: optim.RMSprop(ps, lr=0.1), 300, exp_decay(0.99)),     # constant lr oscillates
    "adam": (lambda ps: optim.Adam(ps, lr=0.03), 500, None),                     # ~260
    "adamw": (lambda ps: optim.AdamW(ps, lr=0.03, weight_decay=0.0), 500, None),  # ~260
    "adam_seed": (lambda ps: optim.create("adam_seed", ps, lr=0.03), 500, None),  # ~250
}
ROSENBROCK_TABLE = {  # start (−1.5, 2), target ‖w − (1, 1)‖∞ ≤ 1e-3
    "sgd": (lambda ps: optim.SGD(ps, lr=1e-3), 20000, None),                     # ~17400 steps
    "momentum": (lambda ps: optim.Momentum(ps, lr=1e-3, momentum=0.9), 3000, None),  # ~1650
    "nesterov": (lambda ps: optim.Nesterov(ps, lr=1e-3, momentum=0.9), 3000, None),  # ~1550
    "adagrad": (lambda ps: optim.Adagrad(ps, lr=1.0), 16000, None),              # large lr; ~12900
    "rmsprop": (lambda ps: optim.RMSprop(ps, lr=0.01), 8000, exp_decay(0.9995)),  # ~6100
    "adam": (lambda ps: optim.Adam(ps, lr=0.01), 5000, None),                    # ~3500
    "adamw": (lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.0), 5000, None),  # ~3500
    "adam_seed": (lambda ps: optim.create("adam_seed", ps, lr=0.01), 5000, None),  # ~3400
}


def minimise(factory, steps, schedule, grad_fn, start):
    p = Parameter(np.array(start, dtype=np.float64))
    opt = factory([p])
    sched = schedule(opt) if schedule else None
    for _ in range(steps):
        p.grad[...] = grad_fn(p.data)
        opt.step()
        if sched:
            sched.step()
    return p.data


def test_convergence_tables_cover_every_registry_name():
    assert set(QUADRATIC_TABLE) == set(optim.names) == set(ROSENBROCK_TABLE)


@pytest.mark.parametrize("name", list(QUADRATIC_TABLE))
def test_converges_on_convex_quadratic(name):
    w = minimise(*QUADRATIC_TABLE[name], quadratic_grad, np.zeros(5))
    assert np.abs(w - QUAD_MIN).max() <= 1e-6


@pytest.mark.parametrize("name", list(ROSENBROCK_TABLE))
def test_converges_on_rosenbrock(name):
    w = minimise(*ROSENBROCK_TABLE[name], rosenbrock_grad, [-1.5, 2.0])
    assert np.abs(w - 1.0).max() <= 1e-3


@pytest.mark.parametrize("make", [lambda ps: optim.AdamW(ps, lr=0.03, weight_decay=1e-2),
                                  lambda ps: optim.Adam(ps, lr=0.03, weight_decay=1e-2)],
                         ids=["adamw", "adam_l2"])
def test_adamw_decay_converges_to_origin(make):
    # With the minimum at the origin both kinds of decay keep it a fixed point.
    w = minimise(make, 600, None, lambda w: QUAD_A @ w, QUAD_MIN)
    assert np.abs(w).max() <= 1e-6


# ---------------------------------------------------------------------------- state dicts
PLAIN_SCALARS = (int, float, bool, str, type(None))


def assert_plain(obj, path="sd"):
    if isinstance(obj, np.ndarray):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, (int, str)), f"{path}: key {k!r}"
            assert_plain(v, f"{path}[{k!r}]")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            assert_plain(v, f"{path}[{i}]")
    else:
        assert type(obj) in PLAIN_SCALARS, f"{path} is a {type(obj).__name__}"


def strip_arrays(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        return {str(k): strip_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [strip_arrays(v) for v in obj]
    return obj


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_dict_round_trip_is_bit_exact(name, dtype):
    make = CONFIGS[name]
    grads = gradient_sequence(100, seed=5)
    reference = make_params(dtype=dtype)
    run_ours(make, reference, grads)

    params = make_params(dtype=dtype)
    saved = run_ours(make, params, grads[:50]).state_dict()
    # the state dict survives JSON (arrays aside) and holds only plain values
    assert_plain(saved)
    json.dumps(strip_arrays(saved), allow_nan=False)
    fresh = make(params)
    fresh.load_state_dict(saved)
    for step_grads in grads[50:]:
        for p, g in zip(params, step_grads, strict=True):
            p.grad[...] = g
        fresh.step()
    for p, q in zip(params, reference, strict=True):
        assert p.data.dtype == dtype
        assert np.array_equal(p.data, q.data)


def test_state_dict_structure_and_copy_semantics():
    params = make_params()
    opt = run_ours(CONFIGS["adam_amsgrad_wd"], params, gradient_sequence(3))
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert list(sd["state"]) == [0, 1, 2]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["step"] == 3 and type(sd["state"][0]["step"]) is int
    assert sd["param_groups"][0]["params"] == [0, 1, 2]
    assert sd["param_groups"][0]["betas"] == [0.9, 0.999]
    # a copy: later steps do not change it
    before = sd["state"][2]["exp_avg"].copy()
    opt.step()
    assert np.array_equal(sd["state"][2]["exp_avg"], before)


def test_load_state_dict_accepts_json_keys_and_restores_tuples():
    params = make_params()
    opt = run_ours(CONFIGS["adam"], params, gradient_sequence(3))
    sd = opt.state_dict()
    sd = {"state": {str(k): v for k, v in sd["state"].items()},
          "param_groups": json.loads(json.dumps(sd["param_groups"]))}
    sd["state"]["0"]["step"] = np.array(3)          # e.g. a 0-d array from safetensors
    fresh = optim.Adam(params)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["betas"] == (0.9, 0.999)
    assert fresh.state[params[0]]["step"] == 3
    assert fresh.param_groups[0]["lr"] == 0.01


def test_load_state_dict_rejects_mismatch_and_changes_nothing():
    params = make_params()
    opt = run_ours(CONFIGS["adam"], params, gradient_sequence(3))
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="parameters"):
        optim.Adam(params[:2]).load_state_dict(sd)
    other = [Parameter(np.zeros((2, 2))), params[1], params[2]]
    target = optim.Adam(other, lr=0.5)
    with pytest.raises(ValueError, match="shape"):
        target.load_state_dict(sd)
    assert target.param_groups[0]["lr"] == 0.5 and target.state == {}


# ---------------------------------------------------------------------------- in place, dtypes
@pytest.mark.parametrize("name", list(CONFIGS))
def test_updates_in_place_and_leaves_grads_alone(name):
    params = make_params()
    opt = CONFIGS[name](params)
    data_refs = [p.data for p in params]
    grad_refs = [p.grad for p in params]
    before = [p.data.copy() for p in params]
    grads = gradient_sequence(2)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad[...] = g
        grad_copies = [p.grad.copy() for p in params]
        opt.step()
        for p, d, gr, gc in zip(params, data_refs, grad_refs, grad_copies, strict=True):
            assert p.data is d and p.grad is gr
            assert np.array_equal(p.grad, gc)
    assert all(not np.array_equal(p.data, b) for p, b in zip(params, before, strict=True))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_float32_state_and_close_to_float64(name):
    grads = gradient_sequence(20)
    p32, p64 = make_params(dtype=np.float32), make_params()
    opt = run_ours(CONFIGS[name], p32, [[g.astype(np.float32) for g in gs] for gs in grads])
    run_ours(CONFIGS[name], p64, grads)
    for p, q in zip(p32, p64, strict=True):
        assert p.data.dtype == np.float32
        np.testing.assert_allclose(p.data, q.data, rtol=1e-4, atol=1e-4)
    for st in opt.state.values():
        for v in st.values():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float32


def test_zero_grad_clears_every_parameter():
    params = make_params()
    opt = optim.SGD(params, lr=0.1)
    for p in params:
        p.accumulate_grad(np.ones_like(p.data))
    opt.zero_grad()
    assert all(not p.grad.any() and p._grad_is_zero for p in params)


def test_state_is_keyed_by_parameter_object():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(3))     # same shape, same values
    opt = optim.Adam([a, b], lr=0.1)
    a.grad[...] = 1.0
    b.grad[...] = -2.0
    opt.step()
    assert set(opt.state) == {a, b}
    assert not np.array_equal(opt.state[a]["exp_avg"], opt.state[b]["exp_avg"])


def test_step_returns_closure_value():
    opt = optim.SGD(make_params(), lr=0.1)
    assert opt.step(lambda: 3.5) == 3.5


def test_functional_kernel_without_workspace_matches_optimizer():
    grads = gradient_sequence(10)
    params = make_params()
    run_ours(lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True), params, grads)
    for i, w0 in enumerate(make_params()):
        w = w0.data.copy()
        m, v, vmax = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
        for t, step_grads in enumerate(grads, start=1):
            F.adam(w, step_grads[i], m, v, vmax, step=t, lr=0.01, amsgrad=True)
        assert np.array_equal(w, params[i].data)


def test_scratch_is_made_only_when_a_kernel_asks_for_it():
    """Momentum SGD on BLAS needs no scratch; a slot only a bias asks for stays bias-sized."""
    from trainlab import _blas
    if not _blas.available():
        pytest.skip("no OpenBLAS level-1 functions in this NumPy build")
    weight, bias = Parameter(np.ones((300, 200), np.float32)), Parameter(np.ones(7, np.float32))
    opt = optim.SGD([weight, bias], lr=0.1, momentum=0.9)
    for _ in range(2):
        weight.grad[...] = 0.5
        bias.grad[...] = 0.5
        opt.step()
    assert all(buf.size <= bias.data.size for buf in opt._work.values())     # the weight's update used none
    ref = Parameter(np.ones(7, np.float32))
    ref_opt = optim.SGD([ref], lr=0.1, momentum=0.9)
    for _ in range(2):
        ref.grad[...] = 0.5
        ref_opt.step()
    np.testing.assert_array_equal(bias.data, ref.data)
    work = opt._workspace(bias)
    assert len(work) == opt.work_slots and work[1].shape == bias.shape
    with pytest.raises(IndexError):
        work[opt.work_slots]


# ---------------------------------------------------------------------------- Adam properties
@pytest.mark.parametrize("seed", range(3))
def test_adam_first_step_is_lr_times_sign(seed):
    # Kingma & Ba §2.1: with ε → 0 the first step is α·sign(g) in every coordinate.
    rng = np.random.default_rng(seed)
    params = [Parameter(rng.standard_normal(s)) for s in SHAPES]
    before = [p.data.copy() for p in params]
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape) * 10.0 ** rng.uniform(-3, 3, p.shape)
    optim.Adam(params, lr=0.01, eps=1e-30).step()
    for p, b in zip(params, before, strict=True):
        np.testing.assert_allclose(p.data - b, -0.01 * np.sign(p.grad), rtol=1e-12, atol=0)


@pytest.mark.parametrize("c", [1e-3, 0.37, 10.0, 1234.5])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_is_invariant_to_gradient_scale(c, amsgrad):
    # The update depends on m/√v, unchanged when g → c·g (up to ε, here 1e-30).
    ref, scaled = make_params(), make_params()
    o1 = optim.Adam(ref, lr=0.01, eps=1e-30, amsgrad=amsgrad)
    o2 = optim.Adam(scaled, lr=0.01, eps=1e-30, amsgrad=amsgrad)
    for _ in range(50):
        for p, q in zip(ref, scaled, strict=True):               # a quadratic: the gradient depends on w
            p.grad[...] = p.data - 0.5
            q.grad[...] = c * (q.data - 0.5)
        o1.step()
        o2.step()
    for p, q in zip(ref, scaled, strict=True):
        np.testing.assert_allclose(q.data, p.data, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------- validation
BAD_HYPERPARAMETERS = [
    (optim.SGD, dict(lr=-0.1), "lr", "-0.1"),
    (optim.SGD, dict(lr=float("nan")), "lr", "nan"),
    (optim.SGD, dict(lr=0.1, momentum=1.0), "momentum", "1.0"),
    (optim.SGD, dict(lr=0.1, momentum=-0.5), "momentum", "-0.5"),
    (optim.SGD, dict(lr=0.1, weight_decay=-1e-4), "weight_decay", "-0.0001"),
    (optim.SGD, dict(lr=0.1, nesterov=True), "momentum", "0.0"),
    (optim.SGD, dict(lr=0.1, momentum=0.9, momentum_form="torch"), "momentum_form", "'torch'"),
    (optim.Momentum, dict(lr=0.1, momentum=1.5), "momentum", "1.5"),
    (optim.Nesterov, dict(lr=0.1, momentum=0.0), "momentum", "0.0"),
    (optim.Adagrad, dict(lr=-1.0), "lr", "-1.0"),
    (optim.Adagrad, dict(eps=0.0), "eps", "0.0"),
    (optim.Adagrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value", "-1.0"),
    (optim.Adagrad, dict(lr_decay=-0.1), "lr_decay", "-0.1"),
    (optim.Adagrad, dict(weight_decay=-0.1), "weight_decay", "-0.1"),
    (optim.RMSprop, dict(alpha=1.0), "alpha", "1.0"),
    (optim.RMSprop, dict(alpha=-0.1), "alpha", "-0.1"),
    (optim.RMSprop, dict(eps=-1e-8), "eps", "-1e-08"),
    (optim.RMSprop, dict(momentum=1.0), "momentum", "1.0"),
    (optim.Adam, dict(lr=-1e-3), "lr", "-0.001"),
    (optim.Adam, dict(betas=(1.0, 0.999)), "betas[0]", "1.0"),
    (optim.Adam, dict(betas=(0.9, -0.1)), "betas[1]", "-0.1"),
    (optim.Adam, dict(betas=(0.9, 0.99, 0.9)), "betas", "(0.9, 0.99, 0.9)"),
    (optim.Adam, dict(eps=0.0), "eps", "0.0"),
    (optim.Adam, dict(weight_decay=-0.01), "weight_decay", "-0.01"),
    (optim.AdamW, dict(weight_decay=-0.01), "weight_decay", "-0.01"),
]


@pytest.mark.parametrize("cls, kwargs, arg, shown", BAD_HYPERPARAMETERS,
                         ids=[f"{c.__name__}-{a}-{s}" for c, _, a, s in BAD_HYPERPARAMETERS])
def test_bad_hyperparameter_raises_naming_argument_and_value(cls, kwargs, arg, shown):
    with pytest.raises(ValueError) as info:
        cls(make_params(), **kwargs)
    assert arg in str(info.value) and shown in str(info.value)


def test_bad_hyperparameter_in_a_param_group():
    params = make_params()
    with pytest.raises(ValueError, match=r"lr must be >= 0, got -1"):
        optim.Adam([{"params": params[:1], "lr": -1}, {"params": params[1:]}])
    with pytest.raises(ValueError, match="lrr"):
        optim.Adam([{"params": params, "lrr": 0.1}])


def test_bad_params():
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="Parameter"):
        optim.Adam([np.zeros(3)])
    with pytest.raises(TypeError, match="Parameter"):
        optim.SGD([Parameter(np.zeros(3)), "weight"], lr=0.1)
    p = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="set"):
        optim.SGD({p}, lr=0.1)


def test_create_and_names():
    assert optim.names == ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw",
                           "adam_seed"]
    for name in optim.names:
        kwargs = {"lr": 0.1} if name in ("sgd", "momentum", "nesterov") else {}
        assert isinstance(optim.create(name, make_params(), **kwargs), optim.Optimizer)
    assert type(optim.create("momentum", make_params(), lr=0.1)) is optim.Momentum
    assert optim.get("adamw") is optim.AdamW and optim.get("adam_seed") is optim.adam_seed
    with pytest.raises(ValueError, match="valid names"):
        optim.get("sgdd")
    with pytest.raises(ValueError) as info:
        optim.create("adamm", make_params())
    assert "adamm" in str(info.value) and all(n in str(info.value) for n in optim.names)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_get_config_rebuilds_the_optimizer(name):
    opt = CONFIGS[name](make_params())
    config = opt.get_config()
    json.dumps(config, allow_nan=False)
    cfg = dict(config)
    rebuilt = optim.create(cfg.pop("name"), make_params(), **cfg)
    assert rebuilt.get_config() == config
    assert {k: v for k, v in rebuilt.param_groups[0].items() if k != "params"} == \
        {k: v for k, v in opt.param_groups[0].items() if k != "params"}


def test_lr_property():
    params = make_params()
    opt = optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], lr=0.1)
    assert opt.lr == 0.1
    opt.lr = 0.2
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.2]
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0


# ---------------------------------------------------------------------------- clip_grad_norm
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    params = make_params()
    tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    for p, t, g in zip(params, tensors, gradient_sequence(1)[0], strict=True):
        p.grad[...] = g
        t.grad = torch.tensor(g)
    total = optim.clip_grad_norm(params, max_norm, norm_type)
    ref = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type, foreach=False)
    assert isinstance(total, float)
    assert total == pytest.approx(float(ref), rel=1e-12)
    for p, t in zip(params, tensors, strict=True):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12, atol=0)


def test_clip_grad_norm_bad_arguments():
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm(make_params(), -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        optim.clip_grad_norm(make_params(), 1.0, norm_type=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [1.0, 1e9, math.inf])
def test_clip_grad_norm_with_a_nonfinite_gradient_matches_torch(bad, norm_type, max_norm):
    torch = pytest.importorskip("torch")
    params = make_params()
    tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    grads = gradient_sequence(1)[0]
    grads[1][2, 1] = bad
    params[2].zero_grad()                   # a lazily zero gradient is scaled as well (0 * NaN = NaN)
    grads[2] = np.zeros_like(grads[2])
    for p, g in zip(params[:2], grads, strict=False):
        p.grad[...] = g
        p.mark_grad_written()
    for t, g in zip(tensors, grads, strict=True):
        t.grad = torch.tensor(g)
    total = optim.clip_grad_norm(params, max_norm, norm_type)
    ref = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type, foreach=False)
    np.testing.assert_equal(total, float(ref))
    for p, t in zip(params, tensors, strict=True):
        np.testing.assert_array_equal(np.isnan(p.grad), np.isnan(t.grad.numpy()))
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12, atol=0)


def test_clip_grad_norm_error_if_nonfinite_as_torch():
    torch = pytest.importorskip("torch")
    params = make_params()
    for p, g in zip(params, gradient_sequence(1)[0], strict=True):
        p.grad[...] = g
    params[0].grad[0] = np.nan
    before = [p.grad.copy() for p in params]
    t = torch.tensor(before[0], requires_grad=True)
    t.grad = torch.tensor(before[0])
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_([t], 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm(params, 1.0, error_if_nonfinite=True)
    for p, g in zip(params, before, strict=True):
        np.testing.assert_array_equal(p.grad, g)          # untouched


def test_maximize_ascends_what_minimize_descends():
    # maximizing f is minimizing -f: the same trajectory as the plain rule on the negated gradients
    for name in optim.names:
        kwargs = {"lr": 0.05} if name in ("sgd", "momentum", "nesterov") else {}
        grads = gradient_sequence(20)
        up = run_ours(lambda ps, n=name, kw=kwargs: optim.create(n, ps, maximize=True, **kw), make_params(), grads)
        down = run_ours(lambda ps, n=name, kw=kwargs: optim.create(n, ps, **kw), make_params(),
                        [[-g for g in step] for step in grads])
        for p, q in zip(up.param_groups[0]["params"], down.param_groups[0]["params"], strict=True):
            np.testing.assert_array_equal(p.data, q.data)
