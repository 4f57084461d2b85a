"""Shared fixtures: ``kernel_path`` runs a test on each kernel path (compiled Numba and NumPy)."""

from __future__ import annotations

import pytest

from trainlab import kernels

#: the paths this installation can run (the NumPy path always; Numba when it is installed)
KERNEL_PATHS = [p for p in kernels.PATHS if p == "numpy" or kernels.available()]


@pytest.fixture(params=KERNEL_PATHS)
def kernel_path(request):
    """Run the test with ``trainlab.kernels`` switched to one path, then restore it."""
    with kernels.use(request.param):
        yield request.param


@pytest.fixture
def numpy_kernels():
    """Run the test on the NumPy path (for tests of what that path calls, such as BLAS)."""
    with kernels.use("numpy"):
        yield "numpy"
