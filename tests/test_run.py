"""Run folders never lose what they did: every epoch on disk, Ctrl-C, divergence, overwrite, failed starts, resume.

Each case checks that the earlier run (or the earlier part of this run) is untouched,
byte for byte, and that the record is complete: ``metrics.jsonl`` lines for every finished
epoch, equal to an uninterrupted run's, ``model.safetensors`` and ``curves.png`` of the last
checkpoint, ``result.json`` saying how the run ended, and a ``--resume`` that ends with the
weights of an uninterrupted run.

Most tests draw ``curves.png`` with a stub that writes the epochs it was given (drawing
with matplotlib costs ~0.2 s a figure); the subprocess test uses the real figure.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from trainlab import checkpoint
from trainlab import run as run_module
from trainlab.checkpoint import CheckpointError
from trainlab.config import ConfigError, dumps, load_config, validate
from trainlab.run import RunDiverged, RunError, RunInterrupted, evaluate_run, resume, run
from trainlab.train import Trainer

TINY = {"run": {"name": "tiny", "seed": 1}, "data": {"name": "spiral"},
        "model": {"hidden": [16], "batchnorm": True, "dropout": 0.1},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "schedule": {"name": "step", "step_size": 2, "gamma": 0.7},
        "train": {"epochs": 4, "batch_size": 16, "monitor_every": 5}}
STEPS_PER_EPOCH = 14          # 210 training samples of the spiral in batches of 16
SRC = str(Path(__file__).resolve().parents[1] / "src")


def tiny(out, **tables):
    cfg = copy.deepcopy(TINY)
    cfg["run"]["out"] = str(out)
    for table, values in tables.items():   # a schedule is replaced, the other tables are updated
        cfg[table] = dict(values) if table == "schedule" else {**cfg.get(table, {}), **values}
    return validate(cfg)


@pytest.fixture(autouse=True)
def fast_curves(monitor_curves):
    yield


@pytest.fixture
def monitor_curves(monkeypatch):
    """curves.png as the list of epochs it shows (real drawing costs ~0.2 s a figure)."""
    drawn = []

    def write_curves(history, path, title=""):
        epochs = [r["epoch"] for r in history.rows()]
        drawn.append(epochs)
        checkpoint.atomic_write_bytes(path, json.dumps(epochs).encode())
        return Path(path)

    monkeypatch.setattr(run_module, "write_curves", write_curves)
    # the stub draws in microseconds, but an epoch here takes milliseconds too: redraw at every
    # checkpoint whatever the timing (test_curves_redraw_is_skipped_while_drawing_dominates tests the skipping)
    monkeypatch.setattr(run_module._Snapshot, "CURVES_SHARE", float("inf"))
    return drawn


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def metrics(folder: Path) -> list[dict]:
    text = (folder / "metrics.jsonl").read_text()
    assert text == "" or text.endswith("\n"), "metrics.jsonl ends in a partial line"
    return [json.loads(line) for line in text.splitlines()]


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def weights(path: Path) -> dict[str, np.ndarray]:
    return checkpoint.torch_state_dict(path)


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert sorted(wa) == sorted(wb)
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs of TINY: 2 and 4 epochs."""
    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "write_curves", lambda history, path, title="": Path(path).write_bytes(b"[]"))
        two, _ = run(tiny(out, run={"name": "two"}, train={"epochs": 2}), quiet=True)
        four, result = run(tiny(out, run={"name": "four"}), quiet=True)
    return {"two": two, "four": four, "result": result}


def interrupt_at(monkeypatch, step: int, exc: type[BaseException] = KeyboardInterrupt) -> None:
    """Raise ``exc`` (Ctrl-C by default) when the trainer starts global step ``step``."""
    original = Trainer.train_step

    def train_step(self, xb, yb):
        if self.global_step == step:
            raise exc()
        return original(self, xb, yb)

    monkeypatch.setattr(Trainer, "train_step", train_step)


# ----------------------------------------------------------------- the record after every epoch
def test_every_epoch_is_on_disk_before_the_next_starts(tmp_path, monkeypatch, monitor_curves, reference):
    seen = []
    original = Trainer.train_step

    def train_step(self, xb, yb):
        if self.global_step % STEPS_PER_EPOCH == 0 and self.global_step:
            folder = tmp_path / "tiny"
            seen.append((len(metrics(folder)), weights(folder / "model.safetensors"), self.model.state_dict()))
        return original(self, xb, yb)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    folder, result = run(tiny(tmp_path), quiet=True)
    assert [n for n, _, _ in seen] == [1, 2, 3]
    for _, on_disk, live in seen:               # model.safetensors holds the weights the next epoch starts from
        for key, value in live.items():
            np.testing.assert_array_equal(on_disk[key], value, err_msg=key)
    assert monitor_curves == [[1], [1, 2], [1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4]]   # each checkpoint, then the end
    assert without_seconds(metrics(folder)) == without_seconds(metrics(reference["four"]))
    assert_same_weights(folder / "model.safetensors", reference["four"] / "model.safetensors")
    assert json.loads((folder / "result.json").read_text())["status"] == "completed"
    assert result["test_loss"] == reference["result"]["test_loss"]


def test_curves_redraw_is_skipped_while_drawing_dominates(tmp_path, monkeypatch, monitor_curves):
    """A drawing costing far more than an epoch is redone only when a tenth of the time allows; the end always draws."""
    monkeypatch.setattr(run_module._Snapshot, "CURVES_SHARE", 0.1)
    stub = run_module.write_curves

    def slow(history, path, title=""):
        time.sleep(0.05)      # 50 ms a drawing: about 20 tiny epochs must pass before the next one
        return stub(history, path, title)

    monkeypatch.setattr(run_module, "write_curves", slow)
    folder, result = run(tiny(tmp_path), quiet=True)
    assert monitor_curves[0] == [1] and monitor_curves[-1] == [1, 2, 3, 4]   # the first checkpoint, then the end
    assert len(monitor_curves) < 5, "every checkpoint redrew although drawing dominated"
    assert json.loads((folder / "curves.png").read_text()) == [1, 2, 3, 4]


# ----------------------------------------------------------------- Ctrl-C
def test_ctrl_c_keeps_a_complete_record_and_resumes_bit_for_bit(tmp_path, monkeypatch, reference):
    neighbour, _ = run(tiny(tmp_path, run={"name": "neighbour"}, train={"epochs": 1}), quiet=True)
    before = files(neighbour)
    interrupt_at(monkeypatch, 2 * STEPS_PER_EPOCH + 5)          # in the middle of epoch 3
    with pytest.raises(RunInterrupted) as info:
        run(tiny(tmp_path), quiet=True)
    folder = tmp_path / "tiny"
    assert str(info.value) == (f"interrupted (Ctrl-C) during epoch 3 of 4; {folder} holds the record of epochs 1-2 "
                               f"and the checkpoint of epoch 2; continue with: trainlab train --resume {folder}")
    assert info.value.epochs_done == 2 and isinstance(info.value, KeyboardInterrupt)
    assert without_seconds(metrics(folder)) == without_seconds(metrics(reference["two"]))
    assert_same_weights(folder / "model.safetensors", reference["two"] / "model.safetensors")
    assert json.loads((folder / "curves.png").read_text()) == [1, 2]
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "interrupted" and result["epochs_run"] == 2 and result["test_loss"] is None
    assert result["stop_reason"] == "interrupted (KeyboardInterrupt) during epoch 3"
    assert evaluate_run(folder)["test_loss"] == evaluate_run(reference["two"])["test_loss"]
    assert files(neighbour) == before

    monkeypatch.undo()
    resume(folder, quiet=True)
    assert without_seconds(metrics(folder)) == without_seconds(metrics(reference["four"]))
    assert_same_weights(folder / "model.safetensors", reference["four"] / "model.safetensors")
    assert json.loads((folder / "result.json").read_text())["resumed_from_epoch"] == 2


def test_ctrl_c_before_the_first_checkpoint_says_how_to_start_again(tmp_path, monkeypatch):
    interrupt_at(monkeypatch, 3)
    with pytest.raises(RunInterrupted, match=r"during epoch 1 of 4; no epoch was checkpointed, so .* holds no "
                                             r"weights; start again with: trainlab train --config .*config.toml "
                                             r"--overwrite$"):
        run(tiny(tmp_path), quiet=True)
    folder = tmp_path / "tiny"
    assert set(files(folder)) == {"config.toml", "metrics.jsonl", "result.json"} and metrics(folder) == []
    with pytest.raises(RunError, match="no last.safetensors to resume from"):
        resume(folder)
    monkeypatch.undo()
    run(load_config(folder / "config.toml"), if_exists="replace", quiet=True)   # the advice works
    assert len(metrics(folder)) == 4


def test_metrics_written_after_the_last_checkpoint_are_not_repeated_on_resume(tmp_path, monkeypatch, reference):
    interrupt_at(monkeypatch, 3 * STEPS_PER_EPOCH + 2)           # epoch 4; checkpoints every 2 epochs
    with pytest.raises(RunInterrupted, match="holds the record of epochs 1-3 and the checkpoint of epoch 2"):
        run(tiny(tmp_path, train={"checkpoint_every": 2}), quiet=True)
    folder = tmp_path / "tiny"
    assert len(metrics(folder)) == 3
    monkeypatch.undo()
    resume(folder, quiet=True)
    assert without_seconds(metrics(folder)) == without_seconds(metrics(reference["four"]))
    assert_same_weights(folder / "model.safetensors", reference["four"] / "model.safetensors")


def run_cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "trainlab.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.is_file() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} did not reach {count} lines (process status {proc.poll()})")


def test_sigint_to_trainlab_train(tmp_path):
    """A real Ctrl-C (SIGINT) to ``trainlab train``: exit 130, one line, a complete record, an exact resume."""
    cfg = tiny(tmp_path, train={"epochs": 6})
    (tmp_path / "c.toml").write_text(dumps(cfg))
    reference, _ = run(tiny(tmp_path / "ref", train={"epochs": 6}), quiet=True)
    folder = tmp_path / "tiny"
    proc = run_cli("train", "--config", str(tmp_path / "c.toml"), "--quiet")
    wait_for_lines(folder / "metrics.jsonl", 2, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab: error: interrupted (Ctrl-C) during epoch "), err
    assert f"continue with: trainlab train --resume {folder}" in lines[0] and "Traceback" not in err
    done = metrics(folder)
    assert 2 <= len(done) < 6 and without_seconds(done) == without_seconds(metrics(reference))[:len(done)]
    assert json.loads((folder / "result.json").read_text())["status"] == "interrupted"
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = run_cli("train", "--resume", str(folder), "--quiet")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert without_seconds(metrics(folder)) == without_seconds(metrics(reference))
    assert_same_weights(folder / "model.safetensors", reference / "model.safetensors")


# ----------------------------------------------------------------- divergence
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_divergence_ends_with_one_line_and_a_complete_record(tmp_path):
    neighbour, _ = run(tiny(tmp_path, run={"name": "neighbour"}, train={"epochs": 1}), quiet=True)
    before = files(neighbour)
    cfg = tiny(tmp_path, model={"batchnorm": False}, schedule={"name": "exponential", "gamma": 1000.0})
    with pytest.raises(RunDiverged) as info:           # lr 0.1, 100, 1e5: the NaN guard stops epoch 3
        run(cfg, quiet=True)
    folder = tmp_path / "tiny"
    message = str(info.value)
    assert "\n" not in message and message.startswith("training diverged at step ")
    assert "(epoch 3)" in message and "lower the learning rate" in message
    assert message.endswith(f"{folder} holds the record of epochs 1-2 and the checkpoint of epoch 2; "
                            f"continue with: trainlab train --resume {folder}")
    assert [r["epoch"] for r in metrics(folder)] == [1, 2]
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "diverged" and result["stop_reason"].startswith("training diverged at step")
    assert result["diagnosis"] and result["epochs_run"] == 2
    assert checkpoint.load(folder / "last.safetensors", run_module.build(cfg)[1])["epoch"] == 2
    assert_same_weights(folder / "model.safetensors", folder / "last.safetensors")
    assert files(neighbour) == before


# ----------------------------------------------------------------- an existing folder
def test_an_existing_run_is_never_overwritten_by_default(tmp_path):
    earlier, _ = run(tiny(tmp_path, train={"epochs": 1}), quiet=True)
    before = files(earlier)
    with pytest.raises(RunError) as info:
        run(tiny(tmp_path, run={"seed": 2}, train={"epochs": 1}), quiet=True)
    assert str(info.value).startswith(f"{earlier} already holds a run (best.safetensors, config.toml, curves.png, "
                                      f"last.safetensors, ...); to keep it, choose another name (--name tiny-2); to "
                                      f"replace it, add --overwrite; to continue it, use --resume {earlier}")
    assert files(earlier) == before

    fresh, _ = run(tiny(tmp_path, run={"seed": 2}, train={"epochs": 1}), if_exists="new", quiet=True)
    assert fresh == tmp_path / "tiny-2" and load_config(fresh / "config.toml")["run"]["name"] == "tiny-2"
    assert files(earlier) == before

    (earlier / "notes.txt").write_text("stale")
    replaced, _ = run(tiny(tmp_path, run={"seed": 2}, train={"epochs": 1}), if_exists="replace", quiet=True)
    assert replaced == earlier and "notes.txt" not in files(earlier)
    assert load_config(earlier / "config.toml")["run"]["seed"] == 2 and len(metrics(earlier)) == 1


def test_overwrite_refuses_a_folder_that_holds_no_run(tmp_path):
    other = tmp_path / "tiny"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(RunError, match="not a run folder .* --overwrite will not delete its 1 files"):
        run(tiny(tmp_path, train={"epochs": 1}), if_exists="replace", quiet=True)
    assert files(other) == {"thesis.tex": b"precious"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="exists and is not a folder"):
        run(tiny(tmp_path, run={"name": "file"}), quiet=True)


# ----------------------------------------------------------------- failed starts write nothing
def test_a_run_that_fails_to_start_writes_nothing(tmp_path):
    earlier, _ = run(tiny(tmp_path, train={"epochs": 1}), quiet=True)
    before = files(earlier)
    csv = tmp_path / "no_label.csv"
    csv.write_text("a,b,klass\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    bad_data = tiny(tmp_path, data={"name": str(csv)})
    with pytest.raises(ValueError, match="label") as info:
        run(bad_data, if_exists="replace", quiet=True)          # even --overwrite: the earlier run stays
    assert "--set data.label_column=NAME" in " ".join([str(info.value), *getattr(info.value, "__notes__", [])])
    assert files(earlier) == before
    with pytest.raises(ValueError):
        run({**bad_data, "run": {**bad_data["run"], "name": "new"}}, quiet=True)
    bad_model = tiny(tmp_path, run={"name": "cnn"}, model={"kind": "cnn"})
    with pytest.raises(ConfigError, match="model.kind: 'cnn' needs image data"):
        run(bad_model, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_label.csv", "tiny"]


# ----------------------------------------------------------------- resume
def test_resume_to_a_new_total_keeps_the_original_config(tmp_path, reference):
    folder, _ = run(tiny(tmp_path, train={"epochs": 2}), quiet=True)
    original = (folder / "config.toml").read_bytes()
    resume(folder, epochs=4, quiet=True)
    assert (folder / "config.original.toml").read_bytes() == original
    assert load_config(folder / "config.toml")["train"]["epochs"] == 4
    assert load_config(folder / "config.original.toml")["train"]["epochs"] == 2
    assert without_seconds(metrics(folder)) == without_seconds(metrics(reference["four"]))
    assert_same_weights(folder / "model.safetensors", reference["four"] / "model.safetensors")
    resume(folder, epochs=5, quiet=True)                          # the original stays the first one
    assert (folder / "config.original.toml").read_bytes() == original and len(metrics(folder)) == 5


def test_resume_that_would_train_nothing_or_cannot_load_changes_nothing(tmp_path):
    folder, result = run(tiny(tmp_path), quiet=True)
    before = files(folder)
    with pytest.raises(RunError, match=r"has trained 4 epochs, so --epochs 2 would train none and shorten its "
                                       r"record; give a total above 4 \(e.g. --epochs 8\)"):
        resume(folder, epochs=2)
    assert files(folder) == before
    _, again = resume(folder, quiet=True)                       # at its total already: only the record
    assert again["test_loss"] == result["test_loss"] and metrics(folder) == [json.loads(x) for x in
                                                                             before["metrics.jsonl"].splitlines()]
    last = folder / "last.safetensors"
    last.write_bytes(before["last.safetensors"][: len(before["last.safetensors"]) // 2])
    before = files(folder)
    with pytest.raises(CheckpointError, match=str(last)):
        resume(folder, epochs=6)
    assert files(folder) == before
    with pytest.raises(RunError, match="not a run folder"):
        resume(tmp_path)
