"""The training loop: :class:`Trainer`, :class:`History` and callbacks.

One step is::

    logits = model(xb)                     # forward, caches for backward
    loss = loss_fn(logits, yb)
    model.backward(loss_fn.backward(), input_grad=False)   # into Parameter.grad; xb is data
    optimizer.step(); optimizer.zero_grad()

Callbacks see the trainer at fixed points (``on_train_begin``, ``on_epoch_begin``,
``on_step_end``, ``on_epoch_end``, ``on_train_end``) and may set
``trainer.stop_training = True``. Shipped callbacks: :class:`EarlyStopping`,
:class:`Checkpoint` (every N epochs and at the best validation value),
:class:`MetricsLog` (one fsynced JSON line per epoch), :class:`LRSchedule` and
:class:`NaNGuard`.

When a fit ends by Ctrl-C (``KeyboardInterrupt``) or by :class:`TrainingDiverged`, the
trainer records why in ``history.stop_reason`` (``history.epoch`` holds the completed
epochs only), closes its progress bar and re-raises; what the callbacks wrote for the
completed epochs (metrics lines, checkpoints) stays as it is.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainlab import checkpoint
from trainlab.data import Batches
from trainlab.nn import Sequential

__all__ = ["Trainer", "History", "Callback", "EarlyStopping", "Checkpoint", "MetricsLog", "LRSchedule",
           "NaNGuard", "TrainingDiverged", "append_line"]


class TrainingDiverged(RuntimeError):
    """Raised by :class:`NaNGuard` when the loss or a gradient stops being finite."""


@dataclass
class History:
    """Per-epoch metrics of a :meth:`Trainer.fit` run (lists, one entry per epoch)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    stopped_early: bool = False
    stop_reason: str = ""

    def append(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            getattr(self, key).append(value)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per epoch (the lines of ``metrics.jsonl``)."""
        keys = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
        return [{k: getattr(self, k)[i] for k in keys if len(getattr(self, k)) > i}
                for i in range(len(self.epoch))]

    def plot(self, title: str = "") -> Any:
        """Loss, accuracy and learning rate per epoch with the best epoch marked: a matplotlib Figure.

        The figure of ``curves.png`` (see :func:`trainlab.plotting.history_figure`); a notebook
        shows it when it is a cell's value, ``fig.savefig(path)`` writes it.
        """
        from trainlab.plotting import history_figure

        return history_figure(self.rows(), title=title)


def _xy(data: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(data, "x") and hasattr(data, "y"):
        return np.asarray(data.x), np.asarray(data.y)
    try:
        x, y = data
    except (TypeError, ValueError):
        raise TypeError(f"{where}: expected an (x, y) pair or a dataset with .x and .y, "
                        f"got {type(data).__name__}") from None
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"{where}: x has {len(x)} samples but y has {len(y)}")
    return x, y


class Callback:
    """Base class: override any of the hooks; each receives the :class:`Trainer`.

    A callback that carries state across epochs (a best value, a patience count)
    returns it from :meth:`state_dict` as JSON-able values; checkpoints store it and
    :meth:`Trainer.resume` hands it back to :meth:`load_state_dict`, so a resumed run
    continues exactly where the interrupted one was.
    """

    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None: ...
    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked_state(owner: str, state: Any, keys: set[str]) -> dict[str, Any]:
    """``state`` if it is a dict with no keys but ``keys``, else ``ValueError`` naming ``owner``."""
    if not isinstance(state, dict):
        raise ValueError(f"{owner}.load_state_dict: expected a dict, got {type(state).__name__}")
    unknown = sorted(map(str, set(state) - keys))
    if unknown:
        raise ValueError(f"{owner}.load_state_dict: unexpected key(s) {unknown}; expected {sorted(keys)}")
    return state


def _best_from(owner: str, state: dict[str, Any], mode: str) -> float:
    """The saved ``best`` (None stands for the infinity a fresh callback starts from)."""
    best = state.get("best")
    if best is None:
        return math.inf if mode == "min" else -math.inf
    if not _is_real(best):
        raise ValueError(f"{owner}.load_state_dict: 'best' must be a number or None, got {best!r}")
    return float(best)


def _better(mode: str, value: float, best: float, min_delta: float) -> bool:
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _mode_for(monitor: str, mode: str) -> str:
    if mode == "auto":
        return "max" if "accuracy" in monitor else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: a key of the epoch logs (``"val_loss"``, ``"val_accuracy"``, ``"train_loss"``...).
        patience: epochs without improvement before stopping (>= 1).
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto") -> None:
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be >= 1, got {patience}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.mode = _mode_for(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping: monitored value {self.monitor!r} is not logged; "
                           f"available: {', '.join(logs)}")
        value = logs[self.monitor]
        if _better(self.mode, value, self.best, self.min_delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.stop(f"early stopping: {self.monitor} did not improve for {self.patience} epochs "
                         f"(best {self.best:.4g})")

    def state_dict(self) -> dict[str, Any]:
        return {"best": _finite_or_none(self.best), "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``best`` and ``wait``; ``ValueError`` (nothing changed) for anything else."""
        state = _checked_state("EarlyStopping", state, {"best", "wait"})
        best = _best_from("EarlyStopping", state, self.mode)
        wait = state.get("wait", 0)
        if not isinstance(wait, int) or isinstance(wait, bool) or wait < 0:
            raise ValueError(f"EarlyStopping.load_state_dict: 'wait' must be an int >= 0, got {wait!r}")
        self.best, self.wait = best, wait


class Checkpoint(Callback):
    """Save ``last.safetensors`` every ``every`` epochs and ``best.safetensors`` at the best ``monitor``.

    Each file holds the model, the optimizer, the epoch, the RNG states and ``config``,
    written atomically (see :mod:`trainlab.checkpoint`).
    """

    def __init__(self, folder: str | Path, *, every: int = 1, monitor: str | None = "val_loss",
                 mode: str = "auto", config: dict[str, Any] | None = None) -> None:
        if every < 1:
            raise ValueError(f"Checkpoint: every must be >= 1, got {every}")
        self.folder, self.every, self.monitor = Path(folder), int(every), monitor
        self.mode = _mode_for(monitor or "loss", mode)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.config = config or {}
        self.saved_epoch = 0        #: the epochs done at the last ``last.safetensors`` this callback wrote

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        improved = bool(self.monitor and self.monitor in logs
                        and _better(self.mode, logs[self.monitor], self.best, 0.0))
        if improved:        # before saving, so that last.safetensors carries the new best
            self.best = logs[self.monitor]
        if (epoch + 1) % self.every == 0:
            trainer.save_checkpoint(self.folder / "last.safetensors", config=self.config)
            self.saved_epoch = epoch + 1
        if improved:
            trainer.save_checkpoint(self.folder / "best.safetensors", config=self.config)

    def state_dict(self) -> dict[str, Any]:
        return {"best": _finite_or_none(self.best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``best``; ``ValueError`` (nothing changed) for anything else."""
        self.best = _best_from("Checkpoint", _checked_state("Checkpoint", state, {"best"}), self.mode)


def append_line(path: str | Path, line: str) -> None:
    """Append one line (``"\\n"`` added if missing) to ``path`` and fsync it before returning.

    The line goes out in one ``write`` on an ``O_APPEND`` descriptor, so a reader never
    sees two lines interleaved, and a process killed between lines leaves only whole lines.
    """
    data = (line if line.endswith("\n") else line + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


class MetricsLog(Callback):
    """Write ``metrics.jsonl``: one JSON object per epoch, appended and fsynced at the end of each epoch.

    At the start of a fit the file is rewritten (atomically) from ``trainer.history``: empty
    for a new run, and exactly the checkpointed epochs after :meth:`Trainer.resume`, so
    lines of epochs that ran after the last checkpoint, and are about to run again, are not
    repeated. Keys: ``epoch`` (1-based), ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy`` (with validation data), ``lr`` (at the start of the epoch), ``seconds``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_begin(self, trainer: Trainer) -> None:
        text = "".join(json.dumps(row) + "\n" for row in trainer.history.rows())
        checkpoint.atomic_write_bytes(self.path, text.encode())

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        append_line(self.path, json.dumps(logs))


class LRSchedule(Callback):
    """Step a learning-rate schedule once per epoch (ReduceLROnPlateau gets ``monitor``)."""

    def __init__(self, schedule: Any, monitor: str = "val_loss") -> None:
        self.schedule, self.monitor = schedule, monitor

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if type(self.schedule).__name__ == "ReduceLROnPlateau":
            value = logs.get(self.monitor, logs.get("train_loss"))
            self.schedule.step(value)
        else:
            self.schedule.step()


class NaNGuard(Callback):
    """Stop at the first step whose loss or gradient is not finite, naming the step and layer.

    The message names the global step and the first layer (in forward order) whose
    gradient holds a NaN or Inf; the parameters are left as they were before that step's
    update (the check runs before ``optimizer.step``).
    """

    def check(self, trainer: Trainer, step: int, loss: float) -> None:
        bad_layer = None
        for name, p in trainer.model.named_parameters():
            if not np.isfinite(np.add.reduce(p.grad, axis=None)):
                if not np.all(np.isfinite(p.grad)):
                    bad_layer = name
                    break
        if bad_layer is None and math.isfinite(loss):
            return
        where = f"gradient of {bad_layer!r}" if bad_layer else "the loss"
        msg = (f"training diverged at step {step}: {where} is not finite (loss = {loss})"
               + ("" if bad_layer else "; all gradients finite"))
        if bad_layer:
            layer = bad_layer.rsplit(".", 1)[0]
            msg += f"; first non-finite layer: {layer}"
        raise TrainingDiverged(msg)


class _Progress:
    """One bar per epoch (tqdm) showing loss and accuracy; silent when not a TTY or quiet."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.postfix: dict[str, str] = {}

    def start(self, epoch: int, epochs: int, total: int) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", leave=True, unit="batch",
                            dynamic_ncols=True)

    def update(self, loss: float, accuracy: float) -> None:
        if self.bar is not None:
            self.postfix = {"loss": f"{loss:.4f}", "acc": f"{accuracy:.3f}"}
            self.bar.set_postfix(self.postfix, refresh=False)
            self.bar.update(1)

    def close(self, logs: dict[str, Any]) -> None:
        if self.bar is not None:
            self.postfix.update({k: f"{v:.4f}" for k, v in logs.items() if k.startswith("val_")})
            self.bar.set_postfix(self.postfix)
            self.bar.close()
            self.bar = None


class Trainer:
    """Drives ``model`` with ``optimizer`` on ``loss``, epoch by epoch.

    Args:
        model: a :class:`trainlab.nn.Module` producing logits ``(N, classes)``.
        optimizer: a :class:`trainlab.optim.Optimizer` over ``model.parameters()``.
        loss: a loss module (e.g. :class:`trainlab.nn.CrossEntropyLoss`).
        schedule: a learning-rate schedule stepped once per epoch (optional).
        callbacks: extra :class:`Callback` objects. They run in the order given, except that
            :class:`Checkpoint` callbacks run last, so that a checkpoint records the state of
            every other callback after the epoch it closes.
        nan_guard: check every step that the loss and gradients are finite (default True).
        monitor: a :class:`trainlab.Monitor` to drive (optional).
        progress: ``None`` (a bar when stderr is a TTY), True or False.
        log: where one summary line per epoch is printed (``None`` for nothing).
    """

    def __init__(self, model: Any, optimizer: Any, loss: Any, *, schedule: Any = None,
                 callbacks: Iterable[Callback] = (), nan_guard: bool = True, monitor: Any = None,
                 progress: bool | None = None, log: Callable[[str], None] | None = print) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss
        # the schedule steps first, so checkpoints written at the end of an epoch hold the new lr
        given = ([LRSchedule(schedule)] if schedule is not None else []) + list(callbacks)
        self.callbacks: list[Callback] = ([cb for cb in given if not isinstance(cb, Checkpoint)]
                                          + [cb for cb in given if isinstance(cb, Checkpoint)])
        self.nan_guard = NaNGuard() if nan_guard else None
        self.monitor = monitor
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.log = log
        self.history = History()
        self.epoch = 0
        self.global_step = 0
        self.stop_training = False
        self.rng: np.random.Generator | None = None
        self.epoch_in_progress = 0  # the epoch running now (0-based; after a fit: the last one started)

    # ------------------------------------------------------------------ control
    def stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch."""
        self.stop_training = True
        self.history.stopped_early = True
        self.history.stop_reason = reason

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    # ------------------------------------------------------------------ one step
    def train_step(self, xb: np.ndarray, yb: np.ndarray) -> tuple[float, int]:
        """One forward/backward/update; returns (loss, number of correct predictions)."""
        logits = self.model(xb)
        loss = self.loss_fn(logits, yb)
        dlogits = self.loss_fn.backward()
        if isinstance(self.model, Sequential):
            self.model.backward(dlogits, input_grad=False)  # the input is data: skip dL/dx
        else:
            self.model.backward(dlogits)
        if self.monitor is not None:
            self.monitor.after_backward()
        if self.nan_guard is not None:
            try:
                self.nan_guard.check(self, self.global_step, loss)
            except TrainingDiverged as exc:
                if self.monitor is not None:
                    findings = self.monitor.diagnose()
                    if findings:
                        exc.args = (exc.args[0] + "\n" + "\n".join(f"  - {f}" for f in findings),)
                raise
        self.optimizer.step()
        self.optimizer.zero_grad()
        correct = int(np.count_nonzero(logits.argmax(axis=1) == yb)) if logits.ndim == 2 else 0
        return loss, correct

    # ------------------------------------------------------------------ loops
    def fit(self, train: Any, val: Any = None, *, epochs: int, batch_size: int,
            rng: np.random.Generator, start_epoch: int = 0) -> History:
        """Train for epochs ``start_epoch .. epochs-1``; returns the :class:`History`.

        Args:
            train: ``(x, y)`` or a dataset with ``.x``/``.y``.
            val: the same for validation, or None.
            epochs: the epoch to stop at (total, counting ``start_epoch`` epochs already done).
            batch_size: mini-batch size.
            rng: the generator that shuffles the batches (its state is checkpointed).
            start_epoch: the first epoch to run (after :meth:`resume`).
        """
        x, y = _xy(train, "Trainer.fit train")
        val_xy = None if val is None else _xy(val, "Trainer.fit val")
        if epochs < 0 or start_epoch < 0:
            raise ValueError(f"Trainer.fit: epochs and start_epoch must be >= 0, got {epochs}, {start_epoch}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError("Trainer.fit: rng must be a numpy.random.Generator")
        self.rng = rng
        batches = Batches(x, y, batch_size, shuffle=True, rng=rng)
        self.stop_training = False
        self.epoch_in_progress = start_epoch
        self._call("on_train_begin")
        bar = _Progress(self.progress)
        try:
            self._epochs(x, y, val_xy, batches, bar, start_epoch, epochs)
        except (KeyboardInterrupt, TrainingDiverged) as exc:
            bar.close({})
            self.history.stopped_early = True
            epoch = self.epoch_in_progress + 1
            self.history.stop_reason = (f"interrupted (KeyboardInterrupt) during epoch {epoch}"
                                        if isinstance(exc, KeyboardInterrupt)
                                        else f"{str(exc).splitlines()[0]} (epoch {epoch})")
            raise
        self._call("on_train_end")
        if self.monitor is not None and self.log is not None:
            findings = self.monitor.diagnose()
            if findings:
                self.log("diagnosis:\n" + "\n".join(f"  - {f}" for f in findings))
        return self.history

    def _epochs(self, x: np.ndarray, y: np.ndarray, val_xy: Any, batches: Batches, bar: _Progress,
                start_epoch: int, epochs: int) -> None:
        for epoch in range(start_epoch, epochs):
            self.epoch = self.epoch_in_progress = epoch
            self._call("on_epoch_begin", epoch)
            self.model.train()
            start = time.perf_counter()
            total_loss, total_correct, seen = 0.0, 0, 0
            lr = float(self.optimizer.param_groups[0]["lr"])
            bar.start(epoch, epochs, len(batches))
            for xb, yb in batches:
                if self.monitor is not None:
                    self.monitor.begin_step(self.global_step)
                loss, correct = self.train_step(xb, yb)
                if self.monitor is not None:
                    self.monitor.end_step(self.global_step, loss=loss)
                n = len(yb)
                total_loss += loss * n
                total_correct += correct
                seen += n
                bar.update(total_loss / seen, total_correct / seen)
                self._call("on_step_end", self.global_step, loss)
                self.global_step += 1
            logs: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total_loss / max(seen, 1),
                                    "train_accuracy": total_correct / max(seen, 1)}
            if val_xy is not None:
                result = self.evaluate(val_xy)
                logs["val_loss"], logs["val_accuracy"] = result["loss"], result["accuracy"]
            logs["lr"] = lr
            logs["seconds"] = time.perf_counter() - start
            bar.close(logs)
            self.history.append(logs)
            if self.monitor is not None:
                self.monitor.end_epoch(epoch)
            self.epoch = epoch + 1
            self._call("on_epoch_end", epoch, logs)
            if self.log is not None:
                self.log(self.format_logs(logs, epochs))
            if self.stop_training:
                if self.log is not None and self.history.stop_reason:
                    self.log(self.history.stop_reason)
                break

    @staticmethod
    def format_logs(logs: dict[str, Any], epochs: int) -> str:
        parts = [f"epoch {logs['epoch']}/{epochs}", f"loss {logs['train_loss']:.4f}",
                 f"acc {logs['train_accuracy']:.4f}"]
        if "val_loss" in logs:
            parts += [f"val_loss {logs['val_loss']:.4f}", f"val_acc {logs['val_accuracy']:.4f}"]
        parts += [f"lr {logs['lr']:.3g}", f"{logs['seconds']:.2f}s"]
        return "  ".join(parts)

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Logits for ``x`` in eval mode (the model's mode is restored afterwards)."""
        was_training = self.model.training
        self.model.eval()
        try:
            outs = [self.model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        finally:
            self.model.train(was_training)
        return np.concatenate(outs) if outs else np.zeros((0,))

    def evaluate(self, data: Any, batch_size: int = 1024) -> dict[str, float]:
        """Loss and accuracy on ``data`` in eval mode: ``{"loss": ..., "accuracy": ...}``."""
        x, y = _xy(data, "Trainer.evaluate")
        logits = self.predict(x, batch_size)
        loss = float(self.loss_fn(logits, y))
        accuracy = float(np.mean(logits.argmax(axis=1) == y)) if len(y) else float("nan")
        return {"loss": loss, "accuracy": accuracy}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | Path, *, config: dict[str, Any] | None = None) -> Path:
        """Save model, optimizer, epoch, step, RNG states and history (atomic)."""
        meta: dict[str, Any] = {
            "epoch": self.epoch, "global_step": self.global_step,
            "rng": None if self.rng is None else checkpoint.rng_state(self.rng),
            "history": self.history.rows(),
            "config": config or {},
        }
        for cb in self.callbacks:
            if isinstance(cb, LRSchedule) and hasattr(cb.schedule, "state_dict"):
                meta["schedule"] = cb.schedule.state_dict()
        meta["callbacks"] = {key: state for key, state in self._callback_states()}
        return checkpoint.save(path, self.model, self.optimizer, **meta)

    def _callback_keys(self) -> list[tuple[str, Callback]]:
        """``"<position>:<class name>"`` for each callback: how saved states find their owner."""
        return [(f"{i}:{type(cb).__name__}", cb) for i, cb in enumerate(self.callbacks)]

    def _callback_states(self) -> list[tuple[str, dict[str, Any]]]:
        return [(key, state) for key, cb in self._callback_keys() if (state := cb.state_dict())]

    def resume(self, path: str | Path, rng: np.random.Generator) -> int:
        """Restore everything :meth:`save_checkpoint` wrote; returns the epoch to continue from.

        The file is verified and decoded, and its epoch, step, history and generator states
        are checked, before anything is set. Then the optimizer, the model, the generators,
        the schedule, the callbacks and the trainer's counters are set in that order; if the
        schedule or a callback refuses its saved state, everything set so far is restored.
        Either all of them hold the checkpoint, or none has changed.

        Args:
            path: a ``.safetensors`` file written by :meth:`save_checkpoint`.
            rng: the generator that will shuffle the batches; it gets the saved state and
                becomes :attr:`rng`, so a checkpoint saved before the next ``fit`` keeps it.

        Raises:
            CheckpointError: naming the file and the problem (corrupted, written by
                something else than :meth:`save_checkpoint`, or not fitting this trainer).
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"Trainer.resume: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        path = Path(path)
        prepared = checkpoint.prepare(path, self.model, self.optimizer)
        meta = prepared.meta

        def bad(problem: str) -> checkpoint.CheckpointError:
            return checkpoint.CheckpointError(f"checkpoint {path}: {problem}")

        counts = {}
        for key in ("epoch", "global_step"):
            value = meta.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise bad(f"{key!r} must be an int >= 0, got {value!r}" if key in meta else
                          f"has no {key!r}: not written by Trainer.save_checkpoint")
            counts[key] = value
        history = _history_from(meta.get("history"), bad)
        rng_saved = meta.get("rng")
        if rng_saved is not None:
            try:
                checkpoint.check_rng_state(rng, rng_saved, "the trainer's RNG state")
            except ValueError as exc:
                raise bad(str(exc)) from None
        saved = meta.get("callbacks", {})
        if not isinstance(saved, dict):
            raise bad(f"'callbacks' must be a dict of callback states, got {type(saved).__name__}")

        steps = prepared.steps()
        if rng_saved is not None:
            before = rng.bit_generator.state
            steps.append(("the trainer's RNG", lambda: setattr(rng.bit_generator, "state", rng_saved["state"]),
                          lambda: setattr(rng.bit_generator, "state", before)))
        targets = [(f"schedule {type(cb.schedule).__name__}", cb.schedule, meta["schedule"])
                   for cb in self.callbacks if isinstance(cb, LRSchedule) and "schedule" in meta
                   and hasattr(cb.schedule, "load_state_dict")]
        targets += [(f"callback {key}", cb, saved[key]) for key, cb in self._callback_keys() if key in saved]
        for what, target, state in targets:
            steps.append((what, _loader(target, state), _loader(target, copy.deepcopy(target.state_dict()))))
        after = {**counts, "history": history, "rng": rng}
        before_counts = {name: getattr(self, name) for name in after}
        steps.append(("trainer", _setter(self, after), _setter(self, before_counts)))
        checkpoint.apply_all(path, steps)
        return self.epoch


def _loader(target: Any, state: Any) -> Callable[[], None]:
    return lambda: target.load_state_dict(state)


def _setter(target: Any, values: dict[str, Any]) -> Callable[[], None]:
    def assign() -> None:
        for name, value in values.items():
            setattr(target, name, value)
    return assign


def _history_from(rows: Any, bad: Callable[[str], Exception]) -> History:
    """A :class:`History` from saved ``rows`` (a list of dicts of numbers), checked first."""
    columns = {f.name for f in dataclasses.fields(History) if f.default_factory is list}
    if not isinstance(rows, list):
        raise bad(f"'history' must be a list of epoch rows, got {type(rows).__name__}"
                  if rows is not None else "has no 'history': not written by Trainer.save_checkpoint")
    history = History()
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int) or not set(row) <= columns \
                or not all(_is_real(v) for v in row.values()):
            raise bad(f"history row {i} is {repr(row)[:80]}; expected numbers under "
                      f"{sorted(columns)}, with an int 'epoch'")
        history.append(row)
    return history


def accuracy(logits: np.ndarray, labels: Sequence[int]) -> float:
    """Fraction of rows whose argmax equals the label."""
    return float(np.mean(np.asarray(logits).argmax(axis=1) == np.asarray(labels)))
