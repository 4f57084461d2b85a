"""A playground training session: one dataset, one or two networks stepping in lockstep.

A :class:`Session` is plain, synchronous code (the server runs it in a worker thread). It
builds everything from a :class:`~trainlab.playground.config.State` and its seed alone, so two
sessions from the same state produce the same numbers, whatever the pace at which they are
stepped or looked at:

* ``seed`` draws the data and the split (``data.load(ds, rng=default_rng([seed, 0]))``), the
  weights (``default_rng([seed, 1])``, the same stream for both sides of compare mode, so that
  "xavier against he" differs by the initializer alone) and the batch order
  (``data.Batches(..., rng=default_rng([seed, 2]))``, one batch fed to both sides);
* each side is ``trainlab.models.mlp`` with ``trainlab.optim.create(...)`` and a
  ``trainlab.Monitor(model, every=every, histograms=True)``. Steps ``s`` with ``s % every == 0``
  are *sampled*: the monitor records the per-layer histograms and update ratios, the
  validation split is evaluated (in eval mode) and ``Monitor.diagnose()`` runs;
* :meth:`Session.advance` steps until a count or a wall-clock budget is reached and returns
  an *update*: every per-step number and every sampled record since the last update, so what
  the page shows depends on the step count alone. Only the decision boundary is drawn "now",
  at the step it is labelled with.

A side whose loss becomes NaN or Inf stops (its optimizer does not apply that step) and says
so; the other side of a comparison goes on.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from trainlab import data, init, models, nn, optim
from trainlab.monitor import Monitor
from trainlab.playground.config import TEST_FRACTION, VAL_FRACTION, State, optimizer_kwargs

__all__ = ["Session", "Run", "scaled_init", "column_stride", "BINS", "GRID", "KEEP_RECORDS",
           "MAX_COLUMNS"]

BINS = 32            #: buckets per histogram
GRID = 48            #: the decision boundary is evaluated on GRID x GRID points
KEEP_RECORDS = 64    #: monitor records kept per side (the page keeps the history)
MAX_COLUMNS = 240    #: histogram-over-time columns the page keeps (older ones thinned by 2)
BOUNDARY_EVERY_S = 0.5   #: the boundary is redrawn at most this often (seconds of a session's time) ...
BOUNDARY_SHARE = 0.25    #: ... and only once training has had 1/BOUNDARY_SHARE - 1 times its cost since


def scaled_init(name: str, scale: float) -> str | Callable[..., np.ndarray]:
    """Initializer ``name`` with its standard deviation multiplied by ``scale``.

    ``scale == 1`` returns the name itself, so the weights are bit-identical to ``init=name``.
    """
    if scale == 1.0:
        return name
    fn = init.get(name)

    def scaled(shape: tuple[int, ...], *, rng: np.random.Generator, dtype: Any = np.float32) -> np.ndarray:
        w = fn(shape, rng=rng, dtype=dtype)
        w *= w.dtype.type(scale)
        return w

    scaled.__name__ = f"{name}x{scale:g}"
    return scaled


def column_stride(step: int, every: int) -> int:
    """The step spacing of the histogram columns the page keeps at ``step``: ``every * 2**k``,
    the smallest that leaves at most :data:`MAX_COLUMNS` columns (a function of the step alone)."""
    stride = every
    while step // stride >= MAX_COLUMNS:
        stride *= 2
    return stride


def _pack_histogram(h: Any) -> list[Any]:
    """``[lo, hi, nonfinite, std, *counts]``: equal-width buckets between lo and hi, and the
    standard deviation of the values counted (from the histogram's sum and sum of squares);
    ``lo == hi`` when every value is the same."""
    if h is None:
        return []
    if h.num == 0:
        return [None, None, int(h.nonfinite), None]
    mean = h.sum / h.num
    std = math.sqrt(max(h.sum_squares / h.num - mean * mean, 0.0))
    if h.min == h.max:          # one value: np.histogram's edges are v +- 0.5, the page draws a line at v
        return [h.min, h.max, int(h.nonfinite), 0.0, *h.counts.tolist()]
    return [float(h.edges[0]), float(h.edges[-1]), int(h.nonfinite), _finite_or_none(std), *h.counts.tolist()]


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class Run:
    """One side: a network, its optimizer and its monitor, and what it has not yet reported."""

    def __init__(self, label: str, config: dict[str, Any], splits: data.Splits, *, seed: int, every: int) -> None:
        self.label, self.config, self.every = label, dict(config), int(every)
        rng = np.random.default_rng([seed, 1])
        self.model = models.mlp(splits.input_shape[0], [config["width"]] * config["depth"], splits.num_classes,
                                activation=config["act"], batchnorm=config["bn"],
                                init=scaled_init(config["init"], config["scale"]), rng=rng)
        self.loss_fn, self.eval_loss = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
        self.optimizer = optim.create(config["opt"], self.model.parameters(), **optimizer_kwargs(config))
        children = list(self.model.named_children())
        self.act_layers = [n for n, m in children if getattr(m, "is_activation", False)]
        self.linear_layers = [n for n, m in children if isinstance(m, nn.Linear)]
        # only the histograms the page draws (activation layers' outputs and gradients), and only
        # the latest records (the page keeps the history): a deep net's sampled step stays cheap
        self.monitor = Monitor(self.model, self.every, histograms=("act", "grad"), histogram_layers=self.act_layers,
                               bins=BINS, max_records=KEEP_RECORDS)
        self.val = splits.val
        self.diverged_at: int | None = None
        self._finding_keys: set[tuple[str, str]] = set()
        self.findings: list[dict[str, Any]] = []
        self._reset_pending()

    def _reset_pending(self) -> None:
        self.p_steps: list[int] = []
        self.p_loss: list[float | None] = []
        self.p_acc: list[float] = []
        self.p_val: list[list[Any]] = []
        self.p_hist: list[list[Any]] = []
        self.p_ratio: list[list[Any]] = []
        self.p_new: list[dict[str, Any]] = []
        self.p_event: str | None = None

    def describe(self) -> dict[str, Any]:
        params = sum(p.data.size for p in self.model.parameters())
        return {"label": self.label, "config": self.config, "params": int(params),
                "act_layers": self.act_layers, "linear_layers": self.linear_layers,
                "layers": [f"{n} {type(m).__name__}" for n, m in self.model.named_children()]}

    # ------------------------------------------------------------------ stepping
    def train_step(self, step: int, xb: np.ndarray, yb: np.ndarray) -> None:
        """One forward/backward/update on ``(xb, yb)`` as the Trainer does it, monitored."""
        if self.diverged_at is not None:
            return
        monitor = self.monitor
        monitor.begin_step(step)
        logits = self.model(xb)
        loss = self.loss_fn(logits, yb)
        self.model.backward(self.loss_fn.backward(), input_grad=False)
        monitor.after_backward()
        finite = math.isfinite(loss)
        if finite:
            self.optimizer.step()
        self.optimizer.zero_grad()
        monitor.end_step(step)
        self.p_steps.append(step)
        self.p_loss.append(loss if finite else None)
        self.p_acc.append(float(np.count_nonzero(logits.argmax(axis=1) == yb)) / len(yb))
        sampled = step % self.every == 0
        if sampled:
            self._sampled(step)
        if not finite:
            self.diverged_at = step
            self.p_event = f"side {self.label}: the loss is {loss} at step {step}; this side stops here"
            if not sampled:    # record the failing batch, so that the diagnosis names the first bad layer
                self.monitor.observe(xb, yb, self.loss_fn, step=step)
                self._diagnose(step)

    def _sampled(self, step: int) -> None:
        record = self.monitor.steps[-1]
        hist = record.histograms or {}
        self.p_hist.append([step, [_pack_histogram(hist.get(n, {}).get("act")) for n in self.act_layers],
                            [_pack_histogram(hist.get(n, {}).get("grad")) for n in self.act_layers]])
        self.p_ratio.append([step, [_finite_or_none(record.layers.get(n, {}).get("weight.update_ratio", math.nan))
                                    for n in self.linear_layers]])
        loss, acc = self.evaluate(self.val.x, self.val.y)
        self.p_val.append([step, _finite_or_none(loss), acc])
        self._diagnose(step)

    def _diagnose(self, step: int) -> None:
        found = self.monitor.diagnose()
        self.findings = [{"kind": f.kind, "layer": f.layer, "message": f.message, "suggestion": f.suggestion}
                         for f in found]
        for f, item in zip(found, self.findings, strict=True):
            if (f.kind, f.layer) not in self._finding_keys:      # the first time this finding appears
                self._finding_keys.add((f.kind, f.layer))
                self.p_new.append({"step": step, **item})

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Loss and accuracy on ``(x, y)`` in eval mode (BatchNorm uses its running statistics)."""
        self.model.eval()
        try:
            logits = self.model(x)
            loss = self.eval_loss(logits, y)
        finally:
            self.model.train()
        return float(loss), float(np.count_nonzero(logits.argmax(axis=1) == y)) / len(y)

    def boundary(self, grid: np.ndarray) -> dict[str, str]:
        """The predicted class and its probability on ``grid`` (G*G, 2), as base64 bytes."""
        self.model.eval()
        try:
            logits = self.model(grid).astype(np.float64)
        finally:
            self.model.train()
        classes = logits.shape[1]
        with np.errstate(all="ignore"):
            logits -= logits.max(axis=1, keepdims=True)
            prob = np.exp(logits)
            prob /= prob.sum(axis=1, keepdims=True)
        top = prob.max(axis=1)
        cls = np.where(np.isfinite(top), prob.argmax(axis=1), 255).astype(np.uint8)
        conf = np.nan_to_num((top - 1.0 / classes) / (1.0 - 1.0 / classes), nan=0.0)
        conf = np.clip(np.round(conf * 255), 0, 255).astype(np.uint8)
        return {"cls": base64.b64encode(cls.tobytes()).decode(), "conf": base64.b64encode(conf.tobytes()).decode()}

    def take(self) -> dict[str, Any]:
        """What this side has not yet reported, and its current findings."""
        out = {"label": self.label, "steps": self.p_steps, "loss": self.p_loss, "acc": self.p_acc,
               "val": self.p_val, "hist": self.p_hist, "ratio": self.p_ratio, "new_findings": self.p_new,
               "findings": self.findings, "diverged_at": self.diverged_at, "event": self.p_event}
        self._reset_pending()
        return out


class Session:
    """The data, the batch order and one or two :class:`Run` s, stepped together.

    Args:
        state: a parsed state (:func:`~trainlab.playground.config.parse_state`).
        max_steps: the session pauses for good at this step count.
        max_seconds: ... or after this much wall-clock time since it was built.
        clock: the time source (tests pass a fake one).
    """

    def __init__(self, state: State, *, max_steps: int = 100_000, max_seconds: float = 1800.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state, self.clock = state, clock
        self.max_steps, self.max_seconds = int(max_steps), float(max_seconds)
        self.started = clock()
        d = state.data
        seed = d["seed"]
        self.splits = _load(d, np.random.default_rng([seed, 0]))
        x, y = self.splits.train
        self.batches = data.Batches(x, y, d["batch"], rng=np.random.default_rng([seed, 2]))
        self.batches_per_epoch = len(self.batches)
        self._iter = iter(self.batches)
        self.runs = [Run(label, cfg, self.splits, seed=seed, every=d["every"])
                     for label, cfg in zip("AB", state.runs, strict=False)]
        self.step = 0
        self.two_d = self.splits.input_shape == (2,)
        self._grid, self.extent = self._make_grid() if self.two_d else (None, None)
        self._last_boundary = -math.inf
        self._boundary_cost = 0.0        # seconds the last boundary took
        self._trained = 0.0              # seconds spent stepping since the last boundary
        self.finished: str | None = None

    def _make_grid(self) -> tuple[np.ndarray, list[float]]:
        x = self.splits.train.x
        lo, hi = x.min(axis=0) - 0.4, x.max(axis=0) + 0.4
        xs, ys = np.linspace(lo[0], hi[0], GRID), np.linspace(hi[1], lo[1], GRID)   # row 0 at the top
        gx, gy = np.meshgrid(xs, ys)
        grid = np.column_stack([gx.ravel(), gy.ravel()]).astype(np.float32)
        return grid, [float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])]

    @property
    def epoch(self) -> int:
        return self.step // self.batches_per_epoch

    def steps_to_epoch_end(self) -> int:
        return self.batches_per_epoch - self.step % self.batches_per_epoch

    def describe(self) -> dict[str, Any]:
        """The ``ready`` message: the state, each side's layers, the data and its points."""
        s = self.splits
        info: dict[str, Any] = {"dataset": s.name, "classes": s.num_classes, "inputs": int(s.input_shape[0]),
                                "train": len(s.train.y), "val": len(s.val.y), "test": len(s.test.y),
                                "batches_per_epoch": self.batches_per_epoch, "two_d": self.two_d}
        if self.two_d:
            info["extent"], info["grid"] = self.extent, GRID
            xy = np.round(s.train.x.astype(np.float64), 3)
            info["points"] = [[float(a), float(b), int(c)] for (a, b), c in zip(xy, s.train.y, strict=True)]
        return {"type": "ready", "state": self.state.to_dict(), "data": info,
                "runs": [r.describe() for r in self.runs], "every": self.state.data["every"],
                "max_steps": self.max_steps}

    # ------------------------------------------------------------------ stepping
    def _next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        try:
            return next(self._iter)
        except StopIteration:
            self._iter = iter(self.batches)
            return next(self._iter)

    def check_limits(self) -> str | None:
        """Why this session may not step any more (None while it may)."""
        if self.finished is None:
            if self.step >= self.max_steps:
                self.finished = f"this session reached its limit of {self.max_steps} steps; reset to start again"
            elif self.clock() - self.started > self.max_seconds:
                self.finished = (f"this session reached its time limit of {self.max_seconds:g} s; "
                                 "reset to start again")
            elif all(r.diverged_at is not None for r in self.runs):
                self.finished = "training diverged; change the configuration or reset"
        return self.finished

    def advance(self, steps: int | None = None, budget: float | None = None,
                boundary: bool | None = None) -> dict[str, Any]:
        """Step up to ``steps`` times (None: no count limit) or until ``budget`` seconds have
        passed (None: no time limit), then return the update; at least one step is taken unless
        a limit is reached. ``boundary`` forces (True) or skips (False) the decision boundary;
        None draws it when :data:`BOUNDARY_EVERY_S` has passed since the last one and drawing it
        keeps it under :data:`BOUNDARY_SHARE` of this session's compute (when many sessions share
        the cores, the boundary must not eat their turns)."""
        if steps is None and budget is None:
            raise ValueError("Session.advance: give steps, budget or both")
        start, done = self.clock(), 0
        with np.errstate(all="ignore"):
            while self.check_limits() is None and (steps is None or done < steps):
                xb, yb = self._next_batch()
                for run in self.runs:
                    run.train_step(self.step, xb, yb)
                self.step += 1
                done += 1
                if budget is not None and self.clock() - start >= budget:
                    break
        self._trained += self.clock() - start
        return self.update(boundary)

    def update(self, boundary: bool | None = None) -> dict[str, Any]:
        """The ``update`` message: everything not yet reported (see the module docstring)."""
        msg: dict[str, Any] = {"type": "update", "step": self.step, "epoch": self.epoch,
                               "stride": column_stride(self.step, self.state.data["every"]),
                               "runs": [r.take() for r in self.runs], "finished": self.check_limits()}
        now = self.clock()
        due = (now - self._last_boundary >= BOUNDARY_EVERY_S
               and self._trained * BOUNDARY_SHARE >= self._boundary_cost * (1 - BOUNDARY_SHARE))
        if self.two_d and (boundary or (boundary is None and due)):
            with np.errstate(all="ignore"):
                msg["boundary"] = {"step": self.step, "runs": [r.boundary(self._grid) for r in self.runs]}
            self._last_boundary, self._trained = self.clock(), 0.0
            self._boundary_cost = self._last_boundary - now
        return msg


def _load(d: dict[str, Any], rng: np.random.Generator) -> data.Splits:
    kwargs: dict[str, Any] = {"val_fraction": VAL_FRACTION, "test_fraction": TEST_FRACTION}
    if d["ds"] != "digits":
        kwargs["n_samples"] = d["n"]
        kwargs["cluster_std" if d["ds"] == "blobs" else "noise"] = d["noise"]
    return data.load(d["ds"], rng=rng, **kwargs)
