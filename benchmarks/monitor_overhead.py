"""Overhead of :class:`trainlab.monitor.Monitor` (every=10) on a training step (not a test).

Two networks, batch 128, SGD with momentum 0.9:

* ``bn_relu``: MLP 784-512-512-10 with BatchNorm1d + ReLU after each hidden Linear;
* ``tanh10``: 10 Linear(256) + Tanh layers (xavier), then Linear(256, 10).

Two identical copies of each network are trained side by side, one watched by a Monitor.
Steps are timed in blocks of ``every`` steps (one sampled step per block), alternating
plain / watched blocks so both see the same machine state; the overhead is the ratio of
the median block times (and, less sensitive to other processes on a busy machine, of
the fastest blocks). Also printed: the median of the unsampled steps alone and the cost
of one sampled step.

Run (unset the OpenBLAS core overrides for timings only)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/monitor_overhead.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from trainlab import nn, optim
from trainlab.monitor import Monitor


def bn_relu(rng: np.random.Generator) -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 512, init="he", rng=rng), nn.BatchNorm1d(512), nn.ReLU(),
                         nn.Linear(512, 512, init="he", rng=rng), nn.BatchNorm1d(512), nn.ReLU(),
                         nn.Linear(512, 10, init="xavier", rng=rng))


def tanh10(rng: np.random.Generator, width: int = 256) -> nn.Sequential:
    layers, d = [], 784
    for _ in range(10):
        layers += [nn.Linear(d, width, init="xavier", rng=rng), nn.Tanh()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, 10, init="xavier", rng=rng))


class Run:
    """A model, its optimizer and loss; ``block`` times ``every`` Trainer-ordered steps."""

    def __init__(self, build, seed: int, monitor_every: int | None) -> None:
        self.model = build(np.random.default_rng(seed))
        self.opt = optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.loss = nn.CrossEntropyLoss()
        self.monitor = Monitor(self.model, every=monitor_every) if monitor_every else None
        self.step = 0

    def one_step(self, x: np.ndarray, y: np.ndarray) -> float:
        start = time.perf_counter()
        if self.monitor is not None:
            self.monitor.begin_step(self.step)
        self.loss(self.model(x), y)
        self.model.backward(self.loss.backward())
        self.opt.step()
        self.opt.zero_grad()
        if self.monitor is not None:
            self.monitor.end_step(self.step)
        self.step += 1
        return time.perf_counter() - start


def bench(name: str, build, *, every: int, blocks: int, batch: int) -> None:
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((4, batch, 784)).astype(np.float32)
    ys = rng.integers(0, 10, (4, batch))
    plain, watched = Run(build, 1, None), Run(build, 1, every)
    times = {"plain": [], "watched": []}
    per_step = {"plain": [], "watched": []}
    for b in range(blocks + 2):                      # the first two blocks warm up
        for label, run in (("plain", plain), ("watched", watched)):
            steps = [run.one_step(xs[run.step % 4], ys[run.step % 4]) for _ in range(every)]
            if b >= 2:
                times[label].append(sum(steps))
                per_step[label].append(steps)
    med = {k: float(np.median(v)) / every for k, v in times.items()}
    best = {k: float(np.min(v)) / every for k, v in times.items()}   # least disturbed by other processes
    unsampled = {k: float(np.median([s[1:] for s in v])) for k, v in per_step.items()}
    sampled = float(np.median([s[0] for s in per_step["watched"]]))
    print(f"{name:8s} plain {1e3 * med['plain']:7.3f} ms/step   "
          f"monitored {1e3 * med['watched']:7.3f} ms/step   "
          f"overhead {100 * (med['watched'] / med['plain'] - 1):+5.1f}%   | unsampled step "
          f"{1e3 * unsampled['plain']:.3f} vs {1e3 * unsampled['watched']:.3f} ms, "
          f"sampled step {1e3 * sampled:.3f} ms | best blocks: {1e3 * best['plain']:.3f} vs "
          f"{1e3 * best['watched']:.3f} ms/step ({100 * (best['watched'] / best['plain'] - 1):+.1f}%)")
    assert len(watched.monitor.steps) == (blocks + 2), "one sampled step per block"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=40, help="timed blocks of `every` steps per model")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    print(f"Monitor(every={args.every}) overhead, batch {args.batch}, median of {args.blocks} blocks "
          f"of {args.every} steps")
    for name, build in (("bn_relu", bn_relu), ("tanh10", tanh10)):
        bench(name, build, every=args.every, blocks=args.blocks, batch=args.batch)


if __name__ == "__main__":
    main()
