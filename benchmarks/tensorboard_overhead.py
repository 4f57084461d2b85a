"""Cost of the :class:`trainlab.tensorboard.TensorBoard` callback per training step (not a test).

The benchmark MLP of ``monitor_overhead.py`` (784-512-512-10, BatchNorm1d + ReLU, batch 128,
SGD momentum 0.9), sampled every 10 steps. Four identical copies train side by side:

* ``monitor``: ``Monitor(every=10)``, what ``trainlab train`` runs without TensorBoard;
* ``monitor+hist``: ``Monitor(every=10, histograms=True)``;
* ``tensorboard``: the same plus ``TensorBoard(...)`` with its defaults (events built and
  written in the training thread);
* ``tb-background``: the same with ``background=True`` (events built in a thread of their own).

Each round times one block of 10 steps (one sampled step) per copy, in an order that
rotates every round, so all four see the same machine state. A ``tb-background`` block also
counts the wait for its background thread to finish that block's events (so no work
spills, uncounted, into the next copy's block). Printed:

* wall clock: the median over rounds of the per-round ratio of block times (paired), with
  its interquartile range, and the ratio of the fastest blocks (10th percentile), the
  least disturbed by other processes;
* CPU accounting, insensitive to a busy machine: the training thread's time inside the
  callback plus the CPU time the background thread spent building events, per step,
  relative to the fastest ``monitor`` step time.

``--repeats`` runs the whole measurement again in the same process and prints each.

``--cpu`` instead accounts for the cost in CPU time, which other processes on a busy machine
barely change: with BLAS on one thread (so the training thread's CPU time is all of a
step's work), it times every step of each configuration with ``time.thread_time`` in
interleaved rounds, then the work of writing the same events (serialization, TFRecord
framing with CRC32C, the file append; the callback's thread does it), done here in the
training thread. The overhead at ``every=10`` is one tenth of a sampled step's extra CPU.

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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitor_overhead import bn_relu  # noqa: E402

from trainlab import nn, optim  # noqa: E402
from trainlab.monitor import Monitor  # noqa: E402
from trainlab.tensorboard import TensorBoard  # noqa: E402

ARMS = ("monitor", "monitor+hist", "tensorboard", "tb-background")


class Copy:
    """One copy of the model with its optimizer, monitor and (maybe) TensorBoard callback."""

    def __init__(self, arm: str, every: int, log_dir: Path) -> None:
        self.model = bn_relu(np.random.default_rng(1))
        self.opt = optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.loss = nn.CrossEntropyLoss()
        self.monitor = Monitor(self.model, every=every, histograms=arm != "monitor")
        self.board = None
        self.trainer = SimpleNamespace(monitor=self.monitor, global_step=0)
        if arm in ("tensorboard", "tb-background"):
            self.board = TensorBoard(log_dir, arm, hparams={"arm": arm}, background=arm == "tb-background")
            self.board.on_train_begin(self.trainer)
        self.step = 0
        self.hook_seconds = 0.0     # training-thread time inside on_step_end

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
                hook = time.perf_counter()
                self.board.on_step_end(self.trainer, self.step, loss)
                self.hook_seconds += time.perf_counter() - hook
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


def measure(rounds: int, every: int, batch: int, log_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
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
    steps = {arm: c.step for arm, c in copies.items()}
    # the training thread's time in the callback, plus the background thread's CPU (by default the
    # events are built inside the callback: its worker's busy time is already in hook_seconds)
    cpu = {arm: (c.hook_seconds + (c.board._worker.busy if c.board.background else 0.0)) / steps[arm]
           for arm, c in copies.items() if c.board is not None}
    epoch = {arm: copies[arm].epoch_end() for arm in ARMS}
    for c in copies.values():
        if c.board is not None:
            c.board.on_train_end(c.trainer)
    print("  epoch-end hook (diagnosis text + 5 scalars), once per epoch: "
          + ", ".join(f"{a} {1e3 * t:.2f} ms" for a, t in epoch.items()))
    return {arm: np.asarray(v) for arm, v in times.items()}, cpu


def report(times: dict[str, np.ndarray], cpu: dict[str, float]) -> dict[str, float]:
    med = {arm: float(np.median(v)) for arm, v in times.items()}
    fast = {arm: float(np.percentile(v, 10)) for arm, v in times.items()}
    print("  ms/step, median: " + ", ".join(f"{a} {1e3 * m:.3f}" for a, m in med.items()))
    print("  ms/step, fastest 10%: " + ", ".join(f"{a} {1e3 * m:.3f}" for a, m in fast.items()))
    out = {}
    for arm, base in (("tensorboard", "monitor"), ("tensorboard", "monitor+hist"), ("tb-background", "monitor+hist"),
                      ("monitor+hist", "monitor")):
        ratio = times[arm] / times[base] - 1
        q1, q2, q3 = np.percentile(ratio, [25, 50, 75])
        out[f"{arm} vs {base} (paired median)"] = q2
        out[f"{arm} vs {base} (fastest blocks)"] = fast[arm] / fast[base] - 1
        print(f"  {arm:>12s} vs {base:<12s}: {100 * q2:+5.1f}% per step (paired median; IQR {100 * q1:+.1f}% .. "
              f"{100 * q3:+.1f}%); fastest blocks {100 * (fast[arm] / fast[base] - 1):+.1f}%")
    for arm, seconds in cpu.items():
        share = seconds / fast["monitor"]
        out[f"{arm}: callback CPU / step"] = share
        print(f"  {arm}: callback CPU time {1e6 * seconds:.1f} us per step (training thread + event building) "
              f"= {100 * share:.2f}% of the fastest monitor step")
    return out


def cpu_breakdown(rounds: int, batch: int, log_dir: Path) -> None:
    """CPU time per step of: no monitor, Monitor, Monitor(histograms), and + the TensorBoard callback."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    xs = rng.standard_normal((4, batch, 784)).astype(np.float32)
    ys = rng.integers(0, 10, (4, batch))
    arms = {"plain": None, "monitor": "monitor", "monitor+hist": "monitor+hist", "tensorboard": "tensorboard"}
    copies = {}
    for name, arm in arms.items():
        c = Copy(arm or "monitor", 1, log_dir)        # every=1: every step is a sampled step
        if arm is None:
            c.monitor.detach()
            c.monitor.begin_step = c.monitor.end_step = lambda step: None
        elif arm != "tensorboard":
            c.board = None
        copies[name] = c
    cpu = {name: [] for name in arms}
    with threadpool_limits(limits=1, user_api="blas"):
        for r in range(rounds + 2):
            for name in list(arms)[r % 4:] + list(arms)[:r % 4]:
                start = time.thread_time()
                copies[name].block(xs, ys, 1)
                if r >= 2:
                    cpu[name].append(time.thread_time() - start)
    med = {name: float(np.median(v)) for name, v in cpu.items()}
    board = copies["tensorboard"].board
    board.on_train_end(copies["tensorboard"].trainer)
    # writing: one event per sampled step serialized, framed (length, CRC32C) and appended to the file
    from tensorboardX.record_writer import RecordWriter

    record = copies["tensorboard"].monitor.steps[-1]
    events: list[Any] = []
    board.writer = SimpleNamespace(add_event=events.append)
    board._write_record(record, 0.5)
    event = events[0]
    writer = RecordWriter(str(log_dir / "bench.events"))
    start, n = time.thread_time(), 200
    for _ in range(n):
        writer.write(event.SerializeToString())
    tbx = (time.thread_time() - start) / n
    writer.close()
    plain = med["plain"]
    print(f"  CPU time per step, BLAS on one thread, median of {rounds} interleaved rounds "
          f"(every step sampled): " + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in med.items()))
    print(f"  one event per sampled step: {len(event.summary.value)} values, {event.ByteSize() / 1024:.1f} KB; "
          f"writing it (serialize, frame, append): {1e3 * tbx:.3f} ms of CPU")
    parts = {"monitor sample (stats)": med["monitor"] - plain, "histograms": med["monitor+hist"] - med["monitor"],
             "TensorBoard (events built)": med["tensorboard"] - med["monitor+hist"], "event file writing": tbx}
    for what, seconds in parts.items():
        print(f"    {what:28s} {1e3 * seconds:7.3f} ms per sampled step = {100 * seconds / 10 / plain:+.2f}% "
              f"per step at every=10")
    extra = parts["histograms"] + parts["TensorBoard (events built)"] + tbx
    base = plain + parts["monitor sample (stats)"] / 10
    print(f"  TensorBoard on (histograms + events + writer) over the Monitor alone, every=10: "
          f"{100 * extra / 10 / base:+.2f}% per step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="timed rounds (one block of `every` steps per copy)")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="repeat the whole measurement")
    parser.add_argument("--cpu", action="store_true", help="CPU-time accounting instead of wall-clock blocks")
    args = parser.parse_args()
    if args.cpu:
        print(f"CPU-time accounting, MLP 784-512-512-10 BN+ReLU, batch {args.batch}, {args.repeats} repeats")
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.repeats):
                print(f"repeat {i + 1}:")
                cpu_breakdown(args.rounds, args.batch, Path(tmp) / str(i))
        return
    print(f"TensorBoard callback overhead, MLP 784-512-512-10 BN+ReLU, batch {args.batch}, every={args.every}, "
          f"{args.rounds} rounds x {len(ARMS)} copies, {args.repeats} repeats")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            print(f"repeat {i + 1}:")
            results.append(report(*measure(args.rounds, args.every, args.batch, Path(tmp) / str(i))))
    for key in results[0]:
        values = [100 * r[key] for r in results]
        print(f"range over repeats, {key}: {min(values):+.1f}% .. {max(values):+.1f}%")


if __name__ == "__main__":
    main()
