"""Cost of the :class:`trainlab.tensorboard.TensorBoard` callback per training step (not a test).

The benchmark MLP of ``monitor_overhead.py`` (784-512-512-10, BatchNorm1d + ReLU, batch 128,
SGD momentum 0.9), sampled every 10 steps. Four identical copies train side by side:

* ``monitor``: ``Monitor(every=10)``, what ``trainlab train`` runs without TensorBoard;
* ``monitor+hist``: ``Monitor(every=10, histograms=True)``;
* ``tensorboard``: the same plus ``TensorBoard(..., background=True)`` (the default);
* ``tb-sync``: the same with ``background=False`` (events built in the training thread).

Each round times one block of 10 steps (one sampled step) per copy, in an order that
rotates every round, so all four see the same machine state. A ``tensorboard`` block also
counts the wait for its background thread to finish that block's events (so no work
spills, uncounted, into the next copy's block). The overhead is the median over rounds of
the per-round ratio of block times (paired), with its interquartile range; ``--repeats``
runs the whole measurement again in the same process and prints each.

Run (unset the OpenBLAS core overrides for timings only)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/tensorboard_overhead.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitor_overhead import bn_relu  # noqa: E402

from trainlab import nn, optim  # noqa: E402
from trainlab.monitor import Monitor  # noqa: E402
from trainlab.tensorboard import TensorBoard  # noqa: E402

ARMS = ("monitor", "monitor+hist", "tensorboard", "tb-sync")


class Copy:
    """One copy of the model with its optimizer, monitor and (maybe) TensorBoard callback."""

    def __init__(self, arm: str, every: int, log_dir: Path) -> None:
        self.model = bn_relu(np.random.default_rng(1))
        self.opt = optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.loss = nn.CrossEntropyLoss()
        self.monitor = Monitor(self.model, every=every, histograms=arm != "monitor")
        self.board = None
        self.trainer = SimpleNamespace(monitor=self.monitor, global_step=0)
        if arm in ("tensorboard", "tb-sync"):
            self.board = TensorBoard(log_dir, arm, hparams={"arm": arm}, background=arm == "tensorboard")
            self.board.on_train_begin(self.trainer)
        self.step = 0

    def block(self, xs: np.ndarray, ys: np.ndarray, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            x, y = xs[self.step % len(xs)], ys[self.step % len(ys)]
            self.monitor.begin_step(self.step)
            loss = self.loss(self.model(x), y)
            self.model.backward(self.loss.backward(), input_grad=False)
            self.opt.step()
            self.opt.zero_grad()
            self.monitor.end_step(self.step)
            if self.board is not None:
                self.board.on_step_end(self.trainer, self.step, loss)
            self.step += 1
            self.trainer.global_step = self.step
        if self.board is not None:
            self.board._worker.wait()          # this block's events are built: nothing spills over
        return time.perf_counter() - start

    def epoch_end(self) -> float:
        start = time.perf_counter()
        self.monitor.end_epoch(0)
        if self.board is not None:
            self.board.on_epoch_end(self.trainer, 0, {"train_loss": 0.5, "train_accuracy": 0.9, "val_loss": 0.6,
                                                      "val_accuracy": 0.88, "lr": 0.01})
            self.board._worker.wait()
        return time.perf_counter() - start


def measure(rounds: int, every: int, batch: int, log_dir: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((4, batch, 784)).astype(np.float32)
    ys = rng.integers(0, 10, (4, batch))
    copies = {arm: Copy(arm, every, log_dir) for arm in ARMS}
    times = {arm: [] for arm in ARMS}
    for r in range(rounds + 2):                       # two warm-up rounds
        order = ARMS[r % 4:] + ARMS[:r % 4]
        for arm in order:
            t = copies[arm].block(xs, ys, every)
            if r >= 2:
                times[arm].append(t / every)
    epoch = {arm: copies[arm].epoch_end() for arm in ARMS}
    for c in copies.values():
        if c.board is not None:
            c.board.on_train_end(c.trainer)
    print("  epoch-end hook (diagnosis text + 5 scalars), once per epoch: "
          + ", ".join(f"{a} {1e3 * t:.2f} ms" for a, t in epoch.items()))
    return {arm: np.asarray(v) for arm, v in times.items()}


def report(times: dict[str, np.ndarray]) -> dict[str, float]:
    med = {arm: float(np.median(v)) for arm, v in times.items()}
    print("  ms/step (median): " + ", ".join(f"{a} {1e3 * m:.3f}" for a, m in med.items()))
    out = {}
    for arm, base in (("tensorboard", "monitor"), ("tensorboard", "monitor+hist"), ("tb-sync", "monitor+hist"),
                      ("monitor+hist", "monitor")):
        ratio = times[arm] / times[base] - 1
        q1, q2, q3 = np.percentile(ratio, [25, 50, 75])
        out[f"{arm} vs {base}"] = q2
        print(f"  {arm:>12s} vs {base:<12s}: {100 * q2:+5.1f}% per step (paired median; IQR {100 * q1:+.1f}% .. "
              f"{100 * q3:+.1f}%)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="timed rounds (one block of `every` steps per copy)")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="repeat the whole measurement")
    args = parser.parse_args()
    print(f"TensorBoard callback overhead, MLP 784-512-512-10 BN+ReLU, batch {args.batch}, every={args.every}, "
          f"{args.rounds} rounds x {len(ARMS)} copies, {args.repeats} repeats")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            print(f"repeat {i + 1}:")
            results.append(report(measure(args.rounds, args.every, args.batch, Path(tmp) / str(i))))
    for key in results[0]:
        values = [100 * r[key] for r in results]
        print(f"range over repeats, {key}: {min(values):+.1f}% .. {max(values):+.1f}%")


if __name__ == "__main__":
    main()
