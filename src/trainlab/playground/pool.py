"""The server's side of the playground's worker processes (:mod:`trainlab.playground.worker`).

:class:`WorkerPool` starts at most ``processes`` workers (one per core by default), the first
time sessions need them, and gives each new session the worker with the fewest sessions (a
fresh one while fewer than ``processes`` run). A session stays on its worker for its whole life,
so a worker answers its sessions' requests first come, first served. A worker whose last
session closes is retired at once (no new session goes to it) and exits, so the memory the
sessions used goes back to the system with the process: with no tab open the server is back to
what it was before the first one.

A worker that dies (killed, out of memory) fails the requests it had with :class:`WorkerError`;
the page says so, and its next ``start`` gets a live worker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import sys
from typing import Any

from trainlab.playground.worker import BLAS_ENV

__all__ = ["WorkerPool", "Worker", "WorkerError", "STOP_SECONDS"]

STOP_SECONDS = 10.0   #: how long a retired worker may take to finish what it has before it is killed


class WorkerError(RuntimeError):
    """A worker process died, or could not be started."""


class Worker:
    """One worker process: requests are written to its stdin in order, and its answers (which
    come back in the same order) resolve them."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.sessions: set[int] = set()
        self.dead: str | None = None           # why it is gone, once it is
        self.proc: asyncio.subprocess.Process | None = None
        self._ids = 0
        self._waiting: collections.deque[tuple[int, asyncio.Future[Any]]] = collections.deque()
        self._reader: asyncio.Task[None] | None = None
        self._started = asyncio.ensure_future(self._start())

    async def _start(self) -> None:
        env = {**os.environ, **BLAS_ENV}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trainlab.playground.worker", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=env)
        self._reader = asyncio.ensure_future(self._read())

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def request(self, op: str, **fields: Any) -> tuple[dict[str, Any], list[str]]:
        """Send one request and wait for its answer: ``(header, messages)`` (see the worker's protocol)."""
        try:
            await asyncio.shield(self._started)
        except OSError as exc:
            self._fail(f"could not start a worker process: {exc}")
        if self.dead is not None:
            raise WorkerError(self.dead)
        assert self.proc is not None and self.proc.stdin is not None
        self._ids += 1
        future: asyncio.Future[Any] = self.loop.create_future()
        self._waiting.append((self._ids, future))
        try:
            self.proc.stdin.write(json.dumps({"id": self._ids, "op": op, **fields}).encode() + b"\n")
            await self.proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            self._fail(f"the worker process is gone ({exc})")
        return await future

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        reason = "the worker process exited"
        try:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                header = json.loads(line)
                parts = [(await self.proc.stdout.readexactly(n)).decode() for n in header.get("sizes", [])]
                ident, future = self._waiting.popleft()
                if header.get("id") != ident:
                    reason = f"the worker process answered request {header.get('id')} for {ident}"
                    break
                if not future.done():          # a closed tab's request is cancelled: drop its answer
                    future.set_result((header, parts))
        except (asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            reason = f"the worker process broke off an answer ({type(exc).__name__})"
        finally:
            code = self.proc.returncode
            self._fail(reason + (f" (exit status {code})" if code is not None else ""))

    def _fail(self, reason: str) -> None:
        if self.dead is None:
            self.dead = reason
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(WorkerError(self.dead))

    async def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Let the worker finish what it was sent, then exit (killed after ``timeout`` seconds)."""
        with contextlib.suppress(OSError, asyncio.CancelledError, Exception):
            await asyncio.shield(self._started)
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                proc.stdin.write(b'{"op": "exit"}\n')
                await proc.stdin.drain()
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


class WorkerPool:
    """At most ``processes`` worker processes, started when sessions need them, retired when
    their last session closes."""

    def __init__(self, processes: int) -> None:
        self.processes = max(1, int(processes))
        self.workers: list[Worker] = []
        self._stopping: set[asyncio.Task[None]] = set()   # closes and stops under way

    def assign(self, sid: int) -> Worker:
        """The worker session ``sid`` will live on: a new one while fewer than ``processes`` run,
        else the one with the fewest sessions."""
        loop = asyncio.get_running_loop()
        for worker in [w for w in self.workers if w.dead is not None or w.loop is not loop]:
            self._retire(worker)               # dead, or left by an earlier event loop (tests)
        if len(self.workers) < self.processes:
            worker = Worker()
            self.workers.append(worker)
        else:
            worker = min(self.workers, key=lambda w: len(w.sessions))
        worker.sessions.add(sid)
        return worker

    def release_soon(self, worker: Worker, sid: int) -> asyncio.Task[None]:
        """Session ``sid`` is gone: free it on its worker, or retire the worker if it was its last.

        The bookkeeping is done at once (no new session goes to a retired worker); the worker is
        told in a task of its own, which :meth:`shutdown` waits for, so a closing websocket never
        waits for a chunk that is still running."""
        worker.sessions.discard(sid)
        if worker.dead is not None or not worker.sessions:
            return self._retire(worker)
        return self._track(self._close(worker, sid))

    @staticmethod
    async def _close(worker: Worker, sid: int) -> None:
        with contextlib.suppress(WorkerError):
            await worker.request("close", sid=sid)

    def _retire(self, worker: Worker) -> asyncio.Task[None]:
        if worker in self.workers:
            self.workers.remove(worker)        # from here on no session is given to it
        return self._track(worker.stop())

    def _track(self, work: Any) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        return task

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers that run now (started and not retired)."""
        return [w.pid for w in self.workers if w.pid is not None and w.dead is None]

    async def shutdown(self) -> None:
        """Stop every worker (the server is exiting)."""
        for worker in list(self.workers):
            self._retire(worker)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
