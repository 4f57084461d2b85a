"""Linear, activations, Dropout and losses: gradient checks and parity with torch.nn."""

import numpy as np
import pytest

from gradcheck import check_layer, numerical_grad, relative_error
from trainlab import nn

# every test runs on both kernel paths (compiled and NumPy reference); see conftest.py
pytestmark = pytest.mark.usefixtures("kernel_path")

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def make_layers():
    rng = np.random.default_rng(1)
    lin = nn.Linear(7, 5, rng=rng, dtype=np.float64)
    lin.bias.data[:] = rng.standard_normal(5)
    return {
        "linear": (lin, (6, 7)),
        "linear_3d": (nn.Linear(4, 3, init="he", rng=rng, dtype=np.float64), (2, 5, 4)),
        "linear_nobias": (nn.Linear(4, 3, bias=False, rng=rng, dtype=np.float64), (5, 4)),
        "relu": (nn.ReLU(), (6, 9)),
        "leaky_relu": (nn.LeakyReLU(0.1), (6, 9)),
        "tanh": (nn.Tanh(), (6, 9)),
        "sigmoid": (nn.Sigmoid(), (3, 4, 5)),
        "dropout_eval": (nn.Dropout(0.3, rng=rng).eval(), (6, 9)),
    }


@pytest.mark.parametrize("name", list(make_layers()))
def test_gradient_check(name):
    layer, shape = make_layers()[name]
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    if name in ("relu", "leaky_relu"):
        x[np.abs(x) < 1e-3] = 0.5  # keep central differences away from the kink
    errors = check_layer(layer, x, rng)
    assert max(errors.values()) <= 1e-6, errors


def test_dropout_training_gradient_check_with_fixed_mask():
    layer = nn.Dropout(0.4, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((8, 10))
    state = layer.rng.bit_generator.state

    def forward():
        layer.rng.bit_generator.state = state  # same mask every call
        return layer(x)

    upstream = np.random.default_rng(2).standard_normal(x.shape)
    forward()
    dx = layer.backward(upstream)
    num = numerical_grad(lambda: float(np.sum(upstream * forward())), x)
    assert relative_error(num, dx) < 1e-6


def test_dropout_statistics_and_modes():
    layer = nn.Dropout(0.25, rng=np.random.default_rng(0))
    x = np.ones((400, 500), dtype=np.float32)
    y = layer(x)
    assert abs((y == 0).mean() - 0.25) < 0.005
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs(y.mean() - 1) < 0.01
    layer.eval()
    assert layer(x) is x or np.array_equal(layer(x), x)
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(1.0, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        nn.Dropout(0.5)


def _torch_twin(name, layer, tdtype):
    if name.startswith("linear"):
        t = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=tdtype)
        t.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
        return t
    return {"relu": torch.nn.ReLU(), "leaky_relu": torch.nn.LeakyReLU(0.1), "tanh": torch.nn.Tanh(),
            "sigmoid": torch.nn.Sigmoid(), "dropout_eval": torch.nn.Dropout(0.3).eval()}[name]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(make_layers()))
def test_matches_torch(name, dtype):
    layer, shape = make_layers()[name]
    layer.to(dtype)
    twin = _torch_twin(name, layer, torch.float64 if dtype == np.float64 else torch.float32)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape[:-1] + (layer.out_features,) if name.startswith("linear") else shape)
    g = g.astype(dtype)
    y = layer(x)
    dx = layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = twin(xt)
    yt.backward(torch.from_numpy(g))
    pairs = [(y, yt.detach().numpy()), (dx, xt.grad.numpy())]
    pairs += [(p.grad, dict(twin.named_parameters())[n].grad.numpy()) for n, p in layer.named_parameters()]
    for ours, ref in pairs:
        assert ours.dtype == dtype
        if dtype == np.float64:
            assert np.max(np.abs(ours - ref)) <= 1e-10
        else:
            assert np.max(np.abs(ours - ref)) <= 1e-5 * max(np.max(np.abs(ref)), 1.0)


def test_linear_grad_accumulates_and_zero_grad_clears():
    rng = np.random.default_rng(0)
    lin = nn.Linear(3, 2, rng=rng, dtype=np.float64)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    lin(x)
    lin.backward(g)
    first = lin.weight.grad.copy()
    lin(x)
    lin.backward(g)
    np.testing.assert_allclose(lin.weight.grad, 2 * first, rtol=1e-15)
    np.testing.assert_allclose(lin.bias.grad, 2 * g.sum(0), rtol=1e-15)
    lin.zero_grad()
    assert not lin.weight.grad.any() and not lin.bias.grad.any()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_matches_torch_and_gradcheck(dtype, smoothing):
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal((9, 6)) * 4).astype(dtype)
    y = rng.integers(0, 6, 9)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=smoothing)
    loss = loss_fn(logits, y)
    assert isinstance(loss, float)
    grad = loss_fn.backward()
    lt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(lt, torch.from_numpy(y), label_smoothing=smoothing)
    ref.backward()
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert abs(loss - ref.item()) <= tol * max(1, abs(ref.item()))
    assert np.max(np.abs(grad - lt.grad.numpy())) <= (1e-10 if dtype == np.float64 else 1e-6)
    if dtype == np.float64:
        x = logits.copy()
        num = numerical_grad(lambda: loss_fn(x, y), x)
        loss_fn(x, y)
        assert relative_error(num, loss_fn.backward()) < 1e-6


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1e4, 0.0]], dtype=np.float32)
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(logits, np.array([0, 0]))
    assert np.isfinite(loss) and loss == pytest.approx(1e4 / 2, rel=1e-6)
    assert np.all(np.isfinite(loss_fn.backward()))


def test_cross_entropy_bad_input():
    loss_fn = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"logits of shape \(N, C\)"):
        loss_fn(np.zeros(3), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"target of shape \(2,\)"):
        loss_fn(np.zeros((2, 3)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        loss_fn(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="integer"):
        loss_fn(np.zeros((2, 3)), np.array([0.0, 1.0]))


def test_mse_matches_torch_and_gradcheck():
    rng = np.random.default_rng(5)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    loss_fn = nn.MSELoss()
    loss = loss_fn(pred, target)
    grad = loss_fn.backward()
    pt = torch.tensor(pred, requires_grad=True)
    ref = torch.nn.functional.mse_loss(pt, torch.from_numpy(target))
    ref.backward()
    assert abs(loss - ref.item()) < 1e-14
    assert np.max(np.abs(grad - pt.grad.numpy())) < 1e-15
    x = pred.copy()
    num = numerical_grad(lambda: loss_fn(x, target), x)
    loss_fn(x, target)
    assert relative_error(num, loss_fn.backward()) < 1e-6
    with pytest.raises(ValueError, match="differ"):
        loss_fn(pred, target[:2])


def test_sigmoid_no_overflow():
    y = nn.Sigmoid()(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32))
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("bad_shape", [(5,), (4, 6)])
def test_linear_bad_input_names_layer_and_shape(bad_shape):
    lin = nn.Linear(7, 5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"Linear\(7, 5\): expected input of shape \(N, \.\.\., 7\)"):
        lin(np.zeros(bad_shape, dtype=np.float32))


def test_linear_arguments_validated():
    with pytest.raises(ValueError, match="in_features must be a positive int"):
        nn.Linear(0, 3, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        nn.Linear(3, 3)
    with pytest.raises(ValueError, match="unknown initializer"):
        nn.Linear(3, 3, init="kaiming_typo", rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.Linear(3, 3, rng=np.random.default_rng(0), dtype=np.int32)
    assert nn.Linear(3, 2, init="zeros").weight.data.sum() == 0  # no rng needed for constants
