"""Per-layer health monitor: activation, gradient and update statistics, and a diagnosis.

:class:`Monitor` hooks every layer of a model (the direct children of a
:class:`~trainlab.nn.Sequential`; for any other model, every module without
children) and, on *sampled* steps (``step % every == 0``), records per layer:

* **activations** (the layer's output ``a``): ``act_mean``, ``act_std`` over all
  values, and ``act_p15``, ``act_p50``, ``act_p85``, the 15th/50th/85th
  percentiles (linear interpolation, as ``np.quantile``) of a deterministic
  strided subsample of at most :data:`SAMPLE_SIZE` values (one ``np.sort`` of it,
  which the activation histogram reuses); ``act_nonfinite``, the fraction of NaN/Inf values (0 when finite);
* **dead ReLUs** (ReLU layers): ``zero_frac``, the fraction of exact zeros, and
  ``dead_frac``, the fraction of units that are zero for every example of the batch;
* **saturation** (Tanh / Sigmoid layers): ``saturation``, the fraction of units with
  ``|tanh| > 0.99``, or ``sigmoid < 0.01`` or ``> 0.99``: there the local gradient is
  below 0.02 and learning stalls (Glorot & Bengio 2010);
* **gradients** (backward hooks): ``grad_std``, ``grad_norm`` of the gradient with
  respect to the layer's output, ``grad_nonfinite``; and for each parameter ``p``
  of the layer ``p.grad_norm``, ``p.grad_std`` (read in the layer's backward hook,
  right after its backward filled ``Parameter.grad``, because the Trainer zeroes the
  gradients before :meth:`Monitor.end_step`);
* **updates**: ``p.update_ratio = ||w_after - w_before|| / ||w_before||`` for each
  parameter (weights snapshotted into reused buffers in :meth:`Monitor.begin_step`);
  undefined, so not recorded, when ``||w_before|| = 0`` (e.g. a zero-initialized bias).

With ``histograms=True`` a sampled step also records :class:`Histogram` s (``bins``
equal-width buckets between the smallest and largest finite value) of each layer's
activation (``"act"``), of the gradient at its output (``"grad"``) and of each of its
parameters (``"weight"``, ``"bias"``, ...), in :attr:`StepRecord.histograms`. They are
computed from the same deterministic strided subsample as the percentiles (at most
:data:`HISTOGRAM_SAMPLE` values of each array), so they cost tens of microseconds a layer
(about 2% of a step of the benchmark MLP at ``every=10``) and show the shape of the
distribution (vanishing, exploding, saturation) at a glance;
``num`` says how many values they count. :meth:`Monitor.histogram_history` returns one
layer's histograms over time (TensorBoard's histogram dashboard and the playground's
strips draw them). ``histograms=("act", "grad")`` records only some kinds and
``histogram_layers=[...]`` only some layers; ``max_records`` bounds how many sampled steps
are kept.

Hooks only read the arrays they are given, so training is bit-identical with and
without a monitor; on non-sampled steps each hook is one attribute test.

:meth:`Monitor.diagnose` turns the most recent statistics into :class:`Finding` s, with
these rule-of-thumb thresholds (module constants):

* non-finite activations / gradients / parameters: named at the first layer;
* vanishing activations: the smallest std of an activation layer (the last one in a
  freshly initialised net; the minimum, because trained output layers can recover) is
  below :data:`VANISHING_STD` or :data:`ACT_STD_RATIO` times smaller than the first
  layer's; exploding: the largest above :data:`EXPLODING_STD` or :data:`ACT_STD_RATIO` times larger
  (suggests xavier for tanh/sigmoid, he for ReLU: Glorot & Bengio 2010; He et al. 2015);
* saturated tanh/sigmoid: more than :data:`SATURATED_FRACTION` of a layer's units;
* dead ReLUs: more than :data:`DEAD_FRACTION` zeros (a ReLU layer sits near 50%, and at up
  to ~70% deep in a narrow he-initialised net, so 50% would flag healthy networks);
* update ratio of a weight (``ndim >= 2``) above :data:`UPDATE_RATIO_HIGH` (lower the
  learning rate) or below :data:`UPDATE_RATIO_LOW` at every sampled step so far (raise it;
  a ratio that was healthy earlier was lowered by a schedule); about ``1e-3`` is
  healthy (Karpathy, CS231n notes, "Neural Networks Part 3: ratio of weights:updates");
* vanishing / exploding gradients: the gradient norm at the first layer's output is
  below :data:`GRAD_RATIO` (above ``1 / GRAD_RATIO``) times the last layer's;
* the learning rate as the cause: a weight's update ratio reached :data:`LR_UPDATE_RATIO`
  at some sampled step (an update as large as the weight itself: the weights are being
  replaced, not tuned), or the training loss grew :data:`LOSS_GROWTH` times above its first
  sampled value (losses come from ``end_step(step, loss=...)``, which the Trainer passes).
  Then a ``learning_rate_high`` finding comes first (after a non-finite one), an "update ratio too low"
  finding is dropped (the ratio is low because the units died), and the findings that would
  blame the init (vanishing or exploding activations and gradients, dead or saturated units)
  say that they follow from the learning rate instead. Independently of that, an init
  suggestion that the weights already follow (``he`` for a net initialised with he) is
  replaced by advice that can help.

References:
    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS 2010. He, Zhang, Ren & Sun, "Delving Deep into Rectifiers", ICCV
    2015. Karpathy, CS231n notes, https://cs231n.github.io/neural-networks-3/#ratio
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from trainlab import init as initializers
from trainlab.nn.module import Module, Parameter, Sequential

__all__ = ["Monitor", "Finding", "StepRecord", "Histogram", "histogram", "HISTOGRAM_KINDS", "SAMPLE_SIZE",
           "HISTOGRAM_SAMPLE", "PERCENTILES", "ACT_STD_RATIO", "VANISHING_STD", "EXPLODING_STD", "SATURATED_FRACTION",
           "DEAD_FRACTION",
           "UPDATE_RATIO_HIGH", "UPDATE_RATIO_LOW", "GRAD_RATIO", "LOOKBACK", "LR_UPDATE_RATIO", "LOSS_GROWTH"]

SAMPLE_SIZE = 4096           #: most values the percentiles are computed from
HISTOGRAM_SAMPLE = 4096      #: most values a histogram counts (the percentiles' strided subsample)
PERCENTILES = (15, 50, 85)   #: recorded as act_p15, act_p50, act_p85
TANH_SATURATION = 0.99       #: |tanh| above this is saturated
SIGMOID_SATURATION = 0.01    #: sigmoid below this or above 1 - this is saturated
ACT_STD_RATIO = 100.0        #: std falling (growing) this much from the first activation layer
VANISHING_STD = 1e-3         #: an activation layer's std below this is vanishing
EXPLODING_STD = 1e3          #: an activation layer's std above this is exploding
SATURATED_FRACTION = 0.3     #: fraction of saturated tanh/sigmoid units that is a finding
DEAD_FRACTION = 0.8          #: fraction of ReLU zeros that is a finding (healthy: ~50%, up to ~70% deep)
UPDATE_RATIO_HIGH = 1e-2     #: ||dw||/||w|| above this: learning rate too high
UPDATE_RATIO_LOW = 1e-5      #: ||dw||/||w|| below this: learning rate too low
GRAD_RATIO = 1e-3            #: first/last layer gradient norm below this (above 1/this) is a finding
LOOKBACK = 5                 #: diagnose() uses each stat's latest value within this many sampled steps
LR_UPDATE_RATIO = 1.0        #: an update ratio this high at any sampled step: the learning rate is the cause
LOSS_GROWTH = 10.0           #: the loss this many times its first sampled value: the learning rate is the cause

_QUANTILES = tuple(p / 100 for p in PERCENTILES)
_PERCENTILE_KEYS = tuple(f"act_p{p}" for p in PERCENTILES)
_RECOMMEND_FIX = "lower the learning rate, check the inputs for NaN/Inf, or clip gradients"
_LR_FIX = "lower the learning rate (aim for an update ratio of ~1e-3)"
_FOLLOWS_FROM_LR = "this follows from the learning rate (see the learning-rate finding), not from the init"
_INIT_KINDS = ("vanishing_activations", "exploding_activations", "vanishing_gradients", "exploding_gradients",
               "dead_relu", "saturated")


class Histogram(NamedTuple):
    """Bucket counts of the finite values of an array (TensorBoard's ``HistogramProto`` fields).

    Bucket ``i`` holds the values in ``[edges[i], edges[i + 1])``, the last one also its
    right edge (``np.histogram``'s convention); ``counts.sum() == num``. ``nonfinite``
    counts the NaN/Inf values left out. For an array with no finite value ``num`` is 0 and
    ``edges``/``counts`` are empty.
    """

    edges: np.ndarray    #: float64, shape (bins + 1,)
    counts: np.ndarray   #: int64, shape (bins,)
    min: float
    max: float
    num: int
    sum: float
    sum_squares: float
    nonfinite: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists for the arrays)."""
        return {**self._asdict(), "edges": self.edges.tolist(), "counts": self.counts.tolist()}


def histogram(values: np.ndarray, bins: int = 30) -> Histogram:
    """The :class:`Histogram` of the finite values of ``values`` in ``bins`` equal-width buckets.

    The range is ``[min, max]`` of the finite values (``[v - 0.5, v + 0.5]`` when they are all
    equal to ``v``), and ``edges``/``counts`` equal ``np.histogram(values.astype(float64), bins)``
    exactly; sums are accumulated in float64.

    The counts come from the sorted values: bucket ``i`` holds the values ``v`` with
    ``edges[i] <= v < edges[i + 1]``, so with ``k_i`` the number of values below ``edges[i]``
    (a binary search in the sorted copy) it holds ``k_{i+1} - k_i`` of them, the last one the
    rest. That is np.histogram's convention exactly, without its per-value bucket estimate and
    the two corrections of it (half the time of ``np.histogram`` on a 4,096-value sample).
    """
    flat = np.asarray(values).reshape(-1)
    return _sorted_histogram(np.sort(flat), bins)


def _sorted_histogram(ordered: np.ndarray, bins: int) -> Histogram:
    """:func:`histogram` of values already sorted (``np.sort``'s order: NaN last)."""
    # sorted in their own dtype (float32 sorts in half float64's time), then in float64 for the
    # sums and the comparisons with the float64 edges (exact either way)
    x = ordered.astype(np.float64, copy=False)
    if x.size and not (math.isfinite(x[0]) and math.isfinite(x[-1])):   # -inf first, +inf and NaN last
        x = x[np.isfinite(x)]
    nonfinite = ordered.size - x.size
    if x.size == 0:
        return Histogram(np.zeros(0), np.zeros(0, dtype=np.int64), math.nan, math.nan, 0, 0.0, 0.0, nonfinite)
    total, sum_squares = float(np.add.reduce(x)), float(np.dot(x, x))
    lo, hi = float(x[0]), float(x[-1])
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    edges = _linspace(first, last, bins)
    below = np.searchsorted(x, edges, side="left")    # values below each edge (0 below the first)
    below[-1] = x.size                                # the last bucket also holds its right edge
    counts = np.subtract(below[1:], below[:-1], dtype=np.int64)
    return Histogram(edges, counts, lo, hi, int(x.size), total, sum_squares, nonfinite)


_STEPS: dict[int, np.ndarray] = {}


def _linspace(first: float, last: float, bins: int) -> np.ndarray:
    """``np.linspace(first, last, bins + 1)``, bit for bit (``arange * step + first``, the last
    edge set to ``last``, as NumPy computes it) without its per-call argument handling."""
    step = (last - first) / bins
    if step == 0 or not math.isfinite(step):   # denormal or overflowing spans: NumPy's own handling
        return np.linspace(first, last, bins + 1)
    ramp = _STEPS.get(bins)
    if ramp is None:
        ramp = _STEPS[bins] = np.arange(bins + 1, dtype=np.float64)
    edges = ramp * step
    edges += first
    edges[-1] = last
    return edges


HISTOGRAM_KINDS = ("act", "grad", "params")   #: what Monitor(histograms=...) can record


def _histogram_kinds(histograms: bool | Iterable[str]) -> frozenset[str]:
    """The kinds ``Monitor(histograms=...)`` records: all for True, none for False, else the given ones."""
    if isinstance(histograms, (bool, np.bool_)):
        return frozenset(HISTOGRAM_KINDS) if histograms else frozenset()
    if isinstance(histograms, str) or not isinstance(histograms, Iterable):
        raise TypeError(f"Monitor: histograms must be True, False or a collection of {HISTOGRAM_KINDS}, "
                        f"got {histograms!r}")
    kinds = frozenset(histograms)
    unknown = sorted(map(repr, kinds - set(HISTOGRAM_KINDS)))
    if unknown:
        raise ValueError(f"Monitor: histograms: unknown kind(s) {', '.join(unknown)}; valid: {HISTOGRAM_KINDS}")
    return kinds


class StepRecord(NamedTuple):
    """The statistics of one sampled step: ``layers[layer_name][stat_name] -> value``, and with
    ``Monitor(histograms=True)`` ``histograms[layer_name][what] -> Histogram`` (``what`` is
    ``"act"``, ``"grad"`` or a parameter's local name such as ``"weight"``)."""

    step: int
    layers: dict[str, dict[str, float]]
    histograms: dict[str, dict[str, Histogram]] | None = None


@dataclass
class Finding:
    """One diagnosis: ``kind`` (e.g. ``"vanishing_activations"``), the ``layer`` it names,
    a readable ``message``, the numbers behind it (``evidence``) and a ``suggestion``."""

    kind: str
    layer: str
    message: str
    evidence: dict[str, float] = field(default_factory=dict)
    suggestion: str = ""

    def __str__(self) -> str:
        return f"{self.message}; {self.suggestion}" if self.suggestion else self.message


def _g(value: float) -> str:
    return f"{value:.3g}"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


def _layers_label(count: int, kind: str) -> str:
    return " ".join(filter(None, [str(count), kind, "layer" if count == 1 else "layers"]))


@functools.lru_cache(maxsize=64)
def _quantile_plan(size: int, qs: tuple[float, ...]) -> tuple[list[int], list[float]]:
    """``(lo_k, f_k)`` for a sample of ``size``: ``q_k (size - 1) = lo_k + f_k`` (NumPy's arithmetic)."""
    pos = np.asarray(qs, dtype=np.float64) * (size - 1)
    lo = np.floor(pos)
    return lo.astype(np.intp).tolist(), (pos - lo).tolist()


def _quantiles(ordered: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Linear-interpolation quantiles (``np.quantile``'s default) of a sorted sample.

    With ``lo_k = floor(q_k (n - 1))`` and ``f_k`` the fraction left over, the quantile is
    ``x[lo_k] + (x[lo_k + 1] - x[lo_k]) f_k``. (A full ``np.sort`` of the 4,096-value sample
    takes a fifth of the time of ``np.partition`` at the three order statistics on AVX-512
    NumPy, and the histograms reuse it.)
    """
    lo, frac = _quantile_plan(ordered.size, qs)
    out = []
    for k, f in zip(lo, frac, strict=True):
        a = float(ordered[k])
        out.append(a + (float(ordered[k + 1]) - a) * f if f > 0 else a)
    return out


def _subsample(flat: np.ndarray, per_example: int, size: int = SAMPLE_SIZE) -> np.ndarray:
    """At most ``size`` values at a fixed stride coprime with the example size (spread over units)."""
    if flat.size <= size:
        return flat
    stride = flat.size // size
    while math.gcd(stride, per_example) != 1:
        stride += 1
    return flat[::stride][:size]


def _per_example(x: np.ndarray) -> int:
    return x.size // x.shape[0] if x.ndim > 1 and x.shape[0] else 1


def _moments(flat: np.ndarray) -> tuple[float, float, float]:
    """``(mean, std, sum of squares)`` of a 1-D array with one BLAS dot.

    ``var = sum(x^2)/n - mean^2`` loses precision when ``mean^2`` is a large part of
    ``sum(x^2)/n``; then (ReLU, sigmoid outputs) it falls back to the two-pass
    ``sum((x - mean)^2)/n``. Either way the relative error is a few float32 eps.
    """
    n = flat.size
    mean = float(np.add.reduce(flat)) / n
    sumsq = float(np.dot(flat, flat))
    if not math.isfinite(sumsq) and math.isfinite(mean) and flat.dtype != np.float64:
        flat = flat.astype(np.float64)            # x^2 overflowed float32 (|x| > 1.8e19)
        mean, sumsq = float(np.add.reduce(flat)) / n, float(np.dot(flat, flat))
    if not (math.isfinite(mean) and math.isfinite(sumsq)):
        return mean, float("nan"), sumsq
    if mean * mean <= 0.5 * sumsq / n:
        var = sumsq / n - mean * mean
    else:
        centred = np.subtract(flat, flat.dtype.type(mean))
        var = float(np.dot(centred, centred)) / n
    return mean, math.sqrt(max(var, 0.0)), sumsq


def _nonfinite_fraction(x: np.ndarray, *totals: float) -> float:
    """0.0 when the ``totals`` (sums over x) are finite, else the fraction of NaN/Inf in x."""
    if all(math.isfinite(t) for t in totals):
        return 0.0
    return float(x.size - np.count_nonzero(np.isfinite(x))) / x.size


def _activation_stats(x: np.ndarray, kind: str | None) -> tuple[dict[str, float], np.ndarray]:
    """The activation statistics of ``x``, and its sorted strided subsample (the histogram's)."""
    n = x.size
    flat = x.reshape(-1)
    mean, std, sumsq = _moments(flat)
    stats = {"act_mean": mean, "act_std": std, "act_nonfinite": _nonfinite_fraction(flat, mean, sumsq)}
    ordered = np.sort(_subsample(flat, _per_example(x)))
    for key, v in zip(_PERCENTILE_KEYS, _quantiles(ordered, _QUANTILES), strict=True):
        stats[key] = v
    if kind == "relu":
        stats["zero_frac"] = float(n - np.count_nonzero(flat)) / n
        if x.ndim > 1:
            units = n // x.shape[0]
            stats["dead_frac"] = float(units - np.count_nonzero(np.any(x, axis=0))) / units
    elif kind == "tanh":
        hi = TANH_SATURATION
        stats["saturation"] = float(np.count_nonzero(flat > hi) + np.count_nonzero(flat < -hi)) / n
    elif kind == "sigmoid":
        lo = SIGMOID_SATURATION
        stats["saturation"] = float(np.count_nonzero(flat < lo) + np.count_nonzero(flat > 1 - lo)) / n
    return stats, ordered


def _grad_stats(g: np.ndarray, prefix: str) -> dict[str, float]:
    flat = g.reshape(-1)
    mean, std, sumsq = _moments(flat)
    stats = {f"{prefix}grad_std": std, f"{prefix}grad_norm": math.sqrt(sumsq)}
    if not prefix:
        stats["grad_nonfinite"] = _nonfinite_fraction(flat, mean, sumsq)
    return stats


class _Layer(NamedTuple):
    name: str
    module: Module
    kind: str | None                             # activation_name, or None for other layers
    params: list[tuple[str, str, Parameter]]     # (local name, full name, parameter)


class Monitor:
    """Records per-layer statistics every ``every`` steps and diagnoses common failures.

    Drive it with :meth:`begin_step` / :meth:`end_step` / :meth:`end_epoch` (the
    :class:`~trainlab.train.Trainer` does, given ``monitor=``), or call :meth:`observe`
    on a batch. Hooks are attached at construction; :meth:`detach` (or leaving a
    ``with`` block) removes them.

    Args:
        model: a :class:`~trainlab.nn.Module` (a Sequential or any module tree).
        every: sample steps with ``step % every == 0`` (default 10).
        histograms: also record :class:`Histogram` s on sampled steps: ``True`` for every kind,
            or a collection of the kinds to record, ``"act"`` (the layer's output), ``"grad"``
            (the gradient at its output) and ``"params"`` (each parameter); default False.
        histogram_layers: the names of the layers whose histograms are recorded (default: all).
        bins: buckets per histogram (default 30).
        max_records: keep at most this many :class:`StepRecord` s, dropping the oldest (default:
            all); a long-running session (the playground) bounds its memory with it. The
            epoch means of :meth:`end_epoch` cover the records still kept.

    Attributes:
        steps: a :class:`StepRecord` per sampled step, in order.
        epoch_summary: ``{epoch: {layer: {stat: mean over that epoch's sampled steps}}}``.
        layer_names: the observed layers, in forward order.
    """

    def __init__(self, model: Module, every: int = 10, *, histograms: bool | Iterable[str] = False,
                 histogram_layers: Iterable[str] | None = None, bins: int = 30,
                 max_records: int | None = None) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"Monitor: model must be a trainlab.nn.Module, got {type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"Monitor: every must be an integer >= 1, got {every!r}")
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ValueError(f"Monitor: bins must be an integer >= 1, got {bins!r}")
        if max_records is not None and (isinstance(max_records, bool)
                                        or not isinstance(max_records, (int, np.integer)) or max_records < 1):
            raise ValueError(f"Monitor: max_records must be None or an integer >= 1, got {max_records!r}")
        self.model, self.every = model, int(every)
        self.histogram_kinds = _histogram_kinds(histograms)
        self.histograms, self.bins = bool(self.histogram_kinds), int(bins)
        self.max_records = None if max_records is None else int(max_records)
        if isinstance(model, Sequential):
            named = list(model.named_children())
        else:
            named = [(n or type(model).__name__, m) for n, m in model.named_modules()
                     if next(m.children(), None) is None]
        self._layers = [
            _Layer(name, m, getattr(m, "activation_name", None) if getattr(m, "is_activation", False)
                   else None, [(pn, f"{name}.{pn}", p) for pn, p in m.named_parameters()])
            for name, m in named]
        self.layer_names = [layer.name for layer in self._layers]
        self.histogram_layers = None if histogram_layers is None else frozenset(
            self._known_layers(histogram_layers, "histogram_layers"))
        self.steps: list[StepRecord] = []
        self.losses: list[tuple[int, float]] = []     # (step, training loss) of sampled steps, when given
        self.epoch_summary: dict[int, dict[str, dict[str, float]]] = {}
        self._record: dict[str, dict[str, float]] | None = None   # None: not sampling
        self._hist: dict[str, dict[str, Histogram]] = {}
        self._record_step = 0
        self._snapshots: dict[str, np.ndarray] = {}
        self._epoch_start = 0
        self._removers: list[Callable[[], None]] = []
        self.attach()

    # ------------------------------------------------------------------ hooks
    @property
    def attached(self) -> bool:
        return bool(self._removers)

    def attach(self) -> Monitor:
        """Register the forward and backward hooks (idempotent); returns self."""
        if not self._removers:
            for layer in self._layers:
                self._removers.append(layer.module.register_forward_hook(self._forward_hook(layer)))
                self._removers.append(layer.module.register_backward_hook(self._backward_hook(layer)))
        return self

    def detach(self) -> None:
        """Remove every hook this monitor registered."""
        for remove in self._removers:
            remove()
        self._removers.clear()
        self._record = None

    def __enter__(self) -> Monitor:
        return self.attach()

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    def _forward_hook(self, layer: _Layer) -> Callable[[Module, Any, Any], None]:
        def hook(module: Module, inp: Any, out: Any) -> None:
            if self._record is None or not isinstance(out, np.ndarray) or out.size == 0:
                return
            with np.errstate(over="ignore", invalid="ignore"):
                stats, ordered = _activation_stats(out, layer.kind)
                self._record.setdefault(layer.name, {}).update(stats)
                if self.histograms:
                    self._histogram(layer.name, "act", out, ordered)
        return hook

    def _histogram(self, layer: str, what: str, x: np.ndarray, ordered: np.ndarray | None = None) -> None:
        """Record the histogram of ``x``'s strided subsample (``ordered``: that sample already sorted)."""
        kind = what if what in ("act", "grad") else "params"
        if kind not in self.histogram_kinds or (self.histogram_layers is not None
                                                and layer not in self.histogram_layers):
            return
        if ordered is None or HISTOGRAM_SAMPLE != SAMPLE_SIZE:
            ordered = np.sort(_subsample(x.reshape(-1), _per_example(x), HISTOGRAM_SAMPLE))
        self._hist.setdefault(layer, {})[what] = _sorted_histogram(ordered, self.bins)

    def _known_layers(self, names: Iterable[str], argument: str) -> list[str]:
        if isinstance(names, str):
            names = [names]
        names = list(names)
        unknown = [n for n in names if n not in self.layer_names]
        if unknown:
            raise ValueError(f"Monitor: {argument}: unknown layer(s) {', '.join(map(repr, unknown))}; "
                             f"layers: {', '.join(self.layer_names)}")
        return names

    def _keep(self, record: StepRecord) -> None:
        """Append a record, dropping the oldest beyond ``max_records``."""
        self.steps.append(record)
        if self.max_records is not None and len(self.steps) > self.max_records:
            drop = len(self.steps) - self.max_records
            del self.steps[:drop]
            self._epoch_start = max(0, self._epoch_start - drop)

    def _backward_hook(self, layer: _Layer) -> Callable[[Module, Any, Any], None]:
        def hook(module: Module, grad_input: Any, grad_output: Any) -> None:
            if self._record is None:
                return
            stats = self._record.setdefault(layer.name, {})
            with np.errstate(over="ignore", invalid="ignore"):
                if isinstance(grad_output, np.ndarray) and grad_output.size:
                    stats.update(_grad_stats(grad_output, ""))
                    if self.histograms:
                        self._histogram(layer.name, "grad", grad_output)
                for local, _, p in layer.params:
                    stats.update(_grad_stats(p.grad, f"{local}."))
        return hook

    # ------------------------------------------------------------------ driving
    def begin_step(self, step: int) -> None:
        """Start step ``step``; on a sampled step, snapshot the weights and start recording."""
        if step % self.every:
            self._record = None
            return
        self._record, self._record_step, self._hist = {}, int(step), {}
        for layer in self._layers:
            for _, full, p in layer.params:
                buf = self._snapshots.get(full)
                if buf is None or buf.shape != p.data.shape or buf.dtype != p.data.dtype:
                    buf = self._snapshots[full] = np.empty_like(p.data)
                np.copyto(buf, p.data)

    def after_backward(self) -> None:
        """Read parameter gradients for layers whose backward hook did not run (non-Sequential models).

        Call between ``model.backward`` and ``optimizer.step``; a no-op when not sampling.
        """
        if self._record is None:
            return
        for layer in self._layers:
            stats = self._record.setdefault(layer.name, {})
            for local, _, p in layer.params:
                if f"{local}.grad_norm" not in stats:
                    stats.update(_grad_stats(p.grad, f"{local}."))

    def end_step(self, step: int, loss: float | None = None) -> None:
        """Finish a sampled step: compute the update ratios and store the record (and ``loss``, if given)."""
        if self._record is None:
            return
        if loss is not None:
            self.losses.append((self._record_step, float(loss)))
        record, self._record = self._record, None
        for layer in self._layers:
            for local, full, p in layer.params:
                if self.histograms:
                    self._histogram(layer.name, local, p.data)
                before = self._snapshots[full]
                w_norm = float(np.linalg.norm(before.reshape(-1)))
                np.subtract(p.data, before, out=before)
                if w_norm > 0:
                    record.setdefault(layer.name, {})[f"{local}.update_ratio"] = \
                        float(np.linalg.norm(before.reshape(-1))) / w_norm
        self._keep(StepRecord(self._record_step, record, self._take_histograms()))

    def _take_histograms(self) -> dict[str, dict[str, Histogram]] | None:
        hist, self._hist = self._hist, {}
        return hist if self.histograms else None

    def end_epoch(self, epoch: int) -> None:
        """Average each stat of each layer over this epoch's sampled steps into ``epoch_summary``."""
        records, self._epoch_start = self.steps[self._epoch_start:], len(self.steps)
        if not records:
            return
        summary: dict[str, dict[str, float]] = {}
        for name in self.layer_names:
            values: dict[str, list[float]] = {}
            for rec in records:
                for stat, v in rec.layers.get(name, {}).items():
                    values.setdefault(stat, []).append(v)
            if values:
                summary[name] = {stat: float(np.mean(v)) for stat, v in values.items()}
        self.epoch_summary[int(epoch)] = summary

    def observe(self, x: np.ndarray, y: np.ndarray | None = None, loss: Module | None = None,
                step: int | None = None) -> dict[str, dict[str, float]]:
        """Record one sample now: ``model(x)``, and with ``loss`` and ``y`` also the backward.

        Useful on a freshly initialised network, before any training. Runs in the model's
        current mode (in train mode BatchNorm updates its running statistics, Dropout
        draws); ``Parameter.grad`` is left as it was. Works attached or detached. ``step``
        defaults to one past the last recorded step (0 at first). Returns the recorded stats (layer -> stats).
        """
        if loss is not None and y is None:
            raise ValueError("Monitor.observe: y is required when loss is given")
        if step is None:
            step = self.steps[-1].step + 1 if self.steps else 0
        was_attached, pending = self.attached, (self._record, self._record_step, self._hist)
        self.attach()
        self._record, self._record_step, self._hist = {}, int(step), {}
        try:
            out = self.model(x)
            if loss is not None:
                params = self.model.parameters()
                saved = [p.grad.copy() for p in params]
                loss(out, y)
                self.model.backward(loss.backward())
                self.after_backward()
                for p, g in zip(params, saved, strict=True):
                    p.zero_grad()
                    if np.any(g):
                        p.accumulate_grad(g)
            record = self._record
            if self.histograms:
                for layer in self._layers:
                    for local, _, p in layer.params:
                        self._histogram(layer.name, local, p.data)
            histograms = self._take_histograms()
        finally:
            if not was_attached:
                self.detach()
            self._record, self._record_step, self._hist = pending     # a step in progress (if any) goes on
        self._keep(StepRecord(int(step), record, histograms))
        return {k: dict(v) for k, v in record.items()}

    # ------------------------------------------------------------------ access
    def latest(self) -> dict[str, dict[str, float]]:
        """The last sampled step's statistics, ``{layer: {stat: value}}`` (empty before any)."""
        return {k: dict(v) for k, v in self.steps[-1].layers.items()} if self.steps else {}

    def history(self, layer: str, stat: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of ``stat`` for ``layer`` over the sampled steps that recorded it."""
        if layer not in self.layer_names:
            raise ValueError(f"Monitor.history: unknown layer {layer!r}; "
                             f"layers: {', '.join(self.layer_names)}")
        pairs = [(r.step, r.layers[layer][stat]) for r in self.steps if stat in r.layers.get(layer, {})]
        if not pairs and self.steps:
            seen = sorted({s for r in self.steps for s in r.layers.get(layer, {})})
            raise ValueError(f"Monitor.history: no stat {stat!r} recorded for layer {layer!r}; "
                             f"recorded: {', '.join(seen) or 'none'}")
        return (np.array([p[0] for p in pairs], dtype=np.int64),
                np.array([p[1] for p in pairs], dtype=np.float64))

    def histogram_history(self, layer: str, what: str = "act") -> list[tuple[int, Histogram]]:
        """``[(step, Histogram), ...]`` of ``what`` (``"act"``, ``"grad"``, ``"weight"``, ...) for
        ``layer`` over the sampled steps that recorded it (needs ``Monitor(histograms=True)``)."""
        if not self.histograms:
            raise ValueError("Monitor.histogram_history: this monitor records no histograms; "
                             "create it with Monitor(model, histograms=True)")
        if layer not in self.layer_names:
            raise ValueError(f"Monitor.histogram_history: unknown layer {layer!r}; "
                             f"layers: {', '.join(self.layer_names)}")
        return [(r.step, r.histograms[layer][what]) for r in self.steps
                if r.histograms and what in r.histograms.get(layer, {})]

    def plot(self, layers: list[str] | None = None) -> Any:
        """Activation std, gradient norm and update ratio per layer over the sampled steps, and the
        by-layer profile at the last one: a matplotlib Figure (see
        :func:`trainlab.plotting.monitor_figure`); a notebook shows it when it is a cell's value."""
        from trainlab.plotting import monitor_figure

        return monitor_figure(self, layers)

    def plot_histograms(self, what: str = "act", step: int | None = None, layers: list[str] | None = None) -> Any:
        """One histogram panel per layer (``layers``, default all) of ``what`` (``"act"``, ``"grad"``,
        ``"weight"``, ...) at sampled step ``step`` (default: the last): a matplotlib Figure.
        Needs ``histograms=True``."""
        from trainlab.plotting import histogram_figure

        return histogram_figure(self, what, step, layers=layers)

    def to_rows(self, per: str = "step") -> list[dict[str, Any]]:
        """Flat dicts for JSON: ``{"step", "layer", <stats>}`` per step and layer (``per="epoch"``:
        ``{"epoch", "layer", <epoch means>}``)."""
        if per == "step":
            return [{"step": r.step, "layer": name, **stats}
                    for r in self.steps for name, stats in r.layers.items()]
        if per == "epoch":
            return [{"epoch": e, "layer": name, **stats} for e, layers in self.epoch_summary.items()
                    for name, stats in layers.items()]
        raise ValueError(f"Monitor.to_rows: per must be 'step' or 'epoch', got {per!r}")

    # ------------------------------------------------------------------ diagnosis
    def _recent(self) -> dict[str, dict[str, float]]:
        """Each stat's most recent value (a step in progress first, then the last LOOKBACK records)."""
        merged: dict[str, dict[str, float]] = {name: {} for name in self.layer_names}
        sources = [self._record] if self._record else []
        sources += [r.layers for r in reversed(self.steps[-LOOKBACK:])]
        for layers in sources:
            for name, stats in layers.items():
                for stat, v in stats.items():
                    merged[name].setdefault(stat, v)
        return merged

    def diagnose(self) -> list[Finding]:
        """Findings from the latest statistics (and the current parameters), most severe first."""
        stats = self._recent()
        findings = self._nonfinite(stats)          # when present, the other statistics are noise
        if not findings:
            findings = self._activations(stats) + self._gradients(stats)
        updates = self._updates(stats)
        cause = self._learning_rate_cause()
        if cause is None:
            return findings + updates
        first = [f for f in findings if f.kind == "nonfinite"]
        rest = [Finding(f.kind, f.layer, f.message, f.evidence, _FOLLOWS_FROM_LR) if f.kind in _INIT_KINDS else f
                for f in findings if f.kind != "nonfinite"]
        high = [f for f in updates if f.kind == "update_ratio_high"]
        return first + [cause] + high + rest

    def _learning_rate_cause(self) -> Finding | None:
        """A "learning rate too high" finding when the update-ratio or loss history points to it."""
        peak: tuple[float, int, str, str] | None = None
        for record in self.steps:
            for layer in self._layers:
                stats = record.layers.get(layer.name, {})
                for local, full, p in layer.params:
                    ratio = stats.get(f"{local}.update_ratio")
                    if p.data.ndim >= 2 and ratio is not None and (peak is None or ratio > peak[0]):
                        peak = (ratio, record.step, layer.name, full)
        finite = [(s, v) for s, v in self.losses if not math.isnan(v)]
        grown = None
        if finite and finite[0][1] > 0:
            worst = max(finite, key=lambda sv: sv[1])
            if worst[1] > LOSS_GROWTH * finite[0][1]:
                grown = (finite[0], worst)
        high = peak is not None and peak[0] >= LR_UPDATE_RATIO
        if not high and grown is None:
            return None
        parts, evidence = [], {}
        if high:
            ratio, step, name, full = peak
            parts.append(f"the update ratio reached {_g(ratio)} in layer {name} ({full}) at step {step}")
            evidence["peak_update_ratio"] = ratio
        if grown is not None:
            (s0, l0), (s1, l1) = grown
            parts.append(f"the loss grew {_g(l0)} → {_g(l1)} from step {s0} to step {s1}")
            evidence.update(first_loss=l0, peak_loss=l1)
        layer = peak[2] if high else (self.layer_names[0] if self.layer_names else "")
        return Finding("learning_rate_high", layer, "learning rate too high: " + " and ".join(parts), evidence,
                       _LR_FIX)

    def _uses(self, init_name: str) -> bool:
        """Whether the hidden weights (``ndim >= 2``, all but the output layer's) were drawn by ``init_name``.

        Read from each ``Parameter.init`` label (``"he(fan_in, normal) [auto: relu]"``); the
        output layer is left out because ``init="auto"`` gives it xavier whatever the activation.
        """
        try:
            wanted = initializers.get(init_name)
        except ValueError:
            return False
        weights = [p for layer in self._layers for _, _, p in layer.params if p.data.ndim >= 2]
        used = []
        for p in weights[:-1] if len(weights) > 1 else weights:
            label = (getattr(p, "init", "") or "").split("(")[0].split(" ")[0]
            try:
                used.append(bool(label) and initializers.get(label) is wanted)
            except (ValueError, TypeError):
                used.append(False)
        return bool(used) and all(used)

    def _type(self, name: str) -> str:
        return type(self._layers[self.layer_names.index(name)].module).__name__

    def _recommended(self, kinds: list[str]) -> str:
        kind = Counter(kinds).most_common(1)[0][0] if kinds else "linear"
        try:
            return initializers.for_activation(kind)
        except ValueError:
            return "xavier"

    def _nonfinite(self, stats: dict[str, dict[str, float]]) -> list[Finding]:
        def found(name: str, what: str, frac: float, where: str) -> list[Finding]:
            return [Finding("nonfinite", name, f"non-finite {what}: {_pct(frac)} NaN/Inf {where}",
                            {"fraction": frac}, _RECOMMEND_FIX)]

        for name in self.layer_names:
            frac = stats[name].get("act_nonfinite", 0.0)
            if frac > 0:
                return found(name, "activations", frac,
                             f"in the output of layer {name} ({self._type(name)}), the first such layer")
        for name in reversed(self.layer_names):
            frac = stats[name].get("grad_nonfinite", 0.0)
            if frac > 0:
                return found(name, "gradients", frac, f"in the gradient at the output of layer {name} "
                             f"({self._type(name)}), the first in backward order")
        for layer in self._layers:       # live check: e.g. when the NaN guard fires on an unsampled step
            for _, full, p in layer.params:
                for what, arr in (("parameter", p.data), ("gradient", p.grad)):
                    if not np.isfinite(np.add.reduce(arr, axis=None)) and not np.all(np.isfinite(arr)):
                        frac = float(arr.size - np.count_nonzero(np.isfinite(arr))) / arr.size
                        return found(layer.name, what, frac, f"in {full} (layer {layer.name})")
        return []

    def _activations(self, stats: dict[str, dict[str, float]]) -> list[Finding]:
        findings = []
        acts = [ly for ly in self._layers if ly.kind and "act_std" in stats[ly.name]]
        for kind, stat, limit, only in (("saturated", "saturation", SATURATED_FRACTION, None),
                                        ("dead_relu", "zero_frac", DEAD_FRACTION, "relu")):
            layers = [ly for ly in acts if stat in stats[ly.name] and only in (None, ly.kind)]
            bad = [ly for ly in layers if stats[ly.name][stat] > limit]
            if not bad:
                continue
            worst = max(bad, key=lambda ly: stats[ly.name][stat])
            value, name = stats[worst.name][stat], worst.name
            more = f" ({len(bad)} of {len(layers)} layers above {_pct(limit)})" if len(bad) > 1 else ""
            if kind == "saturated":
                cond = "|tanh| > 0.99" if worst.kind == "tanh" else "sigmoid < 0.01 or > 0.99"
                findings.append(Finding(
                    kind, name, f"saturated {worst.kind}: {_pct(value)} of units in layer {name} "
                    f"have {cond}{more}", {"fraction": value, "layers": len(bad)},
                    "use xavier init or BatchNorm"))
            else:
                dead = stats[name].get("dead_frac", float("nan"))
                findings.append(Finding(
                    kind, name, f"dead ReLUs: {_pct(value)} zeros in layer {name}, "
                    f"{_pct(dead)} of its units never fire on the batch{more}",
                    {"zero_fraction": value, "dead_units": dead, "layers": len(bad)},
                    "use he init, a smaller negative bias or learning rate, or LeakyReLU"))
        layers = acts or [ly for ly in self._layers if "act_std" in stats[ly.name]]
        if layers:  # the weakest / strongest layer, so that trained-up output layers cannot hide a collapse
            stds = [stats[ly.name]["act_std"] for ly in layers]
            first, low, high = stds[0], int(np.argmin(stds)), int(np.argmax(stds))
            kinds = [ly.kind for ly in layers if ly.kind]
            label = kinds[0] if kinds and len(set(kinds)) == 1 else ("activation" if kinds else "")
            init_name = self._recommended(kinds)
            vanishing = stds[low] < VANISHING_STD or stds[low] * ACT_STD_RATIO < first
            exploding = stds[high] > EXPLODING_STD or stds[high] > ACT_STD_RATIO * first
            if self._uses(init_name):
                vanish_fix = explode_fix = (f"the weights already use {init_name}: add BatchNorm, or check the "
                                            "learning rate and the input scale")
            else:
                vanish_fix = f"initialise with {init_name}"
                explode_fix = f"initialise with {init_name} / lower the init scale"
            for kind, i, verb, bad, fix in (("vanishing", low, "falls", vanishing, vanish_fix),
                                            ("exploding", high, "grows", exploding, explode_fix)):
                if bad:
                    findings.append(Finding(
                        f"{kind}_activations", layers[i].name, f"{kind} activations: std {verb} "
                        f"{_g(first)} → {_g(stds[i])} over {_layers_label(i + 1, label)}",
                        {"first_std": first, "last_std": stds[i], "layers": i + 1}, fix))
                    break
        return findings

    def _gradients(self, stats: dict[str, dict[str, float]]) -> list[Finding]:
        layers = [ly for ly in self._layers if "grad_norm" in stats[ly.name]]
        if len(layers) < 2:
            return []
        first, last = stats[layers[0].name]["grad_norm"], stats[layers[-1].name]["grad_norm"]
        if not last > 0:
            return []
        evidence = {"first_norm": first, "last_norm": last, "ratio": first / last}
        where = f"from the last layer ({layers[-1].name}) to the first ({layers[0].name})"
        kinds = [ly.kind for ly in self._layers if ly.kind]
        init_name = self._recommended(kinds)
        already = self._uses(init_name)
        if first < GRAD_RATIO * last:
            fix = (f"the weights already use {init_name}: add BatchNorm, or check the learning rate" if already
                   else f"initialise with {init_name} or add BatchNorm") + (
                "; sigmoid passes at most 1/4 of the gradient per layer: prefer tanh or ReLU"
                if "sigmoid" in kinds else "")
            return [Finding("vanishing_gradients", layers[0].name,
                            f"vanishing gradients: gradient norm falls {_g(last)} → {_g(first)} {where}",
                            evidence, fix)]
        if first * GRAD_RATIO > last:
            return [Finding("exploding_gradients", layers[0].name,
                            f"exploding gradients: gradient norm grows {_g(last)} → {_g(first)} {where}",
                            evidence,
                            f"the weights already use {init_name}: lower the learning rate, or clip gradients"
                            if already else f"initialise with {init_name} / lower the init scale, or clip gradients")]
        return []

    def _updates(self, stats: dict[str, dict[str, float]]) -> list[Finding]:
        ratios = [(stats[ly.name][key], ly.name, full) for ly in self._layers for local, full, p in ly.params
                  if p.data.ndim >= 2 and (key := f"{local}.update_ratio") in stats[ly.name]]
        ratios = [r for r in ratios if math.isfinite(r[0])]
        if not ratios:
            return []
        findings = []
        lowest = min(ratios)
        # "too low" only if that parameter's ratio never reached the threshold in the whole history:
        # a schedule that decays the lr towards the end of a run is not a learning rate set too low
        try:
            _, history = self.history(lowest[1], f"{lowest[2].rsplit('.', 1)[-1]}.update_ratio")
        except ValueError:  # recorded only by a step still in progress
            history = np.zeros(0)
        never_healthy = history.size == 0 or float(np.nanmax(history)) < UPDATE_RATIO_LOW
        for kind, (ratio, name, full), bad, advice in (
                ("update_ratio_high", max(ratios), max(ratios)[0] > UPDATE_RATIO_HIGH, "lower"),
                ("update_ratio_low", lowest, lowest[0] < UPDATE_RATIO_LOW and never_healthy, "raise")):
            if bad:
                findings.append(Finding(kind, name, f"update ratio {_g(ratio)} in layer {name} ({full})",
                                        {"ratio": ratio}, f"{advice} the learning rate (aim for ~1e-3)"))
        return findings
