"""The playground's server and websocket protocol, through Starlette's TestClient (no browser)."""

from __future__ import annotations

import json
import re
import time

import pytest
from starlette.testclient import TestClient

from trainlab.playground.app import STATIC, create_app

SMALL = {"ds": "moons", "n": "200", "depth": "3", "width": "8", "batch": "16", "every": "2", "seed": "3"}


def _strict(text: str) -> dict:
    """Parse as a browser does: NaN and Infinity are not JSON."""
    def refuse(constant: str) -> None:
        raise ValueError(f"non-JSON constant {constant} in a message")
    return json.loads(text, parse_constant=refuse)


def recv(ws) -> dict:
    return _strict(ws.receive_text())


def recv_until(ws, kind: str, limit: int = 500) -> tuple[dict, list[dict]]:
    """Messages up to and including the first of type ``kind`` (and those before it)."""
    seen = []
    for _ in range(limit):
        msg = recv(ws)
        if msg["type"] == kind:
            return msg, seen
        seen.append(msg)
    raise AssertionError(f"no {kind!r} message in {limit}")


def start(ws, state: dict, **extra) -> tuple[dict, dict]:
    ws.send_json({"type": "start", "state": state, **extra})
    ready, _ = recv_until(ws, "ready")
    first = recv(ws)
    assert first["type"] == "update" and first["step"] == 0
    return ready, first


def step(ws, unit: str = "batch") -> list[dict]:
    """The update of a one-batch step request (as a one-item list)."""
    ws.send_json({"type": "step", "unit": unit})
    return [recv(ws)]


@pytest.fixture
def client():
    with TestClient(create_app(limits={"max_steps": 400})) as c:
        yield c


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_page_and_assets_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "trainlab playground" in page.text
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(r.startswith("/static/") or r.startswith("data:") for r in refs), refs
    for ref in refs:
        if ref.startswith("/static/"):
            assert client.get(ref).status_code == 200, ref
    for asset in ("playground.js", "playground.css", "vendor/uPlot.LICENSE"):
        assert client.get(f"/static/{asset}").status_code == 200
    for path in STATIC.rglob("*"):      # offline: nothing refers to another host
        if path.suffix in (".html", ".js", ".css") and "vendor" not in path.parts:
            assert not re.search(r"https?://", path.read_text()), path


def test_start_step_epoch_and_reset(client):
    with client.websocket_connect("/ws") as ws:
        hello = recv(ws)
        assert hello["type"] == "hello" and hello["presets"] and hello["schema"]["run"]
        ready, first = start(ws, SMALL)
        assert ready["state"]["query"].startswith("ds=moons") and "seed=3" in ready["state"]["query"]
        assert ready["data"]["two_d"] and len(ready["data"]["points"]) == ready["data"]["train"]
        assert first["boundary"]["step"] == 0 and first["runs"][0]["steps"] == []
        (one,) = step(ws)
        assert one["step"] == 1 and one["runs"][0]["steps"] == [0] and one["runs"][0]["hist"]
        loss0 = one["runs"][0]["loss"][0]
        per_epoch = ready["data"]["batches_per_epoch"]
        ws.send_json({"type": "step", "unit": "epoch"})
        steps = [0]
        while steps[-1] != per_epoch - 1:
            msg = recv(ws)
            assert msg["type"] == "update"
            steps += msg["runs"][0]["steps"]
        assert steps == list(range(per_epoch)) and msg["epoch"] == 1
        ws.send_json({"type": "reset"})
        again, _ = recv_until(ws, "ready")
        assert again["state"] == ready["state"]
        assert recv(ws)["step"] == 0
        (one_again,) = step(ws)
        assert one_again["runs"][0]["loss"] == [loss0]


def test_play_pushes_updates_and_pause_stops_them(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws)
        start(ws, SMALL)
        ws.send_json({"type": "play"})
        updates = [recv(ws) for _ in range(3)]
        assert all(u["type"] == "update" for u in updates)
        assert updates[0]["step"] < updates[1]["step"] < updates[2]["step"]
        ws.send_json({"type": "pause"})
        paused, before = recv_until(ws, "paused")
        last = max([u["step"] for u in updates + before if u["type"] == "update"])
        ws.send_json({"type": "step", "unit": "batch"})
        msg = recv(ws)
        if msg["step"] != last + 1:        # the chunk that was running when the pause came
            assert msg["type"] == "update"
            last = msg["step"]
            msg = recv(ws)
        assert msg["type"] == "update" and msg["step"] == last + 1 and msg["runs"][0]["steps"] == [last]


def test_play_stops_at_the_step_limit(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws)
        start(ws, SMALL, play=True)
        paused, updates = recv_until(ws, "paused")
        assert "400 steps" in paused["reason"] and updates[-1]["step"] == 400
        steps = [s for u in updates for s in u["runs"][0]["steps"]]
        assert steps == list(range(400))
        ws.send_json({"type": "step"})
        error = recv(ws)
        assert error["type"] == "error" and "400 steps" in error["message"]


def test_two_sessions_from_one_state_give_identical_numbers(client):
    state = {**SMALL, "cmp": "1", "b.opt": "adam", "b.lr": "0.01"}
    runs = []
    for pace in ("epoch", "play"):
        with client.websocket_connect("/ws") as ws:
            recv(ws)
            start(ws, state)
            got = {"A": [], "B": [], "hist": []}
            if pace == "epoch":
                while len(got["A"]) < 60:
                    ws.send_json({"type": "step", "unit": "epoch"})
                    msg = recv(ws)
                    for side, r in zip("AB", msg["runs"], strict=True):
                        got[side] += r["loss"]
                    got["hist"] += msg["runs"][1]["hist"]
            else:
                ws.send_json({"type": "play"})
                while len(got["A"]) < 60:
                    msg = recv(ws)
                    for side, r in zip("AB", msg["runs"], strict=True):
                        got[side] += r["loss"]
                    got["hist"] += msg["runs"][1]["hist"]
            runs.append({k: v[:60] if k != "hist" else v[:30] for k, v in got.items()})
    assert runs[0] == runs[1]
    assert runs[0]["A"] != runs[0]["B"]


def test_compare_mode(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws)
        ready, first = start(ws, {**SMALL, "depth": "6", "act": "tanh", "init": "small_random", "cmp": "1",
                                  "b.init": "xavier"})
        assert [r["label"] for r in ready["runs"]] == ["A", "B"]
        assert ready["runs"][1]["config"]["init"] == "xavier" and ready["runs"][1]["config"]["act"] == "tanh"
        assert len(first["boundary"]["runs"]) == 2
        (one,) = step(ws)
        a, b = one["runs"]
        assert a["steps"] == b["steps"] == [0]
        assert {f["kind"] for f in a["new_findings"]} >= {"vanishing_activations"}
        assert not {f["kind"] for f in b["findings"]} & {"vanishing_activations", "exploding_activations"}


def test_bad_configurations_are_refused_and_the_server_keeps_serving(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws)
        ws.send_json({"type": "step"})
        assert "send start first" in recv(ws)["message"]
        ws.send_json({"type": "start", "state": {**SMALL, "depth": "40"}})
        error = recv(ws)
        assert error == {"type": "error", "key": "depth",
                         "message": "depth must be an integer in [1, 30], got '40'"}
        start(ws, SMALL)
        step(ws)
        for bad, key in ((["not", "an", "object"], "message"), ({"type": "jump"}, "type"),
                         ({"type": "step", "unit": "week"}, "unit"),
                         ({"type": "start", "state": {**SMALL, "opt": "lion"}}, "opt"),
                         ({"type": "start", "state": "depth=3"}, "state"),
                         ({"type": "trajectories", "state": {"surf": "bowl"}}, "surf")):
            ws.send_json(bad)
            msg = recv(ws)
            assert msg["type"] == "error" and msg["key"] == key, (bad, msg)
        ws.send_text("{not json")
        assert recv(ws)["key"] == "message"
        (after,) = step(ws)           # the session from before the bad ones goes on
        assert after["step"] == 2 and after["runs"][0]["steps"] == [1]
    with client.websocket_connect("/ws") as ws:   # and new connections are served
        recv(ws)
        start(ws, SMALL)


def test_divergence_is_reported_as_json(client):
    """NaN losses and overflowing histograms still make strict JSON, and the page is told why it stopped."""
    with client.websocket_connect("/ws") as ws:
        recv(ws)
        start(ws, {**SMALL, "init": "normal", "depth": "8", "width": "64", "lr": "1"})
        for _ in range(5):
            (msg,) = step(ws)          # recv() parses strictly: NaN or Infinity would fail here
            if msg["runs"][0]["diverged_at"] is not None:
                break
        run = msg["runs"][0]
        assert run["diverged_at"] is not None and run["loss"][-1] is None and "stops" in run["event"]
        assert msg["finished"] and "diverged" in msg["finished"]
        ws.send_json({"type": "step"})
        assert "diverged" in recv(ws)["message"]


def test_a_closed_connection_frees_its_session():
    app = create_app(max_sessions=2)
    registry = app.state.registry
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as ws:
            recv(ws)
            start(ws, SMALL, play=True)
            recv(ws)
            assert registry.count == 1
            with client.websocket_connect("/ws") as ws2, client.websocket_connect("/ws") as ws3:
                recv(ws2)
                recv(ws3)
                start(ws2, SMALL)
                assert registry.count == 2
                ws3.send_json({"type": "start", "state": SMALL})
                busy = recv(ws3)
                assert busy["type"] == "error" and "busy" in busy["message"]
        assert wait_for(lambda: registry.count == 0), registry.count
        with client.websocket_connect("/ws") as ws:      # the freed slots are reusable
            recv(ws)
            start(ws, SMALL)
            assert registry.count == 1
        assert wait_for(lambda: registry.count == 0)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sessions_spread_over_worker_processes_which_exit_with_their_last_session():
    app = create_app(cores=2)
    pool = app.state.registry.pool
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b, \
                client.websocket_connect("/ws") as c:
            for ws in (a, b, c):
                recv(ws)
                start(ws, SMALL)
                step(ws)
            pids = pool.pids
            assert len(pids) == 2 and all(_alive(p) for p in pids), pids      # two workers, one per core
            assert sorted(len(w.sessions) for w in pool.workers) == [1, 2]
        assert wait_for(lambda: not pool.pids and not any(_alive(p) for p in pids)), pids   # all gone
        with client.websocket_connect("/ws") as ws:      # a new tab starts a new worker
            recv(ws)
            start(ws, SMALL)
            (one,) = step(ws)
            assert one["step"] == 1 and len(pool.pids) == 1 and pool.pids[0] not in pids


def test_one_worker_process_serves_every_session_when_told_so():
    app = create_app(cores=1)
    pool = app.state.registry.pool
    with TestClient(app) as client, client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
        for ws in (a, b):
            recv(ws)
            start(ws, SMALL)
            assert step(ws)[0]["step"] == 1
        assert len(pool.pids) == 1 and len(pool.workers[0].sessions) == 2


def test_a_dead_worker_is_reported_and_a_new_start_gets_a_live_one(client):
    import os
    import signal

    pool = client.app.state.registry.pool
    with client.websocket_connect("/ws") as ws:
        recv(ws)
        start(ws, SMALL)
        step(ws)
        (pid,) = pool.pids
        os.kill(pid, signal.SIGKILL)
        ws.send_json({"type": "step"})
        error, _ = recv_until(ws, "error")
        assert "the session failed" in error["message"] and "start it again" in error["message"]
        ws.send_json({"type": "step"})
        assert "send start first" in recv(ws)["message"]
        start(ws, SMALL)                         # on a new worker process
        (one,) = step(ws)
        assert one["step"] == 1 and pool.pids and pid not in pool.pids


def test_trajectories_over_the_websocket(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws)
        ws.send_json({"type": "trajectories", "state": {"tab": "opt", "surf": "saddle", "osteps": "40",
                                                        "orules": "sgd,rmsprop", "o.rmsprop.alpha": "0.9"}})
        msg = recv(ws)
        assert msg["type"] == "trajectories" and list(msg["paths"]) == ["sgd", "rmsprop"]
        assert msg["paths"]["rmsprop"]["hyperparameters"]["alpha"] == 0.9
        assert "tab=opt" in msg["query"] and "o.rmsprop.alpha=0.9" in msg["query"]
        assert msg["paths"]["rmsprop"]["reached"] < (msg["paths"]["sgd"]["reached"] or 10**9)


def test_command_line_serves_on_localhost_and_says_where(tmp_path):
    import subprocess
    import sys

    import httpx2

    from trainlab.cli import EXIT_FAILURE, build_parser

    args = build_parser().parse_args(["playground"])
    assert (args.host, args.port, args.open, args.workers) == ("127.0.0.1", 8765, False, None)
    assert build_parser().parse_args(["playground", "--workers", "1"]).workers == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["playground", "--workers", "0"])
    proc = subprocess.Popen([sys.executable, "-m", "trainlab.cli", "playground", "--port", "0", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + proc.stderr.read()
        page = httpx2.get(match.group(0), timeout=20)
        assert page.status_code == 200 and "playground.js" in page.text
        taken = subprocess.run([sys.executable, "-m", "trainlab.cli", "playground", "--port", match.group(1)],
                               capture_output=True, text=True, timeout=60)
        assert taken.returncode == EXIT_FAILURE and "--port" in taken.stderr and match.group(1) in taken.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=20)
