"""SIGKILL ``trainlab train`` at random moments: the run folder always loads or resumes, exactly.

One run is killed :data:`KILLS` times at random moments: during start-up, while it builds,
in the middle of an epoch, while it writes ``metrics.jsonl``, a checkpoint,
``model.safetensors`` or ``curves.png``, and during the final writes. After every kill:

* every line of ``metrics.jsonl`` is complete JSON, and the lines equal the first lines of an
  uninterrupted run's (the numbers are bit-identical; only ``seconds`` differ);
* ``config.toml`` loads and ``last.safetensors`` (when there is one) loads into the model;
* the next attempt continues the folder: ``--resume`` when there is a checkpoint,
  ``--overwrite`` of a run that died before its first checkpoint, else a plain start.

At the end a last ``--resume`` finishes the run; its weights, metrics and test loss equal
the uninterrupted run's. Kill moments are drawn from a seeded generator: a random delay
after the launch (start-up, build, early epochs), or a random delay after the process has
appended its first or second ``metrics.jsonl`` line (mid-training and its writes).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np

from test_run import assert_same_weights, metrics, run_cli, tiny, without_seconds
from trainlab import checkpoint
from trainlab import run as run_module
from trainlab.config import dumps, load_config
from trainlab.run import build, run

KILLS = 20          #: SIGKILLs per test run
EPOCHS = 30         #: the run's length: more than the kills can finish, so every kill hits a live run
MAX_LAUNCHES = 60   #: bound on the loop (a launch that ends before its kill is not counted)


def line_count(path) -> int:
    try:        # the run may replace or remove the file between any check and the read
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def check_folder(folder, reference_rows, model) -> int:
    """The folder after a kill loads; returns the checkpoint epoch (0 if none)."""
    if not (folder / "config.toml").is_file():
        return 0
    load_config(folder / "config.toml")
    if (folder / "metrics.jsonl").is_file():
        rows = metrics(folder)                     # asserts that no line is partial
        assert without_seconds(rows) == without_seconds(reference_rows[:len(rows)])
    if (folder / "last.safetensors").is_file():
        return int(checkpoint.load(folder / "last.safetensors", model)["epoch"])
    return 0


def finish_and_compare(folder, config_file, reference, reference_result) -> None:
    """Resume (or restart) the folder to the end; it must equal the uninterrupted run."""
    if (folder / "last.safetensors").is_file():
        args = ["train", "--resume", str(folder), "--quiet"]
    else:
        args = ["train", "--config", str(config_file), "--overwrite", "--quiet"]
    proc = run_cli(*args)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert without_seconds(metrics(folder)) == without_seconds(metrics(reference))
    assert_same_weights(folder / "model.safetensors", reference / "model.safetensors")
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "completed" and result["test_loss"] == reference_result["test_loss"]


def test_sigkill_at_random_moments(tmp_path, monkeypatch):
    # the uninterrupted reference, in this process (its curves.png is not compared: a stub draws it)
    monkeypatch.setattr(run_module, "write_curves", lambda history, path, title="": Path(path).write_bytes(b""))
    reference, reference_result = run(tiny(tmp_path / "ref", train={"epochs": EPOCHS, "monitor_every": 0}),
                                      quiet=True)
    monkeypatch.undo()
    reference_rows = metrics(reference)
    rng = np.random.default_rng(2024)
    kills, launches, moments, finished = 0, 0, [], 0
    folder = config_file = None
    model = build(tiny(tmp_path, train={"epochs": EPOCHS, "monitor_every": 0}))[1]
    while kills < KILLS and launches < MAX_LAUNCHES:
        if folder is None:              # a new run (the previous one finished before KILLS kills)
            cfg = tiny(tmp_path, run={"name": f"run{finished}"}, train={"epochs": EPOCHS, "monitor_every": 0})
            folder, config_file = tmp_path / f"run{finished}", tmp_path / f"run{finished}.toml"
            config_file.write_text(dumps(cfg))
        launches += 1
        if (folder / "last.safetensors").is_file():
            args = ["train", "--resume", str(folder), "--quiet"]
        elif (folder / "config.toml").is_file():
            args = ["train", "--config", str(config_file), "--overwrite", "--quiet"]
        else:
            args = ["train", "--config", str(config_file), "--quiet"]
        start_lines = line_count(folder / "metrics.jsonl")
        proc = run_cli(*args)
        event = str(rng.choice(["launch", "line", "second line"], p=[0.4, 0.4, 0.2]))
        delay = rng.uniform(0.0, 2.5) if event == "launch" else rng.uniform(0.0, 0.3)
        needed = {"launch": 0, "line": 1, "second line": 2}[event]
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:       # wait for the event
            lines = line_count(folder / "metrics.jsonl")
            grown = lines - start_lines if lines >= start_lines else lines   # a resume rewrites the file first
            if grown >= needed:
                break
            time.sleep(0.005)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            kills += 1
            moments.append(f"{event}+{delay:.2f}s")
        else:
            assert proc.returncode == 0, proc.stderr.read()     # it finished before the kill
        proc.stdout.close()
        proc.stderr.close()
        check_folder(folder, reference_rows, model)
        if (folder / "result.json").is_file() and json.loads((folder / "result.json").read_text())[
                "status"] == "completed":
            finish_and_compare(folder, config_file, reference, reference_result)
            folder, finished = None, finished + 1
    assert kills >= KILLS, (kills, launches, moments)
    if folder is not None:
        finish_and_compare(folder, config_file, reference, reference_result)
