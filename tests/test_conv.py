"""Conv2d, MaxPool2d, Flatten: gradient checks, parity with torch.nn, errors, state dict, init."""

import numpy as np
import pytest

from gradcheck import check_layer, numerical_grad, relative_error
from trainlab import init
from trainlab.nn.activation import ReLU
from trainlab.nn.conv import Conv2d, Flatten, MaxPool2d
from trainlab.nn.linear import Linear
from trainlab.nn.module import Sequential

# every test runs on both kernel paths (compiled and NumPy reference); see conftest.py
pytestmark = pytest.mark.usefixtures("kernel_path")

# (in, out, kernel, stride, padding, bias, input shape). Both im2col row layouts are covered:
# wide rows (k3_s1_p1, k3_s2_p1, k2x3_...) and exact rows (the others; see test_both_row_layouts).
CONV_CASES = {
    "k3_s1_p1": (3, 4, 3, 1, 1, True, (2, 3, 6, 7)),
    "k3_s1_p0": (2, 3, 3, 1, 0, True, (2, 2, 6, 5)),
    "k3_s2_p1": (3, 2, 3, 2, 1, True, (2, 3, 7, 6)),
    "k3x2_s2_p0": (2, 3, (3, 2), 2, 0, True, (2, 2, 7, 6)),
    "k2x3_s12_p10_nobias": (2, 3, (2, 3), (1, 2), (1, 0), False, (2, 2, 5, 7)),
    "k1_s1_p0": (3, 2, 1, 1, 0, True, (2, 3, 4, 3)),
    "k5_s1_p0_exact": (2, 2, 5, 1, 0, True, (2, 2, 6, 6)),
    "k4x2_s3_p1_exact": (2, 3, (4, 2), 3, 1, True, (3, 2, 8, 5)),
}


def make_conv(name, dtype=np.float64, seed=0):
    cin, cout, k, s, p, bias, shape = CONV_CASES[name]
    rng = np.random.default_rng(seed)
    conv = Conv2d(cin, cout, k, s, p, bias, init="he", rng=rng, dtype=dtype)
    if bias:
        conv.bias.data[:] = rng.standard_normal(cout)
    return conv, shape


def torch_conv(conv, tdtype):
    torch = pytest.importorskip("torch")
    twin = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                           conv.padding, bias=conv.bias is not None, dtype=tdtype)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in conv.state_dict().items()})
    return twin


def assert_close(ours, ref, dtype):
    assert ours.shape == ref.shape and ours.dtype == dtype
    if dtype == np.float64:
        assert np.max(np.abs(ours - ref)) <= 1e-10
    else:
        assert np.max(np.abs(ours - ref)) <= 1e-5 * max(np.max(np.abs(ref)), 1e-30)


# --------------------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv_gradient_check(name):
    conv, shape = make_conv(name)
    rng = np.random.default_rng(1)
    errors = check_layer(conv, rng.standard_normal(shape), rng)
    assert set(errors) == {"x", "weight"} | ({"bias"} if conv.bias is not None else set())
    assert max(errors.values()) <= 1e-6, errors


@pytest.mark.parametrize("kernel, stride, padding, shape", [
    (2, None, 0, (2, 3, 6, 8)),      # the reshape fast path
    (2, 2, 0, (2, 2, 7, 5)),         # odd sizes: the last row/column is dropped
    (3, 2, 1, (2, 2, 7, 6)),         # overlapping windows with -inf padding
    ((2, 3), (1, 2), (1, 1), (1, 2, 5, 6)),
])
def test_maxpool_gradient_check(kernel, stride, padding, shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)   # continuous values: no ties, no kink within h
    errors = check_layer(MaxPool2d(kernel, stride, padding), x, rng)
    assert errors["x"] <= 1e-6, errors


@pytest.mark.parametrize("start_dim, shape", [(1, (3, 2, 4, 5)), (2, (3, 2, 4, 5)), (1, (4, 6))])
def test_flatten_gradient_check(start_dim, shape):
    rng = np.random.default_rng(3)
    errors = check_layer(Flatten(start_dim), rng.standard_normal(shape), rng)
    assert errors["x"] <= 1e-6, errors


def test_gradient_check_of_a_small_cnn():
    rng = np.random.default_rng(4)
    net = Sequential(Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64), MaxPool2d(2),
                     Conv2d(3, 2, (2, 3), stride=(1, 2), rng=rng, dtype=np.float64), Flatten(),
                     Linear(2 * 2 * 1, 3, rng=rng, dtype=np.float64))
    x = rng.standard_normal((2, 2, 6, 6))
    upstream = rng.standard_normal((2, 3))
    net.zero_grad()
    net(x)
    dx = net.backward(upstream)
    loss = lambda: float(np.sum(upstream * net(x)))
    assert relative_error(numerical_grad(loss, x), dx) <= 1e-6
    for name, p in net.named_parameters():
        assert relative_error(numerical_grad(loss, p.data), p.grad) <= 1e-6, name


# --------------------------------------------------------------------------- parity with torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv_matches_torch(name, dtype):
    torch = pytest.importorskip("torch")
    conv, shape = make_conv(name, dtype)
    twin = torch_conv(conv, torch.float64 if dtype == np.float64 else torch.float32)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    y = conv(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = conv.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = twin(xt)
    yt.backward(torch.from_numpy(g))
    assert_close(y, yt.detach().numpy(), dtype)
    assert_close(dx, xt.grad.numpy(), dtype)
    assert_close(conv.weight.grad, twin.weight.grad.numpy(), dtype)
    if conv.bias is not None:
        assert_close(conv.bias.grad, twin.bias.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_matches_torch_at_benchmark_size(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    conv = Conv2d(8, 16, 3, padding=1, rng=rng, dtype=dtype)
    conv.bias.data[:] = rng.standard_normal(16)
    twin = torch_conv(conv, torch.float64 if dtype == np.float64 else torch.float32)
    x = rng.standard_normal((16, 8, 14, 14)).astype(dtype)
    g = rng.standard_normal((16, 16, 14, 14)).astype(dtype)
    y, dx = conv(x), conv.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    twin(xt).backward(torch.from_numpy(g))
    assert_close(y, twin(xt).detach().numpy(), dtype)
    assert_close(dx, xt.grad.numpy(), dtype)
    assert_close(conv.weight.grad, twin.weight.grad.numpy(), dtype)
    assert_close(conv.bias.grad, twin.bias.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel, stride, padding", [
    (2, None, 0), (3, 2, 1), (2, 1, 0), ((3, 2), (2, 1), (1, 1)), (2, 3, 0), (3, None, 1)])
@pytest.mark.parametrize("values", ["random", "ties"])
def test_maxpool_matches_torch(kernel, stride, padding, values, dtype):
    """With many ties (ReLU zeros, small integers) the gradient goes to torch's choice."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    shape = (2, 3, 7, 8)
    x = rng.standard_normal(shape) if values == "random" else np.maximum(rng.integers(-2, 3, shape), 0)
    x = x.astype(dtype)
    pool = MaxPool2d(kernel, stride, padding)
    y = pool(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = pool.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.MaxPool2d(kernel, stride, padding)(xt)
    yt.backward(torch.from_numpy(g))
    assert np.array_equal(y, yt.detach().numpy())
    assert_close(dx, xt.grad.numpy(), dtype)
    if values == "ties" and (stride is None or stride >= kernel):   # disjoint windows: exact routing
        assert np.array_equal(dx, xt.grad.numpy())
    pool.eval()                          # eval mode finds the maxima lazily in backward
    assert np.array_equal(pool(x), y)
    assert np.array_equal(pool.backward(g), dx)


def test_maxpool_nan_is_propagated_and_routed_like_torch():
    torch = pytest.importorskip("torch")
    x = np.arange(2 * 16, dtype=np.float64).reshape(1, 2, 4, 4)
    x[0, 0, 0, 1] = np.nan                       # NaN after the window's maximum position
    x[0, 1, 2, 2] = x[0, 1, 3, 3] = np.nan       # two NaNs in one window
    pool = MaxPool2d(2)
    y = pool(x)
    g = np.arange(1.0, 9.0).reshape(y.shape)
    dx = pool.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.MaxPool2d(2)(xt)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())


@pytest.mark.parametrize("start_dim", [1, 2])
def test_flatten_matches_torch(start_dim):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(8).standard_normal((3, 2, 4, 5))
    y = Flatten(start_dim)(x)
    assert np.array_equal(y, torch.nn.Flatten(start_dim)(torch.from_numpy(x)).numpy())


# --------------------------------------------------------------------------- errors
CONV_1_32 = r"Conv2d\(1, 32, kernel_size=3\): expected input of shape \(N, 1, H, W\)"


@pytest.mark.parametrize("shape, match", [
    ((2, 1, 28), CONV_1_32 + r", got \(2, 1, 28\)"),            # wrong rank
    ((2, 3, 28, 28), CONV_1_32 + r", got \(2, 3, 28, 28\)"),    # wrong channel count
    ((2, 1, 2, 28), CONV_1_32 + r" with H \+ 2\*0 >= 3.*got \(2, 1, 2, 28\)"),   # too small
])
def test_conv_bad_input_names_layer_and_shape(shape, match):
    conv = Conv2d(1, 32, kernel_size=3, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        conv(np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=match):
        conv.output_shape(shape)


def test_conv_backward_checks_dout_and_order():
    conv = Conv2d(1, 2, 3, rng=np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="before forward"):
        conv.backward(np.zeros((1, 2, 3, 3)))
    conv(np.zeros((1, 1, 5, 5)))
    with pytest.raises(ValueError, match=r"Conv2d\(1, 2, kernel_size=3\).backward: expected dout of shape"):
        conv.backward(np.zeros((1, 2, 4, 4)))


def test_pool_and_flatten_bad_input():
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=2, stride=2\): expected input of shape "
                                         r"\(N, C, H, W\).*got \(4, 6\)"):
        MaxPool2d(2)(np.zeros((4, 6)))
    with pytest.raises(ValueError, match=r"MaxPool2d.*got \(1, 1, 1, 6\)"):
        MaxPool2d(2)(np.zeros((1, 1, 1, 6)))
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=2\): expected input with more than 2"):
        Flatten(2)(np.zeros((4, 6)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_channels=0, out_channels=2, kernel_size=3), "in_channels must be a positive int"),
    (dict(in_channels=1, out_channels=2, kernel_size=0), "kernel_size must be a positive int"),
    (dict(in_channels=1, out_channels=2, kernel_size=(3, 3, 3)), "kernel_size must be"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, stride=0), "stride must be a positive int"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, padding=-1), "padding must be a non-negative int"),
])
def test_conv_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"Conv2d: {match}"):
        Conv2d(**kwargs, rng=np.random.default_rng(0))


def test_pool_and_flatten_bad_arguments():
    with pytest.raises(ValueError, match="MaxPool2d: padding must be at most half of kernel_size"):
        MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="MaxPool2d: stride must be a positive int"):
        MaxPool2d(2, stride=0)
    with pytest.raises(ValueError, match="Flatten: start_dim must be a non-negative int"):
        Flatten(-1)
    with pytest.raises(TypeError, match="Conv2d: rng must be"):
        Conv2d(1, 2, 3)


# --------------------------------------------------------------------------- state, init, shapes
def test_state_dict_loads_into_torch_and_gives_the_same_output():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    conv = Conv2d(3, 5, (3, 2), stride=2, padding=1, rng=rng)
    conv.bias.data[:] = rng.standard_normal(5)
    state = conv.state_dict()
    assert list(state) == ["weight", "bias"] and state["weight"].shape == (5, 3, 3, 2)
    twin = torch.nn.Conv2d(3, 5, (3, 2), stride=2, padding=1)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    x = rng.standard_normal((4, 3, 9, 8)).astype(np.float32)
    ref = twin(torch.from_numpy(x)).detach().numpy()
    assert np.max(np.abs(conv(x) - ref)) <= 1e-5 * np.max(np.abs(ref))
    back = Conv2d(3, 5, (3, 2), stride=2, padding=1, rng=np.random.default_rng(0))
    back.load_state_dict(twin.state_dict())
    assert np.array_equal(back.weight.data, conv.weight.data)
    assert np.array_equal(back.bias.data, conv.bias.data)


def test_he_init_is_bit_identical_to_the_initializer():
    conv = Conv2d(3, 8, (3, 5), init="he", rng=np.random.default_rng(0))
    expected = init.he((8, 3, 3, 5), rng=np.random.default_rng(0))
    assert conv.weight.data.dtype == np.float32
    assert np.array_equal(conv.weight.data, expected)
    assert conv.fan_in == 3 * 3 * 5
    assert not conv.bias.data.any()


def test_auto_init_looks_through_pool_and_flatten():
    net = Sequential(Conv2d(1, 4, 3, rng=np.random.default_rng(0)), MaxPool2d(2), ReLU())
    assert np.array_equal(net[0].weight.data, init.he((4, 1, 3, 3), rng=np.random.default_rng(0)))
    net = Sequential(Conv2d(1, 4, 3, rng=np.random.default_rng(1)), MaxPool2d(2), Flatten(),
                     Linear(4 * 3 * 3, 2, rng=np.random.default_rng(2)))
    assert np.array_equal(net[0].weight.data, init.xavier((4, 1, 3, 3), rng=np.random.default_rng(1)))
    assert MaxPool2d.transparent_to_init and Flatten.transparent_to_init


def test_output_shape_and_repr():
    conv = Conv2d(1, 32, 3, padding=1, rng=np.random.default_rng(0))
    pool, flat = MaxPool2d(2), Flatten()
    shape = (64, 1, 28, 28)
    net = Sequential(conv, pool, flat)
    assert net.output_shape(shape) == (64, 32 * 14 * 14)
    assert net(np.zeros(shape, np.float32)).shape == (64, 32 * 14 * 14)
    assert Conv2d(2, 3, (3, 5), stride=2, bias=False, rng=np.random.default_rng(0)).output_shape(
        (1, 2, 10, 11)) == (1, 3, 4, 4)
    assert MaxPool2d(3, 2, 1).output_shape((1, 2, 7, 6)) == (1, 2, 4, 3)
    assert repr(conv) == "Conv2d(1, 32, kernel_size=3, padding=1)"
    assert repr(Conv2d(2, 3, (3, 5), stride=2, bias=False, rng=np.random.default_rng(0))) == \
        "Conv2d(2, 3, kernel_size=(3, 5), stride=2, bias=False)"
    assert repr(pool) == "MaxPool2d(kernel_size=2, stride=2)"
    assert repr(MaxPool2d(3, 2, 1)) == "MaxPool2d(kernel_size=3, stride=2, padding=1)"
    assert repr(flat) == "Flatten(start_dim=1)"


# --------------------------------------------------------------------------- buffer reuse
def test_both_row_layouts_are_covered():
    layouts = {name: (lambda g: g.wr > g.wo)(make_conv(name)[0]._geometry(make_conv(name)[1]))
               for name in CONV_CASES}
    assert layouts["k3_s1_p1"] and layouts["k3_s2_p1"] and layouts["k2x3_s12_p10_nobias"]
    assert not layouts["k5_s1_p0_exact"] and not layouts["k4x2_s3_p1_exact"]


def test_reused_buffers_never_leak_into_returned_arrays():
    rng = np.random.default_rng(10)
    conv = Conv2d(2, 3, 3, padding=1, rng=rng)
    x1, x2 = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 2, 5, 5))
    g1, g2 = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((2, 3, 5, 5))
    y1 = conv(x1)
    dx1 = conv.backward(g1)
    y1_copy, dx1_copy = y1.copy(), dx1.copy()
    conv(x2)
    conv.backward(g2)
    assert np.array_equal(y1, y1_copy) and np.array_equal(dx1, dx1_copy)
    fresh = Conv2d(2, 3, 3, padding=1, rng=np.random.default_rng(11))
    fresh.load_state_dict(conv.state_dict())
    assert np.array_equal(fresh(x2), conv(x2))


def test_shape_and_dtype_changes_between_calls():
    rng = np.random.default_rng(12)
    conv = Conv2d(2, 3, 3, stride=2, padding=1, rng=rng, dtype=np.float64)
    ref = Conv2d(2, 3, 3, stride=2, padding=1, rng=rng, dtype=np.float64)
    ref.load_state_dict(conv.state_dict())
    for shape in [(4, 2, 9, 9), (1, 2, 5, 7), (4, 2, 9, 9)]:
        x = rng.standard_normal(shape)
        y = conv(x)
        fresh = Conv2d(2, 3, 3, stride=2, padding=1, rng=rng, dtype=np.float64)
        fresh.load_state_dict(conv.state_dict())
        assert np.array_equal(y, fresh(x))
        g = rng.standard_normal(y.shape)
        assert np.array_equal(conv.backward(g), fresh.backward(g))
    conv.to(np.float32)
    assert conv(x.astype(np.float32)).dtype == np.float32


def test_grad_accumulates_over_backward_calls_and_zero_grad_clears():
    rng = np.random.default_rng(13)
    conv = Conv2d(2, 3, 3, rng=rng, dtype=np.float64)
    x, g = rng.standard_normal((2, 2, 6, 6)), rng.standard_normal((2, 3, 4, 4))
    conv(x)
    dx = conv.backward(g)
    first_w = conv.weight.grad.copy()
    assert np.array_equal(conv.backward(g), dx)          # the cache survives a backward
    np.testing.assert_allclose(conv.weight.grad, 2 * first_w, rtol=1e-14)
    np.testing.assert_allclose(conv.bias.grad, 2 * g.sum(axis=(0, 2, 3)), rtol=1e-14)
    conv.zero_grad()
    assert not conv.weight.grad.any() and not conv.bias.grad.any()


# --------------------------------------------------------------------------- memory layout
def channel_major(a):
    """The same (N, C, H, W) array stored as a C-contiguous (C, N, H, W) buffer."""
    return np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1)


def is_channel_major(a):
    return a.swapaxes(0, 1).flags.c_contiguous


@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv_output_and_dx_are_channel_major_and_any_layout_is_accepted(name):
    torch = pytest.importorskip("torch")
    conv, shape = make_conv(name)
    twin = torch_conv(conv, torch.float64)
    rng = np.random.default_rng(20)
    x = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = twin(xt)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(g))
    for x_in, g_in in [(x, g), (channel_major(x), channel_major(g)), (x, channel_major(g)),
                       (channel_major(x), g), (x[:, :, ::-1][:, :, ::-1], np.asfortranarray(g))]:
        conv.zero_grad()
        y = conv(x_in)
        assert is_channel_major(y) and y.shape == tuple(yt.shape)
        dx = conv.backward(g_in)
        assert is_channel_major(dx) and dx.shape == x.shape and dx.dtype == np.float64
        assert_close(y, yt.detach().numpy(), np.float64)
        assert_close(dx, xt.grad.numpy(), np.float64)
        assert_close(conv.weight.grad, twin.weight.grad.numpy(), np.float64)


def test_conv_dx_in_small_blocks_equals_one_block(monkeypatch):
    import trainlab.nn.conv as conv_module
    conv, shape = make_conv("k3_s1_p1")
    rng = np.random.default_rng(21)
    x = rng.standard_normal((5, *shape[1:]))
    y = conv(x)
    g = rng.standard_normal(y.shape)
    whole = conv.backward(g)
    for block_bytes in (1, 3 * 8 * 9 * 6 * 9 * 2 + 1):      # one sample per block, then two
        monkeypatch.setattr(conv_module, "_DX_BLOCK_BYTES", block_bytes)
        conv(x)
        assert np.array_equal(conv.backward(g), whole)


@pytest.mark.parametrize("layout", ["sample_major", "channel_major"])
def test_compiled_conv_in_small_blocks_equals_one_block_and_keeps_no_cols(monkeypatch, kernel_path, layout):
    """The compiled path builds cols a block of samples at a time (forward and backward) and keeps only x.

    ``channel_major``: x is a (C, N, H, W) array seen as (N, C, H, W), as a conv's output is.
    """
    if kernel_path != "numba":
        pytest.skip("the blocking of the compiled path")
    import trainlab.nn.conv as conv_module
    conv, shape = make_conv("k3_s2_p1")
    rng = np.random.default_rng(22)
    x = rng.standard_normal((5, *shape[1:]))
    if layout == "channel_major":
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    y = conv(x)
    assert conv._cache.cols is None and conv._cache.x is x and "cols" not in conv._scratch
    g = rng.standard_normal(y.shape)
    conv.zero_grad()
    dx = conv.backward(g)
    dw, db = conv.weight.grad.copy(), conv.bias.grad.copy()
    per_sample = 3 * 9 * 4 * 3 * 8      # K * Ho * Wo * itemsize
    for block_bytes in (1, 2 * per_sample, 3 * per_sample):      # 1, 2 and 3 samples per block (5 = 3 + 2)
        monkeypatch.setattr(conv_module, "_COLS_BLOCK_BYTES", block_bytes)
        conv.zero_grad()
        np.testing.assert_allclose(conv(x), y, rtol=0, atol=1e-13)
        np.testing.assert_allclose(conv.backward(g), dx, rtol=0, atol=1e-13)
        np.testing.assert_allclose(conv.weight.grad, dw, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(conv.bias.grad, db)
        conv.backward(g)                # a second backward accumulates (the first block is not written over)
        np.testing.assert_allclose(conv.weight.grad, 2 * dw, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 2, 1), (2, 1, 0), (2, 3, 0)])
def test_maxpool_keeps_the_layout_and_routes_like_torch(kernel, stride, padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(22)
    x = np.maximum(rng.integers(-2, 3, (3, 4, 7, 8)), 0).astype(np.float32)   # many ties
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.MaxPool2d(kernel, stride, padding)(xt)
    g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    pool = MaxPool2d(kernel, stride, padding)
    for x_in, g_in in [(channel_major(x), channel_major(g)), (channel_major(x), g), (x, channel_major(g))]:
        y = pool(x_in)
        assert is_channel_major(y) == is_channel_major(x_in) and y.flags.c_contiguous != is_channel_major(x_in)
        dx = pool.backward(g_in)
        assert is_channel_major(dx) == is_channel_major(x_in)
        assert np.array_equal(y, yt.detach().numpy())
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-6)
        if stride is None or stride >= kernel:
            assert np.array_equal(dx, xt.grad.numpy())


def test_layers_after_a_conv_keep_the_channel_major_layout():
    """A conv-BN-ReLU-pool block passes channel-major arrays through, forward and backward."""
    from trainlab.nn.batchnorm import BatchNorm2d
    rng = np.random.default_rng(23)
    net = Sequential(Conv2d(2, 4, 3, padding=1, rng=rng), BatchNorm2d(4), ReLU(), MaxPool2d(2))
    x = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    h = x
    for layer in net:
        h = layer(h)
        assert is_channel_major(h), type(layer).__name__
    d = rng.standard_normal(h.shape).astype(np.float32)
    for layer in reversed(list(net)):
        d = layer.backward(d)
        assert is_channel_major(d), type(layer).__name__


def test_bias_gradient_is_a_column_sum():
    from trainlab.nn.module import Parameter
    rng = np.random.default_rng(24)
    value = rng.standard_normal((5, 7))
    p = Parameter(np.zeros(5))
    p.sum_into_grad(value, axis=1)
    np.testing.assert_allclose(p.grad, value.sum(axis=1), rtol=1e-14)
    p.sum_into_grad(value, axis=1)
    np.testing.assert_allclose(p.grad, 2 * value.sum(axis=1), rtol=1e-14)
