"""The playground's worker processes: sessions train in processes of their own, one per core.

A Python process runs one bytecode at a time (the interpreter lock), and a playground session's
small networks spend most of a step in the interpreter: eight sessions on threads of the server
got 1.2 of two cores, and the server's own event loop waited for the lock behind them. So the
server (:mod:`trainlab.playground.app`) keeps the websockets and the page's state, and the
sessions live in worker processes it starts: ``python -m trainlab.playground.worker``.

Protocol, over the worker's stdin and stdout (no pickle: JSON text and byte counts):

* a request is one JSON line, ``{"id": n, "op": ..., ...}``; a worker answers its requests one
  at a time, in the order they came;
* an answer is one JSON header line, ``{"id": n, "ok": true, "info": {...}, "sizes": [...]}``,
  followed by the UTF-8 bytes of the websocket messages it carries, ``sizes[i]`` bytes each,
  already encoded as strict JSON (the server forwards them as they are); or
  ``{"id": n, "ok": false, "error": "config" | "failed", "message": ...}``.

Operations (``sid`` is the server's session id; one per websocket):

* ``start`` ``{sid, state, limits}``: build a :class:`~trainlab.playground.session.Session` from
  the page's ``state`` (URL query keys) and replace the session ``sid`` had, if any (only once
  the new one is built: a configuration the library refuses leaves the old one); answers the
  ``ready`` message and the first ``update`` (step 0, with its decision boundary);
* ``advance`` ``{sid, steps, budget, boundary}``: :meth:`Session.advance` (``steps == 0``: just
  the update), answers the ``update``;
* ``close`` ``{sid}``: drop the session and give its memory back to the system;
* ``exit``, or the end of stdin (the server closed the pipe or died): exit. SIGINT (Ctrl-C in
  the terminal reaches the whole process group) is ignored: the server stops its workers.

``info`` carries what the server decides with: ``step``, ``finished`` (the reason the session
may not step any more, or null), ``two_d``, ``to_epoch_end`` (steps to the end of the epoch) and
``boundary`` (whether the update carries a decision boundary).

The protocol owns the process's real standard output; ``print`` and warnings go to stderr (the
server's), so nothing stray can break a frame. BLAS runs on one thread: the server starts one
worker per core.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import signal
import sys
import traceback
from typing import Any, BinaryIO

__all__ = ["main", "handle", "encode", "BLAS_ENV"]

#: set in a worker's environment before NumPy loads: one BLAS thread (one worker per core)
BLAS_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def encode(message: dict[str, Any]) -> str:
    """A websocket message as strict JSON (``NaN``/``Infinity`` are not JSON and a browser's
    ``JSON.parse`` refuses them); the server encodes its own messages with it too."""
    return json.dumps(message, allow_nan=False, separators=(",", ":"))


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc keeps it in its arenas otherwise)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def _info(session: Any, update: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"step": session.step, "finished": session.check_limits(), "two_d": session.two_d,
            "to_epoch_end": session.steps_to_epoch_end(), "boundary": bool(update and "boundary" in update)}


def handle(sessions: dict[int, Any], request: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    """One request: ``(header fields, message payloads)``; raises on a bad request or a failure."""
    from trainlab.playground.config import ConfigError, parse_state
    from trainlab.playground.session import Session

    op, sid = request["op"], request.get("sid")
    if op == "start":
        limits = request["limits"]
        try:
            session = Session(parse_state(request["state"]), max_steps=limits["max_steps"],
                              max_seconds=limits["max_seconds"])
        except ConfigError as exc:
            return {"ok": False, "error": "config", "key": exc.key, "message": str(exc)}, []
        except (ValueError, TypeError) as exc:   # a configuration the library itself refuses
            return {"ok": False, "error": "config", "key": "state",
                    "message": f"cannot build this configuration: {exc}"}, []
        old = sessions.pop(sid, None)
        sessions[sid] = session
        if old is not None:
            del old
            release_memory()
        update = session.update(True)
        return {"ok": True, "info": _info(session, update)}, [encode(m).encode() for m in (session.describe(), update)]
    if op == "advance":
        session = sessions[sid]
        steps, budget, boundary = request.get("steps"), request.get("budget"), request.get("boundary")
        update = session.update(boundary) if steps == 0 else session.advance(steps, budget, boundary)
        return {"ok": True, "info": _info(session, update)}, [encode(update).encode()]
    if op == "close":
        if sessions.pop(sid, None) is not None:
            release_memory()
        return {"ok": True}, []
    raise ValueError(f"unknown op {op!r}")


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer ``requests`` (JSON lines) on ``answers`` until ``exit`` or the end of the input."""
    sessions: dict[int, Any] = {}
    for line in requests:
        if not line.strip():
            continue
        request: dict[str, Any] = {}
        try:
            request = json.loads(line)
            if request.get("op") == "exit":
                break
            header, parts = handle(sessions, request)
        except Exception as exc:  # noqa: BLE001 - a bug: say so to the server, and keep serving the others
            traceback.print_exc(file=sys.stderr)
            header, parts = {"ok": False, "error": "failed", "message": f"{type(exc).__name__}: {exc}"}, []
        header = {"id": request.get("id"), **header, "sizes": [len(p) for p in parts]}
        answers.write(encode(header).encode() + b"\n")
        for part in parts:
            answers.write(part)
        answers.flush()


def main() -> None:
    """``python -m trainlab.playground.worker``: serve the protocol on stdin/stdout (the server
    starts it with :data:`BLAS_ENV`; NumPy is loaded by then, so the BLAS limit is also set here)."""
    # Ctrl-C in the terminal reaches the whole process group: the server decides when workers
    # stop (it closes their stdin), so a worker never dies under a session mid-chunk
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())   # stray output goes to stderr, not into a frame
    sys.stdout = sys.stderr
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass
    else:
        threadpool_limits(limits=1, user_api="blas")
    with contextlib.suppress(BrokenPipeError):
        serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
