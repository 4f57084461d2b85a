"""Compiled kernels behind the layers and optimizers, each with its NumPy reference.

The memory-bound passes of a training step (batch normalization, the activations,
max pooling, im2col/col2im) run as fused loops compiled by
Numba (``@njit(fastmath=False, cache=True, nogil=True)``) when Numba is installed.
Each layer keeps its NumPy implementation: it is the reference the compiled kernels
are tested against and the fallback when Numba is missing.

Choosing the path:

* the NumPy path runs by default; ``TRAINLAB_KERNELS=numba`` (environment, with the
  ``trainlab[kernels]`` extra installed) selects the compiled one, ``numpy`` the NumPy
  path; :func:`path` tells which runs. The NumPy path is the default because, measured
  paired on a 2-core AVX-512 machine, the compiled path was not faster as whole steps
  (step time compiled / NumPy: 1.02-1.06 on the MLP and CNN benchmarks, 1.32 on
  BatchNorm1d; see the README's Speed section);
* :func:`set_path` switches for the whole process, ``with kernels.use("numpy"):``
  for a block (tests run every parity and gradient check on both paths).

Determinism: elementwise kernels compute each element on its own; reductions
partition their work into blocks whose size depends only on the array shapes, never
on the number of threads, and combine partial sums in a fixed order (float64
accumulators), so results are bit-identical whatever :func:`set_num_threads` or
``NUMBA_NUM_THREADS`` say, serially and in workers.

Threads: the kernels are serial loops that release the GIL; they run in the calling
thread, between OpenBLAS calls (Python threads may run them at once). Numba's own
thread pool is not used: measured on 2
cores (``benchmarks/kernel_threads.py``, paired A/B steps), a parallel launch cost about
150 us with the ``workqueue`` layer, more than most whole passes of a training step,
and the ``omp`` layer's spinning threads fought OpenBLAS's spinning worker (up to 18x
slower for a BatchNorm right after a GEMM); see :mod:`trainlab.kernels._jit`.
:func:`set_num_threads` still sets Numba's count (for code of one's own) and
``workqueue`` stays the default layer, so nothing spins if a pool is ever started.

Compilation is lazy (``import trainlab`` never imports Numba) and cached on disk:
next to the package when that directory is writable, otherwise in
``$TRAINLAB_CACHE/numba`` (default ``~/.cache/trainlab/numba``), unless
``NUMBA_CACHE_DIR`` says where.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

__all__ = ["PATHS", "path", "set_path", "use", "active", "available", "set_num_threads",
           "get_num_threads", "jit", "cache_dir", "threading_layer"]

#: the two kernel paths
PATHS = ("numba", "numpy")
ENV_VAR = "TRAINLAB_KERNELS"

_lock = threading.Lock()
_jit_module: ModuleType | None = None
_numba_available: bool | None = None
_threads: int | None = None


def available() -> bool:
    """True when Numba can be imported (checked without importing it)."""
    global _numba_available
    if _numba_available is None:
        _numba_available = importlib.util.find_spec("numba") is not None
    return _numba_available


def _initial_path() -> str:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value == "":
        return "numpy"  # the compiled path is opt-in (see the module docstring)
    if value not in PATHS:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(PATHS)} (or unset), got {value!r}")
    if value == "numba" and not available():
        raise ValueError(f"{ENV_VAR}=numba but Numba is not installed (pip install 'trainlab[kernels]')")
    return value


_path = _initial_path()


def path() -> str:
    """The kernel path that runs now: ``"numba"`` or ``"numpy"``."""
    return _path


def active() -> bool:
    """True when the compiled (Numba) kernels run."""
    return _path == "numba"


def set_path(name: str) -> None:
    """Select the kernel path for the whole process (``"numba"`` or ``"numpy"``)."""
    global _path
    if name not in PATHS:
        raise ValueError(f"kernels.set_path: path must be one of {', '.join(PATHS)}, got {name!r}")
    if name == "numba" and not available():
        raise ValueError("kernels.set_path('numba'): Numba is not installed (pip install 'trainlab[kernels]')")
    _path = name


@contextmanager
def use(name: str) -> Iterator[str]:
    """Run a block on one kernel path, then restore the previous one.

    The path is process-wide (as :func:`set_path`): switch it in one thread, around any
    threads that should run on it, never from several threads at once.
    """
    previous = _path
    set_path(name)
    try:
        yield name
    finally:
        set_path(previous)


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the compiled kernels (1 <= n <= ``NUMBA_NUM_THREADS``).

    Results do not depend on ``n`` (see the module docstring), only the speed does.
    """
    global _threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"kernels.set_num_threads: n must be a positive int, got {n!r}")
    _threads = n
    if _jit_module is not None:
        _jit_module.set_threads(n)


def get_num_threads() -> int:
    """The number of threads the compiled kernels use."""
    if _jit_module is not None:
        return _jit_module.get_threads()
    if _threads is not None:
        return _threads
    return int(os.environ.get("NUMBA_NUM_THREADS", "") or os.cpu_count() or 1)


def _writable(directory: str) -> bool:
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
        return True
    except OSError:
        return False


def cache_dir(package_dir: str | None = None) -> str | None:
    """Where Numba caches compiled kernels: None for the package's own ``__pycache__``.

    ``NUMBA_CACHE_DIR`` wins when set; otherwise the package directory is used when it
    is writable, and ``$TRAINLAB_CACHE/numba`` (default ``~/.cache/trainlab/numba``)
    when it is not (a system-wide or read-only install).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    package_dir = package_dir or os.path.dirname(os.path.abspath(__file__))
    if _writable(os.path.join(package_dir, "__pycache__")):
        return None
    base = os.environ.get("TRAINLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "trainlab")
    return os.path.join(base, "numba")


def threading_layer() -> str:
    """The Numba threading layer the kernels use (``workqueue`` unless ``NUMBA_THREADING_LAYER`` is set)."""
    jit()
    import numba
    return str(numba.config.THREADING_LAYER)


def jit() -> ModuleType:
    """The compiled kernels (imports Numba on first use)."""
    global _jit_module
    if _jit_module is None:
        with _lock:
            if _jit_module is None:
                directory = cache_dir()
                import numba
                if directory is not None:
                    # the cache locator is chosen when the kernels are decorated, so set it first
                    numba.config.CACHE_DIR = directory
                if not os.environ.get("NUMBA_THREADING_LAYER"):
                    numba.config.THREADING_LAYER = "workqueue"   # idle threads sleep (see above)
                from trainlab.kernels import _jit
                if _threads is not None:
                    _jit.set_threads(_threads)
                _jit_module = _jit
    return _jit_module
