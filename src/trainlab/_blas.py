"""Level-1 BLAS from the OpenBLAS that NumPy itself links: ``axpy`` and ``axpby``, in place.

NumPy reaches BLAS only through its matrix products, so ``y += a * x`` costs it a
temporary and two single-threaded passes over memory (``t = a * x``; ``y += t``), and
``y = a * x + b * y`` three. OpenBLAS's ``axpy`` does the first in one pass on the BLAS
thread pool (above 10,000 values), and its ``axpby`` extension the second in one pass.
The optimizers' update rules are made of such steps (see :mod:`trainlab.optim.functional`).

The functions are reached through :mod:`ctypes` in the OpenBLAS build that NumPy's wheels
ship (``numpy.libs``/``numpy/.dylibs``: ``libscipy_openblas64_``, or ``libopenblas64_``
for NumPy 1.26), the same library and thread pool NumPy's ``matmul`` uses. Only the
ILP64 symbols are used (``scipy_cblas_saxpy64_``, ``cblas_saxpy64_``: the ``64_`` suffix
fixes the integer width at 64 bits); on first use a self-check computes both functions
on small arrays with guard values and compares them with NumPy. Anything else (another
BLAS, no such library, a failed check) leaves the path off and every caller runs its
NumPy code instead. ``TRAINLAB_BLAS_LEVEL1=0`` turns it off as well.

Arithmetic: OpenBLAS's kernels compute ``y + a * x`` with a fused multiply-add (one
rounding, as PyTorch's ``y.add_(x, alpha=a)`` does on the CPU) where NumPy's two passes
round twice, so results differ from the NumPy path in the last bit. Each element is
computed on its own, so they do not depend on the thread count.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
import weakref
from collections.abc import Callable, Iterator

import numpy as np

__all__ = ["available", "for_arrays", "off", "Level1", "MIN_SIZE"]

_ENV = "TRAINLAB_BLAS_LEVEL1"
_PREFIXES = ("scipy_cblas_", "cblas_")
_SUFFIX = "64_"
_CHECK_SIZE = 5

_lock = threading.Lock()
_loaded = False
_LEVEL1: dict[np.dtype, Level1] = {}      # filled by _load()


def _library_paths() -> list[str]:
    """OpenBLAS libraries bundled with the imported NumPy (wheels keep them beside the package)."""
    base = os.path.dirname(np.__file__)
    paths: list[str] = []
    for folder in (base + ".libs", os.path.join(base, ".dylibs")):
        paths += sorted(glob.glob(os.path.join(folder, "*openblas*")))
    return paths


def _bind(lib: ctypes.CDLL, kind: str, dtype: type) -> tuple[Callable[..., None], Callable[..., None]] | None:
    """``?axpy`` and ``?axpby`` of ``lib`` for one float type (``s`` or ``d``), or None."""
    i64, ptr, real = ctypes.c_int64, ctypes.c_void_p, dtype
    for prefix in _PREFIXES:
        try:
            axpy = getattr(lib, f"{prefix}{kind}axpy{_SUFFIX}")
            axpby = getattr(lib, f"{prefix}{kind}axpby{_SUFFIX}")
        except AttributeError:
            continue
        axpy.restype = axpby.restype = None
        axpy.argtypes = [i64, real, ptr, i64, ptr, i64]
        axpby.argtypes = [i64, real, ptr, i64, real, ptr, i64]
        return axpy, axpby
    return None


def _self_check(dt: np.dtype, axpy: Callable[..., None], axpby: Callable[..., None]) -> bool:
    """Both functions on small arrays against NumPy, with guard values past the end."""
    n = _CHECK_SIZE
    x = np.arange(1, n + 2, dtype=dt)
    y = np.arange(10, 10 + n + 1, dtype=dt)
    y0 = y.copy()
    axpy(n, 0.5, x.ctypes.data, 1, y.ctypes.data, 1)
    ok = np.array_equal(y[:n], y0[:n] + dt.type(0.5) * x[:n]) and y[n] == y0[n]
    axpby(n, 2.0, x.ctypes.data, 1, 0.25, y.ctypes.data, 1)
    expected = dt.type(2.0) * x[:n] + dt.type(0.25) * (y0[:n] + dt.type(0.5) * x[:n])
    return bool(ok and np.array_equal(y[:n], expected) and y[n] == y0[n])


def _load() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        if os.environ.get(_ENV, "").strip() not in ("0", "false", "no", "off"):
            for path in _library_paths():
                try:
                    lib = ctypes.CDLL(path)
                except OSError:
                    continue
                bound = {np.dtype(np.float32): _bind(lib, "s", ctypes.c_float),
                         np.dtype(np.float64): _bind(lib, "d", ctypes.c_double)}
                if all(fns is not None and _self_check(dt, *fns) for dt, fns in bound.items()):
                    for dt, fns in bound.items():
                        _LEVEL1[dt] = Level1(*fns)
                    break
        _loaded = True


def available() -> bool:
    """True when the BLAS path is on (a matching OpenBLAS was found and passed the self-check)."""
    if not _loaded:
        _load()
    return bool(_LEVEL1)


#: below this many values the NumPy passes are as fast as a ctypes call and run instead
MIN_SIZE = 4096

_addresses: dict[int, tuple[weakref.ref, int, int]] = {}


def _address(a: np.ndarray) -> int:
    """The data pointer of ``a``, cached per array (``a.ctypes.data`` costs microseconds)."""
    key = id(a)
    entry = _addresses.get(key)
    if entry is not None and entry[0]() is a and entry[2] == a.nbytes:
        return entry[1]
    address = a.ctypes.data
    try:
        _addresses[key] = (weakref.ref(a, lambda _, k=key: _addresses.pop(k, None)), address, a.nbytes)
    except TypeError:       # an object that takes no weak reference: no caching
        pass
    return address


class Level1:
    """``axpy`` and ``axpby`` for one float dtype; build it with :func:`for_arrays`, which checks the operands."""

    __slots__ = ("_axpy", "_axpby")

    def __init__(self, axpy: Callable[..., None], axpby: Callable[..., None]) -> None:
        self._axpy, self._axpby = axpy, axpby

    # OpenBLAS skips the terms whose coefficient is 0 (``0 * inf`` never becomes NaN there);
    # those rare calls run in NumPy, so non-finite values propagate exactly as in the NumPy path.

    def axpy(self, a: float, x: np.ndarray, y: np.ndarray) -> None:
        """``y += a * x`` in place."""
        if a == 0:
            y += x * y.dtype.type(a)
            return
        self._axpy(y.size, a, _address(x), 1, _address(y), 1)

    def axpby(self, a: float, x: np.ndarray, b: float, y: np.ndarray) -> None:
        """``y = a * x + b * y`` in place."""
        if a == 0 or b == 0:
            y *= y.dtype.type(b)
            y += x * y.dtype.type(a)
            return
        self._axpby(y.size, a, _address(x), 1, b, _address(y), 1)


_local = threading.local()


@contextlib.contextmanager
def off() -> Iterator[None]:
    """Within the block, :func:`for_arrays` refuses in this thread (callers run NumPy).

    The optimizers' lanes use it: each lane is a thread of its own, and BLAS calls
    from concurrent lanes would fight over the one BLAS thread pool.
    """
    previous = getattr(_local, "off", False)
    _local.off = True
    try:
        yield
    finally:
        _local.off = previous


def for_arrays(read: np.ndarray, *written: np.ndarray) -> Level1 | None:
    """The BLAS kernels when they can take these operands, else None (the caller runs NumPy).

    All must share one float dtype and size (at least :data:`MIN_SIZE` values) and be
    C-contiguous; the ``written`` arrays must be writeable; no two may overlap in memory.
    """
    if not _loaded:
        _load()
    level1 = _LEVEL1.get(read.dtype)
    if (level1 is None or read.size < MIN_SIZE or not read.flags.c_contiguous
            or getattr(_local, "off", False)):
        return None
    for y in written:
        if (y.dtype != read.dtype or y.size != read.size or not y.flags.c_contiguous
                or not y.flags.writeable):
            return None
    # No two operands may overlap: each one is a contiguous block [start, start + nbytes).
    nbytes = read.nbytes
    starts = sorted(_address(a) for a in (read, *written))
    if any(b - a < nbytes for a, b in zip(starts[:-1], starts[1:], strict=True)):
        return None
    return level1
