"""BatchNorm1d/2d: the seed's algorithm, gradient checks, and parity with torch over training steps."""

import numpy as np
import pytest

from gradcheck import check_layer, numerical_grad, relative_error
from trainlab import nn

# every test runs on both kernel paths (compiled and NumPy reference); see conftest.py
pytestmark = pytest.mark.usefixtures("kernel_path")

torch = pytest.importorskip("torch")


def _bn(cls, c, rng, dtype=np.float64, **kw):
    bn = cls(c, dtype=dtype, **kw)
    if bn.affine:
        bn.weight.data[:] = rng.uniform(0.5, 2.0, c) * rng.choice([-1, 1], c)  # gamma != 1
        bn.bias.data[:] = rng.standard_normal(c)                               # beta != 0
    return bn


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (6, 4)), (nn.BatchNorm1d, (3, 4, 5)),
                                       (nn.BatchNorm2d, (3, 2, 4, 3))])
@pytest.mark.parametrize("mode", ["train", "eval", "no_tracking", "no_affine"])
def test_gradient_check(cls, shape, mode):
    rng = np.random.default_rng(0)
    kw = {"track_running_stats": False} if mode == "no_tracking" else {}
    kw |= {"affine": False} if mode == "no_affine" else {}
    bn = _bn(cls, shape[1], rng, **kw)
    if mode == "eval":
        bn.running_mean[:] = rng.standard_normal(shape[1])
        bn.running_var[:] = rng.uniform(0.5, 2, shape[1])
        bn.eval()
    x = rng.standard_normal(shape) * 2 + 1
    errors = check_layer(bn, x, rng)
    assert max(errors.values()) <= 1e-6, errors


def test_forward_is_the_seed_algorithm_written_out():
    rng = np.random.default_rng(1)
    bn = _bn(nn.BatchNorm1d, 5, rng)
    x = rng.standard_normal((16, 5)) * 3 - 2
    gamma, beta, eps = bn.weight.data, bn.bias.data, 1e-5
    m = x.shape[0]
    mu = 1 / m * np.sum(x, axis=0)                        # mini-batch mean
    var = 1 / m * np.sum((x - mu) ** 2, axis=0)           # mini-batch variance
    x_hat = (x - mu) / np.sqrt(var + eps)                 # normalize
    y = gamma * x_hat + beta                              # scale and shift
    np.testing.assert_allclose(bn(x), y, rtol=0, atol=1e-13)
    np.testing.assert_allclose(bn.running_mean, 0.1 * mu, atol=1e-15)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var * m / (m - 1), atol=1e-15)


def _to_torch_bn(bn, torch_cls, tdtype):
    t = torch_cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                  track_running_stats=bn.track_running_stats, dtype=tdtype)
    t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in bn.state_dict().items()})
    return t


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("momentum", [0.1, None, 0.5])
@pytest.mark.parametrize("cls,tcls,shape", [(nn.BatchNorm1d, "BatchNorm1d", (32, 6)),
                                            (nn.BatchNorm1d, "BatchNorm1d", (8, 6, 5)),
                                            (nn.BatchNorm2d, "BatchNorm2d", (4, 6, 5, 7))])
def test_matches_torch_over_five_steps_then_eval(cls, tcls, shape, momentum, dtype):
    rng = np.random.default_rng(2)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    bn = _bn(cls, shape[1], rng, dtype=dtype, momentum=momentum)
    tbn = _to_torch_bn(bn, getattr(torch.nn, tcls), tdtype)

    def close(ours, ref):
        ref = ref.detach().numpy() if hasattr(ref, "detach") else ref
        if dtype == np.float64:
            assert np.max(np.abs(ours - ref)) <= 1e-10
        else:
            assert np.max(np.abs(ours - ref)) <= 1e-5 * max(1.0, np.max(np.abs(ref)))

    for step in range(6):
        if step == 5:
            bn.eval()
            tbn.eval()
        x = (rng.standard_normal(shape) * 2.5 + rng.standard_normal(shape[1]).reshape(
            (1, -1) + (1,) * (len(shape) - 2))).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        bn.zero_grad()
        tbn.zero_grad()
        y = bn(x)
        dx = bn.backward(g)
        xt = torch.tensor(x, requires_grad=True)
        yt = tbn(xt)
        yt.backward(torch.from_numpy(g))
        close(y, yt)
        close(dx, xt.grad)
        close(bn.weight.grad, tbn.weight.grad)
        close(bn.bias.grad, tbn.bias.grad)
        close(bn.running_mean, tbn.running_mean)
        close(bn.running_var, tbn.running_var)
        assert int(bn.num_batches_tracked) == int(tbn.num_batches_tracked) == min(step + 1, 5)


def test_track_running_stats_false_uses_batch_stats_in_eval():
    rng = np.random.default_rng(3)
    bn = nn.BatchNorm1d(3, track_running_stats=False, dtype=np.float64)
    assert "running_mean" not in bn.state_dict()
    x = rng.standard_normal((10, 3)) * 4 + 2
    y_train = bn(x)
    bn.eval()
    np.testing.assert_allclose(bn(x), y_train, atol=1e-14)
    np.testing.assert_allclose(y_train.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(y_train.var(0), 1, atol=1e-4)


def test_running_var_starts_at_one_and_eval_uses_running_stats():
    bn = nn.BatchNorm2d(3)
    np.testing.assert_array_equal(bn.running_var, 1)
    np.testing.assert_array_equal(bn.running_mean, 0)
    bn.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(bn(x), x / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_one_value_per_channel_in_training_raises():
    bn = nn.BatchNorm1d(4)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(np.ones((1, 4), dtype=np.float32))
    bn.eval()
    assert bn(np.ones((1, 4), dtype=np.float32)).shape == (1, 4)
    assert nn.BatchNorm1d(4)(np.ones((1, 4, 3), dtype=np.float32)).shape == (1, 4, 3)


@pytest.mark.parametrize("layer,shape,match", [
    (nn.BatchNorm1d(4), (8, 5), r"BatchNorm1d\(4\): expected input of shape \(N, 4\) or \(N, 4, L\)"),
    (nn.BatchNorm1d(4), (8,), r"BatchNorm1d\(4\): expected"),
    (nn.BatchNorm2d(3), (8, 3, 4), r"BatchNorm2d\(3\): expected input of shape \(N, 3, H, W\)"),
    (nn.BatchNorm2d(3), (8, 2, 4, 4), r"BatchNorm2d\(3\)"),
])
def test_bad_input_names_layer_and_shape(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer(np.zeros(shape, dtype=np.float32))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm1d(0)
    with pytest.raises(ValueError, match="eps"):
        nn.BatchNorm1d(3, eps=0)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm1d(3, momentum=1.5)


def test_buffers_are_not_parameters():
    bn = nn.BatchNorm2d(3)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert bn.state_dict()["num_batches_tracked"].dtype == np.int64



# ---------------------------------------------------------------- channel-major inputs
def _channel_major(a):
    """The same values as ``a``, stored as a C-contiguous (C, N, ...) buffer (as Conv2d returns them)."""
    out = np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1)
    assert _is_channel_major(out)
    return out


def _is_channel_major(a):
    return a.swapaxes(0, 1).flags.c_contiguous and not a.flags.c_contiguous


CM_CASES = [(nn.BatchNorm1d, "BatchNorm1d", (8, 6, 5)), (nn.BatchNorm2d, "BatchNorm2d", (4, 6, 5, 7)),
            (nn.BatchNorm2d, "BatchNorm2d", (4, 3, 80, 60))]   # N*H*W >= 16384: the long-row views


def _batches(shape, dtype, steps=5, seed=5):
    """``steps`` (x, dy) pairs with per-channel offsets."""
    rng = np.random.default_rng(seed)
    offset = (1, -1) + (1,) * (len(shape) - 2)
    return [((rng.standard_normal(shape) * 2.5 + rng.standard_normal(shape[1]).reshape(offset)).astype(dtype),
             rng.standard_normal(shape).astype(dtype)) for _ in range(steps)]


def _run(bn, batches, x_layout, dy_layout):
    """Train on all but the last batch, evaluate on the last; per step (y, dx, dgamma, dbeta, running stats)."""
    results = []
    for step, (x, g) in enumerate(batches):
        if step == len(batches) - 1:
            bn.eval()
        bn.zero_grad()
        y = bn(x_layout(x))
        dx = bn.backward(dy_layout(g))
        grads = (bn.weight.grad.copy(), bn.bias.grad.copy()) if bn.affine else ()
        stats = (bn.running_mean.copy(), bn.running_var.copy()) if bn.track_running_stats else ()
        results.append((y, dx) + grads + stats)
    return results


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("cls,tcls,shape", CM_CASES)
def test_channel_major_matches_torch_float64(cls, tcls, shape, momentum):
    rng = np.random.default_rng(4)
    bn = _bn(cls, shape[1], rng, momentum=momentum)
    tbn = _to_torch_bn(bn, getattr(torch.nn, tcls), torch.float64)
    batches = _batches(shape, np.float64)
    ours = _run(bn, batches, _channel_major, _channel_major)
    for step, ((x, g), (y, dx, dw, db, rm, rv)) in enumerate(zip(batches, ours, strict=True)):
        if step == len(batches) - 1:
            tbn.eval()
        tbn.zero_grad()
        xt = torch.tensor(x, requires_grad=True)
        yt = tbn(xt)
        yt.backward(torch.from_numpy(g))
        assert y.shape == dx.shape == shape
        assert _is_channel_major(y) and _is_channel_major(dx)
        for a, ref in [(y, yt), (dx, xt.grad), (dw, tbn.weight.grad), (db, tbn.bias.grad),
                       (rm, tbn.running_mean), (rv, tbn.running_var)]:
            assert np.max(np.abs(a - ref.detach().numpy())) <= 1e-10
    assert int(bn.num_batches_tracked) == int(tbn.num_batches_tracked) == len(batches) - 1


@pytest.mark.parametrize("kw", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}])
@pytest.mark.parametrize("cls,tcls,shape", CM_CASES)
def test_channel_major_matches_c_order_path_float32(cls, tcls, shape, kw):
    rng = np.random.default_rng(6)
    bn_c = _bn(cls, shape[1], rng, dtype=np.float32, **kw)
    bn_cm = cls(shape[1], dtype=np.float32, **kw)
    bn_cm.load_state_dict(bn_c.state_dict())
    batches = _batches(shape, np.float32)
    ref = _run(bn_c, batches, np.ascontiguousarray, np.ascontiguousarray)
    got = _run(bn_cm, batches, _channel_major, _channel_major)
    for r_step, g_step in zip(ref, got, strict=True):
        assert _is_channel_major(g_step[0]) and _is_channel_major(g_step[1])
        for r, g in zip(r_step, g_step, strict=True):
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * max(1.0, np.max(np.abs(r))))


@pytest.mark.parametrize("cls,tcls,shape", CM_CASES)
@pytest.mark.parametrize("x_layout,dy_layout", [(_channel_major, np.ascontiguousarray),
                                                (np.ascontiguousarray, _channel_major)])
def test_mixed_layouts_of_x_and_dy(cls, tcls, shape, x_layout, dy_layout):
    rng = np.random.default_rng(7)
    bn_ref = _bn(cls, shape[1], rng)
    bn = cls(shape[1], dtype=np.float64)
    bn.load_state_dict(bn_ref.state_dict())
    batches = _batches(shape, np.float64, steps=3)
    ref = _run(bn_ref, batches, np.ascontiguousarray, np.ascontiguousarray)
    got = _run(bn, batches, x_layout, dy_layout)
    for r_step, g_step in zip(ref, got, strict=True):
        # the output and dx come back in the layout of x, whatever the layout of dy
        assert _is_channel_major(g_step[0]) == _is_channel_major(g_step[1]) == (x_layout is _channel_major)
        for r, g in zip(r_step, g_step, strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


def test_channel_major_dy_of_other_dtype_is_cast():
    rng = np.random.default_rng(8)
    x, g = rng.standard_normal((4, 3, 5, 5)), rng.standard_normal((4, 3, 5, 5))
    bn_ref, bn = nn.BatchNorm2d(3, dtype=np.float64), nn.BatchNorm2d(3, dtype=np.float64)
    bn_ref(x)
    bn(_channel_major(x))
    dx = bn.backward(_channel_major(g.astype(np.float32)))
    assert dx.dtype == np.float64 and _is_channel_major(dx)
    np.testing.assert_allclose(dx, bn_ref.backward(g.astype(np.float32)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (5, 1, 4, 4), (1, 3, 6)])
def test_n_or_c_of_one_is_c_ordered(shape):
    """With N == 1 or C == 1 a channel-major array is C-contiguous too: the C-order result is returned."""
    x = np.ascontiguousarray(np.random.default_rng(9).standard_normal(shape).swapaxes(0, 1)).swapaxes(0, 1)
    assert x.flags.c_contiguous and x.swapaxes(0, 1).flags.c_contiguous
    bn = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1], dtype=np.float64)
    y = bn(x)
    assert y.flags.c_contiguous and y.shape == shape
    np.testing.assert_allclose(y.mean(axis=(0,) + tuple(range(2, len(shape)))), 0, atol=1e-12)


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (3, 4, 5)), (nn.BatchNorm2d, (3, 2, 4, 3))])
@pytest.mark.parametrize("mode", ["train", "eval", "no_affine"])
def test_gradient_check_channel_major(cls, shape, mode):
    """check_layer's central differences, with x perturbed through its (C, N, ...) buffer."""
    rng = np.random.default_rng(10)
    bn = _bn(cls, shape[1], rng, affine=mode != "no_affine")
    if mode == "eval":
        bn.running_mean[:] = rng.standard_normal(shape[1])
        bn.running_var[:] = rng.uniform(0.5, 2, shape[1])
        bn.eval()
    buf = np.ascontiguousarray((rng.standard_normal(shape) * 2 + 1).swapaxes(0, 1))   # (C, N, ...)
    x = buf.swapaxes(0, 1)
    upstream = _channel_major(rng.standard_normal(shape))

    def loss():
        return float(np.sum(upstream * bn(x)))

    bn.zero_grad()
    bn(x)
    dx = bn.backward(upstream)
    assert _is_channel_major(dx)
    errors = {"x": relative_error(numerical_grad(loss, buf).swapaxes(0, 1), dx)}
    for name, p in bn.named_parameters():
        errors[name] = relative_error(numerical_grad(loss, p.data), p.grad.copy())
    assert max(errors.values()) <= 1e-6, errors
