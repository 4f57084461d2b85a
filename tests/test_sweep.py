"""``trainlab sweep``: the file format, expansion, the config trial, outputs, resume and faults of the driver.

Sweeps here train tiny MLPs (a few epochs, one small hidden layer) so each trial takes a
fraction of a second. Processes started here end by themselves (bounded waits, ``finally``).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from trainlab import cli, trials
from trainlab.config import validate
from trainlab.trials import config_trial
from trainlab.trials import sweep as sw
from trainlab.trials.grid import GridError, expand, flatten_space, repeat_seed

TINY = """
[sweep]
name = "tiny"
metric = "val_accuracy"
{seeds}

[model]
hidden = [16]

[optimizer]
name = "sgd"
lr = 0.1

[train]
epochs = {epochs}
batch_size = 64
monitor_every = 0

[grid]
"optimizer.lr" = {lrs}
"model.batchnorm" = [false, true]
"""


def write_sweep(path: Path, *, lrs="[0.05, 0.5]", seeds="seeds = [0, 1]", epochs=2) -> Path:
    path.write_text(textwrap.dedent(TINY.format(lrs=lrs, seeds=seeds, epochs=epochs)))
    return path


def _strip(record):
    return {"status": record["status"], "metrics": record["metrics"],
            "curves": [{k: v for k, v in row.items() if k != "seconds"} for row in record["curves"]]}


def _records(folder: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (folder / "results.jsonl").read_text().splitlines())}


# ---------------------------------------------------------------------- the file and its expansion


def test_grid_expands_in_file_order_without_duplicates():
    grid = flatten_space({"optimizer": {"lr": [0.1, 0.01, 0.1]}, "model.batchnorm": [True, False]}, "grid")
    assert list(expand(grid)) == [
        {"optimizer.lr": 0.1, "model.batchnorm": True}, {"optimizer.lr": 0.1, "model.batchnorm": False},
        {"optimizer.lr": 0.01, "model.batchnorm": True}, {"optimizer.lr": 0.01, "model.batchnorm": False}]
    with pytest.raises(GridError, match=r"grid\.lr: expected a config key TABLE\.KEY"):
        flatten_space({"lr": [0.1]}, "grid")
    with pytest.raises(GridError, match=r"random\.optimizer\.lr: loguniform needs low > 0"):
        flatten_space({"optimizer.lr": {"loguniform": [0, 1]}}, "random", random=True)


def test_random_samples_come_from_the_sweep_seed_and_survive_a_larger_n():
    space = flatten_space({"optimizer.lr": {"loguniform": [1e-4, 1.0]},
                           "model.activation": {"choice": ["relu", "tanh"]},
                           "train.batch_size": {"randint": [16, 32]}}, "random", random=True)
    five = list(expand({}, space, 5, seed=7))
    assert five == list(expand({}, space, 5, seed=7))
    assert list(expand({}, space, 8, seed=7))[:5] == five, "sample k does not depend on n"
    assert five != list(expand({}, space, 5, seed=8))
    for sample in five:
        assert 1e-4 <= sample["optimizer.lr"] <= 1.0 and 16 <= sample["train.batch_size"] <= 32
        assert sample["model.activation"] in ("relu", "tanh")


def test_sweep_file_makes_validated_paired_trials(tmp_path):
    sweep = sw.load_sweep(write_sweep(tmp_path / "s.toml", seeds="repeats = 3"))
    assert len(sweep.trials) == 2 * 2 * 3 and sweep.keys == ["optimizer.lr", "model.batchnorm"]
    seeds = [t.seed for t in sweep.trials]
    assert seeds[:3] == [repeat_seed(0, r) for r in range(3)] and seeds == seeds[:3] * 4, "repeat r: same seed"
    first = sweep.trials[0].spec["params"]["config"]
    assert first == validate(first) and first["optimizer"]["lr"] == 0.05 and first["model"]["batchnorm"] is False
    assert len({t.id for t in sweep.trials}) == len(sweep.trials)


@pytest.mark.parametrize("text, message", [
    ('[grid]\n"optimizer.lrr" = [0.1]\n', r"optimizer\.lrr: unknown key for SGD \(did you mean 'lr'\?\)"),
    ('[grid]\n"model.hidden" = [[16], [0]]\n', r"model\.hidden=\[0\]: model\.hidden: .* out of range"),
    ('[sweep]\nmetric = "val_acc"\n', r"sweep\.metric: unknown metric 'val_acc' \(did you mean 'val_accuracy'\?\)"),
    ('[sweep]\nseeds = [0]\nrepeats = 2\n', "give one"),
    ('[sweeps]\nname = "x"\n', r"sweeps: unknown table \(did you mean 'sweep'\?\)"),
    ('[random]\nn = 2\n"model.dropout" = {gauss = [0, 1]}\n',
     r"random\.model\.dropout: unknown distribution .gauss.; valid: loguniform"),
])
def test_sweep_file_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text('[optimizer]\nname = "sgd"\nlr = 0.1\n' + text)
    with pytest.raises(sw.SweepError, match=message) as info:
        sw.load_sweep(path)
    assert str(path) in str(info.value)


def test_a_sweep_trial_equals_trainlab_train(tmp_path):
    from trainlab.run import run

    config = validate({"run": {"seed": 3, "out": str(tmp_path)}, "model": {"hidden": [16]},
                       "train": {"epochs": 2, "monitor_every": 0}})
    record = trials.execute(trials.make_spec(config_trial.TRIAL, {"config": config, "repeat": 0}))
    _, result = run(config, quiet=True, log=None)
    assert record["status"] == "ok"
    assert record["metrics"]["test_accuracy"] == result["test_accuracy"]
    assert record["metrics"]["test_loss"] == result["test_loss"]
    assert [row["epoch"] for row in record["curves"]] == [1, 2]


# ---------------------------------------------------------------------- the command


def test_sweep_command_writes_results_and_resumes(tmp_path, capsys):
    path = write_sweep(tmp_path / "s.toml")
    out = tmp_path / "out"
    assert cli.main(["sweep", str(path), "--out", str(out), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "sweep tiny: 8 trials" in listing and listing.count("to run") == 9 and not out.exists()
    assert cli.main(["sweep", str(path), "--out", str(out), "--workers", "0", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "best configurations by mean val_accuracy over 2 seeds" in text
    assert "optimizer.lr  model.batchnorm  val_accuracy" in text
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and rows[0]["optimizer.lr"] == "0.05" and rows[0]["model.batchnorm"] == "false"
    assert {"status", "val_accuracy", "best_val_accuracy", "test_accuracy", "seconds", "trial_id"} <= set(rows[0])
    html = (out / "sweep.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == 2  # the heatmap, and the metric against the first key
    assert '<span class="badge pass">8 of 8 trials recorded</span>' in html
    before = (out / "results.jsonl").read_bytes()
    assert cli.main(["sweep", str(path), "--out", str(out), "--workers", "0"]) == 0
    captured = capsys.readouterr()
    assert "8 already recorded" in captured.err and "nothing to run" in captured.err
    assert (out / "results.jsonl").read_bytes() == before

    changed = write_sweep(tmp_path / "s.toml", lrs="[0.05, 0.5, 1.0]")
    assert cli.main(["sweep", str(changed), "--out", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "grid.optimizer.lr: [0.05, 0.5] -> [0.05, 0.5, 1.0]" in err and "--extend" in err
    assert cli.main(["sweep", str(changed), "--out", str(out), "--workers", "0", "--extend", "--quiet"]) == 0
    records = _records(out)
    assert len(records) == 12 and (out / "results.jsonl").read_bytes().startswith(before), "only new trials ran"


def _children(pid: int) -> list[int]:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with the dask extra
        return []
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def test_driver_killed_mid_sweep_then_rerun_equals_an_uninterrupted_sweep(tmp_path):
    path = write_sweep(tmp_path / "s.toml", lrs="[0.02, 0.1, 0.5]", epochs=8)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "trainlab.cli", "sweep", str(path), "--out", str(out), "--workers", "2",
               "--quiet"]
    results = out / "results.jsonl"
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None:
            if not workers:
                workers = _children(driver.pid)
            if results.exists() and results.read_text().count("\n") >= 3:
                break
            time.sleep(0.01)
        assert driver.poll() is None, "the sweep finished before it could be interrupted"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait(timeout=30)
    recorded = results.read_bytes()
    n_before = recorded.count(b"\n")
    assert 3 <= n_before < 12
    deadline = time.monotonic() + 30  # the workers notice the driver is gone and exit
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "workers outlived their driver"

    rerun = subprocess.run(command[:-1], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n_before} already recorded" in rerun.stderr and f"{12 - n_before} to run" in rerun.stderr
    assert results.read_bytes().startswith(recorded), "the records from before the kill are kept as they were"
    resumed = _records(out)
    assert len(resumed) == 12 == results.read_text().count("\n")

    plan = sw.load_sweep(path).plan()
    uninterrupted = trials.run(plan, tmp_path / "reference")
    assert {tid: _strip(r) for tid, r in resumed.items()} == {tid: _strip(r) for tid, r in uninterrupted.items()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent's parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def test_summary_ranks_groups_and_counts_diverged():
    sweep = sw.parse_sweep({"sweep": {"seeds": [0, 1]}, "grid": {"optimizer.lr": [0.1, 1.0]},
                            "train": {"epochs": 1}})
    table = [{"optimizer.lr": lr, "repeat": r, "seed": r, "status": status, "val_accuracy": acc}
             for lr, r, status, acc in ((0.1, 0, "ok", 0.9), (0.1, 1, "ok", 0.8), (1.0, 0, "diverged", np.nan),
                                        (1.0, 1, "ok", 0.95))]
    text = sw.summary(sweep, table)
    assert "1. optimizer.lr=1 " in text and "0.95" in text and "1 diverged" in text
    assert "2. optimizer.lr=0.1  0.85 ± 0.07071" in text


def test_sweep_figures_read_well(tmp_path):
    """sweep.html's heatmap (faceted) and curves: axes named, fonts large enough, a loss over decades on a log axis."""
    from figure_check import assert_figures_read_well, checked_figures
    from trainlab.sweep_report import write_sweep_html

    sweep = sw.parse_sweep({"sweep": {"seeds": [0, 1], "metric": "val_loss", "mode": "min"},
                            "grid": {"optimizer.lr": [1e-3, 1e-2, 0.1, 1.0], "model.batchnorm": [False, True],
                                     "optimizer.name": ["sgd", "adam"]}, "train": {"epochs": 1}})
    table = [{**t.assignment, "repeat": t.repeat, "seed": t.seed, "status": "ok",
              "val_loss": 2.3 * t.assignment["optimizer.lr"] * (1.5 if t.assignment["model.batchnorm"] else 1.0)
              * (1 + 0.1 * t.repeat), "epochs": 1, "seconds": 0.1, "trial_id": f"t{i}", "error": ""}
             for i, t in enumerate(sweep.trials)]
    with checked_figures() as figures:
        write_sweep_html(sweep, table, tmp_path)
    assert set(figures) == {"sweep_heatmap.png", "sweep_optimizer_lr.png"}
    assert_figures_read_well(figures)
