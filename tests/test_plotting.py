"""The shared figure style, History.plot / curves.png, Monitor.plot and the studies' notebook view."""

import html

import matplotlib
import numpy as np
import pytest

from trainlab import Monitor, Trainer, models, nn, optim, plotting
from trainlab.experiments.common import StudyResult, Table, Verdict
from trainlab.run import write_curves
from trainlab.train import History

PNG = b"\x89PNG\r\n\x1a\n"


def _rows(losses, lrs=None, val=True):
    rows = []
    for i, loss in enumerate(losses):
        row = {"epoch": i + 1, "train_loss": loss, "train_accuracy": min(0.1 + 0.1 * i, 1.0), "lr": 0.1}
        if val:
            row.update(val_loss=loss * 1.1 + 0.01 * (i - 3) ** 2, val_accuracy=0.5 + 0.01 * i)
        if lrs is not None:
            row["lr"] = lrs[i]
        rows.append(row)
    return rows


def test_style_applies_inside_and_restores_after():
    before = matplotlib.rcParams["font.size"]
    with plotting.style():
        assert matplotlib.rcParams["font.size"] == plotting.RC["font.size"] == 11
        assert matplotlib.rcParams["legend.fontsize"] >= 10
    assert matplotlib.rcParams["font.size"] == before
    assert plotting.color("he") == plotting.COLORS["he"] and plotting.color("unknown") == "#777777"


def test_history_figure_log_axis_best_epoch_and_lr_panel():
    losses = [2.3 * 0.5 ** i for i in range(8)]                   # 2.3 -> 0.018: two decades
    rows = _rows(losses, lrs=[0.1 * 0.5 ** i for i in range(8)])
    fig = History(**{k: [r[k] for r in rows] for k in rows[0]}).plot(title="t")
    ax_loss, ax_acc, ax_lr = fig.axes
    assert ax_loss.get_yscale() == "log" and ax_lr.get_yscale() == "log" and ax_acc.get_yscale() == "linear"
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    best = int(np.argmin([r["val_loss"] for r in rows]))
    for ax in fig.axes:   # the dashed best-epoch line sits at that epoch in every panel
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert [line.get_xdata()[0] for line in dashed] == [best + 1]
    assert f"best epoch {best + 1}" in [t.get_text() for t in ax_loss.get_legend().get_texts()]
    assert plotting.figure_problems(fig) == []
    assert fig._repr_png_()[:8] == PNG


def test_history_figure_linear_when_narrow_and_survives_nan_and_empty(tmp_path):
    fig = plotting.history_figure(_rows([0.9, 0.7, 0.6, 0.55], val=False))
    assert fig.axes[0].get_yscale() == "linear" and fig.axes[2].get_yscale() == "linear"
    dashed = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert dashed[0].get_xdata()[0] == 4          # no validation split: the lowest training loss
    rows = _rows([1.0, float("nan"), 0.5])
    rows[1]["val_loss"] = float("nan")
    assert write_curves(rows, tmp_path / "c.png").read_bytes()[:8] == PNG
    assert write_curves([], tmp_path / "e.png").read_bytes()[:8] == PNG


def _trained_monitor(histograms=True):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 10)).astype(np.float32)
    y = (x[:, :3].argmax(axis=1)).astype(np.int64)
    model = models.mlp(10, [16, 16], 3, rng=np.random.default_rng(1))
    monitor = Monitor(model, every=2, histograms=histograms)
    Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), monitor=monitor, log=None,
            progress=False).fit((x, y), None, epochs=1, batch_size=32, rng=rng)
    return monitor


def test_monitor_plot_and_histograms():
    monitor = _trained_monitor()
    fig = monitor.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["(a) activation std", "(b) gradient norm", "(c) update ratio of each weight"]
    assert titles[3] == f"(d) by layer at step {monitor.steps[-1].step}"
    relu_layers = [n for n in monitor.layer_names if monitor._type(n) == "ReLU"]
    assert len(fig.axes[0].get_lines()) == len(relu_layers)
    assert fig.axes[2].get_yscale() == "log"
    assert fig._repr_png_()[:8] == PNG
    assert plotting.figure_problems(fig) == []
    hist = monitor.plot_histograms("act")
    assert plotting.figure_problems(hist) == []
    shown = [ax for ax in hist.axes if ax.axison]
    assert [ax.get_title().split("\n")[0] for ax in shown] == [plotting.layer_label(monitor, n)
                                                                for n in monitor.layer_names]
    assert len([ax for ax in monitor.plot_histograms("grad", layers=["0", "2"]).axes if ax.axison]) == 2
    counts = monitor.steps[-1].histograms["0"]["act"].counts
    heights = [p.get_path().vertices[:, 1].max() for p in shown[0].patches]
    assert max(heights) == counts.max()
    with pytest.raises(ValueError, match="no histograms at step 1"):
        monitor.plot_histograms("act", step=1)
    with pytest.raises(ValueError, match="unknown layers"):
        monitor.plot(layers=["nope"])


def test_monitor_plot_errors_say_what_to_do():
    model = models.mlp(4, [4], 2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="nothing recorded yet"):
        Monitor(model).plot()
    with pytest.raises(ValueError, match="histograms=True"):
        _trained_monitor(histograms=False).plot_histograms()


def test_study_result_html_embeds_figures_and_verdicts(tmp_path):
    fig, ax = plotting.figure()
    ax.plot([0, 1], [1, 0])
    plotting.save_png(fig, tmp_path / "f.png")
    result = StudyResult("demo", "A <demo>", "what it shows", "trainlab experiment demo",
                         [Verdict("claim one", 0.5, "< 1", True), Verdict("claim two", 2.0, "< 1", False)],
                         {"the figure": "f.png", "gone": "missing.png"}, [Table("t", ["a"], [[1.5]])])
    result.save(tmp_path)
    for shown in (result, StudyResult.load(tmp_path / "demo.json")):
        page = shown._repr_html_()
        assert page.count("data:image/png;base64,") == 1 and "figure missing" in page
        assert "A &lt;demo&gt;" in page and "1/2 claims pass" in page
        assert ">PASS<" in page and ">FAIL<" in page and html.escape("trainlab experiment demo") in page
        assert "<style>" in page and all(line.startswith(".trainlab-study") or not line.strip()
                                         for line in page.split("<style>")[1].split("</style>")[0].splitlines())


def test_figure_problems_names_each_breach():
    with plotting.style():
        fig, (bare, tiny, good) = plotting.figure(1, 3)
    bare.plot([1, 2, 3], [1.0, 30.0, 900.0])                      # no labels; linear over three decades
    tiny.plot([1, 2], [1, 2])
    tiny.set(xlabel="x", ylabel="y")
    tiny.set_title("small", fontsize=plotting.MIN_FONT_SIZE - 2)
    good.plot([-1, 1], [0.01, 100.0])                              # log y, negative x: nothing to say
    good.set(xlabel="x", ylabel="y", yscale="log")
    problems = plotting.figure_problems(fig)
    assert problems == ["panel 0 (untitled): the x axis has no label", "panel 0 (untitled): the y axis has no label",
                        "panel 0 (untitled): the y axis is linear but its values span 3.0 decades",
                        f"text 'small' is {plotting.MIN_FONT_SIZE - 2:g} pt (< {plotting.MIN_FONT_SIZE:g})"]
    bare.set(xlabel="x", ylabel="y", yscale="log")
    tiny.title.set_fontsize(plotting.MIN_FONT_SIZE)
    assert plotting.figure_problems(fig) == []


def test_series_keeps_the_momentum_family_apart():
    looks = [plotting.series(n) for n in ("sgd", "momentum", "nesterov")]
    assert len({lk["color"] for lk in looks}) == 3
    assert len({str(lk["linestyle"]) for lk in looks}) == 3 and len({lk["marker"] for lk in looks}) == 3
    assert plotting.series("he", lw=3)["lw"] == 3 and "marker" not in plotting.series("unknown")
