"""``depth-30``: He et al. (2015) at small scale: a 30-layer ReLU net, xavier vs he.

He et al. (Delving Deep into Rectifiers, section 2.2 and figure 3) trained a 30-layer
ReLU network: initialized with xavier (std ``sqrt(1/n)``) it "completely stalls", with
their ``sqrt(2/n)`` it converges. The reason is the factor 1/2 that ReLU takes from the
second moment at every layer: with xavier the signal, forward and backward, shrinks by
``(1/sqrt 2)^30 ~ 3e-5`` through 30 layers, so the loss gradient reaching the weights is
far too small for SGD; he's gain of 2 cancels the factor.

Setting (fixed before the runs, stated in the report): ``models.mlp`` with 30 hidden
``Linear(100) -> ReLU`` layers (zero biases; every weight, the output layer included,
drawn by the init under test) on the embedded digits; SGD with momentum 0.9, lr 0.001,
batch 32, 20 epochs, cross-entropy; weights of seed ``s`` from ``default_rng([s, 0])`` (the
same normal numbers for both inits, he's scaled by sqrt 2), batch order from
``default_rng([s, 1])``. lr 0.001 was chosen from {0.01, 0.003, 0.001} in a 15-epoch trial
(3 seeds) as the one at which he trained steadily: at 0.01 its validation accuracy jumped
between 0.1 and 0.65, at 0.003 it reached 0.64-0.89 with drops of up to 0.25 between
epochs. xavier stayed at chance (0.10-0.11) at all three.

Claims: xavier stalls at chance (test accuracy < 0.2 for every seed; chance 0.1) while
he trains (test accuracy > 0.8 for every seed) after the same 20 epochs.

References:
    He, Zhang, Ren & Sun, "Delving Deep into Rectifiers: Surpassing Human-Level Performance
    on ImageNet Classification", ICCV 2015. https://arxiv.org/abs/1502.01852
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from trainlab import data, models, nn, plotting
from trainlab.experiments.common import StudyResult, Table, Verdict, digits, run_study, save_figure, study_seeds
from trainlab.experiments.init_train import TrainRun, TrainSetting, study_command, train_spec
from trainlab.trials import Results, make_spec

__all__ = ["run", "trials", "analyse", "choose_seeds", "statistics_trial", "initial_statistics", "DEFAULT_SEEDS",
           "SETTING"]

NAME = "depth-30"
DEFAULT_SEEDS = (0, 1, 2)
INITS = ("xavier", "he")
SETTING = TrainSetting(depth=30, width=100, optimizer="sgd", lr=0.001, momentum=0.9, batch_size=32, epochs=20)
STALLED_MAX = 0.2  # xavier "stalls at chance": test accuracy below this (chance 0.1)
TRAINED_MIN = 0.8  # he "trains": test accuracy above this


def initial_statistics(
    init_name: str, seed: int, setting: TrainSetting, splits: data.Splits
) -> dict[str, list[float]]:
    """Per hidden layer at initialization: activation std and the std of dL/da on one batch of 256.

    The net is built exactly as :func:`~trainlab.experiments.init_train.train_mlp` builds it
    (same generator), so these are the statistics of the net that is then trained.
    """
    model = models.mlp(
        int(np.prod(splits.input_shape)),
        [setting.width] * setting.depth,
        splits.num_classes,
        activation="relu",
        init=init_name,
        rng=np.random.default_rng([seed, 0]),
    )
    acts = [m for m in model if getattr(m, "is_activation", False)]
    forward, backward = [np.nan] * len(acts), [np.nan] * len(acts)
    removers = []
    for i, act in enumerate(acts):
        removers.append(
            act.register_forward_hook(
                lambda m, inp, out, i=i: forward.__setitem__(i, float(np.std(out, dtype=np.float64)))
            )
        )
        removers.append(
            act.register_backward_hook(
                lambda m, gin, gout, i=i: backward.__setitem__(i, float(np.std(gout, dtype=np.float64)))
            )
        )
    try:
        x, y = splits.train.x[:256], splits.train.y[:256]
        loss_fn = nn.CrossEntropyLoss()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
    finally:
        for remove in removers:
            remove()
    return {"forward_std": forward, "backward_std": backward}


@plotting.styled
def _figure(
    results: dict[str, list[TrainRun]],
    stats: dict[str, dict[str, list[float]]],
    seeds: tuple[int, ...],
    path: Path,
) -> str:
    from matplotlib.lines import Line2D

    fig, (ax_acc, ax_loss, ax_std) = plotting.figure(1, 3, figsize=(plotting.MAX_WIDTH, 4.6), layout="constrained")
    epochs = np.arange(1, SETTING.epochs + 1)
    handles = []
    for init_name in INITS:
        look = plotting.series(init_name, marker=None)
        for r in results[init_name]:
            ax_acc.plot(epochs, r.val_accuracy, **look, alpha=0.85)
            ax_loss.plot(epochs, r.train_loss, **look, alpha=0.85)
        handles.append(ax_acc.lines[-1])
        handles[-1].set_label(init_name)
        layers = np.arange(1, SETTING.depth + 1)
        ax_std.semilogy(layers, stats[init_name]["forward_std"], "-", marker=plotting.MARKERS[init_name], ms=4,
                        color=plotting.color(init_name))
        ax_std.semilogy(layers, stats[init_name]["backward_std"], "--", marker=plotting.MARKERS[init_name], ms=4,
                        mfc="white", color=plotting.color(init_name))
    handles.append(ax_acc.axhline(0.1, color=plotting.color("reference"), ls=":", lw=1.2, label="chance (0.1)"))
    key = {"color": "black", "ms": 4}
    handles += [Line2D([], [], ls="-", marker="o", label="std of the activations a_l", **key),
                Line2D([], [], ls="--", marker="o", mfc="white", label="std of the gradient dL/da_l", **key)]
    ax_acc.set(title="validation accuracy", xlabel="epoch", ylabel="validation accuracy (one line per seed)",
               ylim=(0, 1.02))
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="training loss (cross-entropy)")
    plotting.log_scale_if_wide(ax_loss, np.concatenate([line.get_ydata() for line in ax_loss.lines]))
    ax_std.set(title=f"per-layer std at initialization (seed {seeds[0]})", xlabel="hidden layer l", ylabel="std")
    plotting.figure_legend(fig, handles)
    fig.suptitle(f"30-layer ReLU MLP on the digits: {SETTING.describe()}")
    return save_figure(fig, path)


def choose_seeds(quick: bool, seeds: tuple[int, ...] | None) -> tuple[int, ...]:
    """The study's seeds (:data:`DEFAULT_SEEDS` unless given); ``quick`` keeps the first."""
    return study_seeds(NAME, DEFAULT_SEEDS if seeds is None else seeds, quick)


def statistics_trial(params: dict, ctx: object) -> dict:
    """:func:`initial_statistics` of one net: ``params = {init, seed, setting}``."""
    return initial_statistics(params["init"], params["seed"], TrainSetting(**params["setting"]), digits())


def _stats_spec(init_name: str, seed: int) -> dict:
    return make_spec(statistics_trial, {"init": init_name, "seed": seed, "setting": asdict(SETTING)})


def trials(*, quick: bool, seeds: tuple[int, ...]) -> list[dict]:
    """A training run per init x seed (longest first), then each init's statistics at initialization."""
    return ([train_spec(i, "relu", s, SETTING) for i in INITS for s in seeds]
            + [_stats_spec(i, seeds[0]) for i in INITS])


def run(*, quick: bool = False, out: str | Path = "lab", seeds: tuple[int, ...] | None = None,
        **engine: object) -> StudyResult:
    """Run the study (``engine``: :func:`~trainlab.experiments.common.run_study`'s executor options);
    ``quick`` trains with the first seed only (same setting)."""
    return run_study(sys.modules[__name__], quick=quick, out=out, seeds=seeds, **engine)


def analyse(records: Results, *, quick: bool, seeds: tuple[int, ...], out: Path) -> StudyResult:
    """Verdicts, the figure and the tables from the trials' records."""
    results = {i: [TrainRun(**records.metrics(train_spec(i, "relu", s, SETTING))) for s in seeds] for i in INITS}
    stats = {i: records.metrics(_stats_spec(i, seeds[0])) for i in INITS}

    xavier_acc = [r.test_accuracy for r in results["xavier"]]
    he_acc = [r.test_accuracy for r in results["he"]]
    per_seed = f"seeds {list(seeds)}"
    verdicts = [
        Verdict(
            "a 30-layer ReLU net initialized with xavier stalls at chance",
            float(max(xavier_acc)),
            f"test accuracy after {SETTING.epochs} epochs < {STALLED_MAX} (chance 0.1) for every seed",
            bool(max(xavier_acc) < STALLED_MAX),
            f"highest over {per_seed}: " + ", ".join(f"{a:.3f}" for a in xavier_acc),
        ),
        Verdict(
            "the same net initialized with he trains",
            float(min(he_acc)),
            f"test accuracy after {SETTING.epochs} epochs > {TRAINED_MIN} for every seed",
            bool(min(he_acc) > TRAINED_MIN),
            f"lowest over {per_seed}: " + ", ".join(f"{a:.3f}" for a in he_acc),
        ),
    ]
    figure = _figure(results, stats, seeds, out / "depth30.png")
    rows = []
    for i in INITS:
        for s, r in zip(seeds, results[i], strict=True):
            rows.append(
                [
                    i,
                    s,
                    f"{r.test_accuracy:.3f}",
                    f"{max(r.val_accuracy):.3f}",
                    f"{r.train_loss[-1]:.3g}",
                    f"{r.seconds:.1f}",
                ]
            )
    init_rows = [
        [
            i,
            f"{stats[i]['forward_std'][0]:.3g}",
            f"{stats[i]['forward_std'][-1]:.3g}",
            f"{stats[i]['backward_std'][0]:.3g}",
            f"{stats[i]['backward_std'][-1]:.3g}",
        ]
        for i in INITS
    ]
    tables = [
        Table(
            f"After {SETTING.epochs} epochs",
            ["init", "seed", "test accuracy", "best val accuracy", "final train loss", "seconds"],
            rows,
        ),
        Table(
            f"At initialization (seed {seeds[0]}, one batch of 256 digits)",
            [
                "init",
                "activation std, layer 1",
                "activation std, layer 30",
                "std dL/da, layer 1",
                "std dL/da, layer 30",
            ],
            init_rows,
        ),
    ]
    summary = (
        f"He et al. 2015's 30-layer experiment on the digits: {SETTING.describe()}; zero biases, "
        "no BatchNorm; "
        f"seeds {list(seeds)}. At initialization xavier's activations shrink from "
        f"{stats['xavier']['forward_std'][0]:.3g} at layer 1 to {stats['xavier']['forward_std'][-1]:.3g} at "
        f"layer 30 (he: {stats['he']['forward_std'][0]:.3g} to {stats['he']['forward_std'][-1]:.3g}), so the "
        "gradient reaching the early weights is tiny. Median test accuracy after training: xavier "
        f"{np.median(xavier_acc):.3f}, he {np.median(he_acc):.3f}. Momentum SGD as in the paper; an adaptive "
        "optimizer such as Adam rescales each weight's step by its gradient's size and was not tested here."
    )
    numbers = {
        "setting": asdict(SETTING),
        "seeds": list(seeds),
        "initial_statistics": stats,
        "runs": {i: [r._asdict() for r in results[i]] for i in INITS},
    }
    return StudyResult(
        name=NAME,
        title="Depth 30: xavier stalls, he trains (He et al. 2015)",
        summary=summary,
        command=study_command(NAME, quick, out, seeds, DEFAULT_SEEDS),
        verdicts=verdicts,
        figures={
            "Validation accuracy and training loss per epoch (one line per seed), and the per-layer std "
            "of activations and of dL/da at initialization": Path(figure).name
        },
        tables=tables,
        numbers=numbers,
    )
