"""A run folder from a config: build data, model, optimizer; train; write the evidence.

``runs/<name>/`` holds

* ``config.toml``: the complete, validated config (rerun with ``trainlab train --config``);
* ``metrics.jsonl``: one JSON line per epoch (train/val loss and accuracy, lr, seconds);
* ``last.safetensors`` / ``best.safetensors``: checkpoints (model, optimizer, epoch, RNG
  states, config), and ``model.safetensors``: the final weights alone, loadable by
  ``torch_model.load_state_dict(safetensors.torch.load_file(...))``;
* ``curves.png``: loss, accuracy and learning rate per epoch, best epoch marked (matplotlib, Agg);
* ``result.json``: the final test loss and accuracy;
* ``tb/``: TensorBoard event files, with ``train.tensorboard = true`` (:mod:`trainlab.tensorboard`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainlab import checkpoint, data, models, nn, optim
from trainlab.checkpoint import atomic_write_bytes
from trainlab.config import SCHEDULES, ConfigError, dumps, load_config
from trainlab.monitor import Monitor
from trainlab.train import Checkpoint, EarlyStopping, History, Trainer

__all__ = ["build", "run", "resume", "evaluate_run", "write_curves", "RunError"]


class RunError(ValueError):
    """A run folder is missing files or does not match its config."""


def build(config: dict[str, Any]) -> tuple[Any, nn.Sequential, optim.Optimizer, Any]:
    """Return ``(splits, model, optimizer, schedule)`` for a validated config."""
    seed = config["run"]["seed"]
    d, m = config["data"], config["model"]
    kwargs = {"flatten": m["kind"] == "mlp"}
    name = d["name"]
    if name.endswith(".csv"):
        kwargs = {"label_column": d["label_column"]}
    elif name.endswith(".npz"):
        kwargs = {}
    splits = data.load(name, rng=np.random.default_rng(seed), **kwargs)
    model_rng = np.random.default_rng([seed, 1])
    x_shape = splits.train.x.shape[1:]
    if m["kind"] == "mlp":
        model = models.mlp(int(np.prod(x_shape)), m["hidden"], splits.num_classes, activation=m["activation"],
                           batchnorm=m["batchnorm"], dropout=m["dropout"], init=m["init"], rng=model_rng)
    else:
        if len(x_shape) != 3:
            raise ConfigError(f"model.kind: 'cnn' needs image data of shape (C, H, W); "
                              f"data {name!r} gives samples of shape {x_shape}")
        model = models.cnn(x_shape, splits.num_classes, channels=m["channels"], activation=m["activation"],
                           batchnorm=m["batchnorm"], dropout=m["dropout"], init=m["init"], rng=model_rng)
    o = dict(config["optimizer"])
    opt_name = o.pop("name")
    if "betas" in o:
        o["betas"] = tuple(o["betas"])
    optimizer = optim.create(opt_name, model.parameters(), **o)
    s = dict(config["schedule"])
    sched_cls = SCHEDULES[s.pop("name")]
    schedule = getattr(optim, sched_cls)(optimizer, **s) if sched_cls else None
    return splits, model, optimizer, schedule


def write_curves(history: History | list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Draw loss, accuracy and learning rate per epoch, best epoch marked, to a PNG (atomic write).

    The figure is :meth:`History.plot`'s (:func:`trainlab.plotting.history_figure`): a log loss
    axis when the loss spans a decade or more, a dashed line at the epoch of the lowest
    validation loss.
    """
    from trainlab.plotting import history_figure, save_png

    rows = history.rows() if isinstance(history, History) else list(history)
    return save_png(history_figure(rows, title=title), path)


def _write_metrics(folder: Path, history: History) -> None:
    text = "".join(json.dumps(row) + "\n" for row in history.rows())
    atomic_write_bytes(folder / "metrics.jsonl", text.encode())


def _train(config: dict[str, Any], folder: Path, *, resume_from: Path | None, quiet: bool,
           log: Callable[[str], None] | None) -> dict[str, Any]:
    splits, model, optimizer, schedule = build(config)
    t = config["train"]
    callbacks = [Checkpoint(folder, every=t["checkpoint_every"], config=config)]
    if t["early_stopping"]:
        callbacks.append(EarlyStopping("val_loss", patience=t["early_stopping"]))
    monitor = Monitor(model, every=t["monitor_every"], histograms=t["tensorboard"]) if t["monitor_every"] else None
    board = None
    if t["tensorboard"]:
        from trainlab.tensorboard import TensorBoard

        board = TensorBoard(folder / "tb", hparams=config)
        callbacks.append(board)
    trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(), schedule=schedule, callbacks=callbacks,
                      monitor=monitor, progress=False if quiet else None, log=None if quiet else log)
    rng = np.random.default_rng([config["run"]["seed"], 2])
    start = 0
    if resume_from is not None:
        start = trainer.resume(resume_from, rng)
    try:
        trainer.fit(splits.train, splits.val, epochs=t["epochs"], batch_size=t["batch_size"], rng=rng,
                    start_epoch=start)
    finally:   # after an exception: flush the event files (a no-op once training ended normally)
        if board is not None:
            board.close("failure")
    _write_metrics(folder, trainer.history)
    checkpoint.save_weights(folder / "model.safetensors", model)
    write_curves(trainer.history, folder / "curves.png", title=config["run"]["name"])
    test = trainer.evaluate(splits.test)
    result = {"test_loss": test["loss"], "test_accuracy": test["accuracy"],
              "epochs_run": len(trainer.history.epoch), "stopped_early": trainer.history.stopped_early,
              "stop_reason": trainer.history.stop_reason,
              "train_seconds": float(sum(trainer.history.seconds)),
              "diagnosis": [str(f) for f in monitor.diagnose()] if monitor is not None else []}
    atomic_write_bytes(folder / "result.json", (json.dumps(result, indent=2) + "\n").encode())
    return result


def run(config: dict[str, Any], *, folder: str | Path | None = None, quiet: bool = False,
        log: Callable[[str], None] | None = print) -> tuple[Path, dict[str, Any]]:
    """Train a validated config into its run folder; returns ``(folder, result)``."""
    folder = Path(folder) if folder is not None else Path(config["run"]["out"]) / config["run"]["name"]
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "config.toml", dumps(config).encode())
    return folder, _train(config, folder, resume_from=None, quiet=quiet, log=log)


def _run_config(folder: Path) -> dict[str, Any]:
    if not (folder / "config.toml").is_file():
        raise RunError(f"{folder}: not a run folder (no config.toml)")
    return load_config(folder / "config.toml")


def resume(folder: str | Path, *, epochs: int | None = None, quiet: bool = False,
           log: Callable[[str], None] | None = print) -> tuple[Path, dict[str, Any]]:
    """Continue a run from ``last.safetensors`` (optionally to a new total of ``epochs``)."""
    folder = Path(folder)
    config = _run_config(folder)
    if epochs is not None:
        config["train"]["epochs"] = int(epochs)
        atomic_write_bytes(folder / "config.toml", dumps(config).encode())
    last = folder / "last.safetensors"
    if not last.is_file():
        raise RunError(f"{folder}: no last.safetensors to resume from")
    return folder, _train(config, folder, resume_from=last, quiet=quiet, log=log)


def evaluate_run(folder: str | Path, *, which: str = "model") -> dict[str, float]:
    """Evaluate a run's saved weights (``model``, ``best`` or ``last``) on its test split."""
    folder = Path(folder)
    config = _run_config(folder)
    files = {"model": "model.safetensors", "best": "best.safetensors", "last": "last.safetensors"}
    if which not in files:
        raise RunError(f"evaluate: which must be one of {', '.join(files)}, got {which!r}")
    splits, model, optimizer, _ = build(config)
    checkpoint.load(folder / files[which], model)
    trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(), progress=False, log=None)
    return {f"{split}_{k}": v for split in ("val", "test")
            for k, v in trainer.evaluate(getattr(splits, split)).items()}
