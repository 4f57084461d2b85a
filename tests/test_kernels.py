"""Tests of trainlab.kernels: path selection, thread-count independence, agreement with the NumPy path.

The layers' parity and gradient tests (test_batchnorm, test_conv, test_layers, test_module,
test_optim) run on both kernel paths through the ``kernel_path`` fixture; here each compiled
kernel is compared with the NumPy reference directly, on layouts and edge cases the parity
tests do not reach, and run at 1 and 2 threads to show the results are bit-identical.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from trainlab import kernels, nn

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------- choosing the path
def test_use_switches_and_restores_the_path():
    before = kernels.path()
    with kernels.use("numpy") as name:
        assert name == "numpy" and kernels.path() == "numpy" and not kernels.active()
    assert kernels.path() == before


@pytest.mark.parametrize("bad", ["cuda", "", None, 1])
def test_set_path_rejects_unknown_names(bad):
    with pytest.raises(ValueError, match="numba, numpy"):
        kernels.set_path(bad)


def test_environment_variable_selects_the_path(monkeypatch):
    monkeypatch.setenv("TRAINLAB_KERNELS", "NumPy")
    assert kernels._initial_path() == "numpy"
    monkeypatch.setenv("TRAINLAB_KERNELS", "fortran")
    with pytest.raises(ValueError, match="TRAINLAB_KERNELS must be one of numba, numpy"):
        kernels._initial_path()
    monkeypatch.delenv("TRAINLAB_KERNELS")
    assert kernels._initial_path() == "numpy", "the compiled path is opt-in"
    monkeypatch.setenv("TRAINLAB_KERNELS", "numba")
    assert kernels._initial_path() == ("numba" if kernels.available() else "numpy")


def test_import_does_not_import_numba_and_the_variable_reaches_a_fresh_process():
    code = ("import sys, trainlab; from trainlab import kernels; "
            "print(kernels.path(), 'numba' in sys.modules)")
    env = dict(os.environ, TRAINLAB_KERNELS="numpy")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["numpy", "False"]


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_set_num_threads_rejects_non_positive_ints(bad):
    with pytest.raises(ValueError, match="positive int"):
        kernels.set_num_threads(bad)


def test_cache_dir_falls_back_when_the_package_directory_is_not_writable(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))
    assert kernels.cache_dir(str(tmp_path / "pkg")) is None            # writable: numba's own __pycache__
    monkeypatch.setattr(kernels, "_writable", lambda directory: False)
    assert kernels.cache_dir(str(tmp_path / "pkg")) == str(tmp_path / "cache" / "numba")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert kernels.cache_dir() == str(tmp_path / "mine")


@needs_numba
def test_compiled_kernels_load_from_a_cache_outside_a_read_only_package(tmp_path):
    # A fresh process whose package directory counts as read-only writes its cache under TRAINLAB_CACHE.
    code = ("from trainlab import kernels; kernels._writable = lambda d: False; import numpy as np; "
            "x = np.arange(-3, 3, dtype=np.float32); y = np.empty_like(x); m = np.empty(6, bool); "
            "kernels.jit().relu_forward(x, y, m); print(y.tolist())")
    env = dict(os.environ, TRAINLAB_CACHE=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str([0.0, 0.0, 0.0, 0.0, 1.0, 2.0])
    assert any(p.suffix == ".nbi" for p in (tmp_path / "numba").rglob("*")), "no numba index file written"


# ---------------------------------------------------------------------------- helpers
def run_step(layer, x, dy, path, threads=None):
    """Forward and backward of ``layer`` on ``path`` (with ``threads`` kernel threads); copies of y, dx, grads."""
    before = kernels.get_num_threads()
    with kernels.use(path):
        kernels.set_num_threads(threads or before)
        try:
            for p in layer.parameters():
                p.zero_grad()
            y = np.array(layer(x))
            dx = layer.backward(dy)
            grads = [p.grad.copy() for p in layer.parameters()]
        finally:
            kernels.set_num_threads(before)
    return y, (None if dx is None else np.array(dx)), grads


def channel_major(a):
    """The same values as ``a`` (N, C, H, W) in the channel-major layout Conv2d returns."""
    return np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


def assert_paths_agree(make, x, dy, rtol):
    y0, dx0, g0 = run_step(make(), x, dy, "numpy")
    y1, dx1, g1 = run_step(make(), x, dy, "numba")
    scale = max(1.0, float(np.abs(y0).max()))
    np.testing.assert_allclose(y1, y0, rtol=0, atol=rtol * scale)
    if dx0 is not None:
        np.testing.assert_allclose(dx1, dx0, rtol=0, atol=rtol * max(1.0, float(np.abs(dx0).max())))
    for a, b in zip(g1, g0, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(1.0, float(np.abs(b).max())))


def assert_thread_count_does_not_matter(make, x, dy):
    outs = [run_step(make(), x, dy, "numba", threads) for threads in (1, 2)]
    (y1, dx1, g1), (y2, dx2, g2) = outs
    np.testing.assert_array_equal(y1, y2)
    if dx1 is not None:
        np.testing.assert_array_equal(dx1, dx2)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_array_equal(a, b)


TOL = {np.float32: 2e-5, np.float64: 1e-12}


def bn_case(layout, dtype):
    if layout == "rows":           # (N, C): the row kernel, several channel blocks
        shape, make = (96, 150), lambda: nn.BatchNorm1d(150, dtype=dtype)
    elif layout == "ncl":          # (N, C, L) C-ordered: the plane kernel
        shape, make = (12, 5, 33), lambda: nn.BatchNorm1d(5, dtype=dtype)
    else:                          # channel-major (N, C, H, W): one long run per channel
        shape, make = (6, 7, 9, 11), lambda: nn.BatchNorm2d(7, dtype=dtype)
    x = (RNG.standard_normal(shape) * 3 + 5).astype(dtype)
    dy = RNG.standard_normal(shape).astype(dtype)
    if layout == "channel_major":
        x, dy = channel_major(x), channel_major(dy)
    return make, x, dy


# ---------------------------------------------------------------------------- batch norm
@needs_numba
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["rows", "ncl", "channel_major"])
def test_batchnorm_kernels_match_the_numpy_path(layout, dtype, training):
    make, x, dy = bn_case(layout, dtype)
    seed = int(RNG.integers(1 << 30))

    def build():                    # the same parameters and running statistics on both paths
        rng = np.random.default_rng(seed)
        bn = make()
        bn.weight.data[...] = rng.uniform(0.5, 1.5, bn.num_features)
        bn.bias.data[...] = rng.standard_normal(bn.num_features)
        bn.running_mean[...] = 4.0
        bn.running_var[...] = 2.0
        return bn.train(training)
    assert_paths_agree(build, x, dy, TOL[dtype])
    assert_thread_count_does_not_matter(build, x, dy)


@needs_numba
def test_batchnorm_running_statistics_agree_between_paths():
    x = (RNG.standard_normal((64, 40)) * 2 + 1).astype(np.float32)
    layers = {}
    for path in kernels.PATHS:
        bn = nn.BatchNorm1d(40)
        with kernels.use(path):
            for _ in range(3):
                bn(x)
        layers[path] = bn
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(layers["numba"], name), getattr(layers["numpy"], name), rtol=1e-6)
    assert int(layers["numba"].num_batches_tracked) == 3


# ---------------------------------------------------------------------------- activations
@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [nn.ReLU, lambda: nn.LeakyReLU(0.1), nn.Tanh, nn.Sigmoid],
                         ids=["relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("layout", ["c_order", "channel_major"])
def test_activation_kernels_match_the_numpy_path(make, dtype, layout):
    x = RNG.standard_normal((3, 4, 50, 70)).astype(dtype)      # 42000 elements: each thread gets a part
    dy = RNG.standard_normal(x.shape).astype(dtype)
    if layout == "channel_major":
        x, dy = channel_major(x), channel_major(dy)
    assert_paths_agree(make, x, dy, TOL[dtype])
    assert_thread_count_does_not_matter(make, x, dy)
    with kernels.use("numba"):
        layer = make()
        y = layer(x)
        assert y.strides == x.strides                       # the layout is kept
        assert layer.backward(dy).strides == dy.strides


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_kernel_at_the_extremes_matches_the_numpy_path(dtype):
    x = np.array([-np.inf, -800.0, -100.0, -20.0, -1e-8, 0.0, 1e-8, 20.0, 100.0, 800.0, np.inf, np.nan], dtype=dtype)
    paths = {}
    for path in kernels.PATHS:
        with kernels.use(path):
            paths[path] = nn.Sigmoid()(x)
    y = paths["numba"]
    assert y.dtype == dtype
    np.testing.assert_allclose(y, paths["numpy"], rtol=4 * np.finfo(dtype).eps, atol=0)     # NaN matches NaN
    assert (y[0], y[5], y[-2]) == (0.0, 0.5, 1.0) and np.isnan(y[-1])
    assert 0 < y[2] < 1e-43                 # exp(-100) / (1 + exp(-100)): no overflow, no cancellation


# ---------------------------------------------------------------------------- pooling and convolution
POOLS = {"2x2": dict(kernel_size=2), "3x3_s2_p1": dict(kernel_size=3, stride=2, padding=1),
         "3x2_s1": dict(kernel_size=(3, 2), stride=1)}


@needs_numba
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["c_order", "channel_major"])
@pytest.mark.parametrize("pool", list(POOLS))
def test_maxpool_kernels_match_the_numpy_path(pool, layout, training):
    x = RNG.standard_normal((4, 3, 10, 9)).astype(np.float32)
    x[0, 0, :2, :2] = 1.5                # a tie: the first maximum wins on both paths
    x[1, 2, 4, 4] = np.nan               # a NaN wins its windows
    make = lambda: nn.MaxPool2d(**POOLS[pool]).train(training)   # noqa: E731
    ho = nn.MaxPool2d(**POOLS[pool]).output_shape(x.shape)
    dy = RNG.standard_normal(ho).astype(np.float32)
    if layout == "channel_major":
        x, dy = channel_major(x), channel_major(dy)
    y0, dx0, _ = run_step(make(), x, dy, "numpy")
    y1, dx1, _ = run_step(make(), x, dy, "numba")
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_allclose(dx1, dx0, rtol=0, atol=1e-6)
    assert_thread_count_does_not_matter(make, x, dy)


CONVS = {"k3_p1": (3, 5, 3, 1, 1), "k3_s2_p1": (3, 4, 3, 2, 1), "k2x3_s1x2_p0x1": (2, 3, (2, 3), (1, 2), (0, 1)),
         "k1": (4, 6, 1, 1, 0)}


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["c_order", "channel_major"])
@pytest.mark.parametrize("case", list(CONVS))
def test_conv_kernels_match_the_numpy_path(case, layout, dtype):
    cin, cout, k, s, p = CONVS[case]
    seed = int(RNG.integers(1 << 30))
    make = lambda: nn.Conv2d(cin, cout, k, stride=s, padding=p, rng=np.random.default_rng(seed), dtype=dtype)  # noqa: E731
    x = RNG.standard_normal((5, cin, 9, 11)).astype(dtype)
    dy = RNG.standard_normal(make().output_shape(x.shape)).astype(dtype)
    if layout == "channel_major":
        x, dy = channel_major(x), channel_major(dy)
    assert_paths_agree(make, x, dy, TOL[dtype])
    assert_thread_count_does_not_matter(make, x, dy)


# ---------------------------------------------------------------------------- dropout
@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_kernel_draws_the_same_mask_and_values_as_the_numpy_path(dtype):
    x = RNG.standard_normal((64, 300)).astype(dtype)
    dy = RNG.standard_normal(x.shape).astype(dtype)
    make = lambda: nn.Dropout(0.3, rng=np.random.default_rng(7))   # noqa: E731
    y0, dx0, _ = run_step(make(), x, dy, "numpy")
    y1, dx1, _ = run_step(make(), x, dy, "numba")
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)


@needs_numba
def test_kernels_launched_from_several_python_threads_agree_with_one_thread():
    # The kernels are serial loops that release the GIL: several Python threads run them at once.
    from concurrent.futures import ThreadPoolExecutor
    x = RNG.standard_normal((256, 300)).astype(np.float32)
    dy = RNG.standard_normal(x.shape).astype(np.float32)

    def work(_):
        layer = nn.BatchNorm1d(300)
        layer(x)
        return np.array(layer.backward(dy))
    with kernels.use("numba"):      # the path is process-wide: switched once, outside the threads
        expected = work(0)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(work, range(8)))
    for dx in results:
        np.testing.assert_array_equal(dx, expected)
    if not os.environ.get("NUMBA_THREADING_LAYER"):
        assert kernels.threading_layer() == "workqueue"
