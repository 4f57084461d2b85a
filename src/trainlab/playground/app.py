"""The playground's ASGI app: static page, and one websocket (one training session) per tab.

Routes: ``/`` (the page), ``/static/...`` (its assets, vendored uPlot included: nothing comes
from a CDN), ``/ws`` (the protocol below).

Protocol (JSON text frames). The server opens with ``{"type": "hello", "schema", "presets"}``;
the page sends

* ``{"type": "start", "state": {URL query keys: values}}``: build a session (paused) and answer
  ``ready`` (state, layers, data points) and a first ``update`` (step 0: the boundary of the
  fresh network); ``"play": true`` starts it playing;
* ``{"type": "play"}``, ``{"type": "pause"}``;
* ``{"type": "step", "unit": "batch" | "epoch"}``: one batch, or to the end of the epoch;
* ``{"type": "reset"}``: the same state from step 0;
* ``{"type": "trajectories", "state": {...}}``: the optimizer tab's paths (``trajectories``).

While a session plays, the server pushes ``update`` messages as training runs (the page never
polls); ``{"type": "error", "key", "message"}`` refuses a bad configuration or command and
leaves the session as it was; ``{"type": "paused", "reason"}`` says the session stopped by
itself (a limit, or divergence).

Training runs off the event loop, on :data:`CORES` worker threads fed from one first-come,
first-served queue: each session queues one chunk of play at a time (at most
:data:`CHUNK_SECONDS`, shorter when many sessions share the cores), and BLAS is held to one
thread while the app runs, so eight sessions share two cores by turns instead of thrashing. A
session lives as long as its websocket: a closed tab frees it, and its memory goes back to the
system once its last chunk ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from trainlab.playground.config import LIMITS, ConfigError, parse_state, schema, to_query
from trainlab.playground.presets import PRESETS
from trainlab.playground.session import Session
from trainlab.playground.trajectories import trajectories

__all__ = ["create_app", "SessionRegistry", "STATIC", "CORES", "CHUNK_SECONDS"]

log = logging.getLogger("trainlab.playground")

STATIC = Path(__file__).parent / "static"
CORES = max(1, os.cpu_count() or 1)   #: sessions that step at the same time (one per core)
CHUNK_SECONDS = 0.04     #: a playing session reports after about this long, at most ...
CHUNK_SHARE = 0.1        #: ... and at most this times cores / sessions (8 sessions on 2 cores: 25 ms)
MAX_PENDING_STEPS = 100  #: step requests a session queues at most


class SessionRegistry:
    """The live sessions (one per websocket), bounded in number, and the worker threads they share.

    Work runs on ``cores`` worker threads fed from one first-come, first-served queue, so a
    session waits for the chunks queued before its own and no more.
    """

    def __init__(self, max_sessions: int, cores: int = CORES) -> None:
        self.max_sessions, self.cores = int(max_sessions), int(cores)
        self._lock = threading.Lock()
        self._live: set[int] = set()
        self._next = 0
        self.executor = ThreadPoolExecutor(max_workers=self.cores, thread_name_prefix="trainlab-playground")

    def open(self) -> int | None:
        """A new session id, or None when the server is full."""
        with self._lock:
            if len(self._live) >= self.max_sessions:
                return None
            self._next += 1
            self._live.add(self._next)
            return self._next

    def close(self, sid: int) -> None:
        with self._lock:
            self._live.discard(sid)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._live)


def _encode(message: dict[str, Any]) -> str:
    """Strict JSON (``NaN``/``Infinity`` are not JSON and a browser's ``JSON.parse`` refuses them)."""
    return json.dumps(message, allow_nan=False, separators=(",", ":"))


def _advance(session: Session, steps: int | None, budget: float | None,
             boundary: bool | None = None) -> tuple[dict[str, Any], str]:
    """One chunk, and its message encoded in the same worker thread (off the event loop)."""
    update = session.advance(steps, budget, boundary) if steps != 0 else session.update(boundary)
    return update, _encode(update)


def _release_memory() -> None:
    """Give freed heap memory back to the system (glibc keeps it in per-thread arenas otherwise)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


class _Connection:
    """One websocket's session and its play loop."""

    def __init__(self, ws: WebSocket, registry: SessionRegistry, limits: dict[str, Any]) -> None:
        self.ws, self.registry, self.limits = ws, registry, limits
        self.session: Session | None = None
        self.sid: int | None = None
        self.playing = False
        self.pending_steps: list[str] = []
        self.wake = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.idle = threading.Condition()
        self.inflight = 0

    async def send(self, message: dict[str, Any] | str, session: Session | None = None) -> None:
        """Send ``message`` (strict JSON: no NaN; a ``str`` is sent as encoded); with ``session``,
        only while it is still the current one."""
        text = message if isinstance(message, str) else _encode(message)
        async with self.send_lock:
            if session is None or session is self.session:
                await self.ws.send_text(text)

    async def error(self, key: str, message: str) -> None:
        await self.send({"type": "error", "key": key, "message": message})

    async def compute(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the shared worker threads, in its turn (first come, first served)."""
        with self.idle:
            self.inflight += 1
        future = self.registry.executor.submit(fn, *args)
        future.add_done_callback(self._finished)      # also when cancelled before it ran (a closed tab)
        return await asyncio.wrap_future(future)

    def _finished(self, future: Any) -> None:
        with self.idle:
            self.inflight -= 1
            self.idle.notify_all()

    def wait_idle(self, seconds: float) -> bool:
        """Block until no computation of this connection is running (at most ``seconds``)."""
        with self.idle:
            return self.idle.wait_for(lambda: self.inflight == 0, timeout=seconds)

    def chunk_seconds(self) -> float:
        """How long one chunk of play may run: shorter when more sessions share the cores."""
        share = CHUNK_SHARE * self.registry.cores / max(1, self.registry.count)
        return min(CHUNK_SECONDS, max(0.005, share))

    # ------------------------------------------------------------------ commands
    async def start(self, message: dict[str, Any], *, state: Any = None) -> None:
        if state is None:
            raw = message.get("state", {})
            try:
                state = parse_state(raw)
            except ConfigError as exc:
                await self.error(exc.key, str(exc))
                return
        if self.sid is None:
            self.sid = self.registry.open()
            if self.sid is None:
                await self.error("server", f"the server is busy: {self.registry.max_sessions} sessions are "
                                           "running; close a tab or try again later")
                return
        self.playing = False
        self.pending_steps.clear()
        try:
            session = await self.compute(
                lambda: Session(state, max_steps=self.limits["max_steps"], max_seconds=self.limits["max_seconds"]))
        except (ValueError, TypeError) as exc:   # a configuration the library itself refuses: keep the old one
            await self.error("state", f"cannot build this configuration: {exc}")
            return
        self.session = session                   # from here on, updates of the previous session are dropped
        await self.send(session.describe(), session)
        await self.send(await self.compute(session.update, True), session)
        self.playing = bool(message.get("play", False))
        self.wake.set()

    async def handle(self, message: Any) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.error("message", "a message must be a JSON object with a \"type\"")
            return
        kind = message["type"]
        if kind == "start":
            await self.start(message)
        elif kind == "trajectories":
            try:
                state = parse_state(message.get("state", {}))
            except ConfigError as exc:
                await self.error(exc.key, str(exc))
                return
            result = await self.compute(trajectories, state)
            result["query"] = to_query(state)
            await self.send(result)
        elif kind in ("play", "pause", "step", "reset"):
            if self.session is None:
                await self.error("session", f"{kind}: no session yet; send start first")
                return
            if kind == "reset":
                await self.start({"play": False}, state=self.session.state)
            elif kind == "pause":
                self.playing = False
                self.pending_steps.clear()
                await self.send({"type": "paused", "reason": None, "step": self.session.step})
            else:
                unit = message.get("unit", "batch")
                if kind == "step" and unit not in ("batch", "epoch"):
                    await self.error("unit", f"step: unit must be 'batch' or 'epoch', got {unit!r}")
                    return
                reason = self.session.check_limits()
                if reason:
                    await self.error("session", reason)
                    return
                if kind == "play":
                    self.playing = True
                elif len(self.pending_steps) >= MAX_PENDING_STEPS:
                    await self.error("step", f"step: {MAX_PENDING_STEPS} step requests are already waiting")
                    return
                else:
                    self.pending_steps.append(unit)
                self.wake.set()
        else:
            await self.error("type", f"unknown message type {kind!r}; expected start, play, pause, step, "
                                     "reset or trajectories")

    # ------------------------------------------------------------------ the play loop
    async def runner(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.session is not None and (self.playing or self.pending_steps):
                    await self._run_once(self.session)
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # a bug: say so on the page rather than fall silent
            log.exception("playground session failed")
            with contextlib.suppress(Exception):
                await self.error("server", f"the session failed: {type(exc).__name__}: {exc}")

    async def _run_once(self, session: Session) -> None:
        """One pending step request (in chunks), or one chunk of play."""
        if self.pending_steps:
            unit = self.pending_steps.pop(0)
            remaining = 1 if unit == "batch" else session.steps_to_epoch_end()
            update: dict[str, Any] = {}
            while remaining > 0 and self.session is session:
                before = session.step
                update, text = await self.compute(_advance, session, remaining, self.chunk_seconds(),
                                                  True if unit == "batch" else None)
                remaining -= session.step - before
                await self.send(text, session)
                if update["finished"] or session.step == before:
                    break
            if session.two_d and "boundary" not in update and self.session is session:   # show where it ended
                _, text = await self.compute(_advance, session, 0, None, True)
                await self.send(text, session)
        else:
            _, text = await self.compute(_advance, session, None, self.chunk_seconds())
            await self.send(text, session)
        if self.session is session and session.finished and (self.playing or self.pending_steps):
            self.playing = False
            self.pending_steps.clear()
            await self.send({"type": "paused", "reason": session.finished, "step": session.step}, session)

    async def serve(self) -> None:
        await self.send({"type": "hello", "schema": schema(), "presets": PRESETS,
                         "limits": {k: v for k, v in self.limits.items()}})
        runner = asyncio.create_task(self.runner())
        try:
            while True:
                try:
                    message = await self.ws.receive_json()
                except (ValueError, KeyError):    # not JSON (or a binary frame)
                    await self.error("message", "messages must be JSON text")
                    continue
                await self.handle(message)
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
            self.session = None
            if self.sid is not None:
                self.registry.close(self.sid)
                self.sid = None


def create_app(*, max_sessions: int | None = None, limits: dict[str, Any] | None = None) -> Starlette:
    """The playground app (``uvicorn.run(create_app())``).

    Args:
        max_sessions: most concurrent sessions (default ``LIMITS["max_sessions"]``).
        limits: overrides of :data:`~trainlab.playground.config.LIMITS` (``max_steps``,
            ``max_seconds``) for this app.
    """
    limits = {**LIMITS, **(limits or {})}
    if max_sessions is not None:
        limits["max_sessions"] = int(max_sessions)
    registry = SessionRegistry(limits["max_sessions"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
            blas = None
        else:
            blas = threadpool_limits(limits=1, user_api="blas")   # sessions share the cores by turns
        try:
            yield
        finally:
            registry.executor.shutdown(wait=True, cancel_futures=True)
            if blas is not None:
                blas.restore_original_limits()

    async def index(request: Any) -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        connection = _Connection(ws, registry, limits)
        try:
            await connection.serve()
        except WebSocketDisconnect:
            pass
        finally:
            # a chunk still running in a worker thread holds the session: free the memory after it
            await anyio.to_thread.run_sync(connection.wait_idle, 30.0)
            del connection
            await anyio.to_thread.run_sync(_release_memory)

    app = Starlette(routes=[Route("/", index), Mount("/static", StaticFiles(directory=STATIC), name="static"),
                            WebSocketRoute("/ws", websocket)], lifespan=lifespan)
    app.state.registry = registry
    app.state.limits = limits
    return app
