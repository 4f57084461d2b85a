"""Initializers: target std, distribution (KS test), determinism, fans and the registry."""

import math

import numpy as np
import pytest
from scipy import stats

from trainlab import init

SHAPE = (1000, 1000)

# (name, kwargs, target std on SHAPE, scipy distribution factory)
CASES = [
    ("small_random", {}, 0.01, "normal"),
    ("normal", {}, 1.0, "normal"),
    ("xavier", {}, math.sqrt(1 / 1000), "normal"),
    ("xavier", {"mode": "fan_avg"}, math.sqrt(2 / 2000), "normal"),
    ("xavier", {"mode": "fan_out"}, math.sqrt(1 / 1000), "normal"),
    ("xavier", {"distribution": "uniform"}, math.sqrt(1 / 1000), "uniform"),
    ("xavier", {"mode": "fan_avg", "distribution": "uniform"}, math.sqrt(2 / 2000), "uniform"),
    ("xavier", {"gain": 5 / 3}, 5 / 3 * math.sqrt(1 / 1000), "normal"),
    ("xavier_uniform", {}, math.sqrt(1 / 1000), "uniform"),
    ("glorot", {}, math.sqrt(2 / 2000), "normal"),
    ("glorot_uniform", {}, math.sqrt(2 / 2000), "uniform"),
    ("he", {}, math.sqrt(2 / 1000), "normal"),
    ("he", {"mode": "fan_out"}, math.sqrt(2 / 1000), "normal"),
    ("he", {"mode": "fan_avg"}, math.sqrt(2 / 1000), "normal"),
    ("he", {"distribution": "uniform"}, math.sqrt(2 / 1000), "uniform"),
    ("he", {"negative_slope": 0.2}, math.sqrt(2 / (1 + 0.04) / 1000), "normal"),
    ("he_uniform", {}, math.sqrt(2 / 1000), "uniform"),
    ("orthogonal", {}, math.sqrt(1 / 1000), None),
]


@pytest.mark.parametrize("name,kwargs,target,dist", CASES, ids=lambda v: str(v))
def test_std_within_one_percent_and_ks(name, kwargs, target, dist):
    w = init.get(name)(SHAPE, rng=np.random.default_rng(1), **kwargs)
    assert w.shape == SHAPE and w.dtype == np.float32
    assert abs(w.std() / target - 1) < 0.01, (w.std(), target)
    assert abs(w.mean()) < 3 * target / 1000 * 2
    if dist == "normal":
        p = stats.kstest(w.ravel()[:200_000].astype(np.float64), "norm", args=(0, target)).pvalue
    elif dist == "uniform":
        a = math.sqrt(3) * target
        p = stats.kstest(w.ravel()[:200_000].astype(np.float64), "uniform", args=(-a, 2 * a)).pvalue
    else:
        p = 1.0
    assert p > 1e-3, p


def test_target_std_helper_agrees_with_cases():
    for name, kwargs, target, _ in CASES:
        if name == "orthogonal":
            continue
        assert init.target_std(name, SHAPE, **kwargs) == pytest.approx(target, rel=1e-12)


@pytest.mark.parametrize("name", [n for n in init.names() if n not in ("zeros", "ones")])
def test_same_seed_same_array(name):
    a = init.get(name)((64, 32, 3, 3), rng=np.random.default_rng(7))
    b = init.get(name)((64, 32, 3, 3), rng=np.random.default_rng(7))
    c = init.get(name)((64, 32, 3, 3), rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_seed_formulas_written_out():
    shape = (300, 200)
    z = np.random.default_rng(3).standard_normal(shape)
    np.testing.assert_array_equal(init.small_random(shape, rng=np.random.default_rng(3), dtype=np.float64),
                                  z * 0.01)
    np.testing.assert_allclose(init.xavier(shape, rng=np.random.default_rng(3), dtype=np.float64),
                               z * np.sqrt(1 / 200), rtol=1e-15)
    np.testing.assert_allclose(init.he(shape, rng=np.random.default_rng(3), dtype=np.float64),
                               z * np.sqrt(2 / 200), rtol=1e-15)



@pytest.mark.parametrize("name", ["he", "xavier_uniform"])
def test_float32_drawn_in_blocks_equals_one_float64_draw(name, monkeypatch):
    """Block by block (no float64 copy of the whole tensor), the values are those of one float64 draw."""
    shape = (70, 13)
    whole = init.get(name)(shape, rng=np.random.default_rng(5), dtype=np.float64)
    monkeypatch.setattr(init, "_DRAW_BLOCK", 64)        # 910 values: 14 full blocks and one of 14
    blocked = init.get(name)(shape, rng=np.random.default_rng(5), dtype=np.float32)
    assert blocked.dtype == np.float32 and blocked.shape == shape
    np.testing.assert_array_equal(blocked, whole.astype(np.float32))

def test_fans_linear_and_conv_share_one_rule():
    assert init.compute_fans((10, 20)) == (20, 10)
    assert init.compute_fans((64, 32, 3, 5)) == (32 * 15, 64 * 15)
    w = init.he((64, 32, 3, 3), rng=np.random.default_rng(0))
    assert abs(w.std() / math.sqrt(2 / (32 * 9)) - 1) < 0.02
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.compute_fans((5,))


def test_orthogonal_is_orthogonal():
    w = init.orthogonal((50, 80), rng=np.random.default_rng(0), gain=2.0, dtype=np.float64)
    np.testing.assert_allclose(w @ w.T, 4 * np.eye(50), atol=1e-12)
    w = init.orthogonal((80, 50), rng=np.random.default_rng(0), dtype=np.float64)
    np.testing.assert_allclose(w.T @ w, np.eye(50), atol=1e-12)
    w = init.orthogonal((16, 4, 3, 3), rng=np.random.default_rng(0), dtype=np.float64)
    flat = w.reshape(16, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(16), atol=1e-12)


def test_zeros_ones_dtype():
    assert init.zeros((3, 2)).sum() == 0 and init.ones((3, 2), dtype=np.float64).dtype == np.float64


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for name in ("linear", "sigmoid", "tanh", "relu", "conv2d", "selu"):
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name), rel=1e-12)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2), rel=1e-12)
    assert init.calculate_gain("leaky_relu") == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu"), rel=1e-12)


def test_for_activation_is_the_seed_recommendation():
    assert [init.for_activation(a) for a in ("tanh", "sigmoid", "linear", "relu", "leaky_relu")] == \
        ["xavier", "xavier", "xavier", "he", "he"]


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match=r"unknown initializer 'hee'.*did you mean 'he'.*small_random"):
        init.get("hee")
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*relu"):
        init.for_activation("gelu")
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="unknown mode 'fan_sum'"):
        init.xavier((3, 3), rng=np.random.default_rng(0), mode="fan_sum")
    with pytest.raises(ValueError, match="unknown distribution"):
        init.he((3, 3), rng=np.random.default_rng(0), distribution="cauchy")


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        init.he((3, 3), rng=None)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        init.he((3, 3), rng=0)


def test_no_global_random_state_used():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    init.he((10, 10), rng=np.random.default_rng(0))
    init.orthogonal((10, 10), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(before, np.random.get_state()[1])
