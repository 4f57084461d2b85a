"""BatchNorm1d/2d: the seed's algorithm, gradient checks, and parity with torch over training steps."""

import numpy as np
import pytest

from gradcheck import check_layer
from trainlab import nn

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
