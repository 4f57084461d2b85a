"""``init-depth``: forward and backward statistics through a 10-layer, 500-unit net.

The CS231n experiment, measured rather than eyeballed. For each initializer
(``small_random`` = N(0, 0.01^2), ``xavier`` = N(0, 1/n), ``he`` = N(0, 2/n), ``normal`` =
N(0, 1)) and each activation (tanh, ReLU) a fresh net of 10 ``Linear(500, 500) ->
activation`` blocks (zero biases) receives ``n`` N(0, 1) inputs. Forward hooks record,
after every activation, the standard deviation of the activations ``a_l`` over all units
and examples, the fraction of saturated tanh units (``|a| > 0.99``) and of ReLU zeros.
Then an upstream gradient ``dL/da_10 ~ N(0, 1)`` is pushed back through the net and
backward hooks record the std of ``dL/da_l`` at every layer.

Why the numbers come out as they do (fan-in ``n = 500``, ``Var z_l = n Var(w) E[a_{l-1}^2]``):

* small random: each layer multiplies the scale by about ``0.01 sqrt(n) = 0.22`` (tanh) or
  ``0.16`` (ReLU), so after 10 layers the std is ~1e-7: activations *and* gradients vanish.
* N(0, 1): pre-activations have std ~ ``sqrt(n) * 0.6 ~ 14``, so almost every tanh unit sits
  at +-1 where its derivative is ~0 (saturation).
* xavier + tanh: ``n Var(w) = 1`` and ``tanh'(0) = 1`` make the variance map nearly the
  identity; it decays only slowly (about 1/sqrt(layer)), to ~0.2 at layer 10.
* xavier + ReLU: ReLU keeps half the second moment, so ``E[a_l^2] = E[a_{l-1}^2] / 2``: the
  std shrinks by exactly ``1/sqrt(2)`` a layer in expectation (the shape of the distribution
  is preserved, so std and RMS shrink alike).
* he + ReLU: ``n Var(w) = 2`` cancels that half: the scale holds, forward and backward.

Every claim is judged on every seed; the verdict shows the seed with the least slack.

References:
    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS 2010. He, Zhang, Ren & Sun, "Delving Deep into Rectifiers", ICCV 2015.
    CS231n, "Neural Networks Part 2" and lecture 6 (the histogram figure).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from trainlab import nn, plotting
from trainlab.experiments.common import StudyResult, Table, Verdict, run_study, save_figure, study_seeds
from trainlab.experiments.init_train import study_command
from trainlab.nn.activation import get as get_activation
from trainlab.trials import Results, make_spec

__all__ = [
    "run",
    "trials",
    "analyse",
    "choose_seeds",
    "statistics_trial",
    "layer_statistics",
    "layer_histograms",
    "LayerStatistics",
    "DEFAULT_SEEDS",
    "INITS",
    "ACTIVATIONS",
    "DEPTH",
    "WIDTH",
]

NAME = "init-depth"
DEFAULT_SEEDS = (0, 1, 2)
INITS = ("small_random", "xavier", "he", "normal")
ACTIVATIONS = ("tanh", "relu")
DEPTH = 10
WIDTH = 500
SAMPLES = 1000  #: input examples per net (default run)
QUICK_SAMPLES = 500  #: input examples per net (--quick, one seed)
HIST_VALUES = 20_000  #: activation values kept per layer for the histograms
SATURATED = 0.99  #: |tanh| above this counts as saturated

# thresholds, fixed before any run (see the module docstring for the expected values)
VANISH_STD = 1e-5  # small random: layer-10 activation std below this
VANISH_GRAD_RATIO = 1e-3  # small random: std(dL/da_1) / std(dL/da_10) below this
SATURATION_MIN = 0.5  # N(0,1) tanh: saturated fraction above this in every layer
XAVIER_TANH_STD = (0.18, 0.30)  # xavier tanh: layer-10 std inside this interval
XAVIER_TANH_GRAD = (0.1, 10.0)  # xavier tanh: std(dL/da_1) / std(dL/da_10) inside this interval
RELU_SHRINK = 1 / math.sqrt(2)  # xavier ReLU: expected per-layer std ratio
RELU_SHRINK_TOL = 0.05  # ... within this absolute tolerance
HE_RELU_RANGE = (0.5, 2.0)  # he ReLU: every layer's std, and the gradient ratio, inside this


class LayerStatistics(NamedTuple):
    """Per-layer statistics of one freshly initialized net (arrays of shape ``(depth,)``).

    Attributes:
        forward_std: std of the activations ``a_l`` after each layer.
        backward_std: std of ``dL/da_l`` for an upstream gradient ``dL/da_depth ~ N(0, 1)``.
        saturated: fraction of activations with ``|a| > 0.99`` (meaningful for tanh).
        zeros: fraction of activations exactly 0 (meaningful for ReLU).
        samples: per layer, up to ``HIST_VALUES`` activation values for histograms.
    """

    forward_std: np.ndarray
    backward_std: np.ndarray
    saturated: np.ndarray
    zeros: np.ndarray
    samples: list[np.ndarray]


def layer_statistics(
    init_name: str,
    activation: str,
    *,
    rng: np.random.Generator,
    depth: int = DEPTH,
    width: int = WIDTH,
    n: int = SAMPLES,
) -> LayerStatistics:
    """Forward and backward statistics of ``depth`` blocks ``Linear(width, width) -> activation``.

    Args:
        init_name: initializer for every weight (``"small_random"``, ``"xavier"``, ``"he"``,
            ``"normal"``, or any name of :func:`trainlab.init.get`).
        activation: ``"tanh"``, ``"relu"`` (or any name of :func:`trainlab.nn.activation.get`).
        rng: draws the weights, the ``(n, width)`` N(0, 1) inputs and the N(0, 1) upstream gradient.
        depth, width, n: layers, units per layer, input examples.
    """
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, init=init_name, rng=rng), get_activation(activation)]
    model = nn.Sequential(*layers)
    acts = [m for m in model if getattr(m, "is_activation", False)]
    fwd, bwd = np.full(depth, np.nan), np.full(depth, np.nan)
    sat, zero = np.full(depth, np.nan), np.full(depth, np.nan)
    samples: list[np.ndarray] = [np.empty(0)] * depth
    stride = max(1, (n * width) // HIST_VALUES)

    def forward_hook(index: int):
        def hook(module: nn.Module, inp: np.ndarray, out: np.ndarray) -> None:
            flat = out.reshape(-1).astype(np.float64)
            fwd[index] = flat.std()
            sat[index] = np.count_nonzero(np.abs(flat) > SATURATED) / flat.size
            zero[index] = np.count_nonzero(flat == 0) / flat.size
            samples[index] = flat[::stride].astype(np.float32)

        return hook

    def backward_hook(index: int):
        def hook(module: nn.Module, grad_input: np.ndarray, grad_output: np.ndarray) -> None:
            bwd[index] = np.asarray(grad_output, dtype=np.float64).std()

        return hook

    removers = []
    for i, act in enumerate(acts):
        removers.append(act.register_forward_hook(forward_hook(i)))
        removers.append(act.register_backward_hook(backward_hook(i)))
    try:
        x = rng.standard_normal((n, width)).astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            out = model(x)
            model.backward(rng.standard_normal(out.shape).astype(np.float32))
    finally:
        for remove in removers:
            remove()
    return LayerStatistics(fwd, bwd, sat, zero, samples)


# ---------------------------------------------------------------------- judging helpers
def _least_slack(values: list[float], lo: float, hi: float) -> float:
    """The value closest to (or furthest outside) the interval ``[lo, hi]``, in log space."""

    def slack(v: float) -> float:
        if not (v > 0 and math.isfinite(v)):
            return -math.inf
        return min(math.log(v / lo), math.log(hi / v))

    return min(values, key=slack)


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def _judge(stats: dict[tuple[str, str], list[LayerStatistics]], seeds: tuple[int, ...]) -> list[Verdict]:
    per_seed = f"per seed {list(seeds)}"
    verdicts = []

    # 1. small random vanishes forward (both activations)
    last = [s.forward_std[-1] for act in ACTIVATIONS for s in stats["small_random", act]]
    worst = max(last)
    verdicts.append(
        Verdict(
            "small random (std 0.01) activations vanish through 10 layers (tanh and ReLU)",
            float(worst),
            f"layer-10 activation std < {VANISH_STD:g} for every activation and seed",
            bool(worst < VANISH_STD),
            f"largest layer-10 std; tanh then ReLU, {per_seed}: {_fmt(last)}",
        )
    )

    # 2. small random vanishes backward
    ratios = [
        s.backward_std[0] / s.backward_std[-1] for act in ACTIVATIONS for s in stats["small_random", act]
    ]
    worst = max(ratios)
    verdicts.append(
        Verdict(
            "small random gradients vanish backward through 10 layers (tanh and ReLU)",
            float(worst),
            f"std(dL/da_1) / std(dL/da_10) < {VANISH_GRAD_RATIO:g} for every activation and seed",
            bool(worst < VANISH_GRAD_RATIO),
            f"largest ratio; tanh then ReLU, {per_seed}: {_fmt(ratios)}",
        )
    )

    # 3. N(0, 1) saturates tanh
    fractions = [float(np.min(s.saturated)) for s in stats["normal", "tanh"]]
    worst = min(fractions)
    verdicts.append(
        Verdict(
            "std 1.0 weights, N(0,1), saturate tanh",
            float(worst),
            f"fraction of units with |a| > {SATURATED} is > {SATURATION_MIN} in every layer",
            bool(worst > SATURATION_MIN),
            f"smallest per-layer saturated fraction, {per_seed}: {_fmt(fractions)}",
        )
    )

    # 4. xavier holds tanh, forward
    lo, hi = XAVIER_TANH_STD
    last = [s.forward_std[-1] for s in stats["xavier", "tanh"]]
    worst = _least_slack(last, lo, hi)
    verdicts.append(
        Verdict(
            "xavier holds tanh activations through 10 layers",
            float(worst),
            f"layer-10 activation std in [{lo}, {hi}]",
            all(lo <= v <= hi for v in last),
            f"seed with least slack; {per_seed}: {_fmt(last)}",
        )
    )

    # 5. xavier holds tanh, backward
    lo, hi = XAVIER_TANH_GRAD
    ratios = [s.backward_std[0] / s.backward_std[-1] for s in stats["xavier", "tanh"]]
    worst = _least_slack(ratios, lo, hi)
    verdicts.append(
        Verdict(
            "xavier holds tanh gradients through 10 layers",
            float(worst),
            f"std(dL/da_1) / std(dL/da_10) in [{lo:g}, {hi:g}]",
            all(lo <= v <= hi for v in ratios),
            f"seed with least slack; {per_seed}: {_fmt(ratios)}",
        )
    )

    # 6. xavier shrinks ReLU by 1/sqrt(2) a layer
    shrink = [
        float((s.forward_std[-1] / s.forward_std[0]) ** (1 / (len(s.forward_std) - 1)))
        for s in stats["xavier", "relu"]
    ]
    worst = max(shrink, key=lambda v: abs(v - RELU_SHRINK) if math.isfinite(v) else math.inf)
    verdicts.append(
        Verdict(
            "xavier shrinks ReLU activations by about 1/sqrt(2) a layer",
            float(worst),
            f"geometric-mean per-layer std ratio (std_10/std_1)^(1/9) within {RELU_SHRINK_TOL} of "
            f"1/sqrt(2) = {RELU_SHRINK:.4f}",
            all(abs(v - RELU_SHRINK) <= RELU_SHRINK_TOL for v in shrink),
            f"seed furthest from 1/sqrt(2); {per_seed}: {_fmt(shrink)}",
        )
    )

    # 7. he holds ReLU, forward
    lo, hi = HE_RELU_RANGE
    all_std = [float(v) for s in stats["he", "relu"] for v in s.forward_std]
    worst = _least_slack(all_std, lo, hi)
    verdicts.append(
        Verdict(
            "he holds ReLU activations through 10 layers",
            float(worst),
            f"every layer's activation std in [{lo}, {hi}]",
            all(lo <= v <= hi for v in all_std),
            f"layer/seed with least slack; range {min(all_std):.3g}..{max(all_std):.3g} "
            "over layers and seeds",
        )
    )

    # 8. he holds ReLU, backward
    ratios = [s.backward_std[0] / s.backward_std[-1] for s in stats["he", "relu"]]
    worst = _least_slack(ratios, lo, hi)
    verdicts.append(
        Verdict(
            "he holds ReLU gradients through 10 layers",
            float(worst),
            f"std(dL/da_1) / std(dL/da_10) in [{lo}, {hi}]",
            all(lo <= v <= hi for v in ratios),
            f"seed with least slack; {per_seed}: {_fmt(ratios)}",
        )
    )
    return verdicts


# ---------------------------------------------------------------------- figures
@plotting.styled
def _std_figure(stats: dict[tuple[str, str], list[LayerStatistics]], path: Path) -> str:
    fig, axes = plotting.figure(2, 2, figsize=(plotting.MAX_WIDTH, 8.4), sharex=True, layout="constrained")
    layers = np.arange(1, DEPTH + 1)
    handles = {}
    for col, act in enumerate(ACTIVATIONS):
        for row, (field, label) in enumerate(
            (("forward_std", "std of the activations a_l"), ("backward_std", "std of the gradient dL/da_l"))
        ):
            ax = axes[row, col]
            for init_name in INITS:
                values = np.array([getattr(s, field) for s in stats[init_name, act]])
                med = np.median(values, axis=0)
                (handles[init_name],) = ax.semilogy(layers, med, **plotting.series(init_name), ms=5, label=init_name)
                if len(values) > 1:
                    ax.fill_between(layers, values.min(axis=0), values.max(axis=0),
                                    color=plotting.color(init_name), alpha=0.2, lw=0)
            if field == "forward_std" and act == "relu":
                ref = np.median([s.forward_std[0] for s in stats["xavier", "relu"]]) * RELU_SHRINK ** (
                    layers - 1
                )
                (handles["reference"],) = ax.semilogy(layers, ref, ":", color="black", lw=1.4,
                                                      label="xavier's layer 1 × (1/√2)^(l−1)")
            ax.set_title(f"{'forward' if row == 0 else 'backward'}, {act}")
            ax.set_ylabel(label)
            if row == 1:
                ax.set_xlabel("layer l")
            ax.set_xticks(layers)
    plotting.figure_legend(fig, list(handles.values()))
    fig.suptitle(f"Per-layer std through {DEPTH} layers of {WIDTH} units (median over seeds, band = min..max); "
                 f"backward: dL/da_{DEPTH} ~ N(0, 1)")
    return save_figure(fig, path)


def layer_histograms(stats: LayerStatistics, activation: str) -> tuple[list[float], list[list[int]]]:
    """Bin edges and per-layer counts of the activation histograms (CS231n's figure).

    tanh: 40 bins on [-1, 1]; ReLU: the nonzero values on 40 bins from 0 to the 99th
    percentile of layer 1's positive values (one range per net shows the shrinking or the
    growth). Values outside the range are piled into the end bins.
    """
    if activation == "tanh":
        bins = np.linspace(-1, 1, 41)
    else:
        positive = stats.samples[0][stats.samples[0] > 0]
        top = float(np.quantile(positive, 0.99)) if positive.size else 1.0
        bins = np.linspace(0, top, 41)
    counts = []
    for values in stats.samples:
        values = values if activation == "tanh" else values[values != 0]
        counts.append(np.histogram(np.clip(values, bins[0], bins[-1]), bins=bins)[0].tolist())
    return bins.tolist(), counts


def _short(value: float) -> str:
    """Two significant digits, exponents without padding: 0.21, 2.7e-5, 3.2e3."""
    text = f"{value:.2g}"
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"


@plotting.styled
def _histogram_figure(stats: dict[tuple[str, str], list[LayerStatistics]],
                      hists: dict[tuple[str, str], tuple[list[float], list[list[int]]]], path: Path,
                      seed: int) -> str:
    rows = [(i, a) for a in ACTIVATIONS for i in INITS]
    fig, axes = plotting.figure(len(rows), DEPTH, figsize=(plotting.MAX_WIDTH, 1.22 * len(rows) + 1.4),
                                layout="constrained", squeeze=False)
    fig.get_layout_engine().set(h_pad=0.02, w_pad=0.02, hspace=0.03, wspace=0.02)
    for r, (init_name, act) in enumerate(rows):
        s = stats[init_name, act][0]
        bins, counts = np.asarray(hists[init_name, act][0]), hists[init_name, act][1]
        for c in range(DEPTH):
            ax = axes[r, c]
            ax.stairs(counts[c], bins, fill=True, color=plotting.color(init_name))
            ax.set_yticks([])
            ax.grid(False)
            ax.tick_params(axis="x", length=2, pad=1.5, labelsize=plotting.MIN_FONT_SIZE)
            ax.set_xticks([bins[0], bins[-1]])
            ax.set_xticklabels([f"{bins[0]:.2g}", f"{bins[-1]:.2g}"])
            ax.set_title(_short(s.forward_std[c]) + (f" · {s.zeros[c]:.0%}" if act == "relu" else ""),
                         fontsize=plotting.MIN_FONT_SIZE + 1, fontweight="normal", pad=2)
            if c == 0:
                ax.set_ylabel(f"{init_name}\n{act}", fontweight="bold", color=plotting.color(init_name))
    for c in range(DEPTH):   # column headers above the first row's titles
        axes[0, c].annotate(f"layer {c + 1}", (0.5, 1.0), xycoords="axes fraction", xytext=(0, 17),
                            textcoords="offset points", ha="center", va="bottom", fontweight="bold")
    fig.suptitle(f"Activation histograms per layer (seed {seed}); above each panel: the layer's std "
                 "(ReLU rows: std · share of exact zeros)")
    fig.supxlabel("activation value a_l (tanh rows: on [−1, 1]; ReLU rows: the nonzero values, one range per "
                  "row; values beyond the range piled at its ends)", fontsize=plotting.RC["axes.labelsize"])
    return save_figure(fig, path)


# ---------------------------------------------------------------------- the study
def choose_seeds(quick: bool, seeds: tuple[int, ...] | None) -> tuple[int, ...]:
    """The study's seeds (:data:`DEFAULT_SEEDS` unless given); ``quick`` keeps the first."""
    return study_seeds(NAME, DEFAULT_SEEDS if seeds is None else seeds, quick)


def statistics_trial(params: dict, ctx: object) -> dict:
    """One net's statistics: ``params = {init, activation, rng: [seed, init_index, activation_index], samples}``."""
    s = layer_statistics(params["init"], params["activation"], n=params["samples"],
                         rng=np.random.default_rng(params["rng"]))
    bins, counts = layer_histograms(s, params["activation"])
    return {"forward_std": s.forward_std, "backward_std": s.backward_std, "saturated": s.saturated,
            "zeros": s.zeros, "hist_bins": bins, "hist_counts": counts}


def _spec(init_index: int, act_index: int, seed: int, n: int) -> dict:
    return make_spec(statistics_trial, {"init": INITS[init_index], "activation": ACTIVATIONS[act_index],
                                        "rng": [seed, init_index, act_index], "samples": n})


def trials(*, quick: bool, seeds: tuple[int, ...]) -> list[dict]:
    """One trial per init x activation x seed (generator ``[seed, init_index, activation_index]``)."""
    n = QUICK_SAMPLES if quick else SAMPLES
    return [_spec(i, a, seed, n) for i in range(len(INITS)) for a in range(len(ACTIVATIONS)) for seed in seeds]


def run(*, quick: bool = False, out: str | Path = "lab", seeds: tuple[int, ...] | None = None,
        **engine: object) -> StudyResult:
    """Run the study (``engine``: :func:`~trainlab.experiments.common.run_study`'s executor options);
    ``quick`` uses the first seed and 500 instead of 1000 input examples."""
    return run_study(sys.modules[__name__], quick=quick, out=out, seeds=seeds, **engine)


def analyse(results: Results, *, quick: bool, seeds: tuple[int, ...], out: Path) -> StudyResult:
    """Verdicts, figures and tables from the trials' records."""
    n = QUICK_SAMPLES if quick else SAMPLES
    stats: dict[tuple[str, str], list[LayerStatistics]] = {}
    hists: dict[tuple[str, str], tuple[list[float], list[list[int]]]] = {}
    for init_index, init_name in enumerate(INITS):
        for act_index, act in enumerate(ACTIVATIONS):
            runs = [results.metrics(_spec(init_index, act_index, seed, n)) for seed in seeds]
            stats[init_name, act] = [
                LayerStatistics(*(np.asarray(m[k]) for k in ("forward_std", "backward_std", "saturated", "zeros")),
                                samples=[])
                for m in runs
            ]
            hists[init_name, act] = (runs[0]["hist_bins"], runs[0]["hist_counts"])

    verdicts = _judge(stats, seeds)
    std_png = _std_figure(stats, out / "init_depth_std.png")
    hist_png = _histogram_figure(stats, hists, out / "init_depth_hist.png", seeds[0])
    figures = {
        "Per-layer standard deviation of the activations (top) and of the backward gradient dL/da_l "
        "(bottom), tanh (left) and ReLU (right), log scale": Path(std_png).name,
        "Activation histograms per layer (CS231n's figure): rows are init x activation, "
        "columns layers 1..10": Path(hist_png).name,
    }

    header = ["activation", "init"] + [f"L{i + 1}" for i in range(DEPTH)]

    def median_rows(field: str) -> list[list[str]]:
        return [
            [act, init_name]
            + [f"{v:.3g}" for v in np.median([getattr(s, field) for s in stats[init_name, act]], axis=0)]
            for act in ACTIVATIONS
            for init_name in INITS
        ]

    sat_rows = [
        [
            act,
            init_name,
            f"{np.median([s.saturated[-1] for s in stats[init_name, act]]):.3f}" if act == "tanh" else "-",
            f"{np.median([s.zeros[-1] for s in stats[init_name, act]]):.3f}" if act == "relu" else "-",
            f"{np.median([s.backward_std[0] / s.backward_std[-1] for s in stats[init_name, act]]):.3g}",
        ]
        for act in ACTIVATIONS
        for init_name in INITS
    ]
    tables = [
        Table(
            "Forward: std of the activations after each layer (median over seeds)",
            header,
            median_rows("forward_std"),
        ),
        Table(
            "Backward: std of dL/da_l at each layer for dL/da_10 ~ N(0,1) (median over seeds)",
            header,
            median_rows("backward_std"),
        ),
        Table(
            "Layer 10: saturated tanh units (|a| > 0.99), ReLU zeros; gradient std ratio layer 1 / layer 10",
            ["activation", "init", "saturated", "zeros", "grad std L1/L10"],
            sat_rows,
        ),
    ]
    numbers = {
        "setting": {
            "depth": DEPTH,
            "width": WIDTH,
            "samples": n,
            "seeds": list(seeds),
            "bias": "zeros",
            "input": "N(0,1)",
            "upstream_gradient": "N(0,1) at layer 10's activations",
            "rng": "np.random.default_rng([seed, init_index, activation_index])",
        },
        "stats": {
            f"{init_name}/{act}": [
                {
                    "forward_std": s.forward_std.tolist(),
                    "backward_std": s.backward_std.tolist(),
                    "saturated": s.saturated.tolist(),
                    "zeros": s.zeros.tolist(),
                }
                for s in stats[init_name, act]
            ]
            for init_name in INITS
            for act in ACTIVATIONS
        },
    }
    command = study_command(NAME, quick, out, seeds, DEFAULT_SEEDS)
    summary = (
        f"{DEPTH} blocks of Linear({WIDTH}, {WIDTH}) -> activation, zero biases, fed {n} N(0,1) inputs; "
        f"inits {', '.join(INITS)} (normal = N(0,1)) with tanh and ReLU; seeds {list(seeds)}. "
        "Forward: std of each "
        "layer's activations. Backward: an N(0,1) upstream gradient at layer 10, then the std of dL/da_l at "
        "every layer. The variance recursion predicts (module docstring): small random weights make both "
        "vanish (about x0.22 a layer with tanh, x0.16 with ReLU); N(0,1) saturates tanh; "
        "xavier keeps tanh near "
        "0.2 at layer 10 but shrinks ReLU by 1/sqrt(2) a layer; he keeps ReLU's scale forward and backward. "
        "Measured layer-10 activation std (median over seeds): "
        + ", ".join(
            f"{i}/{a} {np.median([s.forward_std[-1] for s in stats[i, a]]):.3g}"
            for a in ACTIVATIONS
            for i in INITS
        )
        + ". Note that N(0,1) with tanh does not make dL/da vanish: the saturated units pass "
        "little gradient, "
        "but the large weights multiply it (std(dL/da_1) / std(dL/da_10) = "
        f"{np.median([s.backward_std[0] / s.backward_std[-1] for s in stats['normal', 'tanh']]):.3g}). "
        "Each claim must hold on every seed; the verdict shows the seed with the least slack."
    )
    return StudyResult(
        name=NAME,
        title="Initialization through depth: forward and backward statistics",
        summary=summary,
        command=command,
        verdicts=verdicts,
        figures=figures,
        tables=tables,
        numbers=numbers,
    )
