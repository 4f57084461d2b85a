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

Training runs off the event loop and out of the server's process, in :data:`CORES` worker
processes (:mod:`~trainlab.playground.worker`, one per core, started when sessions need them):
the sessions' small networks spend most of a step in the interpreter, and threads of one
process would take turns with each other and with the event loop for its lock. A session stays
on one worker, which answers first come, first served; a playing session queues one chunk of
play at a time (at most :data:`CHUNK_SECONDS`, shorter when many sessions share the cores), and
each worker runs BLAS on one thread, so eight sessions share two cores by turns instead of
thrashing. A session lives as long as its websocket: a closed tab frees it, and a worker whose
last session closed exits, so its memory goes back to the system with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from trainlab.playground.config import LIMITS, ConfigError, parse_state, schema, to_query
from trainlab.playground.pool import Worker, WorkerError, WorkerPool
from trainlab.playground.presets import PRESETS
from trainlab.playground.trajectories import trajectories
from trainlab.playground.worker import encode, release_memory

__all__ = ["create_app", "SessionRegistry", "STATIC", "CORES", "CHUNK_SECONDS"]

log = logging.getLogger("trainlab.playground")

STATIC = Path(__file__).parent / "static"
CORES = max(1, os.cpu_count() or 1)   #: worker processes: sessions that step at the same time
CHUNK_SECONDS = 0.04     #: a playing session reports after about this long, at most ...
CHUNK_SHARE = 0.1        #: ... and at most this times cores / sessions (8 sessions on 2 cores: 25 ms)
MAX_PENDING_STEPS = 100  #: step requests a session queues at most


class SessionRegistry:
    """The live sessions (one per websocket), bounded in number, and the worker processes they
    run on (:class:`~trainlab.playground.pool.WorkerPool`, ``cores`` of them at most)."""

    def __init__(self, max_sessions: int, cores: int = CORES) -> None:
        self.max_sessions, self.cores = int(max_sessions), int(cores)
        self._live: set[int] = set()
        self._next = 0
        self.pool = WorkerPool(self.cores)

    def open(self) -> int | None:
        """A new session id, or None when the server is full."""
        if len(self._live) >= self.max_sessions:
            return None
        self._next += 1
        self._live.add(self._next)
        return self._next

    def close(self, sid: int) -> None:
        self._live.discard(sid)

    @property
    def count(self) -> int:
        return len(self._live)


class _Remote:
    """The server's view of one session on its worker (a new one for every start and reset):
    what the worker's last answer said of it."""

    def __init__(self, raw: Any, info: dict[str, Any]) -> None:
        self.raw = raw                   # the state as the page sent it (reset starts it again)
        self.apply(info)

    def apply(self, info: dict[str, Any]) -> None:
        self.step: int = info["step"]
        self.finished: str | None = info["finished"]
        self.two_d: bool = info["two_d"]
        self.to_epoch_end: int = info["to_epoch_end"]


class _Connection:
    """One websocket's session (on its worker process) and its play loop."""

    def __init__(self, ws: WebSocket, registry: SessionRegistry, limits: dict[str, Any]) -> None:
        self.ws, self.registry, self.limits = ws, registry, limits
        self.session: _Remote | None = None
        self.sid: int | None = None
        self.worker: Worker | None = None
        self.playing = False
        self.pending_steps: list[str] = []
        self.wake = asyncio.Event()
        self.send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any] | str, session: _Remote | None = None) -> None:
        """Send ``message`` (strict JSON: no NaN; a ``str`` is sent as encoded); with ``session``,
        only while it is still the current one."""
        text = message if isinstance(message, str) else encode(message)
        async with self.send_lock:
            if session is None or session is self.session:
                await self.ws.send_text(text)

    async def error(self, key: str, message: str) -> None:
        await self.send({"type": "error", "key": key, "message": message})

    async def request(self, op: str, **fields: Any) -> tuple[dict[str, Any], list[str]]:
        """One request to this session's worker, in its turn (first come, first served)."""
        if self.worker is None or self.worker.dead is not None:
            if self.worker is not None:                       # it died: the session died with it
                self.registry.pool.release_soon(self.worker, self.sid)
            self.worker = self.registry.pool.assign(self.sid)
        return await self.worker.request(op, sid=self.sid, **fields)

    def chunk_seconds(self) -> float:
        """How long one chunk of play may run: shorter when more sessions share the cores."""
        share = CHUNK_SHARE * self.registry.cores / max(1, self.registry.count)
        return min(CHUNK_SECONDS, max(0.005, share))

    # ------------------------------------------------------------------ commands
    async def start(self, message: dict[str, Any], *, raw: Any = None) -> None:
        if raw is None:
            raw = message.get("state", {})
            try:
                parse_state(raw)            # refused here, at once; the worker builds from the same state
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
        header, parts = await self.request("start", state=raw, limits={
            "max_steps": self.limits["max_steps"], "max_seconds": self.limits["max_seconds"]})
        if not header["ok"]:                     # a configuration the library itself refuses: keep the old one
            if header["error"] != "config":
                raise WorkerError(header["message"])
            await self.error(header.get("key", "state"), header["message"])
            return
        session = _Remote(raw, header["info"])
        self.session = session                   # from here on, updates of the previous session are dropped
        for text in parts:                       # ready, then the first update
            await self.send(text, session)
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
            result = await anyio.to_thread.run_sync(trajectories, state)
            result["query"] = to_query(state)
            await self.send(result)
        elif kind in ("play", "pause", "step", "reset"):
            if self.session is None:
                await self.error("session", f"{kind}: no session yet; send start first")
                return
            if kind == "reset":
                await self.start({"play": False}, raw=self.session.raw)
            elif kind == "pause":
                self.playing = False
                self.pending_steps.clear()
                await self.send({"type": "paused", "reason": None, "step": self.session.step})
            else:
                unit = message.get("unit", "batch")
                if kind == "step" and unit not in ("batch", "epoch"):
                    await self.error("unit", f"step: unit must be 'batch' or 'epoch', got {unit!r}")
                    return
                if self.session.finished:
                    await self.error("session", self.session.finished)
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
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.session is not None and (self.playing or self.pending_steps):
                session = self.session
                try:
                    await self._run_once(session)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:   # a dead worker, or a bug: say so on the page rather than fall silent
                    if not isinstance(exc, WorkerError):
                        log.exception("playground session failed")
                    if self.session is session:
                        self.session, self.playing = None, False
                        self.pending_steps.clear()
                    with contextlib.suppress(Exception):
                        await self.error("server", f"the session failed: {exc}; start it again")
                await asyncio.sleep(0)

    async def _advance(self, session: _Remote, steps: int | None, budget: float | None,
                       boundary: bool | None = None) -> dict[str, Any]:
        """One chunk on the worker; its update goes to the page (if ``session`` is still the current one)."""
        header, parts = await self.request("advance", steps=steps, budget=budget, boundary=boundary)
        if not header["ok"]:
            raise WorkerError(header["message"])
        session.apply(header["info"])
        await self.send(parts[0], session)
        return header["info"]

    async def _run_once(self, session: _Remote) -> None:
        """One pending step request (in chunks), or one chunk of play."""
        if self.pending_steps:
            unit = self.pending_steps.pop(0)
            remaining = 1 if unit == "batch" else session.to_epoch_end
            info: dict[str, Any] = {"boundary": False}
            while remaining > 0 and self.session is session:
                before = session.step
                info = await self._advance(session, remaining, self.chunk_seconds(), True if unit == "batch" else None)
                remaining -= session.step - before
                if info["finished"] or session.step == before:
                    break
            if session.two_d and not info["boundary"] and self.session is session:   # show where it ended
                await self._advance(session, 0, None, True)
        else:
            await self._advance(session, None, self.chunk_seconds())
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
                try:
                    await self.handle(message)
                except WorkerError as exc:
                    self.session, self.playing = None, False
                    await self.error("server", f"the session failed: {exc}; start it again")
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
            self.session = None
            if self.sid is not None:
                self.registry.close(self.sid)
                if self.worker is not None:      # the worker frees the session (or exits, if it was its last)
                    self.registry.pool.release_soon(self.worker, self.sid)
                    self.worker = None
                self.sid = None


def create_app(*, max_sessions: int | None = None, limits: dict[str, Any] | None = None,
               cores: int | None = None) -> Starlette:
    """The playground app (``uvicorn.run(create_app())``).

    Args:
        max_sessions: most concurrent sessions (default ``LIMITS["max_sessions"]``).
        limits: overrides of :data:`~trainlab.playground.config.LIMITS` (``max_steps``,
            ``max_seconds``) for this app.
        cores: most worker processes (default :data:`CORES`, one per core).
    """
    limits = {**LIMITS, **(limits or {})}
    if max_sessions is not None:
        limits["max_sessions"] = int(max_sessions)
    registry = SessionRegistry(limits["max_sessions"], CORES if cores is None else cores)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await registry.pool.shutdown()

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
            del connection
            await anyio.to_thread.run_sync(release_memory)     # the server's own buffers for this tab

    app = Starlette(routes=[Route("/", index), Mount("/static", StaticFiles(directory=STATIC), name="static"),
                            WebSocketRoute("/ws", websocket)], lifespan=lifespan)
    app.state.registry = registry
    app.state.limits = limits
    return app
