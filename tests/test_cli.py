"""Every CLI error is one line on stderr, ``trainlab: error: ...``, with no traceback and a stated exit status.

Exit status: 2 for a usage or input error (command line, config, data file, checkpoint,
run folder), 1 for a failure at run time (divergence, a download, an internal error),
130 for Ctrl-C. The paths are driven through :func:`trainlab.cli.main` in this process
(fast); the real SIGINT of a ``trainlab train`` process is in ``test_run.py``. Nothing
here touches the network: the MNIST case points ``TRAINLAB_DATA`` at an empty folder and
the mirrors at a ``file://`` URL of a folder that does not exist.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainlab import experiments
from trainlab.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, main
from trainlab.data import download
from trainlab.experiments.common import StudyResult, Verdict
from trainlab.train import Trainer

SMALL = ['data.name="spiral"', "model.hidden=[8]", "train.epochs=1", "train.monitor_every=1"]


def train_args(tmp_path, *extra: str, name: str = "r") -> list[str]:
    sets = [*SMALL, f"run.out={json.dumps(str(tmp_path))}", f"run.name={json.dumps(name)}", *extra]
    return ["train", "--quiet", *[a for s in sets for a in ("--set", s)]]


def one_error_line(capsys, argv, code: int) -> str:
    """Run ``trainlab ARGV``; assert the exit status and one clean error line; return it."""
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab: error: "), err
    assert "Traceback" not in err
    return lines[0].removeprefix("trainlab: error: ")


def csv_file(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD_CSV = "x1,x2,label\n" + "".join(f"{i % 7}.5,{i % 3},{i % 2}\n" for i in range(40))


def test_nan_guard_stop(tmp_path, capsys):
    line = one_error_line(capsys, train_args(tmp_path, "optimizer.name=\"sgd\"", "optimizer.lr=1e9",
                                             "model.batchnorm=false"), EXIT_FAILURE)
    assert line.startswith("training diverged at step ") and "lower the learning rate" in line
    assert f"start again with: trainlab train --config {tmp_path / 'r' / 'config.toml'} --overwrite" in line


def test_ctrl_c(tmp_path, capsys, monkeypatch):
    def interrupted(self, xb, yb):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    line = one_error_line(capsys, train_args(tmp_path), EXIT_INTERRUPTED)
    assert line.startswith("interrupted (Ctrl-C) during epoch 1 of 1; no epoch was checkpointed")


def test_ctrl_c_while_building(tmp_path, capsys, monkeypatch):
    from trainlab import run

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "build", interrupted)
    assert one_error_line(capsys, train_args(tmp_path), EXIT_INTERRUPTED) == "interrupted (Ctrl-C)"
    assert not (tmp_path / "r").exists()


def test_init_kaiming_gets_a_hint(tmp_path, capsys):
    line = one_error_line(capsys, train_args(tmp_path, 'model.init="kaiming"'), EXIT_USAGE)
    assert line.startswith("model.init: ") and line.endswith(
        "(torch's kaiming_normal_ is trainlab's 'he': --set model.init=\"he\")"), line
    assert not (tmp_path / "r").exists()
    assert main(train_args(tmp_path, 'model.init="he"')) == 0


@pytest.mark.parametrize("data_name, words", [
    ("cifar10", ["data.name: unknown dataset 'cifar10'", "valid: digits, mnist"]),
    ("fashion-mnsit", ["did you mean 'fashion_mnist'"]),
])
def test_unknown_dataset(tmp_path, capsys, data_name, words):
    line = one_error_line(capsys, train_args(tmp_path, f"data.name={json.dumps(data_name)}"), EXIT_USAGE)
    assert all(w in line for w in words), line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name, text, words", [
    ("no_label.csv", GOOD_CSV.replace("label", "target"), ["label column 'label'", "'target'",
                                                          "--set data.label_column=NAME"]),
    ("bad_cell.csv", GOOD_CSV.replace("3.5,0,1", "3.5,zero,1", 1), ["line ", "column 'x2'", "'zero'",
                                                                     "--set data.label_column=NAME"]),
    ("ragged.csv", GOOD_CSV + "1.5,2\n", ["line 42", "ragged row", "--set data.label_column=NAME"]),
    ("labels.csv", GOOD_CSV.replace(",1\n", ",cat\n"), ["'cat'", "--set data.label_column=NAME"]),
])
def test_csv_errors_name_the_file_and_row_and_the_label_column_key(tmp_path, capsys, name, text, words):
    path = csv_file(tmp_path, name, text)
    line = one_error_line(capsys, train_args(tmp_path, f"data.name={json.dumps(path)}"), EXIT_USAGE)
    assert line.startswith(path) and all(w in line for w in words), line
    assert not (tmp_path / "r").exists()


def test_a_good_csv_trains(tmp_path, capsys):
    path = csv_file(tmp_path, "good.csv", GOOD_CSV)
    assert main(train_args(tmp_path, f"data.name={json.dumps(path)}")) == 0


@pytest.mark.parametrize("how", ["TRAINLAB_OFFLINE", "unreachable mirror"])
def test_mnist_offline(tmp_path, capsys, monkeypatch, how):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TRAINLAB_DATA", str(cache))
    nowhere = (tmp_path / "no-such-mirror").as_uri() + "/"      # no network either way
    monkeypatch.setitem(download.SOURCES, "mnist", download.SOURCES["mnist"]._replace(mirrors=(nowhere,)))
    if how == "TRAINLAB_OFFLINE":
        monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    line = one_error_line(capsys, train_args(tmp_path, 'data.name="mnist"'), EXIT_FAILURE)
    assert line.startswith("data.name = 'mnist': could not download it (offline?")
    assert f"into {cache / 'mnist'}" in line and "train-images-idx3-ubyte.gz" in line and "TRAINLAB_DATA" in line
    assert not (tmp_path / "r").exists()


def test_depth_with_negative_layers(capsys):
    line = one_error_line(capsys, ["depth", "--layers", "-3"], EXIT_USAGE)
    assert line == "argument --layers: expected an integer >= 1, got -3 (see 'trainlab depth --help')"


def test_resume_from_a_truncated_checkpoint(tmp_path, capsys):
    assert main(train_args(tmp_path)) == 0
    last = tmp_path / "r" / "last.safetensors"
    last.write_bytes(last.read_bytes()[:100])
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    capsys.readouterr()
    line = one_error_line(capsys, ["train", "--resume", str(tmp_path / "r"), "--epochs", "3"], EXIT_USAGE)
    assert line.startswith(f"checkpoint {last}")
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before


def test_non_utf8_config(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_bytes(b"[run]\nname = \"caf\xe9\"\n")
    line = one_error_line(capsys, ["train", "--config", str(path)], EXIT_USAGE)
    assert line == f"config file {path}: not UTF-8 text: byte 0xe9 at line 2, column 12; save the file as UTF-8"


@pytest.mark.parametrize("argv, code, start", [
    (["train", "--config", "{tmp}"], EXIT_USAGE, "config file {tmp}: is a directory"),
    (["train", "--config", "{tmp}/missing.toml"], EXIT_USAGE, "config file {tmp}/missing.toml: no such file"),
    (["train", "--set", "optimizer.betas=[0.9]"], EXIT_USAGE, "optimizer"),
    (["train", "--set", "optimizer.lr=1e9x"], EXIT_USAGE, "optimizer.lr: expected a number, got '1e9x'"),
    (["train", "--set", "schedule.name='cosine'"], EXIT_USAGE, "schedule.T_max: required by the cosine schedule"),
    (["train", "--set", "lr=0.1"], EXIT_USAGE, "--set 'lr=0.1': expected TABLE.KEY=VALUE"),
    (["train", "--epochs", "0"], EXIT_USAGE, "argument --epochs: expected an integer >= 1, got 0"),
    (["train", "--epohcs", "3"], EXIT_USAGE, "unrecognized arguments: --epohcs 3"),
    (["train", "--resume", "{tmp}", "--set", "train.epochs=3"], EXIT_USAGE, "--resume continues a run"),
    (["train", "--resume", "{tmp}", "--overwrite"], EXIT_USAGE, "--resume continues a run; --overwrite"),
    (["train", "--resume", "{tmp}"], EXIT_USAGE, "{tmp}: not a run folder (no config.toml)"),
    (["evaluate", "{tmp}"], EXIT_USAGE, "{tmp}: not a run folder (no config.toml)"),
    (["experiment", "init-dpth"], EXIT_USAGE, "unknown experiment 'init-dpth' (did you mean 'init-depth'?)"),
    (["nope"], EXIT_USAGE, "argument COMMAND: invalid choice: 'nope'"),
    (["demo", "--seed", "x"], EXIT_USAGE, "argument --seed: expected an integer >= 0, got 'x'"),
])
def test_usage_and_input_errors(tmp_path, capsys, argv, code, start):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    line = one_error_line(capsys, argv, code)
    assert line.startswith(start.replace("{tmp}", str(tmp_path))), line


def test_an_existing_run_and_a_resume_that_would_shorten_it(tmp_path, capsys):
    assert main(train_args(tmp_path, "train.epochs=2")) == 0
    folder = tmp_path / "r"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    line = one_error_line(capsys, train_args(tmp_path), EXIT_USAGE)
    assert line.startswith(f"{folder} already holds a run") and "--overwrite" in line and "--name r-2" in line
    line = one_error_line(capsys, ["train", "--resume", str(folder), "--epochs", "1"], EXIT_USAGE)
    assert line.startswith(f"{folder}: the run has trained 2 epochs, so --epochs 1 would train none")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main(train_args(tmp_path, "run.seed=5") + ["--overwrite"]) == 0
    assert "seed = 5" in (folder / "config.toml").read_text()


def test_evaluate_a_run_that_has_no_weights_yet(tmp_path, capsys):
    from trainlab.config import dumps, validate

    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "config.toml").write_text(dumps(validate({"data": {"name": "spiral"}})))
    line = one_error_line(capsys, ["evaluate", str(folder)], EXIT_USAGE)
    assert line == f"{folder}: no model.safetensors (the run stopped before its first checkpoint)"


def test_lr_zero_is_one_warning_line(tmp_path, capsys):
    assert main(train_args(tmp_path, "optimizer.lr=0")) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["trainlab: warning: optimizer.lr = 0: no weight will change (every update is scaled by lr); "
                   "the run only measures the initial model. Set e.g. --set optimizer.lr=0.001"]


def test_lr_1e9_is_diagnosed_as_the_learning_rate(tmp_path, capsys):
    assert main(train_args(tmp_path, "optimizer.lr=1e9", "train.epochs=2")) == 0
    assert capsys.readouterr().err == ""
    diagnosis = json.loads((tmp_path / "r" / "result.json").read_text())["diagnosis"]
    assert diagnosis[0].startswith("learning rate too high: the update ratio reached "), diagnosis
    assert not any("initialise with" in d for d in diagnosis), diagnosis


def test_debug_shows_the_traceback_and_then_the_line(tmp_path, capsys):
    assert main(["--debug", "depth", "--layers", "2", "--width", "2"]) == 0
    capsys.readouterr()
    for argv in (["--debug", "train", "--set", 'data.name="cifar10"'], ["train", "--debug", "--set", 'data.name="x"']):
        assert main(argv) == EXIT_USAGE
        err = capsys.readouterr().err
        assert err.startswith("Traceback") and "ConfigError" in err
        assert err.splitlines()[-1].startswith("trainlab: error: data.name: unknown dataset")


def test_an_internal_error_says_so_and_points_to_debug(tmp_path, capsys, monkeypatch):
    from trainlab import run

    def broken(config):
        raise KeyError("meta")

    monkeypatch.setattr(run, "build", broken)
    line = one_error_line(capsys, train_args(tmp_path), EXIT_FAILURE)
    assert line == "internal error: KeyError: 'meta'; rerun with --debug for the traceback and report it"


def test_experiment_report_shows_the_actual_command_and_the_quick_size(tmp_path, capsys, monkeypatch):
    def study(*, quick, out, seeds=(0, 1, 2), **engine):  # engine: the executor options run_study takes
        return StudyResult(name="init-depth", title="A study", summary="s.", command="trainlab experiment init-depth",
                           verdicts=[Verdict("claim", 1.0, "> 0", True, "")])

    monkeypatch.setattr(experiments, "get", lambda name: study)
    out = tmp_path / "my lab"
    assert main(["experiment", "init-depth", "--quick", "--out", str(out), "--seeds", "3", "4"]) == 0
    saved = StudyResult.load(out / "init-depth.json")
    assert saved.command == f"trainlab experiment init-depth --quick --out '{out}' --seeds 3 4"
    assert saved.numbers["quick"] is True
    html = (out / "report.html").read_text()
    assert f"trainlab experiment init-depth --quick --out &#x27;{out}&#x27; --seeds 3 4" in html
    assert html.count('class="badge quick">quick size</span>') == 2      # the contents and the section
    assert main(["experiment", "init-depth", "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "quick size" not in html and f"trainlab experiment init-depth --out &#x27;{out}&#x27;</code>" in html


def test_every_command_has_debug_and_help(capsys):
    for command in ("demo", "train", "evaluate", "depth", "experiment", "sweep", "report", "bench"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0 and "--debug" in capsys.readouterr().out


def test_the_console_entry_point_exits_with_the_status(tmp_path):
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[1] / "src")
    proc = subprocess.run([sys.executable, "-m", "trainlab.cli", "depth", "--layers", "-3"], capture_output=True,
                          text=True, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == EXIT_USAGE and proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_bench_passes_its_own_options_through(monkeypatch):
    """`trainlab bench --profile 3`: options the CLI does not know go to the benchmark, in order."""
    import trainlab.bench

    seen = []
    monkeypatch.setattr(trainlab.bench, "main", lambda argv: seen.append(argv) or 0)
    assert main(["bench", "--profile", "3", "--threads", "1"]) == 0
    assert main(["bench", "--", "--help"]) == 0
    assert seen == [["--profile", "3", "--threads", "1"], ["--help"]]
