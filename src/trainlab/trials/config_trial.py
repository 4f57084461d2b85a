"""The trial behind ``trainlab sweep``: one ``trainlab train`` config, trained without a run folder.

``params = {"config": {...}, "repeat": r}``. The config is validated
(:func:`trainlab.config.validate`), built with :func:`trainlab.run.build` and trained with
:class:`trainlab.train.Trainer` exactly as ``trainlab train`` trains it (the same
generators: split from ``run.seed``, weights from ``[seed, 1]``, batch order from
``[seed, 2]``), so a trial's numbers equal those of ``trainlab train`` with that config.
Nothing is written (no checkpoints, no run folder) unless the trial is given a log folder
(``ctx.log_dir``): then each epoch's metrics are appended to ``metrics.jsonl`` there, and the
:class:`~trainlab.tensorboard.TensorBoard` callback writes its event files there (the
monitor then records histograms too).

Each epoch's logs (train/val loss and accuracy, lr, seconds) are reported as they come
(``ctx.report``). A loss that goes non-finite (the NaN guard) makes the trial ``diverged``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from trainlab.trials.worker import Diverged, TrialContext

__all__ = ["train", "TRIAL"]

TRIAL = "trainlab.trials.config_trial:train"


def train(params: dict[str, Any], ctx: TrialContext) -> dict[str, Any]:
    """Train ``params["config"]``; returns test loss/accuracy, epochs run and the monitor's findings."""
    from trainlab import nn
    from trainlab.config import validate
    from trainlab.monitor import Monitor
    from trainlab.run import build
    from trainlab.train import Callback, EarlyStopping, Trainer, TrainingDiverged

    config = validate(params["config"])
    splits, model, optimizer, schedule = build(config)
    t = config["train"]
    log_file = None
    if ctx.log_dir is not None:
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = ctx.log_dir / "metrics.jsonl"

    class Report(Callback):
        def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
            ctx.report(**logs)
            if log_file is not None:
                with open(log_file, "a") as fh:
                    fh.write(json.dumps(logs) + "\n")

    callbacks: list[Callback] = [Report()]
    if t["early_stopping"]:
        callbacks.append(EarlyStopping("val_loss", patience=t["early_stopping"]))
    board = None
    if ctx.log_dir is not None:
        from trainlab.tensorboard import TensorBoard

        board = TensorBoard(ctx.log_dir, hparams=config)
        callbacks.append(board)
    monitor = Monitor(model, every=t["monitor_every"], histograms=board is not None) if t["monitor_every"] else None
    trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(), schedule=schedule, callbacks=callbacks,
                      monitor=monitor, progress=False, log=None)
    try:
        trainer.fit(splits.train, splits.val, epochs=t["epochs"], batch_size=t["batch_size"],
                    rng=np.random.default_rng([config["run"]["seed"], 2]))
    except TrainingDiverged as exc:
        raise Diverged(str(exc).splitlines()[0], {"epochs_run": len(trainer.history.epoch),
                                                  "diverged_at_step": trainer.global_step}) from None
    finally:   # a no-op after a normal end; after a divergence it flushes what was logged
        if board is not None:
            board.close("failure")
    test = trainer.evaluate(splits.test)
    return {"test_loss": test["loss"], "test_accuracy": test["accuracy"],
            "epochs_run": len(trainer.history.epoch), "stopped_early": trainer.history.stopped_early,
            "stop_reason": trainer.history.stop_reason,
            "diagnosis": [str(f) for f in monitor.diagnose()] if monitor is not None else []}
