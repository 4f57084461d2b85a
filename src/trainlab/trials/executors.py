"""Where trials run: in this process, in a pool of local worker processes, or on a Dask cluster.

Every executor has the same small interface, which the driver (:func:`trainlab.trials.run`)
uses without knowing which one it holds::

    with executor:                       # starts workers / connects
        executor.capacity                # how many trials it wants in flight
        executor.submit(tid, spec)       # never blocks
        executor.events(timeout)         # -> [Event]: "start", "report", "result"

Every ``"report"`` (one per row a trial reports) comes before its trial's ``"result"``, once
(a trial run again after its worker died reports again from its first epoch).
``"result"`` events carry a finished record (``ok``, ``diverged``, ``failed``), or a
``killed`` record made by the executor when a trial's worker died more than ``retries``
times. About one trial per worker slot waits queued, so a dying worker touches as few
trials as it must (local: in the worker's pipe, and re-queued free of charge if the worker
dies; Dask: in the driver, because Dask's scheduler charges a death to every task waiting
on that worker too), and every executor runs trials under the same thread limits
(``threads`` per worker, set in the worker's environment before NumPy loads and applied
again with threadpoolctl around every trial).

* :class:`SerialExecutor`: in this process, one trial at a time (``--workers 0``).
* :class:`LocalExecutor`: ``workers`` processes of ``python -m trainlab.trials``,
  speaking JSON lines over pipes (no pickle). The driver knows which trial each worker
  has started, so when one dies (SIGKILL, out of memory) exactly that trial is charged
  with the death and run again on another worker; the trials queued behind it are
  re-queued free of charge; a fresh worker takes the dead one's place.
* :class:`DaskExecutor`: any ``distributed`` cluster (``scheduler="tcp://host:8786"``), or
  a ``LocalCluster`` of ``local_workers`` processes started for the run. Dask itself
  reruns a task whose worker died, up to the scheduler's ``allowed-failures`` (set to
  ``retries`` for a LocalCluster), then reports ``KilledWorker``: recorded as ``killed``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from trainlab.trials.worker import execute, thread_env, warm_up

__all__ = ["Event", "Executor", "SerialExecutor", "LocalExecutor", "DaskExecutor", "killed_record",
           "default_workers"]

DEFAULT_RETRIES = 2  #: a trial whose worker dies is run again this many times, then recorded as killed


class Event(NamedTuple):
    kind: str  #: "start", "report" or "result"
    id: str
    data: Any  #: the worker's name, the reported metrics, or the record


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def killed_record(tid: str, spec: dict[str, Any], deaths: int | None, reason: str) -> dict[str, Any]:
    """The record of a trial whose worker died ``deaths`` times (None: the count is the scheduler's)."""
    from trainlab import __version__

    times = "too many times" if deaths is None else f"{deaths} time{'s' if deaths != 1 else ''}"
    return {"id": tid, "status": "killed", "metrics": {}, "curves": [], "seconds": None,
            "error": f"its worker died {times} while running it ({reason})",
            "traceback": None, "threads": None, "worker": None, "version": __version__, "spec": spec,
            "attempts": deaths}


class Executor:
    """Base class: context manager, ``capacity``, ``submit``, ``events``; see the module docstring."""

    name = "executor"
    threads = 1

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until every worker can take a trial (benchmarks time trials, not start-up)."""

    @property
    def capacity(self) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def submit(self, tid: str, spec: dict[str, Any]) -> None:
        raise NotImplementedError

    def events(self, timeout: float) -> list[Event]:
        raise NotImplementedError


# ---------------------------------------------------------------------- serial
class SerialExecutor(Executor):
    """Runs each trial in this process, under the same thread limits as a worker."""

    name = "serial"

    def __init__(self, *, threads: int = 1, log_root: str | Path | None = None) -> None:
        self.threads = int(threads)
        self.log_root = None if log_root is None else Path(log_root)
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()

    @property
    def capacity(self) -> int:
        return 1

    def describe(self) -> str:
        return f"serial (in this process, {self.threads} thread{'s' if self.threads != 1 else ''})"

    def submit(self, tid: str, spec: dict[str, Any]) -> None:
        self._queue.append((tid, spec))

    def events(self, timeout: float) -> list[Event]:
        if not self._queue:
            time.sleep(min(timeout, 0.01))
            return []
        tid, spec = self._queue.popleft()
        out = [Event("start", tid, "this process")]
        record = execute(spec, threads=self.threads, log_dir=None if self.log_root is None else self.log_root / tid,
                         on_report=lambda row: out.append(Event("report", tid, row)))
        record["attempts"] = 1
        out.append(Event("result", tid, record))
        return out


# ---------------------------------------------------------------------- local processes
class _Worker:
    def __init__(self, index: int, proc: subprocess.Popen) -> None:
        self.index, self.proc = index, proc
        self.assigned: deque[str] = deque()   # sent to it, in order
        self.started: str | None = None       # the one it is running
        self.name = f"local worker {index} (pid {proc.pid})"
        self.alive = True
        self.ready = False                    # said "ready": imports done


class _EnvironSnapshot:
    """Remembers some environment variables and puts them back (Dask's nanny sets them in this process)."""

    def __init__(self, keys: Iterator[str] | list[str]) -> None:
        self.saved = {key: os.environ.get(key) for key in keys}

    def restore(self) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _python_path() -> str:
    """This process's import path, so workers import what the driver imports (the user's trial modules too)."""
    entries = [p for p in sys.path if p and os.path.isdir(p)]
    return os.pathsep.join(dict.fromkeys(entries))


class LocalExecutor(Executor):
    """``workers`` local worker processes, each limited to ``threads`` threads.

    Args:
        workers: worker processes (>= 1).
        threads: threads per worker (BLAS, OpenMP, Numba).
        retries: how many times a trial whose worker died is run again before it is ``killed``.
        log_path: where the workers' stderr goes (appended); None: this process's stderr.
        log_root: trials get ``log_root / <trial id>`` as their ``ctx.log_dir`` (None: no log folders).
    """

    name = "local"
    MAX_START_FAILURES = 3  #: workers that die before saying "ready", in a row, before the pool gives up

    def __init__(self, workers: int, *, threads: int = 1, retries: int = DEFAULT_RETRIES,
                 log_path: str | Path | None = None, log_root: str | Path | None = None) -> None:
        if int(workers) < 1:
            raise ValueError(f"LocalExecutor: workers must be >= 1, got {workers}")
        if int(threads) < 1 or int(retries) < 0:
            raise ValueError(f"LocalExecutor: threads must be >= 1 and retries >= 0, got {threads}, {retries}")
        self.workers, self.threads, self.retries = int(workers), int(threads), int(retries)
        self.log_path = None if log_path is None else Path(log_path)
        self.log_root = None if log_root is None else Path(log_root)
        self._pool: list[_Worker] = []
        self._events: queue.Queue[tuple[str, _Worker, Any]] = queue.Queue()
        self._specs: dict[str, dict[str, Any]] = {}
        self._pending: deque[str] = deque()
        self._deaths: dict[str, int] = {}
        self._start_failures = 0
        self._log: IO[bytes] | None = None
        self._closing = False

    @property
    def capacity(self) -> int:
        return 2 * self.workers

    def describe(self) -> str:
        return (f"local: {self.workers} worker process{'es' if self.workers != 1 else ''}, "
                f"{self.threads} thread{'s' if self.threads != 1 else ''} each")

    # ------------------------------------------------------------------ processes
    def start(self) -> None:
        if self._pool:
            return  # already started
        self._closing = False
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")
        for i in range(self.workers):
            self._pool.append(self._spawn(i))

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(w.ready for w in self._pool):
            if time.monotonic() > deadline:
                from trainlab.trials.engine import EngineError

                raise EngineError(f"local workers not ready after {timeout:g} s")
            out: list[Event] = []
            try:
                item = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            self._handle(item, out)

    def _spawn(self, index: int) -> _Worker:
        env = {**os.environ, **thread_env(self.threads), "PYTHONPATH": _python_path(),
               "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "trainlab.trials", "--threads", str(self.threads)]
        if self.log_root is not None:
            command += ["--log-root", str(self.log_root)]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=self._log if self._log is not None else None, env=env,
                                start_new_session=True)  # Ctrl-C reaches the driver, which stops the workers
        worker = _Worker(index, proc)
        threading.Thread(target=self._read, args=(worker,), daemon=True).start()
        return worker

    def _read(self, worker: _Worker) -> None:
        assert worker.proc.stdout is not None
        for line in worker.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            self._events.put(("message", worker, message))
        self._events.put(("exit", worker, None))

    def close(self) -> None:
        self._closing = True
        for w in self._pool:
            if w.proc.poll() is None:
                try:
                    assert w.proc.stdin is not None
                    w.proc.stdin.close()
                except OSError:
                    pass
        deadline = time.monotonic() + 5.0
        for w in self._pool:
            busy = w.started is not None
            try:
                w.proc.wait(timeout=0 if busy else max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            if w.proc.poll() is None:  # still running a trial nobody will read: stop it
                w.proc.kill()
                w.proc.wait(timeout=10)
            if w.proc.stdout is not None:
                w.proc.stdout.close()
        self._pool = []
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------------ scheduling
    def submit(self, tid: str, spec: dict[str, Any]) -> None:
        self._specs[tid] = spec
        self._pending.append(tid)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._pending:
            live = [w for w in self._pool if w.alive and len(w.assigned) < 2]
            if not live:
                return
            # an idle worker first, then the one with the shortest queue (ties: lowest index)
            worker = min(live, key=lambda w: (len(w.assigned), w.index))
            tid = self._pending.popleft()
            message = json.dumps({"op": "run", "id": tid, "spec": self._specs[tid]}) + "\n"
            try:
                assert worker.proc.stdin is not None
                worker.proc.stdin.write(message.encode())
                worker.proc.stdin.flush()
            except OSError:  # it died; its reader thread reports the exit
                self._pending.appendleft(tid)
                worker.alive = False
                continue
            worker.assigned.append(tid)

    def events(self, timeout: float) -> list[Event]:
        out: list[Event] = []
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return out
        while True:
            self._handle(item, out)
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                break
        self._dispatch()
        return out

    def _handle(self, item: tuple[str, _Worker, Any], out: list[Event]) -> None:
        kind, worker, message = item
        if kind == "exit":
            self._lost(worker, out)
            return
        event = message.get("event")
        if event == "ready":
            worker.ready = True
            self._start_failures = 0
            worker.name = message.get("worker", worker.name)
        elif event == "start":
            worker.started = message["id"]
            out.append(Event("start", message["id"], worker.name))
        elif event == "report":
            out.append(Event("report", message["id"], message["metrics"]))
        elif event == "result":
            tid = message["id"]
            worker.started = None
            if tid in worker.assigned:
                worker.assigned.remove(tid)
            record = message["record"]
            record["attempts"] = self._deaths.pop(tid, 0) + 1
            self._specs.pop(tid, None)
            out.append(Event("result", tid, record))

    def _lost(self, worker: _Worker, out: list[Event]) -> None:
        """A worker's output ended: charge its running trial, re-queue the rest, start a replacement."""
        worker.alive = False
        try:
            code = worker.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # it closed its output but lives on: end it
            worker.proc.kill()
            code = worker.proc.wait()
        if worker.proc.stdout is not None:
            worker.proc.stdout.close()
        if self._closing:
            return
        reason = (f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
                  else f"exit code {code}")
        requeue = [t for t in worker.assigned if t != worker.started]
        if worker.started is not None:
            tid = worker.started
            deaths = self._deaths.get(tid, 0) + 1
            self._deaths[tid] = deaths
            if deaths > self.retries:
                self._deaths.pop(tid)
                out.append(Event("result", tid, killed_record(tid, self._specs.pop(tid), deaths, reason)))
            else:
                requeue.insert(0, tid)
        for tid in reversed(requeue):
            self._pending.appendleft(tid)
        if not worker.ready:
            self._start_failures += 1
            if self._start_failures >= self.MAX_START_FAILURES:
                where = f" (see {self.log_path})" if self.log_path else ""
                from trainlab.trials.engine import EngineError

                raise EngineError(f"local workers exit before they start ({reason}){where}")
        self._pool[self._pool.index(worker)] = self._spawn(worker.index)


# ---------------------------------------------------------------------- Dask
_TOPIC = "trainlab-trials"


#: seconds between a Dask trial's report messages: the rows reported in between travel together
REPORT_INTERVAL = 1.0


def _dask_execute(tid: str, spec_json: str, threads: int, log_root: str | None) -> str:
    """Run on a Dask worker: the record as JSON text (start and report events go to the client's topic).

    A per-epoch report is a message through the scheduler to the client; sent one by one they
    cost the trial 10-15 % on 0.5 s trials of 30 epochs (and as much CPU again in the driver).
    So the rows are sent at most every :data:`REPORT_INTERVAL` seconds, all the rows since the
    last message together, and the rest right before the result.
    """
    from distributed import get_worker

    worker = get_worker()
    worker.log_event(_TOPIC, {"event": "start", "id": tid, "worker": worker.address})
    pending: list[dict[str, Any]] = []
    last = [time.monotonic()]

    def flush() -> None:
        if pending:
            worker.log_event(_TOPIC, {"event": "report", "id": tid, "rows": list(pending)})
            pending.clear()
        last[0] = time.monotonic()

    def report(row: dict[str, Any]) -> None:
        pending.append(row)
        if time.monotonic() - last[0] >= REPORT_INTERVAL:
            flush()

    try:
        record = execute(json.loads(spec_json), threads=threads,
                         log_dir=None if log_root is None else Path(log_root) / tid, on_report=report)
    finally:
        flush()
    record["worker"] = f"{worker.address} ({record['worker']})"
    return json.dumps(record)


class DaskExecutor(Executor):
    """Trials as Dask tasks, on an existing cluster or a LocalCluster started for the run.

    Args:
        scheduler: address of a running scheduler (``"tcp://host:8786"``); or
        local_workers: start a ``LocalCluster`` of this many worker processes (1 thread each).
        threads: threads each trial may use (a LocalCluster's workers get it in their environment).
        retries: for a LocalCluster, the scheduler's ``allowed-failures``; an external
            scheduler uses its own setting (Dask's default is 3).
        log_root: as for :class:`LocalExecutor` (a path on the workers' file system).
    """

    name = "dask"
    SLOTS_TTL = 0.5  #: seconds a worker count from the scheduler is reused

    def __init__(self, *, scheduler: str | None = None, local_workers: int | None = None, threads: int = 1,
                 retries: int = DEFAULT_RETRIES, log_root: str | Path | None = None) -> None:
        if (scheduler is None) == (local_workers is None):
            raise ValueError("DaskExecutor: give either scheduler (an address) or local_workers (a count)")
        if local_workers is not None and int(local_workers) < 1:
            raise ValueError(f"DaskExecutor: local_workers must be >= 1, got {local_workers}")
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ImportError("the Dask executor needs the dask extra: pip install 'trainlab[dask]'") from None
        self.scheduler, self.local_workers = scheduler, local_workers
        self.threads, self.retries = int(threads), int(retries)
        self.log_root = None if log_root is None else str(log_root)
        self.client: Any = None
        self.cluster: Any = None
        self._futures: dict[Any, tuple[str, dict[str, Any]]] = {}
        self._done: queue.Queue[Any] = queue.Queue()
        self._topic: queue.Queue[dict[str, Any]] = queue.Queue()
        self._env_guard: Any = None
        self.dashboard: str | None = None
        self.no_workers_timeout = 120.0  #: seconds without any worker before the run stops with an error
        self._no_workers_since: float | None = None
        self._slots_cache: tuple[float, int] | None = None
        self._reported: dict[str, int] = {}  #: report rows passed on, per trial in flight

    def describe(self) -> str:
        where = (f"Dask LocalCluster of {self.local_workers} worker process{'es' if self.local_workers != 1 else ''}"
                 if self.local_workers is not None else f"Dask cluster at {self.scheduler}")
        return f"{where}, {self.threads} thread{'s' if self.threads != 1 else ''} per trial"

    def wait_ready(self, timeout: float = 120.0) -> None:
        n = self.local_workers if self.local_workers is not None else 1
        self.client.wait_for_workers(n, timeout=timeout)

    def start(self) -> None:
        import importlib.util
        import logging

        import dask
        from distributed import Client, LocalCluster

        if self.client is not None:
            return  # already started
        dashboard = None
        if self.local_workers is not None:
            env = thread_env(self.threads)
            pre_spawn = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **env}
            # the nanny puts pre-spawn-environ into os.environ before each worker starts; undo that on close
            self._env_guard = _EnvironSnapshot([*pre_spawn, "PYTHONHASHSEED"])
            with dask.config.set({"distributed.scheduler.allowed-failures": self.retries,
                                  "distributed.nanny.pre-spawn-environ": pre_spawn}):
                # the dashboard needs bokeh; without it Dask serves only a page that says so
                dashboard = "127.0.0.1:0" if importlib.util.find_spec("bokeh") is not None else None
                self.cluster = LocalCluster(n_workers=self.local_workers, threads_per_worker=1, processes=True,
                                            host="127.0.0.1", dashboard_address=dashboard,
                                            silence_logs=logging.CRITICAL)
                self.client = Client(self.cluster)
        else:
            self.client = Client(self.scheduler, timeout=30)
        try:
            if self.cluster is None and "dashboard" in self.client.scheduler_info().get("services", {}):
                self.dashboard = f"{self.client.dashboard_link} (served when the scheduler has bokeh)"
            elif self.cluster is not None and dashboard is not None:
                self.dashboard = self.client.dashboard_link
        except Exception:  # pragma: no cover - the dashboard is a nicety
            self.dashboard = None
        self.client.subscribe_topic(_TOPIC, lambda event: self._topic.put(event[1]))
        try:
            self.client.run(warm_up)  # the workers there now; a restarted worker imports on its first trial
        except Exception:  # pragma: no cover - a worker that cannot import trainlab fails its trials, with the error
            pass

    def close(self) -> None:
        try:
            if self.client is not None:
                for future in list(self._futures):
                    future.cancel()
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        finally:
            self.client = self.cluster = None
            if self._env_guard is not None:
                self._env_guard.restore()
                self._env_guard = None

    @property
    def capacity(self) -> int:
        """One trial per worker thread: the queued trials wait in the driver, not on a worker.

        Dask's scheduler charges a worker's death to every task assigned to that worker,
        running or waiting; holding the queue here means a death is charged to the one
        trial that was running, as in :class:`LocalExecutor`.
        """
        return max(1, self._slots())

    def _slots(self) -> int:
        """Worker threads in the cluster now; no worker for ``no_workers_timeout`` seconds is an error.

        The count is asked of the scheduler (a round trip) at most every ``SLOTS_TTL`` seconds;
        the engine asks for ``capacity`` after every event, per-epoch reports included.
        """
        now = time.monotonic()
        if self._slots_cache is not None and now - self._slots_cache[0] < self.SLOTS_TTL:
            return self._slots_cache[1]
        try:
            slots = sum(self.client.nthreads().values())
        except Exception:  # pragma: no cover - the scheduler is briefly unreachable
            slots = 0
        self._slots_cache = (now, slots)
        if slots:
            self._no_workers_since = None
        elif self._no_workers_since is None:
            self._no_workers_since = now
        elif now - self._no_workers_since > self.no_workers_timeout:
            from trainlab.trials.engine import EngineError

            raise EngineError(f"the Dask cluster has had no worker for {self.no_workers_timeout:g} s; "
                              "the trials recorded so far are kept (start workers, then rerun)")
        return slots

    def submit(self, tid: str, spec: dict[str, Any]) -> None:
        future = self.client.submit(_dask_execute, tid, json.dumps(spec), self.threads, self.log_root,
                                    key=f"trial-{tid}-{time.monotonic_ns()}", pure=False, retries=0)
        self._futures[future] = (tid, spec)
        self._reported[tid] = 0
        future.add_done_callback(self._done.put)

    def events(self, timeout: float) -> list[Event]:
        from distributed import KilledWorker

        out: list[Event] = []
        deadline = time.monotonic() + timeout
        self._slots()  # bounds the wait when every worker is gone
        while True:
            while True:
                try:
                    message = self._topic.get_nowait()
                except queue.Empty:
                    break
                if message.get("event") == "start":
                    out.append(Event("start", message["id"], message.get("worker")))
                elif message.get("event") == "report" and message["id"] in self._reported:
                    self._reported[message["id"]] += len(message["rows"])
                    out.extend(Event("report", message["id"], row) for row in message["rows"])
            try:
                future = self._done.get(timeout=0.05 if out else max(0.0, min(0.05, deadline - time.monotonic())))
            except queue.Empty:
                if out or time.monotonic() >= deadline:
                    return out
                continue
            tid, spec = self._futures.pop(future)
            try:
                record = json.loads(future.result())
                record["attempts"] = None  # Dask reruns a task whose worker died without telling the client
            except KilledWorker as exc:
                record = killed_record(tid, spec, self.retries + 1 if self.cluster is not None else None,
                                       f"Dask: {exc}")
            except Exception as exc:  # the task could not run at all (e.g. the worker lacks trainlab)
                from trainlab import __version__

                record = {"id": tid, "status": "failed", "metrics": {}, "curves": [], "seconds": None,
                          "error": f"{type(exc).__name__}: {exc}", "traceback": None, "threads": self.threads,
                          "worker": None, "version": __version__, "spec": spec, "attempts": None}
            # the rows whose report message has not arrived yet (the result can overtake it): from the record
            delivered = self._reported.pop(tid, 0)
            out.extend(Event("report", tid, row) for row in (record.get("curves") or [])[delivered:])
            out.append(Event("result", tid, record))
            if self._done.empty():
                return out
