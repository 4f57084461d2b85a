"""Table-driven validation of every public constructor and function of init, nn and optim.

Two tables:

* ``BAD_ARGUMENTS``: a call with one bad argument (wrong type, NaN/inf/negative value, bad
  shape, unknown name). The test asserts the exception type, that ``exc.argument`` is the
  argument's name, and that the message names the owner and the argument.
* ``LAYERS`` x input kinds: integer and bool inputs are refused with a ``TypeError``
  naming the layer; float16 is computed as float32; non-contiguous and read-only inputs
  give the values of a C-contiguous copy and are never written; an empty batch behaves as
  in PyTorch (shapes, gradients, BatchNorm's buffers).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainlab import init, nn, optim
from trainlab.nn.module import Parameter

NAN, INF = float("nan"), float("inf")


def gen(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------------- bad arguments
def _init_cases():
    """Every initializer x every argument it takes, with each kind of bad value."""
    cases = []
    for name in init.names():
        fn = init.get(name)
        draw = lambda fn=fn, **kw: fn(**{"shape": (3, 4), "rng": gen(), **kw})  # noqa: E731
        for bad, kind in [("34", TypeError), ((2.7, 3.0), TypeError), ((2, -3), ValueError),
                          ((True, 3), TypeError), (None, TypeError), (3.5, TypeError)]:
            cases.append((f"init.{name}-shape={bad!r}", lambda d=draw, b=bad: d(shape=b), kind, "shape"))
        for bad in (np.int64, bool, np.complex128, "float33", np.longdouble):
            cases.append((f"init.{name}-dtype={bad!r}", lambda d=draw, b=bad: d(dtype=b), TypeError, "dtype"))
        if name not in ("zeros", "ones"):
            for bad in (None, 0, np.random.RandomState(0)):
                cases.append((f"init.{name}-rng={bad!r}", lambda d=draw, b=bad: d(rng=b), TypeError, "rng"))
        hyper = {"small_random": ["scale"], "normal": ["std"], "he": ["negative_slope"],
                 "he_uniform": ["negative_slope"]}.get(name, ["gain"] if name not in ("zeros", "ones") else [])
        for arg in hyper:
            negative_ok = arg == "gain"
            for bad, kind in [(NAN, ValueError), (INF, ValueError), (-INF, ValueError), ("2", TypeError),
                              (True, TypeError), ([1.0], TypeError)] + ([] if negative_ok else [(-1.0, ValueError)]):
                cases.append((f"init.{name}-{arg}={bad!r}", lambda d=draw, a=arg, b=bad: d(**{a: b}), kind, arg))
        if name in ("xavier", "he", "xavier_uniform", "he_uniform"):
            cases.append((f"init.{name}-mode", lambda d=draw: d(mode="fan_sum"), ValueError, "mode"))
        if name in ("xavier", "he", "glorot"):
            cases.append((f"init.{name}-distribution", lambda d=draw: d(distribution="cauchy"), ValueError,
                          "distribution"))
    return cases


BAD_ARGUMENTS = _init_cases() + [
    ("init.variance_scaling-gain", lambda: init.variance_scaling((3, 3), rng=gen(), gain="x"), TypeError, "gain"),
    ("init.variance_scaling-zero fan", lambda: init.variance_scaling((3, 0), rng=gen()), ValueError, "shape"),
    ("init.compute_fans-1d", lambda: init.compute_fans((3,)), ValueError, "shape"),
    ("init.compute_fans-str", lambda: init.compute_fans("34"), TypeError, "shape"),
    ("init.calculate_gain-name", lambda: init.calculate_gain("swish"), ValueError, "nonlinearity"),
    ("init.calculate_gain-name type", lambda: init.calculate_gain(3), ValueError, "nonlinearity"),
    ("init.calculate_gain-True", lambda: init.calculate_gain("leaky_relu", True), ValueError, "param"),
    ("init.calculate_gain-list", lambda: init.calculate_gain("leaky_relu", [0.1]), ValueError, "param"),
    ("init.calculate_gain-dict", lambda: init.calculate_gain("leaky_relu", {}), ValueError, "param"),
    ("init.calculate_gain-str", lambda: init.calculate_gain("leaky_relu", "0.1"), ValueError, "param"),
    ("init.calculate_gain-nan", lambda: init.calculate_gain("leaky_relu", NAN), ValueError, "param"),
    ("init.get-name", lambda: init.get("kaiming"), ValueError, "initializer"),
    ("init.get-type", lambda: init.get(3), ValueError, "initializer"),
    ("init.for_activation", lambda: init.for_activation("gelu"), ValueError, "activation"),
    # nn constructors
    *[(f"Linear-{arg}={bad!r}", lambda a=arg, b=bad: nn.Linear(**{"in_features": 3, "out_features": 2,
                                                                  "rng": gen(), a: b}), kind, arg)
      for arg in ("in_features", "out_features")
      for bad, kind in [(0, ValueError), (-1, ValueError), (3.0, TypeError), ("3", TypeError),
                        (True, TypeError), (None, TypeError), (2 ** 62, ValueError)]],
    ("Linear-bias", lambda: nn.Linear(3, 2, bias="yes", rng=gen()), TypeError, "bias"),
    ("Linear-dtype", lambda: nn.Linear(3, 2, rng=gen(), dtype=np.int32), TypeError, "dtype"),
    ("Linear-dtype f16", lambda: nn.Linear(3, 2, rng=gen(), dtype=np.float16), TypeError, "dtype"),
    ("Linear-rng", lambda: nn.Linear(3, 2, rng=1), TypeError, "rng"),
    ("Linear-rng missing", lambda: nn.Linear(3, 2), TypeError, "rng"),
    ("Linear-init", lambda: nn.Linear(3, 2, init="kaiming", rng=gen()), ValueError, "initializer"),
    *[(f"Conv2d-{arg}={bad!r}", lambda a=arg, b=bad: nn.Conv2d(**{"in_channels": 1, "out_channels": 2,
                                                                  "kernel_size": 3, "rng": gen(), a: b}), kind, arg)
      for arg, bads in [("in_channels", [(0, ValueError), (1.5, TypeError), ("1", TypeError)]),
                        ("out_channels", [(-2, ValueError), (True, TypeError)]),
                        ("kernel_size", [(0, ValueError), ("3", TypeError), (2.5, TypeError),
                                         ((3, 3, 3), ValueError), ((3, 0), ValueError), (None, TypeError)]),
                        ("stride", [(0, ValueError), (1.0, TypeError), ((1,), ValueError)]),
                        ("padding", [(-1, ValueError), ("1", TypeError), ((0, -1), ValueError)]),
                        ("bias", [(1, TypeError)]), ("dtype", [("int8", TypeError)])]
      for bad, kind in bads],
    *[(f"MaxPool2d-{arg}={bad!r}", lambda a=arg, b=bad: nn.MaxPool2d(**{"kernel_size": 2, a: b}), kind, arg)
      for arg, bad, kind in [("kernel_size", 0, ValueError), ("kernel_size", "2", TypeError),
                             ("stride", 0, ValueError), ("stride", 1.5, TypeError),
                             ("padding", -1, ValueError), ("padding", 2, ValueError)]],
    ("Flatten-start_dim neg", lambda: nn.Flatten(-1), ValueError, "start_dim"),
    ("Flatten-start_dim float", lambda: nn.Flatten(1.0), TypeError, "start_dim"),
    *[(f"{cls.__name__}-{arg}={bad!r}", lambda c=cls, a=arg, b=bad: c(**{"num_features": 3, a: b}), kind, arg)
      for cls in (nn.BatchNorm1d, nn.BatchNorm2d)
      for arg, bad, kind in [("num_features", 0, ValueError), ("num_features", True, TypeError),
                             ("num_features", 3.0, TypeError), ("num_features", "3", TypeError),
                             ("num_features", 2 ** 62, ValueError), ("num_features", np.float64(2), TypeError),
                             ("eps", 0.0, ValueError), ("eps", NAN, ValueError), ("eps", INF, ValueError),
                             ("eps", "1e-5", TypeError), ("momentum", 1.5, ValueError),
                             ("momentum", NAN, ValueError), ("momentum", "0.1", TypeError),
                             ("affine", "yes", TypeError), ("track_running_stats", 1, TypeError),
                             ("dtype", np.int64, TypeError)]],
    *[(f"LeakyReLU-negative_slope={bad!r}", lambda b=bad: nn.LeakyReLU(b), kind, "negative_slope")
      for bad, kind in [(NAN, ValueError), (INF, ValueError), (-0.1, ValueError), ("0.1", TypeError)]],
    *[(f"Dropout-p={bad!r}", lambda b=bad: nn.Dropout(b, rng=gen()), kind, "p")
      for bad, kind in [(1.0, ValueError), (-0.1, ValueError), (NAN, ValueError), ("0.5", TypeError)]],
    ("Dropout-rng", lambda: nn.Dropout(0.5), TypeError, "rng"),
    ("Dropout-rng type", lambda: nn.Dropout(0.5, rng=0), TypeError, "rng"),
    *[(f"CrossEntropyLoss-label_smoothing={bad!r}", lambda b=bad: nn.CrossEntropyLoss(b), kind, "label_smoothing")
      for bad, kind in [(1.0, ValueError), (-0.1, ValueError), (NAN, ValueError), ("0", TypeError)]],
    ("Parameter-data str", lambda: Parameter("abc"), TypeError, "data"),
    ("Parameter-data int", lambda: Parameter(np.arange(3)), TypeError, "data"),
    ("Parameter-data ragged", lambda: Parameter([[1.0], [1.0, 2.0]]), TypeError, "data"),
    ("Parameter-init", lambda: Parameter(np.zeros(3), init=3), TypeError, "init"),
    ("Parameter.grad-shape", lambda: setattr(Parameter(np.zeros(3)), "grad", np.zeros(4)), ValueError, "grad"),
    ("Parameter.grad-dtype", lambda: setattr(Parameter(np.zeros(3)), "grad", np.zeros(3, np.float32)),
     TypeError, "grad"),
    ("Parameter.grad-list", lambda: setattr(Parameter(np.zeros(3)), "grad", [0.0, 0.0, 0.0]), TypeError, "grad"),
    ("Module.to", lambda: nn.ReLU().to(np.int32), TypeError, "dtype"),
    ("Module.train", lambda: nn.ReLU().train("no"), TypeError, "mode"),
    ("Module.load_state_dict-type", lambda: nn.BatchNorm1d(2).load_state_dict([1, 2]), TypeError, "state_dict"),
    ("Module.load_state_dict-strict", lambda: nn.BatchNorm1d(2).load_state_dict({}, strict="no"),
     TypeError, "strict"),
    ("Module.summary", lambda: nn.Sequential(nn.ReLU()).summary("34"), TypeError, "input_shape"),
    ("Sequential-modules", lambda: nn.Sequential(nn.ReLU(), np.zeros(3)), TypeError, "modules"),
    ("Sequential.append", lambda: nn.Sequential(nn.ReLU()).append("relu"), TypeError, "module"),
    ("Module-parameter slot", lambda: setattr(nn.Linear(2, 2, rng=gen()), "bias", np.zeros(2)), TypeError, "bias"),
    ("activation.get", lambda: nn.activation.get("gelu"), ValueError, "activation"),
    ("activation.get type", lambda: nn.activation.get(["relu"]), TypeError, "activation"),
]



# --- optim: every optimizer x every hyperparameter x each kind of bad value
_BAD = {
    "nonneg": [(-0.1, ValueError), (NAN, ValueError), (INF, ValueError), ("0.1", TypeError), (None, TypeError),
               (True, TypeError)],
    "unit_open": [(1.0, ValueError), (-0.1, ValueError), (NAN, ValueError), ("0.9", TypeError)],
    "unit": [(1.5, ValueError), (-0.5, ValueError), (NAN, ValueError), ("0", TypeError)],
    "positive": [(0.0, ValueError), (-1e-8, ValueError), (NAN, ValueError), (INF, ValueError), ("1e-8", TypeError)],
    "flag": [(1, TypeError), ("yes", TypeError), (None, TypeError)],
    "form": [("torch", ValueError), (3, TypeError)],
    "betas": [("ab", TypeError), ([0.9], ValueError), ((0.9, NAN), ValueError), ((0.9, "0.9"), TypeError),
              ((1.0, 0.999), ValueError), (0.9, TypeError), ((0.9, 0.99, 0.9), ValueError)],
}
_ADAM = {"lr": "nonneg", "betas": "betas", "eps": "positive", "weight_decay": "nonneg", "amsgrad": "flag",
         "maximize": "flag", "bias_correction": "flag", "eps_inside_sqrt": "flag"}
OPTIMIZER_ARGUMENTS = {
    "SGD": (optim.SGD, {"lr": "nonneg", "momentum": "unit_open", "dampening": "unit", "weight_decay": "nonneg",
                        "nesterov": "flag", "maximize": "flag", "momentum_form": "form"}),
    "Momentum": (optim.Momentum, {"lr": "nonneg", "momentum": "unit_open", "dampening": "unit",
                                  "weight_decay": "nonneg", "maximize": "flag", "momentum_form": "form"}),
    "Nesterov": (optim.Nesterov, {"lr": "nonneg", "momentum": "unit_open", "weight_decay": "nonneg",
                                  "maximize": "flag", "momentum_form": "form"}),
    "Adagrad": (optim.Adagrad, {"lr": "nonneg", "lr_decay": "nonneg", "weight_decay": "nonneg",
                                "initial_accumulator_value": "nonneg", "eps": "positive", "maximize": "flag",
                                "eps_inside_sqrt": "flag"}),
    "RMSprop": (optim.RMSprop, {"lr": "nonneg", "alpha": "unit_open", "eps": "positive", "weight_decay": "nonneg",
                                "momentum": "unit_open", "centered": "flag", "maximize": "flag",
                                "eps_inside_sqrt": "flag"}),
    "Adam": (optim.Adam, {**_ADAM, "decoupled_weight_decay": "flag"}),
    "AdamW": (optim.AdamW, _ADAM),
    "adam_seed": (optim.adam_seed, {"lr": "nonneg", "betas": "betas", "eps": "positive", "weight_decay": "nonneg",
                                    "maximize": "flag"}),
}


def _dummy():
    return [Parameter(np.zeros(3))]


def _sched_opt():
    return optim.SGD(_dummy(), lr=0.1)


BAD_ARGUMENTS += [
    (f"{owner}-{arg}={bad!r}", lambda c=cls, a=arg, b=bad: c(_dummy(), **{a: b}), kind, arg)
    for owner, (cls, args) in OPTIMIZER_ARGUMENTS.items()
    for arg, rule in args.items()
    for bad, kind in _BAD[rule]
] + [
    ("SGD-nesterov without momentum", lambda: optim.SGD(_dummy(), nesterov=True), ValueError, "nesterov"),
    ("SGD-nesterov with dampening", lambda: optim.SGD(_dummy(), momentum=0.9, dampening=0.1, nesterov=True),
     ValueError, "nesterov"),
    ("Nesterov-momentum=0", lambda: optim.Nesterov(_dummy(), momentum=0.0), ValueError, "nesterov"),
    ("Optimizer-params single", lambda: optim.Adam(Parameter(np.zeros(3))), TypeError, "params"),
    ("Optimizer-params array", lambda: optim.Adam(np.zeros(3)), TypeError, "params"),
    ("Optimizer-params number", lambda: optim.Adam(3), TypeError, "params"),
    ("Optimizer-params empty", lambda: optim.Adam([]), ValueError, "params"),
    ("Optimizer-params set", lambda: optim.Adam(set(_dummy())), TypeError, "params"),
    ("Optimizer-params element", lambda: optim.Adam([np.zeros(3)]), TypeError, "params"),
    ("Optimizer-params twice", lambda: optim.Adam(_dummy() * 2), ValueError, "params"),
    ("Optimizer-params mixed", lambda: optim.Adam([{"params": _dummy()}, Parameter(np.zeros(2))]), TypeError, "params"),
    ("Optimizer-group lr", lambda: optim.Adam([{"params": _dummy(), "lr": -1.0}]), ValueError, "lr"),
    ("Optimizer-group betas", lambda: optim.Adam([{"params": _dummy(), "betas": [0.9]}]), ValueError, "betas"),
    ("Optimizer-group key", lambda: optim.Adam([{"params": _dummy(), "lrr": 0.1}]), ValueError, "lrr"),
    ("Optimizer-group params", lambda: optim.Adam([{"params": 3}]), TypeError, "params"),
    ("Optimizer.lr setter", lambda: setattr(optim.SGD(_dummy()), "lr", NAN), ValueError, "lr"),
    ("Optimizer.lr setter type", lambda: setattr(optim.SGD(_dummy()), "lr", "0.1"), TypeError, "lr"),
    ("optim.get", lambda: optim.get("adamm"), ValueError, "name"),
    ("optim.get type", lambda: optim.get(3), ValueError, "name"),
    ("optim.create", lambda: optim.create("sgdd", _dummy()), ValueError, "name"),
    *[(f"clip_grad_norm-{arg}={bad!r}", lambda a=arg, b=bad: optim.clip_grad_norm(**{"params": _dummy(),
                                                                                     "max_norm": 1.0, a: b}), kind, arg)
      for arg, bad, kind in [
          ("max_norm", -1.0, ValueError), ("max_norm", NAN, ValueError), ("max_norm", "1", TypeError),
          ("norm_type", 0, ValueError), ("norm_type", -2.0, ValueError), ("norm_type", NAN, ValueError),
          ("norm_type", "two", ValueError), ("norm_type", None, TypeError), ("error_if_nonfinite", 1, TypeError),
          ("params", 3, TypeError), ("params", [3], TypeError)]],
    *[(f"{name}-{arg}={bad!r}", lambda b=build, a=arg, v=bad: b(_sched_opt(), **{a: v}), kind, arg)
      for name, build, args in [
          ("StepLR", lambda o, **kw: optim.StepLR(o, **{"step_size": 2, **kw}),
           [("step_size", 0, ValueError), ("step_size", 2.0, TypeError), ("gamma", 0.0, ValueError),
            ("gamma", NAN, ValueError), ("gamma", "0.1", TypeError)]),
          ("ExponentialLR", lambda o, **kw: optim.ExponentialLR(o, **{"gamma": 0.9, **kw}),
           [("gamma", -0.9, ValueError), ("gamma", INF, ValueError), ("gamma", None, TypeError)]),
          ("CosineAnnealingLR", lambda o, **kw: optim.CosineAnnealingLR(o, **{"T_max": 5, **kw}),
           [("T_max", 0, ValueError), ("T_max", "5", TypeError), ("T_max", True, TypeError),
            ("eta_min", -1.0, ValueError), ("eta_min", NAN, ValueError)]),
          ("LinearWarmup", lambda o, **kw: optim.LinearWarmup(o, **kw),
           [("start_factor", 0.0, ValueError), ("start_factor", 1.5, ValueError), ("end_factor", -0.1, ValueError),
            ("end_factor", NAN, ValueError), ("total_iters", 0, ValueError), ("total_iters", 2.5, TypeError)]),
          ("ReduceLROnPlateau", lambda o, **kw: optim.ReduceLROnPlateau(o, **kw),
           [("mode", "minimum", ValueError), ("mode", None, TypeError), ("factor", 1.0, ValueError),
            ("factor", NAN, ValueError), ("patience", -1, ValueError), ("patience", 1.5, TypeError),
            ("threshold", -1e-4, ValueError), ("threshold_mode", "relative", ValueError),
            ("cooldown", -1, ValueError), ("min_lr", -1.0, ValueError), ("min_lr", [0.0, 0.0], ValueError),
            ("min_lr", "0", TypeError), ("eps", NAN, ValueError)]),
      ]
      for arg, bad, kind in args],
    ("StepLR-optimizer", lambda: optim.StepLR("opt", step_size=2), TypeError, "optimizer"),
    ("ReduceLROnPlateau-optimizer", lambda: optim.ReduceLROnPlateau(None), TypeError, "optimizer"),
    ("ReduceLROnPlateau.step-metric", lambda: optim.ReduceLROnPlateau(_sched_opt()).step("0.5"), TypeError, "metric"),
]


@pytest.mark.parametrize("call, kind, argument", [c[1:] for c in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_argument_names_owner_and_argument(call, kind, argument):
    with pytest.raises(kind) as info:
        call()
    exc = info.value
    assert type(exc) is kind, type(exc)
    assert exc.argument == argument
    message = str(exc)
    assert exc.owner and message.startswith(f"{exc.owner}: "), message
    assert argument in message or (argument == "param" and "negative_slope" in message), message


def test_bad_argument_ids_are_unique():
    ids = [c[0] for c in BAD_ARGUMENTS]
    assert len(ids) == len(set(ids))


def test_load_state_dict_refuses_non_numbers_and_changes_nothing():
    bn = nn.BatchNorm1d(3)
    before = bn.state_dict()
    bad = dict(before, **{"running_mean": np.array(["a", "b", "c"])})
    with pytest.raises(ValueError, match=r"running_mean \(expected numbers"):
        bn.load_state_dict(bad)
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


# ----------------------------------------------------------------------------------- layer inputs
def _layers():
    """name -> (factory, input shape); every factory builds the same layer every call."""
    return {
        "Linear": (lambda: nn.Linear(4, 3, rng=gen(1)), (5, 4)),
        "Conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1, rng=gen(1)), (2, 2, 5, 5)),
        "MaxPool2d": (lambda: nn.MaxPool2d(2), (2, 2, 4, 4)),
        "Flatten": (lambda: nn.Flatten(), (2, 3, 2)),
        "BatchNorm1d": (lambda: nn.BatchNorm1d(4), (5, 4)),
        "BatchNorm1d_3d": (lambda: nn.BatchNorm1d(4), (5, 4, 3)),
        "BatchNorm2d": (lambda: nn.BatchNorm2d(2), (3, 2, 3, 3)),
        "ReLU": (lambda: nn.ReLU(), (4, 5)),
        "LeakyReLU": (lambda: nn.LeakyReLU(0.1), (4, 5)),
        "Tanh": (lambda: nn.Tanh(), (4, 5)),
        "Sigmoid": (lambda: nn.Sigmoid(), (4, 5)),
        "Dropout": (lambda: nn.Dropout(0.3, rng=gen(2)), (4, 5)),
        "Sequential": (lambda: nn.Sequential(nn.Linear(4, 3, rng=gen(1)), nn.BatchNorm1d(3), nn.ReLU()), (6, 4)),
    }


LOSSES = {
    "CrossEntropyLoss": (lambda: nn.CrossEntropyLoss(label_smoothing=0.1), (6, 4), "logits"),
    "MSELoss": (lambda: nn.MSELoss(), (6, 4), "prediction"),
}
LAYERS = _layers()
INPUT_OWNER = {"BatchNorm1d_3d": "BatchNorm1d", "Sequential": "Linear"}


def _target(name, shape):
    rng = gen(7)
    if name == "CrossEntropyLoss":
        return rng.integers(0, shape[1], shape[0])
    return rng.standard_normal(shape)


def _run(name, x):
    """Forward and backward (a fixed random upstream gradient); returns output, dx and parameter grads."""
    if name in LOSSES:
        loss_fn = LOSSES[name][0]()
        loss = loss_fn(x, _target(name, x.shape))
        return np.float64(loss), loss_fn.backward(), []
    layer = LAYERS[name][0]()
    y = layer(x)
    dy = gen(3).standard_normal(y.shape).astype(y.dtype)
    dx = layer.backward(dy)
    return y, dx, [p.grad.copy() for p in layer.parameters()]


def _sample(shape, seed=5):
    return gen(seed).standard_normal(shape) * 2


ALL = list(LAYERS) + list(LOSSES)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_, np.complex64])
@pytest.mark.parametrize("name", ALL)
def test_integer_and_bool_inputs_are_refused(name, dtype):
    shape = LAYERS[name][1] if name in LAYERS else LOSSES[name][1]
    x = (_sample(shape) * 3).astype(dtype)
    build = LAYERS[name][0] if name in LAYERS else LOSSES[name][0]
    module = build()
    with pytest.raises(TypeError) as info:
        module(x) if name in LAYERS else module(x, _target(name, shape))
    owner = INPUT_OWNER.get(name, name)
    assert str(info.value).startswith(f"{owner}: ") and "astype(np.float32)" in str(info.value)
    assert info.value.argument == (LOSSES[name][2] if name in LOSSES else "input")


def test_mse_target_follows_the_rule_too():
    with pytest.raises(TypeError, match="MSELoss: target must be a floating-point array") as info:
        nn.MSELoss()(np.zeros(3), np.zeros(3, dtype=np.int64))
    assert info.value.argument == "target"


def _shape_of(name):
    return LAYERS[name][1] if name in LAYERS else LOSSES[name][1]


def _assert_same(a, b, exact=True):
    for u, v in zip(a[:2], b[:2], strict=True):
        assert np.shape(u) == np.shape(v) and np.asarray(u).dtype == np.asarray(v).dtype
        (np.testing.assert_array_equal if exact else
         lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-13, atol=1e-13))(u, v)
    for u, v in zip(a[2], b[2], strict=True):
        (np.testing.assert_array_equal if exact else
         lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-13, atol=1e-13))(u, v)


@pytest.mark.parametrize("name", ALL)
def test_float16_is_computed_as_float32(name):
    x16 = _sample(_shape_of(name)).astype(np.float16)
    got = _run(name, x16)
    want = _run(name, x16.astype(np.float32))
    assert name in LOSSES or got[0].dtype == np.float32
    _assert_same(got, want)


@pytest.mark.parametrize("name", ALL)
def test_non_contiguous_and_read_only_inputs(name):
    x = _sample(_shape_of(name))
    want = _run(name, x.copy())
    fortran = np.asfortranarray(x)
    strided = np.repeat(x, 2, axis=-1)[..., ::2]
    assert not strided.flags.c_contiguous and (x.ndim == 1 or not fortran.flags.c_contiguous)
    for variant in (fortran, strided):
        _assert_same(_run(name, variant), want, exact=False)
    frozen = x.copy()
    frozen.flags.writeable = False
    _assert_same(_run(name, frozen), want)
    np.testing.assert_array_equal(frozen, x)           # never written


@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_refuses_a_dout_of_another_shape(name):
    layer = LAYERS[name][0]()
    y = layer(_sample(LAYERS[name][1]))
    for bad in ((1,) + y.shape[1:], y.shape + (1,), y.shape[:-1] + (y.shape[-1] + 1,)):
        with pytest.raises(ValueError, match="dout"):
            layer.backward(np.zeros(bad))


# ----------------------------------------------------------------------------------- empty batches
def _torch_twin(name, torch):
    tnn = torch.nn
    torch.manual_seed(0)
    return {
        "Linear": lambda: tnn.Linear(4, 3, dtype=torch.float64),
        "Conv2d": lambda: tnn.Conv2d(2, 3, 3, padding=1, dtype=torch.float64),
        "MaxPool2d": lambda: tnn.MaxPool2d(2),
        "Flatten": lambda: tnn.Flatten(),
        "BatchNorm1d": lambda: tnn.BatchNorm1d(4, dtype=torch.float64),
        "BatchNorm1d_3d": lambda: tnn.BatchNorm1d(4, dtype=torch.float64),
        "BatchNorm2d": lambda: tnn.BatchNorm2d(2, dtype=torch.float64),
        "ReLU": tnn.ReLU, "LeakyReLU": lambda: tnn.LeakyReLU(0.1), "Tanh": tnn.Tanh, "Sigmoid": tnn.Sigmoid,
        "Dropout": lambda: tnn.Dropout(0.3),
        "Sequential": lambda: tnn.Sequential(tnn.Linear(4, 3, dtype=torch.float64),
                                             tnn.BatchNorm1d(3, dtype=torch.float64), tnn.ReLU()),
    }[name]()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_empty_batch_matches_torch(name, training):
    torch = pytest.importorskip("torch")
    shape = (0,) + LAYERS[name][1][1:]
    if name == "BatchNorm1d_3d":
        shape = (3, 4, 0)                                 # L = 0: no values per channel either
    layer = LAYERS[name][0]().to(np.float64).train(training)
    twin = _torch_twin(name, torch).train(training)
    x = np.zeros(shape)
    y = layer(x)
    dx = layer.backward(np.zeros(y.shape))
    xt = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    yt = twin(xt)
    yt.backward(torch.zeros_like(yt))
    assert y.shape == tuple(yt.shape) and dx.shape == tuple(xt.grad.shape) == shape
    for (key, p), tp in zip(layer.named_parameters(), twin.parameters(), strict=True):
        assert p.grad.shape == tuple(tp.grad.shape) and not p.grad.any() and not tp.grad.any(), key
    for (key, b), tb in zip(layer.named_buffers(), twin.buffers(), strict=True):
        np.testing.assert_array_equal(b, tb.numpy(), err_msg=key)


@pytest.mark.parametrize("name", list(LOSSES))
def test_empty_batch_loss_is_nan_with_an_empty_gradient(name):
    torch = pytest.importorskip("torch")
    loss_fn = LOSSES[name][0]()
    x = np.zeros((0, 4))
    target = np.zeros(0, dtype=np.int64) if name == "CrossEntropyLoss" else np.zeros((0, 4))
    loss = loss_fn(x, target)
    grad = loss_fn.backward()
    xt = torch.zeros((0, 4), dtype=torch.float64, requires_grad=True)
    twin = torch.nn.CrossEntropyLoss(label_smoothing=0.1) if name == "CrossEntropyLoss" else torch.nn.MSELoss()
    ref = twin(xt, torch.from_numpy(target))
    ref.backward()
    assert math.isnan(loss) and math.isnan(ref.item())
    assert grad.shape == tuple(xt.grad.shape) == (0, 4)


def test_batchnorm_empty_batch_keeps_trained_running_stats():
    torch = pytest.importorskip("torch")
    for momentum in (0.1, None):
        bn, twin = nn.BatchNorm1d(3, momentum=momentum, dtype=np.float64), \
            torch.nn.BatchNorm1d(3, momentum=momentum, dtype=torch.float64)
        x = gen().standard_normal((6, 3))
        for batch in (x, np.zeros((0, 3)), x[:4]):
            bn(batch)
            twin(torch.from_numpy(batch))
        for (key, b), tb in zip(bn.named_buffers(), twin.buffers(), strict=True):
            np.testing.assert_allclose(b, tb.numpy(), rtol=1e-14, atol=0, err_msg=key)
        assert int(bn.num_batches_tracked) == 3


# ----------------------------------------------------------------------------------- PyTorch's rules
def test_relu_backward_at_nan_passes_the_gradient_as_torch(kernel_path):     # both kernel paths
    torch = pytest.importorskip("torch")
    x = np.array([np.nan, -1.0, -0.0, 0.0, 2.0, np.inf, -np.inf])
    dy = np.arange(1.0, 8.0)
    relu = nn.ReLU()
    y = relu(x)
    dx = relu.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    assert dx[0] == 1.0


def test_assigned_grad_is_added_to_by_backward_as_in_torch():
    torch = pytest.importorskip("torch")
    rng = gen()
    lin = nn.Linear(3, 2, rng=rng, dtype=np.float64)
    twin = torch.nn.Linear(3, 2, dtype=torch.float64)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in lin.state_dict().items()})
    x, dy, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), rng.standard_normal((2, 3))
    lin(x)
    lin.backward(dy)
    lin.zero_grad()
    lin.weight.grad = g.copy()
    lin(x)
    lin.backward(dy)
    twin.weight.grad = torch.from_numpy(g.copy())
    twin(torch.from_numpy(x)).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(lin.weight.grad, twin.weight.grad.numpy(), rtol=1e-14, atol=1e-15)
    lin.weight.grad = None                                   # as torch: back to zero
    assert not lin.weight.grad.any()
    lin(x)
    lin.backward(dy)
    np.testing.assert_allclose(lin.weight.grad, dy.T @ x, rtol=1e-14)


GAIN_CASES = [("linear", None), ("conv3d", None), ("conv_transpose2d", None), ("sigmoid", None), ("tanh", None),
              ("relu", None), ("selu", None), ("leaky_relu", None), ("leaky_relu", 0), ("leaky_relu", 0.2),
              ("leaky_relu", -1), ("leaky_relu", 3), ("tanh", "ignored"), ("relu", [1])]


@pytest.mark.parametrize("name, param", GAIN_CASES, ids=[f"{n}-{p!r}" for n, p in GAIN_CASES])
def test_calculate_gain_is_torchs(name, param):
    torch = pytest.importorskip("torch")
    assert init.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param)


@pytest.mark.parametrize("param", [True, [0.1], {}, "0.1"])
def test_calculate_gain_refuses_what_torch_refuses(param):
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain("leaky_relu", param)
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", param)


def test_initializers_accept_every_real_floating_dtype_and_int_sequences():
    for dtype in (np.float16, np.float32, np.float64):
        assert init.he((3, 4), rng=gen(), dtype=dtype).dtype == dtype
    np.testing.assert_array_equal(init.he([np.int64(3), 4], rng=gen()), init.he((3, 4), rng=gen()))
    assert init.he(np.array([3, 4]), rng=gen()).shape == (3, 4)
    assert init.orthogonal((0, 3), rng=gen()).shape == (0, 3)
