"""Running one trial, in whatever process it lands: thread limits, timing, status, traceback.

:func:`execute` is the only way a trial runs, in the driver (serial), in a local worker
process or on a Dask worker, so every path applies the same thread limits and produces
the same record. A record is::

    {"id": ..., "status": "ok" | "diverged" | "failed", "metrics": {...},
     "curves": [{"epoch": 1, ...}, ...], "seconds": ..., "error": ..., "traceback": ...,
     "threads": 1, "worker": "pid 123 on host", "version": "0.1.0", "spec": {...}}

(``killed`` is decided by the driver: a worker that dies cannot write its own record.)

* ``failed``: the trial raised; ``error`` is ``"Type: message"`` and ``traceback`` the
  formatted traceback. The driver does not retry it.
* ``diverged``: the trial raised :class:`Diverged` (or the Trainer's NaN guard fired): a
  non-finite loss is an outcome of the configuration, recorded with what was measured.

``python -m trainlab.trials --threads N`` is a local worker process: it reads one
JSON message per line on stdin (``{"op": "run", "id": ..., "spec": ...}``) and answers with
JSON lines (``ready``, then ``start``, ``report`` and ``result`` per trial) on its original
stdout; anything a trial prints goes to stderr instead, so it cannot break the protocol.
It exits at end of input, or when the process that started it is gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.trials.spec import jsonable, resolve, spec_seed, trial_id

__all__ = ["execute", "TrialContext", "Diverged", "thread_limits", "thread_env", "warm_up", "main"]

#: environment variables that size a process's thread pools; read when the libraries load
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


class Diverged(Exception):
    """Raise from a trial whose loss went non-finite: recorded as ``diverged`` with ``metrics``."""

    def __init__(self, message: str, metrics: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metrics = dict(metrics or {})


def thread_env(threads: int) -> dict[str, str]:
    """The environment that limits a fresh process to ``threads`` threads per pool (set before numpy loads)."""
    return {name: str(int(threads)) for name in THREAD_ENV}


@contextmanager
def thread_limits(threads: int) -> Iterator[None]:
    """Limit BLAS/OpenMP (threadpoolctl) and Numba to ``threads`` threads while the block runs.

    The same limits apply to a trial run serially in the driver and to one in a worker, so a
    trial computes the same numbers wherever it runs.
    """
    from threadpoolctl import threadpool_limits

    numba = sys.modules.get("numba")
    previous = None
    if numba is not None:
        try:
            previous = numba.get_num_threads()
            numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
        except (AttributeError, ValueError, RuntimeError):
            previous = None
    try:
        with threadpool_limits(limits=int(threads)):
            yield
    finally:
        if previous is not None:
            numba.set_num_threads(previous)


class TrialContext:
    """What a trial function gets besides its params.

    Attributes:
        id: the trial id.
        seed: a 64-bit integer from the spec alone (:func:`~trainlab.trials.spec.spec_seed`).
        threads: the thread limit the trial runs under.
        log_dir: a folder of its own for logs (e.g. TensorBoard event files), or None when the
            sweep was not given a log root; created on first use by the trial.
        curves: the per-epoch metrics reported so far.
    """

    def __init__(self, spec: dict[str, Any], *, threads: int, log_dir: Path | None = None,
                 on_report: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.id = trial_id(spec)
        self.seed = spec_seed(spec)
        self.threads = int(threads)
        self.log_dir = log_dir
        self.curves: list[dict[str, Any]] = []
        self._on_report = on_report

    def rng(self, *key: int) -> np.random.Generator:
        """A generator seeded from the spec (``SeedSequence(seed, spawn_key=key)``)."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=tuple(int(k) for k in key)))

    def report(self, **metrics: Any) -> None:
        """Report one epoch's metrics (JSON-able); they become the record's ``curves``.

        Reports also reach the driver while the trial runs, so a scheduler could stop a
        trial early (ASHA, Hyperband) from them.
        """
        row = jsonable(metrics, "report")
        self.curves.append(row)
        if self._on_report is not None:
            self._on_report(row)


def _worker_name() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def execute(spec: dict[str, Any], *, threads: int = 1, log_dir: str | Path | None = None,
            on_report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run one trial under ``threads``-thread limits and return its record (never raises for a trial error).

    Args:
        spec: ``{"trial": "module:function", "params": {...}}``.
        threads: BLAS/OpenMP/Numba threads for the trial.
        log_dir: the trial's log folder (passed on as ``ctx.log_dir``), or None.
        on_report: called with each per-epoch report as it happens.
    """
    from trainlab import __version__
    from trainlab.train import TrainingDiverged

    ctx = TrialContext(spec, threads=threads, log_dir=None if log_dir is None else Path(log_dir),
                       on_report=on_report)
    status, metrics, error, tb = "ok", {}, None, None
    start = time.perf_counter()
    with thread_limits(threads):
        try:
            fn = resolve(spec["trial"])
            with np.errstate(all="ignore"):
                metrics = fn(spec["params"], ctx)
            if metrics is None:
                metrics = {}
            if not isinstance(metrics, dict):
                raise TypeError(f"trial {spec['trial']}: must return a dict of metrics, "
                                f"got {type(metrics).__name__}")
            metrics = jsonable(metrics, "metrics")
        except Diverged as exc:
            status, error, metrics = "diverged", str(exc), jsonable(exc.metrics, "metrics")
        except TrainingDiverged as exc:
            status, error, metrics = "diverged", str(exc).splitlines()[0], {}
        except (Exception, SystemExit) as exc:  # a trial's error is its result; the sweep goes on
            status, error, metrics = "failed", f"{type(exc).__name__}: {exc}", {}
            tb = traceback.format_exc()
    return {"id": ctx.id, "status": status, "metrics": metrics, "curves": ctx.curves,
            "seconds": time.perf_counter() - start, "error": error, "traceback": tb, "threads": int(threads),
            "worker": _worker_name(), "version": __version__, "spec": spec}


def warm_up() -> None:
    """Import the library (and scikit-learn's datasets, behind the embedded digits) once per worker,
    so that the first trial's clock times the trial rather than the imports."""
    import trainlab.run  # noqa: F401

    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:  # pragma: no cover - a core dependency
        pass


# ---------------------------------------------------------------------- local worker process
def _watch_parent(parent: int) -> None:
    """Exit when the driver is gone (its pipes may outlive it in a busy trial)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


def main(argv: list[str] | None = None) -> int:
    """A local worker: JSON lines in on stdin, JSON lines out on the original stdout."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trainlab.trials")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-root", default=None)
    args = parser.parse_args(argv)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints from trials go to stderr
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(message) + "\n")
            out.flush()

    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    warm_up()
    send({"event": "ready", "pid": os.getpid(), "worker": _worker_name()})
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("op") != "run":
            break
        tid, spec = message["id"], message["spec"]
        send({"event": "start", "id": tid})
        log_dir = None if args.log_root is None else Path(args.log_root) / tid
        record = execute(spec, threads=args.threads, log_dir=log_dir,
                         on_report=lambda row, tid=tid: send({"event": "report", "id": tid, "metrics": row}))
        send({"event": "result", "id": tid, "record": record})
    return 0

