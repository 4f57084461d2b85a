"""A run folder from a config: build data, model, optimizer; train; write the evidence.

``runs/<name>/`` holds

* ``config.toml``: the complete, validated config (rerun with ``trainlab train --config``);
  ``--resume --epochs N`` updates its ``train.epochs`` and keeps the config as it first ran
  in ``config.original.toml`` (written once, never replaced);
* ``metrics.jsonl``: one JSON line per epoch (train/val loss and accuracy, lr, seconds),
  appended and fsynced as each epoch ends (see :class:`trainlab.train.MetricsLog`);
* ``last.safetensors`` / ``best.safetensors``: checkpoints (model, optimizer, epoch, RNG
  states, config), and ``model.safetensors``: the weights alone, loadable by
  ``torch_model.load_state_dict(safetensors.torch.load_file(...))``;
* ``curves.png``: loss, accuracy and learning rate per epoch, best epoch marked (matplotlib, Agg);
* ``result.json``: ``status`` (``"completed"``, ``"stopped early"``, ``"interrupted"`` or
  ``"diverged"``), the epochs run, the reason a run stopped, the monitor's diagnosis, and
  the final test loss and accuracy (``null`` when the run did not finish);
* ``tb/``: TensorBoard event files, with ``train.tensorboard = true`` (:mod:`trainlab.tensorboard`).

``model.safetensors`` and ``curves.png`` are written at every checkpoint
(``train.checkpoint_every``) as well as at the end, so a folder is usable at any moment.

Nothing is lost, nothing is clobbered:

* Nothing is written to a run folder before the config, the data, the model, the optimizer
  and the schedule have been built (and, for :func:`resume`, the checkpoint loaded): a run
  that fails to start leaves no folder behind and no earlier file changed.
* An existing, non-empty folder is never replaced silently. ``if_exists="fail"`` (the
  default, ``trainlab train``) refuses with :class:`RunError`, naming a free name;
  ``"replace"`` (``--overwrite``) deletes the earlier run's files once the new run has been
  built, and only in a folder that holds a run (``config.toml``); ``"new"`` (``trainlab
  demo``) picks the first free name ``NAME-2``, ``NAME-3``, ...
* Ctrl-C and divergence (the NaN guard) end the run with :class:`RunInterrupted` (a
  ``KeyboardInterrupt``) or :class:`RunDiverged` (a ``TrainingDiverged``) after the record
  is complete up to that point: ``metrics.jsonl`` for every finished epoch, the checkpoint
  and ``model.safetensors`` of the last checkpoint epoch, ``curves.png`` and ``result.json``.
  ``trainlab train --resume`` continues from there, bit for bit.
* :func:`resume` refuses an ``epochs`` total below the epochs already trained (it would
  train nothing and shorten the record).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainlab import checkpoint, data, models, nn, optim
from trainlab.checkpoint import atomic_write_bytes
from trainlab.config import ConfigError, build_optimizer, build_schedule, dumps, load_config, validate, warn_about
from trainlab.monitor import Monitor
from trainlab.train import Callback, Checkpoint, EarlyStopping, History, MetricsLog, Trainer, TrainingDiverged

__all__ = ["build", "run", "resume", "evaluate_run", "write_curves", "RunError", "RunInterrupted", "RunDiverged",
           "IF_EXISTS"]

IF_EXISTS = ("fail", "replace", "new")   #: what :func:`run` does with an existing, non-empty run folder


class RunError(ValueError):
    """A run folder is missing files, does not match its config, or may not be written."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C ended a run; its folder holds the complete record of the epochs before (``.folder``)."""

    def __init__(self, message: str, folder: Path, epochs_done: int) -> None:
        super().__init__(message)
        self.folder, self.epochs_done = folder, epochs_done


class RunDiverged(TrainingDiverged):
    """The NaN guard ended a run; its folder holds the complete record of the epochs before (``.folder``)."""

    def __init__(self, message: str, folder: Path, epochs_done: int) -> None:
        super().__init__(message)
        self.folder, self.epochs_done = folder, epochs_done


Built = tuple[Any, nn.Sequential, optim.Optimizer, Any]

#: the registered datasets that are images, loaded as (N, 1, H, W) for ``model.kind = "cnn"``
IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist")


def _load_data(config: dict[str, Any]) -> Any:
    d, m = config["data"], config["model"]
    name = d["name"]
    is_csv = name.lower().endswith(".csv")
    kwargs: dict[str, Any] = {}
    if is_csv:
        kwargs = {"label_column": d["label_column"]}
    elif m["kind"] == "cnn" and name.strip().lower().replace("-", "_") in IMAGE_DATASETS:
        kwargs = {"flatten": False}     # (N, 1, H, W); the other sets are vectors, refused for a CNN by build
    try:
        return data.load(name, rng=np.random.default_rng(config["run"]["seed"]), **kwargs)
    except data.DownloadError as exc:
        from trainlab.data import download

        key = name.strip().lower().replace("-", "_")
        source = download.SOURCES.get(key)
        if source is None:
            raise
        files = ", ".join(r.filename for r in source.files.values())
        raise data.DownloadError(
            f"data.name = {name!r}: could not download it (offline? --debug shows each mirror's answer); "
            f"put {files} (from {source.mirrors[0]}) into {download.cache_dir() / key}, or set "
            f"${download.ENV_VAR} to a folder that holds {key}/ with them") from exc
    except ValueError as exc:
        if is_csv and "label_column" not in str(exc):
            exc.add_note(f"the label column is data.label_column = {d['label_column']!r}; "
                         "choose another with --set data.label_column=NAME")
        raise


def build(config: dict[str, Any]) -> Built:
    """Return ``(splits, model, optimizer, schedule)`` for a validated config.

    The optimizer and schedule come from :func:`trainlab.config.build_optimizer` and
    :func:`~trainlab.config.build_schedule`, the functions :func:`~trainlab.config.validate`
    checks a config with. Errors: :class:`ConfigError` naming the key, or the data module's
    error naming the file and row (for a CSV with a note on ``data.label_column``).
    """
    seed = config["run"]["seed"]
    m = config["model"]
    splits = _load_data(config)
    model_rng = np.random.default_rng([seed, 1])
    x_shape = splits.train.x.shape[1:]
    try:
        if m["kind"] == "mlp":
            model = models.mlp(int(np.prod(x_shape)), m["hidden"], splits.num_classes, activation=m["activation"],
                               batchnorm=m["batchnorm"], dropout=m["dropout"], init=m["init"], rng=model_rng)
        else:
            if len(x_shape) != 3:
                raise ConfigError(f"model.kind: 'cnn' needs image data of shape (C, H, W); "
                                  f"data {config['data']['name']!r} gives samples of shape {x_shape}")
            model = models.cnn(x_shape, splits.num_classes, channels=m["channels"], activation=m["activation"],
                               batchnorm=m["batchnorm"], dropout=m["dropout"], init=m["init"], rng=model_rng)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        argument = getattr(exc, "argument", None)
        key = f"model.{argument}" if isinstance(argument, str) and argument in m else "model"
        raise ConfigError(f"{key}: {exc}") from None
    optimizer = build_optimizer(config["optimizer"], model.parameters())
    schedule = build_schedule(config["schedule"], optimizer)
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


class _Snapshot(Callback):
    """``model.safetensors`` at every checkpoint epoch (``every``), before the checkpoint, and
    ``curves.png`` with it as often as :data:`CURVES_SHARE` allows.

    Drawing the figure costs about 0.3 s, far more than an epoch of a small model (the demo's
    40 epochs train in 1.5 s; redrawn every epoch, the figure took 12 of its 16 s). So the
    figure is redrawn at a checkpoint epoch only when the time since the last drawing is at
    least its cost divided by ``CURVES_SHARE``: drawing takes at most that share of the run.
    The end of every run (completed, stopped early, interrupted, diverged) draws it again.
    """

    CURVES_SHARE = 0.1

    def __init__(self, folder: Path, every: int, title: str) -> None:
        self.folder, self.every, self.title = folder, every, title
        self._drawn_at: float | None = None  # perf_counter at the end of the last drawing
        self._cost = 0.0                     # seconds the last drawing took

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if (epoch + 1) % self.every == 0:
            checkpoint.save_weights(self.folder / "model.safetensors", trainer.model)
            now = time.perf_counter()
            if self._drawn_at is None or now - self._drawn_at >= self._cost / self.CURVES_SHARE:
                write_curves(trainer.history, self.folder / "curves.png", title=self.title)
                self._drawn_at = time.perf_counter()
                self._cost = self._drawn_at - now


class _Training:
    """A built run, its trainer and callbacks: nothing is written until :meth:`fit`."""

    def __init__(self, config: dict[str, Any], folder: Path, built: Built, *, quiet: bool,
                 log: Callable[[str], None] | None) -> None:
        self.config, self.folder, self.log = config, folder, log
        self.splits, model, optimizer, schedule = built
        t = config["train"]
        callbacks: list[Callback] = []
        if t["early_stopping"]:
            callbacks.append(EarlyStopping("val_loss", patience=t["early_stopping"]))
        self.checkpoints = Checkpoint(folder, every=t["checkpoint_every"], config=config)
        callbacks += [MetricsLog(folder / "metrics.jsonl"),
                      _Snapshot(folder, t["checkpoint_every"], config["run"]["name"]), self.checkpoints]
        self.monitor = (Monitor(model, every=t["monitor_every"], histograms=t["tensorboard"])
                        if t["monitor_every"] else None)
        self.board = None
        if t["tensorboard"]:
            from trainlab.tensorboard import TensorBoard

            self.board = TensorBoard(folder / "tb", hparams=config)    # opens its files when training begins
            callbacks.insert(-1, self.board)
        self.trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(), schedule=schedule, callbacks=callbacks,
                               monitor=self.monitor, progress=False if quiet else None, log=None if quiet else log)
        self.rng = np.random.default_rng([config["run"]["seed"], 2])
        self.start = 0

    def restore(self, path: Path) -> int:
        """Load the checkpoint (nothing changes if it fails); returns its epoch."""
        self.start = self.trainer.resume(path, self.rng)
        return self.start

    def _diagnosis(self) -> list[str]:
        return [str(f) for f in self.monitor.diagnose()] if self.monitor is not None else []

    def _result(self, status: str, reason: str, test: dict[str, float] | None) -> dict[str, Any]:
        h = self.trainer.history
        result = {"status": status, "test_loss": test["loss"] if test else None,
                  "test_accuracy": test["accuracy"] if test else None, "epochs_run": len(h.epoch),
                  "stopped_early": h.stopped_early, "stop_reason": reason,
                  "train_seconds": float(sum(h.seconds)), "diagnosis": self._diagnosis()}
        if self.start:
            result["resumed_from_epoch"] = self.start
        atomic_write_bytes(self.folder / "result.json", (json.dumps(result, indent=2) + "\n").encode())
        return result

    def _stopped(self, status: str) -> tuple[int, str]:
        """Complete the record of a run that did not finish; returns (epochs done, where its state is)."""
        h = self.trainer.history
        done = len(h.epoch)
        if done:
            write_curves(h, self.folder / "curves.png", title=self.config["run"]["name"])
        self._result(status, h.stop_reason, None)
        saved = max(self.start, self.checkpoints.saved_epoch)
        if saved:
            where = (f"{self.folder} holds the record of epochs 1-{done} and the checkpoint of epoch {saved}; "
                     f"continue with: trainlab train --resume {self.folder}")
        else:
            where = (f"no epoch was checkpointed, so {self.folder} holds no weights; start again with: "
                     f"trainlab train --config {self.folder / 'config.toml'} --overwrite")
        return done, where

    def fit(self) -> dict[str, Any]:
        t, trainer = self.config["train"], self.trainer
        try:
            trainer.fit(self.splits.train, self.splits.val, epochs=t["epochs"], batch_size=t["batch_size"],
                        rng=self.rng, start_epoch=self.start)
            checkpoint.save_weights(self.folder / "model.safetensors", trainer.model)
            write_curves(trainer.history, self.folder / "curves.png", title=self.config["run"]["name"])
            test = trainer.evaluate(self.splits.test)
            h = trainer.history
            return self._result("stopped early" if h.stopped_early else "completed", h.stop_reason, test)
        except TrainingDiverged as exc:
            done, where = self._stopped("diverged")
            first, *findings = str(exc).splitlines()
            diagnosis = "".join(f"; {f.strip().removeprefix('- ')}" for f in findings)
            raise RunDiverged(f"{first} (epoch {trainer.epoch_in_progress + 1}){diagnosis}; {where}",
                              self.folder, done) from None
        except KeyboardInterrupt:
            done, where = self._stopped("interrupted")
            epoch = min(trainer.epoch_in_progress + 1, t["epochs"])
            raise RunInterrupted(f"interrupted (Ctrl-C) during epoch {epoch} of {t['epochs']}; {where}",
                                 self.folder, done) from None
        finally:   # after an exception: flush the event files (a no-op once training ended normally)
            if self.board is not None:
                self.board.close("failure")


def _free_name(folder: Path) -> Path:
    for k in range(2, 10_000):
        candidate = folder.with_name(f"{folder.name}-{k}")
        if not candidate.exists():
            return candidate
    raise RunError(f"{folder}: no free name {folder.name}-2 ... {folder.name}-9999")


def _claim(folder: Path, if_exists: str) -> Path:
    """The folder a new run may write to, by ``if_exists``; RunError when it may not."""
    if if_exists not in IF_EXISTS:
        raise ValueError(f"run: if_exists must be one of {', '.join(IF_EXISTS)}, got {if_exists!r}")
    if not folder.exists():
        return folder
    if not folder.is_dir():
        raise RunError(f"{folder}: exists and is not a folder; choose another run.name")
    held = sorted(p.name for p in folder.iterdir())
    if not held:
        return folder
    if if_exists == "new":
        return _free_name(folder)
    if if_exists == "replace":
        if not (folder / "config.toml").is_file():
            raise RunError(f"{folder}: not a run folder (no config.toml), so --overwrite will not delete its "
                           f"{len(held)} files; choose another run.name")
        return folder
    listed = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
    what = "already holds a run" if (folder / "config.toml").is_file() else "is not empty"
    raise RunError(f"{folder} {what} ({listed}); to keep it, choose another name "
                   f"(--name {_free_name(folder).name}); to replace it, add --overwrite; to continue it, use "
                   f"--resume {folder}")


def _clear(folder: Path) -> None:
    """Delete a run folder's contents, ``config.toml`` last: a folder cleared halfway is still a run folder."""
    for child in sorted(folder.iterdir(), key=lambda p: p.name == "config.toml"):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def run(config: dict[str, Any], *, folder: str | Path | None = None, if_exists: str = "fail", quiet: bool = False,
        log: Callable[[str], None] | None = print) -> tuple[Path, dict[str, Any]]:
    """Train a validated config into its run folder (``run.out/run.name``); returns ``(folder, result)``.

    Args:
        config: a config from :func:`trainlab.config.load_config` or ``validate``.
        folder: the run folder (default ``run.out / run.name``).
        if_exists: an existing, non-empty folder: ``"fail"`` (RunError), ``"replace"`` (delete
            the earlier run once this one is built) or ``"new"`` (the first free ``NAME-k``).
        quiet: no progress bars or per-epoch lines. log: where lines go (default print).

    Raises:
        RunError: the folder may not be written. ConfigError / the data module's errors:
            the run could not be built (nothing was written). RunInterrupted, RunDiverged:
            the run stopped; its folder holds the record up to then.
    """
    target = _claim(Path(folder) if folder is not None else Path(config["run"]["out"]) / config["run"]["name"],
                    if_exists)
    if target.name != config["run"]["name"] and folder is None:
        config = {**config, "run": {**config["run"], "name": target.name}}
    warn_about(config)
    built = build(config)
    text = dumps(config).encode()
    training = _Training(config, target, built, quiet=quiet, log=log)
    if if_exists == "replace" and target.is_dir():
        _clear(target)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target / "config.toml", text)
    return target, training.fit()


def _run_config(folder: Path) -> dict[str, Any]:
    if not (folder / "config.toml").is_file():
        raise RunError(f"{folder}: not a run folder (no config.toml)")
    return load_config(folder / "config.toml")


def resume(folder: str | Path, *, epochs: int | None = None, quiet: bool = False,
           log: Callable[[str], None] | None = print) -> tuple[Path, dict[str, Any]]:
    """Continue a run from ``last.safetensors`` (optionally to a new total of ``epochs``).

    The checkpoint is loaded before anything is written. A new total goes into
    ``config.toml``; the config as the run first ran is kept in ``config.original.toml``.

    Raises:
        RunError: no run or no checkpoint in ``folder``, or ``epochs`` below the epochs
            already trained. CheckpointError: the checkpoint does not load (nothing changed).
    """
    folder = Path(folder)
    config = _run_config(folder)
    last = folder / "last.safetensors"
    if not last.is_file():
        raise RunError(f"{folder}: no last.safetensors to resume from (the run stopped before its first "
                       f"checkpoint); start it again with: trainlab train --config {folder / 'config.toml'} "
                       "--overwrite")
    new = config
    if epochs is not None:
        new = validate({**config, "train": {**config["train"], "epochs": epochs}})
    training = _Training(new, folder, build(new), quiet=quiet, log=log)
    start = training.restore(last)
    total = new["train"]["epochs"]
    if total < start:
        raise RunError(f"{folder}: the run has trained {start} epochs, so --epochs {total} would train none and "
                       f"shorten its record; give a total above {start} (e.g. --epochs {start + max(start, 1)})")
    if new != config:
        original = folder / "config.original.toml"
        if not original.exists():
            atomic_write_bytes(original, (folder / "config.toml").read_bytes())
        atomic_write_bytes(folder / "config.toml", dumps(new).encode())
    if log is not None and not quiet:
        log(f"resuming {folder} at epoch {start} of {total}" + (" (nothing left to train)" if start == total else ""))
    return folder, training.fit()


def evaluate_run(folder: str | Path, *, which: str = "model") -> dict[str, float]:
    """Evaluate a run's saved weights (``model``, ``best`` or ``last``) on its val and test splits."""
    folder = Path(folder)
    files = {"model": "model.safetensors", "best": "best.safetensors", "last": "last.safetensors"}
    if which not in files:
        raise RunError(f"evaluate: which must be one of {', '.join(files)}, got {which!r}")
    config = _run_config(folder)
    path = folder / files[which]
    if not path.is_file():
        raise RunError(f"{folder}: no {files[which]} (the run stopped before its first checkpoint)")
    splits, model, optimizer, _ = build(config)
    checkpoint.load(path, model)
    trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(), progress=False, log=None)
    return {f"{split}_{k}": v for split in ("val", "test")
            for k, v in trainer.evaluate(getattr(splits, split)).items()}
