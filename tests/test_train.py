"""Trainer, callbacks, run folders, resume, and the CLI end to end."""

import json
import math
import tomllib

import numpy as np
import pytest

from trainlab import Trainer, checkpoint, data, models, nn, optim
from trainlab.cli import main
from trainlab.config import load_config, validate
from trainlab.run import resume, run
from trainlab.train import Callback, EarlyStopping, NaNGuard, TrainingDiverged

SMALL = {"run": {"name": "t", "seed": 3}, "data": {"name": "digits"},
         "model": {"kind": "mlp", "hidden": [32], "batchnorm": True, "dropout": 0.1},
         "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
         "schedule": {"name": "step", "step_size": 1, "gamma": 0.5},
         "train": {"epochs": 2, "batch_size": 32}}


def small_config(tmp_path, **tables):
    cfg = {k: dict(v) for k, v in SMALL.items()}
    cfg["run"]["out"] = str(tmp_path)
    for k, v in tables.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    return validate(cfg)


def test_end_to_end_run_folder_parses_and_is_finite(tmp_path):
    from trainlab.config import dumps

    toml_file = tmp_path / "small.toml"
    toml_file.write_text(dumps(small_config(tmp_path)))
    folder, result = run(load_config(toml_file), quiet=True)
    assert folder == tmp_path / "t"
    names = {p.name for p in folder.iterdir()}
    assert {"config.toml", "metrics.jsonl", "last.safetensors", "best.safetensors", "model.safetensors",
            "curves.png", "result.json"} <= names
    config = tomllib.loads((folder / "config.toml").read_text())
    assert validate(config) == small_config(tmp_path)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                                  "lr", "seconds"))
    assert rows[1]["lr"] == pytest.approx(rows[0]["lr"] / 2)
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0.5 < result["test_accuracy"] <= 1.0
    assert json.loads((folder / "result.json").read_text())["test_accuracy"] == result["test_accuracy"]


def test_resume_from_epoch_one_equals_uninterrupted_run(tmp_path):
    full_folder, full = run(small_config(tmp_path / "a"), quiet=True)
    part_folder, _ = run(small_config(tmp_path / "b", train={"epochs": 1}), quiet=True)
    _, resumed = resume(part_folder, epochs=2, quiet=True)
    a = checkpoint.torch_state_dict(full_folder / "model.safetensors")
    b = checkpoint.torch_state_dict(part_folder / "model.safetensors")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert resumed["test_loss"] == full["test_loss"]
    rows_a = [json.loads(x) for x in (full_folder / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (part_folder / "metrics.jsonl").read_text().splitlines()]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(rows_a) == drop(rows_b)


def test_cli_train_with_overrides_evaluate_and_resume(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[run]\nname = "cli"\nout = "{tmp_path}"\n[model]\nhidden = [16]\n[train]\nepochs = 1\n')
    assert main(["train", "--config", str(cfg), "--set", "optimizer.lr=0.01", "--set", "train.batch_size=128",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and str(tmp_path / "cli") in out
    saved = tomllib.loads((tmp_path / "cli" / "config.toml").read_text())
    assert saved["optimizer"]["lr"] == 0.01 and saved["train"]["batch_size"] == 128
    assert main(["evaluate", str(tmp_path / "cli")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"val_loss", "val_accuracy", "test_loss", "test_accuracy"}
    assert main(["train", "--resume", str(tmp_path / "cli"), "--epochs", "2", "--quiet"]) == 0
    rows = (tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2


@pytest.mark.parametrize("override,message", [
    ("optimizer.lrr=0.1", "optimizer.lrr: unknown key for Adam (did you mean 'lr'?)"),
    ("model.hiden=[3]", "model.hiden: unknown key (did you mean 'hidden'?)"),
    ("train.epochs=-1", "train.epochs: -1 is out of range; expected an integer >= 1"),
    ("train.epochs=\"ten\"", "train.epochs: expected an integer, got 'ten'"),
    ("model.activation=\"relux\"", "model.activation: 'relux' is not one of"),
    ("optimizer.name=\"adamm\"", "optimizer.name: unknown optimizer 'adamm' (did you mean 'adam'?"),
    ("optimizer.momentum=1.5", "momentum"),
    ("trian.epochs=3", "trian: unknown table (did you mean 'train'?)"),
    ("schedule.name=\"cosin\"", "did you mean 'cosine'"),
])
def test_config_errors_name_the_key(tmp_path, capsys, override, message):
    code = main(["train", "--set", override, "--set", f'run.out="{tmp_path}"', "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


def test_config_round_trip_and_defaults(tmp_path):
    cfg = load_config(None, ["optimizer.name=\"sgd\"", "optimizer.nesterov=true", "optimizer.momentum=0.9"])
    assert cfg["optimizer"] == {"name": "sgd", "lr": 1e-3, "nesterov": True, "momentum": 0.9}
    from trainlab.config import dumps
    path = tmp_path / "x.toml"
    path.write_text(dumps(cfg))
    assert load_config(path) == cfg


def test_help_on_every_command(capsys):
    for cmd in (["--help"], ["demo", "--help"], ["train", "--help"], ["evaluate", "--help"], ["depth", "--help"],
                ["experiment", "--help"], ["report", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(cmd)
        assert info.value.code == 0
        assert "example" in capsys.readouterr().out


def _digits_model(seed=0, lr=0.1):
    rng = np.random.default_rng(seed)
    model = models.mlp(64, [32], 10, batchnorm=True, rng=rng)
    return model, optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def test_trainer_fit_evaluate_and_history():
    splits = data.load("digits")
    model, opt = _digits_model()
    seen = []

    class Spy(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append((epoch, sorted(logs)))

    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), callbacks=[Spy()], progress=False, log=None)
    history = trainer.fit(splits.train, splits.val, epochs=3, batch_size=64, rng=np.random.default_rng(0))
    assert history.epoch == [1, 2, 3] and len(history.rows()) == 3
    assert history.train_loss[-1] < history.train_loss[0]
    assert seen[0][0] == 0 and "val_accuracy" in seen[0][1]
    result = trainer.evaluate(splits.test)
    assert result["accuracy"] > 0.85 and model.training  # mode restored after evaluation


def test_early_stopping_stops_and_says_why():
    splits = data.load("digits")
    model, opt = _digits_model(lr=0.0)  # no progress at all
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), callbacks=[EarlyStopping("val_loss", patience=2)],
                      progress=False, log=None)
    history = trainer.fit(splits.train, splits.val, epochs=10, batch_size=256, rng=np.random.default_rng(0))
    assert history.stopped_early and len(history.epoch) == 3 and "val_loss did not improve" in history.stop_reason


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")   # inf - inf, on purpose
def test_nan_guard_names_step_and_first_bad_layer():
    splits = data.load("digits")
    model, opt = _digits_model()

    class Poison(Callback):
        def on_step_end(self, trainer, step, loss):
            if step == 4:
                model[0].weight.data[0, 0] = np.inf

    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), callbacks=[Poison()], progress=False, log=None)
    with pytest.raises(TrainingDiverged, match=r"step 5: gradient of '0.weight' is not finite.*layer: 0"):
        trainer.fit(splits.train, None, epochs=1, batch_size=32, rng=np.random.default_rng(0))
    assert isinstance(trainer.nan_guard, NaNGuard)


def test_fit_validates_arguments():
    model, opt = _digits_model()
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), progress=False, log=None)
    x = np.zeros((10, 64), np.float32)
    with pytest.raises(ValueError, match="x has 10 samples but y has 9"):
        trainer.fit((x, np.zeros(9, np.int64)), epochs=1, batch_size=4, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        trainer.fit((x, np.zeros(10, np.int64)), epochs=1, batch_size=4, rng=None)


def test_trainer_prints_monitor_findings_at_the_end():
    from trainlab import Monitor

    splits = data.load("digits")
    rng = np.random.default_rng(0)
    model = models.mlp(64, [64] * 8, 10, activation="tanh", init="small_random", rng=rng)
    lines = []
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.01), nn.CrossEntropyLoss(),
                      monitor=Monitor(model, every=5), progress=False, log=lines.append)
    trainer.fit(splits.train, splits.val, epochs=1, batch_size=64, rng=rng)
    assert lines[-1].startswith("diagnosis:") and "vanishing activations" in lines[-1] and "xavier" in lines[-1]


def test_nan_guard_message_carries_the_diagnosis():
    from trainlab import Monitor

    splits = data.load("digits")
    model, opt = _digits_model()

    class Poison(Callback):
        def on_step_end(self, trainer, step, loss):
            if step == 2:
                model[0].weight.data[0, 0] = np.nan

    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), callbacks=[Poison()], monitor=Monitor(model, every=1),
                      progress=False, log=None)
    with pytest.raises(TrainingDiverged, match=r"(?s)step 3.*non-finite"):
        trainer.fit(splits.train, None, epochs=1, batch_size=32, rng=np.random.default_rng(0))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_example_configs_train(tmp_path, name):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / f"{name}.toml"
    cfg = load_config(example, ["train.epochs=1", f'run.out="{tmp_path}"'])
    folder, result = run(cfg, quiet=True)
    assert result["test_accuracy"] > 0.5 and (folder / "model.safetensors").is_file()


def test_checkpoint_and_early_stopping_state_survive_a_resume(tmp_path):
    """A resumed run keeps the best value seen so far: a worse epoch never overwrites best.safetensors."""
    from trainlab.train import Checkpoint
    splits = data.load("digits")
    model, opt = _digits_model()
    ckpt, stop = Checkpoint(tmp_path), EarlyStopping("val_loss", patience=5)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), callbacks=[ckpt, stop], progress=False, log=None)
    trainer.fit(splits.train, splits.val, epochs=2, batch_size=64, rng=np.random.default_rng(0))
    best = min(trainer.history.val_loss)
    assert ckpt.best == best
    # the last checkpoint already carries the best value of its own epoch
    meta = checkpoint.load(tmp_path / "last.safetensors", *_digits_model())
    assert trainer.callbacks == [stop, ckpt]          # checkpoints run last
    assert meta["callbacks"]["1:Checkpoint"] == {"best": best}
    assert meta["callbacks"]["0:EarlyStopping"] == {"best": best, "wait": stop.wait}

    model2, opt2 = _digits_model()
    fresh_ckpt, fresh_stop = Checkpoint(tmp_path), EarlyStopping("val_loss", patience=5)
    resumed = Trainer(model2, opt2, nn.CrossEntropyLoss(), callbacks=[fresh_ckpt, fresh_stop], progress=False,
                      log=None)
    assert resumed.resume(tmp_path / "last.safetensors", np.random.default_rng(1)) == 2
    assert fresh_ckpt.best == best and (fresh_stop.best, fresh_stop.wait) == (best, stop.wait)

    saved = []
    resumed.save_checkpoint = lambda path, **kw: saved.append(path.name)
    fresh_ckpt.on_epoch_end(resumed, 2, {"val_loss": best + 1.0})       # worse: only last is written
    assert saved == ["last.safetensors"]
    fresh_ckpt.on_epoch_end(resumed, 3, {"val_loss": best / 2})         # better: last, then best
    assert saved == ["last.safetensors", "last.safetensors", "best.safetensors"] and fresh_ckpt.best == best / 2


def test_callback_state_of_a_fresh_callback_is_infinite_best():
    from trainlab.train import Checkpoint
    cb = Checkpoint("unused", monitor="val_accuracy")
    assert cb.state_dict() == {"best": None}
    cb.load_state_dict({"best": None})
    assert cb.best == -math.inf
    cb.load_state_dict({"best": 0.5})
    assert cb.best == 0.5
