"""Tests of trainlab._blas: the level-1 BLAS path (axpy, axpby) and when it refuses operands."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from trainlab import _blas

N = 2 * _blas.MIN_SIZE + 3

needs_blas = pytest.mark.skipif(not _blas.available(), reason="no OpenBLAS level-1 functions in this NumPy build")


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_and_axpby_match_numpy_and_write_nothing_past_the_end(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N + 5).astype(dtype)
    y = rng.standard_normal(N + 5).astype(dtype)
    y0 = y.copy()
    xs, ys = x[:N], y[:N]                              # C-contiguous prefixes of longer arrays
    level1 = _blas.for_arrays(xs, ys)
    assert level1 is not None
    level1.axpy(-0.3, xs, ys)
    rtol = 1e-15 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(ys, y0[:N] - dtype(0.3) * x[:N], rtol=rtol, atol=rtol)
    y1 = ys.copy()
    level1.axpby(2.5, xs, 0.9, ys)
    np.testing.assert_allclose(ys, dtype(2.5) * x[:N] + dtype(0.9) * y1, rtol=rtol, atol=rtol)
    assert np.array_equal(y[N:], y0[N:])               # the guard values are untouched
    assert ys.dtype == dtype


@needs_blas
def test_a_2d_array_is_one_vector():
    x = np.ones((80, 90), dtype=np.float32)
    y = np.arange(80 * 90, dtype=np.float32).reshape(80, 90)
    _blas.for_arrays(x, y).axpy(2.0, x, y)
    assert np.array_equal(y, np.arange(80 * 90, dtype=np.float32).reshape(80, 90) + 2)


@needs_blas
def test_operands_blas_cannot_take_are_refused():
    x = np.ones(N)
    y = np.ones(N)
    assert _blas.for_arrays(x, y) is not None
    refused = {
        "too small": (x[:_blas.MIN_SIZE - 1], y[:_blas.MIN_SIZE - 1]),
        "dtype mismatch": (x, y.astype(np.float32)),
        "size mismatch": (x, y[:-1]),
        "strided read": (np.ones(2 * N)[::2], y),
        "strided write": (x, np.ones(2 * N)[::2]),
        "integer": (np.ones(N, dtype=np.int64), np.ones(N, dtype=np.int64)),
        "float16": (np.ones(N, dtype=np.float16), np.ones(N, dtype=np.float16)),
        "written twice": (x, y, y),
    }
    for why, args in refused.items():
        assert _blas.for_arrays(*args) is None, why
    frozen = np.ones(N)
    frozen.flags.writeable = False
    assert _blas.for_arrays(frozen, y) is not None        # read-only input is fine
    assert _blas.for_arrays(x, frozen) is None            # a read-only output is not
    overlap = np.ones(N + 1)
    assert _blas.for_arrays(overlap[1:], overlap[:-1]) is None


@needs_blas
def test_cached_addresses_follow_new_arrays():
    # the address cache is keyed by id(); a new array with a recycled id must not reuse an old address
    level1 = _blas.for_arrays(np.ones(N), np.ones(N))
    for i in range(20):
        x = np.full(N, float(i))
        y = np.zeros(N)
        level1.axpy(1.0, x, y)
        assert np.array_equal(y, x)
        del x, y


def test_environment_variable_turns_the_path_off():
    code = "from trainlab import _blas; import numpy as np; print(_blas.available(), " \
           "_blas.for_arrays(np.ones(10**5), np.ones(10**5)) is None)"
    env = dict(os.environ, TRAINLAB_BLAS_LEVEL1="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


@needs_blas
def test_off_refuses_in_its_block_and_restores_after():
    x, y = np.ones(N), np.ones(N)
    with _blas.off():
        assert _blas.for_arrays(x, y) is None
        with _blas.off():
            assert _blas.for_arrays(x, y) is None
        assert _blas.for_arrays(x, y) is None
    assert _blas.for_arrays(x, y) is not None


@needs_blas
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")   # 0 * inf, on purpose
def test_zero_coefficients_still_propagate_non_finite_values_like_numpy():
    x = np.ones(N)
    x[3] = np.inf
    y = np.ones(N)
    y[5] = np.nan
    k = _blas.for_arrays(x, y)
    y1 = y.copy()
    k.axpy(0.0, x, y1)                         # 0 * inf = nan, as in NumPy
    assert np.isnan(y1[3]) and np.isnan(y1[5]) and y1[0] == 1
    y2 = y.copy()
    k.axpby(2.0, x, 0.0, y2)                   # 0 * nan = nan
    assert np.isnan(y2[5]) and y2[3] == np.inf and y2[0] == 2
    y3 = y.copy()
    k.axpby(0.0, x, 0.5, y3)
    assert np.isnan(y3[3]) and np.isnan(y3[5]) and y3[0] == 0.5
