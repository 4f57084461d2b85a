"""The playground's worker process protocol (trainlab.playground.worker), without a server."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from trainlab.playground.worker import serve

SMALL = {"ds": "moons", "n": "200", "depth": "3", "width": "8", "batch": "16", "every": "2", "seed": "3"}
LIMITS = {"max_steps": 50, "max_seconds": 600.0}


def _answers(raw: bytes) -> list[tuple[dict, list[dict]]]:
    """Split a worker's output into (header, messages) pairs, checking every frame's byte counts."""
    out, stream = [], io.BytesIO(raw)
    while line := stream.readline():
        header = json.loads(line)
        parts = []
        for size in header["sizes"]:
            chunk = stream.read(size)
            assert len(chunk) == size
            parts.append(json.loads(chunk))
        out.append((header, parts))
    return out


def _run(requests: list[dict]) -> list[tuple[dict, list[dict]]]:
    out = io.BytesIO()
    serve(io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in requests)), out)
    return _answers(out.getvalue())


def test_start_advance_close_and_errors_answer_in_order():
    answers = _run([
        {"id": 1, "op": "start", "sid": 7, "state": SMALL, "limits": LIMITS},
        {"id": 2, "op": "advance", "sid": 7, "steps": 3, "budget": None, "boundary": None},
        {"id": 3, "op": "advance", "sid": 7, "steps": 0, "budget": None, "boundary": True},
        {"id": 4, "op": "start", "sid": 7, "state": {**SMALL, "depth": "40"}, "limits": LIMITS},
        {"id": 5, "op": "advance", "sid": 7, "steps": 1000, "budget": None, "boundary": False},
        {"id": 6, "op": "advance", "sid": 8, "steps": 1, "budget": None, "boundary": None},
        {"id": 7, "op": "jump", "sid": 7},
        {"id": 8, "op": "close", "sid": 7},
        {"id": 9, "op": "advance", "sid": 7, "steps": 1, "budget": None, "boundary": None},
        {"op": "exit"},
        {"id": 10, "op": "close", "sid": 7},     # never read: the worker has exited
    ])
    assert [h["id"] for h, _ in answers] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    (h1, (ready, first)), (h2, (upd,)), (h3, (now,)) = answers[:3]
    assert h1["ok"] and ready["type"] == "ready" and first["type"] == "update" and first["step"] == 0
    assert h1["info"] == {"step": 0, "finished": None, "two_d": True,
                          "to_epoch_end": ready["data"]["batches_per_epoch"], "boundary": True}
    assert upd["step"] == 3 and upd["runs"][0]["steps"] == [0, 1, 2] and h2["info"]["step"] == 3
    assert now["step"] == 3 and now["runs"][0]["steps"] == [] and h3["info"]["boundary"] and "boundary" in now
    h4, parts4 = answers[3]        # a refused configuration keeps the session it had
    assert (h4["ok"], h4["error"], h4["key"], parts4) == (False, "config", "depth", [])
    h5, (last,) = answers[4]
    assert last["step"] == 50 and last["runs"][0]["steps"][0] == 3 and "50 steps" in h5["info"]["finished"]
    for header, parts in answers[5:7]:     # an unknown session or operation: a failure, and the worker goes on
        assert (header["ok"], header["error"], parts) == (False, "failed", [])
    assert "KeyError" in answers[5][0]["message"] and "unknown op 'jump'" in answers[6][0]["message"]
    assert answers[7][0] == {"id": 8, "ok": True, "sizes": []}
    assert not answers[8][0]["ok"]         # closed: gone


def test_the_worker_process_keeps_stray_output_off_the_protocol():
    """A print inside a session (here: in every update) goes to stderr; the frames stay whole."""
    request = {"id": 1, "op": "start", "sid": 1, "state": SMALL, "limits": LIMITS}
    noisy = ("import runpy, trainlab.playground.session as s\n"
             "orig = s.Session.update\n"
             "def update(self, *a, **k):\n    print('a stray print'); return orig(self, *a, **k)\n"
             "s.Session.update = update\n"
             "runpy.run_module('trainlab.playground.worker', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", noisy], input=json.dumps(request).encode() + b"\n",
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    ((header, (ready, first)),) = _answers(done.stdout)
    assert header["ok"] and ready["type"] == "ready" and first["step"] == 0
    assert b"a stray print" in done.stderr


def test_the_worker_process_ignores_ctrl_c_and_exits_when_its_input_ends():
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "trainlab.playground.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        start = {"id": 1, "op": "start", "sid": 1, "state": SMALL, "limits": LIMITS}
        proc.stdin.write(json.dumps(start).encode() + b"\n")
        proc.stdin.flush()
        header = json.loads(proc.stdout.readline())          # it serves: its SIGINT handler is set
        assert header["ok"] and [len(proc.stdout.read(n)) for n in header["sizes"]] == header["sizes"]
        proc.send_signal(signal.SIGINT)
        advance = {"id": 2, "op": "advance", "sid": 1, "steps": 2, "budget": None, "boundary": None}
        out, err = proc.communicate(json.dumps(advance).encode() + b"\n", timeout=120)   # then stdin ends
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    ((header, (update,)),) = _answers(out)
    assert header["id"] == 2 and update["step"] == 2
