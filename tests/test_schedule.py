"""Tests of trainlab.optim.schedule: the same lr sequences as torch.optim.lr_scheduler."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest

from trainlab import optim
from trainlab.nn.module import Parameter

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler

LRS = (0.1, 0.03)          # two param groups with different learning rates
STEPS = 70
TOL = 1e-12


def ours_opt(**kw):
    groups = [{"params": [Parameter(np.zeros(3))], "lr": lr} for lr in LRS]
    return optim.SGD(groups, lr=LRS[0], **kw)


def torch_opt():
    groups = [{"params": [torch.zeros(3, requires_grad=True)], "lr": lr} for lr in LRS]
    return torch.optim.SGD(groups, lr=LRS[0])


# (id, ours(opt), torch(opt)) with the same settings
SCHEDULES = [
    ("step", lambda o: optim.StepLR(o, step_size=7, gamma=0.5),
     lambda o: lrs.StepLR(o, step_size=7, gamma=0.5)),
    ("step_default_gamma", lambda o: optim.StepLR(o, step_size=3),
     lambda o: lrs.StepLR(o, step_size=3)),
    ("exponential", lambda o: optim.ExponentialLR(o, gamma=0.93),
     lambda o: lrs.ExponentialLR(o, gamma=0.93)),
    ("cosine", lambda o: optim.CosineAnnealingLR(o, T_max=20),
     lambda o: lrs.CosineAnnealingLR(o, T_max=20)),
    ("cosine_eta_min", lambda o: optim.CosineAnnealingLR(o, T_max=17, eta_min=1e-3),
     lambda o: lrs.CosineAnnealingLR(o, T_max=17, eta_min=1e-3)),
    ("warmup", lambda o: optim.LinearWarmup(o, start_factor=0.1, total_iters=10),
     lambda o: lrs.LinearLR(o, start_factor=0.1, total_iters=10)),
    ("warmup_default", lambda o: optim.LinearWarmup(o), lambda o: lrs.LinearLR(o)),
    ("linear_decay", lambda o: optim.LinearWarmup(o, start_factor=0.25, end_factor=0.5, total_iters=8),
     lambda o: lrs.LinearLR(o, start_factor=0.25, end_factor=0.5, total_iters=8)),
]


def lr_sequence(opt, sched, steps=STEPS):
    seq = [sched.get_last_lr()]
    for _ in range(steps):
        opt.step()
        sched.step()
        seq.append(sched.get_last_lr())
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
    return np.array(seq, dtype=np.float64)


@pytest.mark.parametrize("case", SCHEDULES, ids=[c[0] for c in SCHEDULES])
def test_schedule_matches_torch(case):
    _, ours, theirs = case
    a = ours_opt()
    b = torch_opt()
    got = lr_sequence(a, ours(a))
    want = lr_sequence(b, theirs(b))
    np.testing.assert_allclose(got, want, rtol=TOL, atol=0)
    assert len(np.unique(got[:, 0])) > 1            # the schedule did change the lr


def test_chained_warmup_and_cosine_match_torch():
    a, b = ours_opt(), torch_opt()
    ours = [optim.LinearWarmup(a, start_factor=0.2, total_iters=5), optim.CosineAnnealingLR(a, T_max=30)]
    theirs = [lrs.LinearLR(b, start_factor=0.2, total_iters=5), lrs.CosineAnnealingLR(b, T_max=30)]
    got, want = [], []
    for _ in range(40):
        a.step()
        b.step()
        for s in ours:
            s.step()
        for s in theirs:
            s.step()
        got.append([g["lr"] for g in a.param_groups])
        want.append([g["lr"] for g in b.param_groups])
    np.testing.assert_allclose(got, want, rtol=TOL, atol=0)


METRICS = [1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.89, 0.9, 0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5,
           0.5, 0.5, 0.5, 0.5, 0.4999, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0]

PLATEAU = [
    dict(patience=2),
    dict(patience=1, cooldown=2, factor=0.5),
    dict(patience=0, threshold=0.05, threshold_mode="abs"),
    dict(mode="max", patience=1, factor=0.3),
    dict(mode="max", patience=2, threshold_mode="abs", threshold=0.01),
    dict(patience=0, factor=0.1, min_lr=[1e-3, 1e-4]),
    dict(patience=0, factor=0.5, min_lr=0.02, eps=1e-3),
]


@pytest.mark.parametrize("kwargs", PLATEAU, ids=[str(k) for k in PLATEAU])
def test_reduce_on_plateau_matches_torch(kwargs):
    a, b = ours_opt(), torch_opt()
    ours = optim.ReduceLROnPlateau(a, **kwargs)
    theirs = lrs.ReduceLROnPlateau(b, **kwargs)
    got, want = [ours.get_last_lr()], [theirs.get_last_lr()]
    for m in METRICS:
        ours.step(m)
        theirs.step(m)
        got.append(ours.get_last_lr())
        want.append(theirs.get_last_lr())
    np.testing.assert_allclose(got, want, rtol=TOL, atol=0)
    assert got[-1] != got[0]


def test_sgd_momentum_under_a_schedule():
    # PyTorch's buffer form applies the current lr to the whole buffer, the seed's velocity keeps the
    # lr of each step inside v: the same at constant lr, different once the lr changes.
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(5) for _ in range(40)]
    w0 = rng.standard_normal(5)
    t = torch.tensor(w0.copy(), requires_grad=True)
    topt = torch.optim.SGD([t], lr=0.1, momentum=0.9, foreach=False)
    tsched = lrs.StepLR(topt, step_size=10, gamma=0.3)
    finals = {}
    for form in ("buffer", "velocity"):
        p = Parameter(w0.copy())
        opt = optim.SGD([p], lr=0.1, momentum=0.9, momentum_form=form)
        sched = optim.StepLR(opt, step_size=10, gamma=0.3)
        for g in grads:
            p.grad[...] = g
            opt.step()
            sched.step()
        finals[form] = p.data
    for g in grads:
        t.grad = torch.tensor(g)
        topt.step()
        tsched.step()
    ref = t.detach().numpy()
    np.testing.assert_allclose(finals["buffer"], ref, rtol=0, atol=1e-12)
    assert np.abs(finals["velocity"] - ref).max() > 1e-3


def make_for_round_trip(kind):
    opt = ours_opt(momentum=0.9)
    if kind == "step":
        return opt, optim.StepLR(opt, step_size=4, gamma=0.5)
    if kind == "exponential":
        return opt, optim.ExponentialLR(opt, gamma=0.9)
    if kind == "cosine":
        return opt, optim.CosineAnnealingLR(opt, T_max=15, eta_min=1e-4)
    if kind == "warmup":
        return opt, optim.LinearWarmup(opt, start_factor=0.1, total_iters=25)
    return opt, optim.ReduceLROnPlateau(opt, patience=1, cooldown=1, factor=0.5)


@pytest.mark.parametrize("kind", ["step", "exponential", "cosine", "warmup", "plateau"])
def test_scheduler_state_dict_round_trip(kind):
    def advance(opt, sched, i):
        opt.step()
        if kind == "plateau":
            sched.step(METRICS[i % len(METRICS)])
        else:
            sched.step()

    opt, sched = make_for_round_trip(kind)
    reference = []
    for i in range(40):
        advance(opt, sched, i)
        reference.append(sched.get_last_lr())

    opt, sched = make_for_round_trip(kind)
    for i in range(20):
        advance(opt, sched, i)
    saved_opt = opt.state_dict()
    saved = json.loads(json.dumps(sched.state_dict(), allow_nan=False))
    opt2, sched2 = make_for_round_trip(kind)     # a fresh run: its construction resets the lr ...
    opt2.load_state_dict(saved_opt)              # ... the optimizer's state dict restores it
    sched2.load_state_dict(saved)
    resumed = []
    for i in range(20, 40):
        advance(opt2, sched2, i)
        resumed.append(sched2.get_last_lr())
    assert resumed == reference[20:]


def test_plateau_state_dict_is_json_before_any_metric():
    sched = optim.ReduceLROnPlateau(ours_opt())
    text = json.dumps(sched.state_dict(), allow_nan=False)
    other = optim.ReduceLROnPlateau(ours_opt())
    other.load_state_dict(json.loads(text))
    assert other.best == float("inf")


@pytest.mark.parametrize("build, arg", [
    (lambda o: optim.StepLR(o, step_size=0), "step_size"),
    (lambda o: optim.StepLR(o, step_size=2, gamma=-0.1), "gamma"),
    (lambda o: optim.ExponentialLR(o, gamma=0.0), "gamma"),
    (lambda o: optim.CosineAnnealingLR(o, T_max=0), "T_max"),
    (lambda o: optim.CosineAnnealingLR(o, T_max=5, eta_min=-1.0), "eta_min"),
    (lambda o: optim.LinearWarmup(o, start_factor=0.0), "start_factor"),
    (lambda o: optim.LinearWarmup(o, end_factor=1.5), "end_factor"),
    (lambda o: optim.LinearWarmup(o, total_iters=0), "total_iters"),
    (lambda o: optim.ReduceLROnPlateau(o, factor=1.0), "factor"),
    (lambda o: optim.ReduceLROnPlateau(o, mode="minimum"), "mode"),
    (lambda o: optim.ReduceLROnPlateau(o, threshold_mode="relative"), "threshold_mode"),
    (lambda o: optim.ReduceLROnPlateau(o, patience=-1), "patience"),
    (lambda o: optim.ReduceLROnPlateau(o, min_lr=[0.0]), "min_lr"),
])
def test_bad_schedule_arguments(build, arg):
    with pytest.raises(ValueError, match=arg):
        build(ours_opt())


def test_schedule_needs_a_trainlab_optimizer():
    with pytest.raises(TypeError, match="Optimizer"):
        optim.StepLR(torch_opt(), step_size=2)


# ---------------------------------------------------------------------------- every rule x every schedule
# The same hyperparameters on both sides; SGD's defaults are PyTorch's buffer form, so momentum and
# Nesterov follow torch.optim under a schedule too (the seed's velocity form does not: see above).
RULES = {
    "sgd": (lambda ps: optim.SGD(ps, lr=0.05), lambda ts: torch.optim.SGD(ts, lr=0.05)),
    "momentum": (lambda ps: optim.Momentum(ps, lr=0.05), lambda ts: torch.optim.SGD(ts, lr=0.05, momentum=0.9)),
    "nesterov": (lambda ps: optim.Nesterov(ps, lr=0.05, weight_decay=0.01),
                 lambda ts: torch.optim.SGD(ts, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "sgd_dampening": (lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.3, maximize=True),
                      lambda ts: torch.optim.SGD(ts, lr=0.05, momentum=0.8, dampening=0.3, maximize=True)),
    "adagrad": (lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
                lambda ts: torch.optim.Adagrad(ts, lr=0.1, lr_decay=0.01)),
    "rmsprop": (lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True),
                lambda ts: torch.optim.RMSprop(ts, lr=0.01, momentum=0.5, centered=True)),
    "adam": (lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True), lambda ts: torch.optim.Adam(ts, lr=0.01, amsgrad=True)),
    "adamw": (lambda ps: optim.AdamW(ps, lr=0.01), lambda ts: torch.optim.AdamW(ts, lr=0.01)),
}
# (ours(opt) -> list of schedules, torch(opt) -> list); "plateau" steps on a metric
RULE_SCHEDULES = {
    "step": (lambda o: [optim.StepLR(o, step_size=15, gamma=0.5)], lambda o: [lrs.StepLR(o, step_size=15, gamma=0.5)]),
    "exponential": (lambda o: [optim.ExponentialLR(o, gamma=0.97)], lambda o: [lrs.ExponentialLR(o, gamma=0.97)]),
    "cosine": (lambda o: [optim.CosineAnnealingLR(o, T_max=40, eta_min=1e-4)],
               lambda o: [lrs.CosineAnnealingLR(o, T_max=40, eta_min=1e-4)]),
    "warmup": (lambda o: [optim.LinearWarmup(o, start_factor=0.1, total_iters=20)],
               lambda o: [lrs.LinearLR(o, start_factor=0.1, total_iters=20)]),
    "plateau": (lambda o: [optim.ReduceLROnPlateau(o, patience=2, factor=0.5)],
                lambda o: [lrs.ReduceLROnPlateau(o, patience=2, factor=0.5)]),
    "chained": (lambda o: [optim.LinearWarmup(o, start_factor=0.2, total_iters=10),
                           optim.CosineAnnealingLR(o, T_max=60)],
                lambda o: [lrs.LinearLR(o, start_factor=0.2, total_iters=10), lrs.CosineAnnealingLR(o, T_max=60)]),
}
RULE_STEPS = 100
RULE_SHAPES = [(7,), (5, 3), (64, 80)]          # the last one large enough for the BLAS path
RULE_TOL = 1e-14                                # max |Δw| relative to the parameter scale (measured <= 1.9e-15)


@functools.cache
def _rule_inputs() -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Starting weights and 100 steps of gradients (scales over three decades), shared by every case."""
    rng = np.random.default_rng(11)
    w0 = [rng.standard_normal(s) for s in RULE_SHAPES]
    grads = [[rng.standard_normal(s) * 10.0 ** rng.uniform(-2, 1) for s in RULE_SHAPES] for _ in range(RULE_STEPS)]
    return w0, grads


def _rule_schedule_worst(rule: str, schedule: str) -> float:
    make_ours, make_torch = RULES[rule]
    ours_sched, torch_sched = RULE_SCHEDULES[schedule]
    w0, grads = _rule_inputs()
    params = [Parameter(w.copy()) for w in w0]
    tensors = [torch.tensor(w.copy(), requires_grad=True) for w in w0]
    opt, topt = make_ours(params), make_torch(tensors)
    for group in topt.param_groups:
        group["foreach"] = False
    scheds, tscheds = ours_sched(opt), torch_sched(topt)
    seen_lrs = set()
    for i, step_grads in enumerate(grads):
        for p, t, g in zip(params, tensors, step_grads, strict=True):
            p.grad = g.copy()
            t.grad = torch.from_numpy(g)          # torch only reads it
        opt.step()
        topt.step()
        for s, ts in zip(scheds, tscheds, strict=True):
            if schedule == "plateau":
                metric = METRICS[i % len(METRICS)]
                s.step(metric)
                ts.step(metric)
            else:
                s.step()
                ts.step()
        seen_lrs.add(opt.param_groups[0]["lr"])
        assert all(math.isclose(a["lr"], b["lr"], rel_tol=1e-15) for a, b in zip(opt.param_groups, topt.param_groups,
                                                                                    strict=True))
    assert len(seen_lrs) >= 3                   # the schedule did change the lr, more than once
    return max(float(np.abs(p.data - t.detach().numpy()).max() / max(1.0, np.abs(t.detach().numpy()).max()))
               for p, t in zip(params, tensors, strict=True))


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: torch's second intra-op thread only waits (and on a busy machine it waits long)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("schedule", list(RULE_SCHEDULES))
@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_under_every_schedule_matches_torch(rule, schedule, one_torch_thread):
    assert _rule_schedule_worst(rule, schedule) <= RULE_TOL


def test_every_registry_rule_is_in_the_schedule_table():
    assert set(optim.names) - {"adam_seed"} <= set(RULES)
