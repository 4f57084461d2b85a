"""``trainlab playground``: a live browser app where initialization, BatchNorm and the update rule decide training.

The server trains trainlab's own networks (``trainlab.models.mlp``, ``trainlab.optim``,
``trainlab.Monitor`` with histograms) in worker processes and pushes every number to the page over a
websocket; the page draws them (uPlot, vendored, for the curves; canvas for the histograms over time,
the decision boundary and the optimizer surfaces). Nothing is fetched from the network.

* :mod:`~trainlab.playground.config`: the state (every control, typed and bounded; the URL query);
* :mod:`~trainlab.playground.session`: a training session (one or two networks in lockstep);
* :mod:`~trainlab.playground.trajectories`: the optimizer tab's paths on the 2-D surfaces;
* :mod:`~trainlab.playground.presets`: one-click presets, each naming the seed's claim it shows;
* :mod:`~trainlab.playground.app`: the ASGI app and the websocket protocol;
* :mod:`~trainlab.playground.worker`, :mod:`~trainlab.playground.pool`: the worker processes the
  sessions train in (one per core), and the server's side of them;
* :func:`serve`: run it with uvicorn (``trainlab playground``).

Needs the ``playground`` extra: ``pip install "trainlab[playground]"`` (Starlette and uvicorn).
"""

from __future__ import annotations

import socket
import sys
import threading
import webbrowser

__all__ = ["serve", "create_app"]


def create_app(**kwargs):   # noqa: ANN201 - re-exported lazily so that importing trainlab needs no Starlette
    """:func:`trainlab.playground.app.create_app`."""
    from trainlab.playground.app import create_app as _create_app

    return _create_app(**kwargs)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                      "choose another --port (0 picks a free one)") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(host: str = "127.0.0.1", port: int = 8765, *, open_browser: bool = False, log_level: str = "warning",
          workers: int | None = None) -> None:
    """Serve the playground on ``host:port`` until interrupted (Ctrl-C).

    ``port=0`` picks a free port. The address is printed once the socket is bound; with
    ``open_browser`` the default browser opens it. ``workers`` caps the worker processes the
    sessions train in (default: one per core).
    """
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('trainlab playground needs Starlette and uvicorn: '
                          'pip install "trainlab[playground]"') from exc
    sock = _bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    print(f"trainlab playground: {url}  (Ctrl-C stops it)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {host}, reachable from other machines", file=sys.stderr)
    config = uvicorn.Config(create_app(cores=workers), log_level=log_level, ws="auto", lifespan="on")
    server = uvicorn.Server(config)
    if open_browser:
        threading.Timer(0.8, webbrowser.open, args=(url,)).start()
    server.run(sockets=[sock])
