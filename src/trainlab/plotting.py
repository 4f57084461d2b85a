"""One figure style for every trainlab figure, and the figures of runs and monitors.

Every figure trainlab draws (``curves.png``, :meth:`History.plot`, :meth:`Monitor.plot`, the
studies' figures) is drawn inside :func:`style`: the same font sizes, colours, grid and
legends. The sizes are chosen for the size a figure is *seen* at: figures are at most
:data:`MAX_WIDTH` inches wide and saved at :data:`DPI`, so an 11-point label is about 15
pixels tall in a browser, a report or a notebook, whatever the panel count.

Colours come from Okabe & Ito's colour-blind-safe palette; a name that recurs across
figures (``"train"``, ``"val"``, ``"he"``, ``"adam"``, ...) always gets the same colour
(:func:`color`), and with it a line style and a marker (:func:`series`), so that lines stay
apart where they overlap or where colour is lost (a greyscale print, colour blindness).

A figure reads well at a glance when every panel says what its axes are, no text is smaller
than :data:`MIN_FONT_SIZE`, and an axis whose values span decades is logarithmic:
:func:`figure_problems` lists the breaches of these rules, and the tests run it on every
figure the studies and sweeps draw.

Figures are :class:`matplotlib.figure.Figure` objects drawn by Agg outside pyplot (no
global state is touched, nothing needs closing). The ones made by :func:`figure` also carry
``_repr_png_``, so a notebook shows them when they are a cell's value.

References:
    Okabe & Ito, "Color Universal Design: how to make figures and presentations that are
    friendly to colorblind people", 2008. https://jfly.uni-koeln.de/color/
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

__all__ = ["RC", "DPI", "MAX_WIDTH", "MIN_FONT_SIZE", "PALETTE", "COLORS", "LINESTYLES", "MARKERS", "color",
           "series", "style", "styled", "figure", "png_bytes", "save_png", "log_scale_if_wide",
           "label_minor_log_ticks", "mark_best", "legend", "figure_legend", "figure_problems", "history_figure",
           "monitor_figure", "histogram_figure", "layer_label"]

DPI = 100          #: pixels per inch of saved figures
MAX_WIDTH = 12.0   #: inches; with DPI the widest figure is 1200 px, shown unscaled in the HTML report
MIN_FONT_SIZE = 9  #: points; the smallest text a figure may hold (about 12 px at DPI)

#: the matplotlib settings every figure is drawn with (see :func:`style`)
RC: dict[str, Any] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "legend.frameon": True,
    "legend.framealpha": 0.85,
    "legend.edgecolor": "#cccccc",
    "figure.titlesize": 13,
    "figure.titleweight": "bold",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 4,
    "axes.prop_cycle": None,   # filled in below from PALETTE
}

#: Okabe & Ito's palette (black first), in the order of the default colour cycle
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")

#: names that recur across figures, each with one colour everywhere
COLORS: dict[str, str] = {
    # splits
    "train": "#0072B2", "val": "#D55E00", "test": "#009E73", "best": "#555555",
    # initializers
    "small_random": "#CC79A7", "xavier": "#0072B2", "he": "#D55E00", "normal": "#E69F00",
    # update rules
    "sgd": "#000000", "momentum": "#0072B2", "nesterov": "#56B4E9", "adagrad": "#009E73",
    "rmsprop": "#E69F00", "adam": "#D55E00", "adam_seed": "#CC79A7",
    # with and without batch normalization
    "bn": "#0072B2", "no_bn": "#D55E00", "dropout": "#009E73",
    # reference lines
    "reference": "#777777",
}

#: line styles of recurring names: members of one family (the momentum rules, the adaptive
#: rules) differ in style as well as colour, so that paths which coincide stay apart
LINESTYLES: dict[str, Any] = {
    "sgd": "-", "momentum": "--", "nesterov": ":", "adagrad": "-", "rmsprop": "--", "adam": "-.",
    "adam_seed": (0, (1, 1.5)),
}

#: markers of recurring names (end points, sampled points, legend handles)
MARKERS: dict[str, str] = {
    "train": "o", "val": "s", "test": "^",
    "small_random": "v", "xavier": "s", "he": "o", "normal": "D",
    "sgd": "o", "momentum": "s", "nesterov": "^", "adagrad": "D", "rmsprop": "v", "adam": "P", "adam_seed": "X",
    "bn": "o", "no_bn": "s", "dropout": "^",
}

F = TypeVar("F", bound=Callable[..., Any])


def _rc() -> dict[str, Any]:
    from cycler import cycler

    return {**RC, "axes.prop_cycle": cycler(color=list(PALETTE))}


def color(name: str, default: str | None = None) -> str:
    """The colour of a recurring name (``"val"``, ``"he"``, ``"adam"``...); ``default`` or grey otherwise."""
    return COLORS.get(name, default or "#777777")


def series(name: str, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``ax.plot`` that draw the recurring name ``name`` as everywhere else:
    ``color``, ``linestyle`` (solid unless :data:`LINESTYLES` says otherwise) and ``marker``
    (:data:`MARKERS`; none for an unknown name); ``overrides`` win."""
    look: dict[str, Any] = {"color": color(name), "linestyle": LINESTYLES.get(name, "-")}
    if name in MARKERS:
        look["marker"] = MARKERS[name]
    return {**look, **overrides}


@contextmanager
def style() -> Iterator[None]:
    """Draw inside this block to get trainlab's figure style (matplotlib ``rc_context``).

    Everything matplotlib creates inside the block (axes, ticks, text, legends) takes the
    sizes and colours of :data:`RC`; the global rcParams are restored on leaving it.
    """
    import matplotlib

    with matplotlib.rc_context(_rc()):
        yield


def styled(fn: F) -> F:
    """Decorator: run a figure-drawing function inside :func:`style`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _display_figure_class() -> type:
    from matplotlib.figure import Figure

    class DisplayFigure(Figure):
        """A Figure that a notebook displays as PNG when it is a cell's value."""

        def _repr_png_(self) -> bytes:
            return png_bytes(self)

    return DisplayFigure


@functools.cache
def _figure_class() -> type:
    return _display_figure_class()


def figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
           squeeze: bool = True, layout: str | None = None, **subplots: Any) -> tuple[Any, Any]:
    """``(figure, axes)``: a Figure drawn by Agg outside pyplot, in trainlab's style.

    Call it inside :func:`style` (or a :func:`styled` function) so that the axes get the
    style too. ``figsize`` defaults to 4 inches a column (at most :data:`MAX_WIDTH`) by 3.4 a
    row; ``layout="constrained"`` lets matplotlib place the panels, titles and legends outside
    the axes (``fig.legend(loc="outside lower center")``); with ``nrows=0`` no axes are made
    (for subfigures); other keyword arguments go to :meth:`Figure.subplots`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if figsize is None:
        figsize = (min(MAX_WIDTH, 4.0 * ncols), 3.4 * max(nrows, 1))
    if figsize[0] > MAX_WIDTH:
        raise ValueError(f"figure: figsize width {figsize[0]} in is wider than MAX_WIDTH ({MAX_WIDTH} in)")
    fig = _figure_class()(figsize=figsize, dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **subplots) if nrows else None
    return fig, axes


def png_bytes(fig: Any, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes (tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def save_png(fig: Any, path: str | Path, dpi: int = DPI) -> Path:
    """Write the figure to ``path`` as PNG atomically (temp file, fsync, rename); returns the path."""
    from trainlab.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, png_bytes(fig, dpi))
    return Path(path)


def log_scale_if_wide(ax: Any, values: Sequence[float] | np.ndarray, axis: str = "y", decades: float = 1.0) -> bool:
    """Put ``axis`` on a log scale when the finite ``values`` are positive and span at least
    ``decades`` powers of ten (max/min >= 10**decades); returns whether it did.

    Where the values span less than three decades the minor ticks at 2 and 5 are labelled
    too, so the axis can be read between its powers of ten.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size < 2 or v.min() <= 0 or v.max() / v.min() < 10.0 ** decades:
        return False
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    if v.max() / v.min() < 1e3:
        label_minor_log_ticks(ax, axis)
    return True


def label_minor_log_ticks(ax: Any, axis: str = "y") -> None:
    """Label the minor ticks at 2 and 5 times each power of ten of a log ``axis`` ("0.2", "5")."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    target.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))


def mark_best(axes: Sequence[Any], x: float, label: str) -> None:
    """A dashed vertical line at ``x`` on every axis; ``label`` goes into the first one's legend."""
    for i, ax in enumerate(axes):
        ax.axvline(x, color=color("best"), ls="--", lw=1.1, zorder=1, label=label if i == 0 else None)


def legend(ax: Any, **kwargs: Any) -> Any:
    """A legend in the style's font size at the best place (only when something is labelled)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(**{"loc": "best", **kwargs})


def figure_legend(fig: Any, handles: Sequence[Any], labels: Sequence[str] | None = None, *, ncols: int | None = None,
                  loc: str = "outside lower center", **kwargs: Any) -> Any:
    """One legend for every panel of a constrained-layout figure, outside the panels
    (below them by default), in at most ``ncols`` columns (default: all in one row, at most 7)."""
    labels = [h.get_label() for h in handles] if labels is None else list(labels)
    return fig.legend(handles, labels, loc=loc, ncols=ncols or min(len(handles), 7) or 1, **kwargs)


def _texts(fig: Any) -> Iterator[Any]:
    from matplotlib.text import Text

    for artist in fig.findobj(Text):
        if artist.get_visible() and artist.get_text().strip() and artist.get_figure() is not None:
            yield artist


def _has_label(ax: Any, which: str) -> bool:
    axis = ax.xaxis if which == "x" else ax.yaxis
    if axis.get_label_text().strip():
        return True
    shared = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    if any((s.xaxis if which == "x" else s.yaxis).get_label_text().strip() for s in shared.get_siblings(ax)):
        return True
    holder = ax.get_figure(root=False)
    while True:                  # a supxlabel / supylabel of the (sub)figure holding the axes, or above
        if (holder.get_supxlabel() if which == "x" else holder.get_supylabel()).strip():
            return True
        parent = holder.get_figure(root=False)
        if parent is holder:
            return False
        holder = parent


def _ticked(ax: Any, which: str) -> bool:
    """Whether the axis shows tick labels (an axis with none is deliberately unlabelled: a histogram's counts)."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    return axis.get_visible() and any(t.get_visible() and t.get_text().strip() for t in axis.get_ticklabels())


def figure_problems(fig: Any, *, min_font: float = MIN_FONT_SIZE, decades: float = 2.0) -> list[str]:
    """What keeps a figure from reading at a glance, one line each (empty: nothing).

    * a panel that draws data but leaves an axis with tick labels unnamed (no axis label, none on
      an axis it shares, no ``supxlabel``/``supylabel`` of its figure);
    * text (titles, labels, ticks, legends, annotations) smaller than ``min_font`` points;
    * a linear axis whose lines are all positive and span ``decades`` powers of ten or more
      (unless the axis shows a stretch of negative values on purpose, as coordinates do).

    The figure is drawn first (tick labels exist only then).
    """
    from matplotlib.collections import Collection
    from matplotlib.image import AxesImage

    fig.canvas.draw()
    problems = []
    for i, ax in enumerate(fig.get_axes()):
        if not ax.axison or not ax.get_visible():
            continue
        name = f"panel {i} ({ax.get_title() or ax.get_label() or 'untitled'})"
        draws = bool(ax.lines or any(isinstance(c, (Collection, AxesImage)) for c in ax.get_children())
                     or ax.patches)
        if not draws or ax.get_label() == "<colorbar>":
            continue
        for which in ("x", "y"):
            if _ticked(ax, which) and not _has_label(ax, which):
                problems.append(f"{name}: the {which} axis has no label")
        for which in ("x", "y"):
            if (ax.get_xscale() if which == "x" else ax.get_yscale()) != "linear":
                continue
            data = [np.asarray(line.get_xdata() if which == "x" else line.get_ydata(), dtype=np.float64)
                    for line in ax.lines if len(line.get_xdata()) > 1]
            values = np.concatenate(data) if data else np.array([])
            values = values[np.isfinite(values)]
            lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
            if min(lo, hi) < -0.1 * abs(hi - lo):
                continue         # the axis shows negative values on purpose (coordinates, not magnitudes)
            if values.size > 1 and values.min() > 0 and values.max() / values.min() >= 10.0 ** decades:
                problems.append(f"{name}: the {which} axis is linear but its values span "
                                f"{math.log10(values.max() / values.min()):.1f} decades")
    for text in _texts(fig):
        if text.get_fontsize() < min_font - 1e-9:
            problems.append(f"text {text.get_text()[:40]!r} is {text.get_fontsize():g} pt (< {min_font:g})")
    return problems


# ---------------------------------------------------------------------- run curves
def _column(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray | None:
    values = [r.get(key) for r in rows]
    if not values or any(v is None for v in values):
        return None
    return np.asarray(values, dtype=np.float64)


def _best_epoch(rows: Sequence[dict[str, Any]]) -> tuple[int, str, float] | None:
    """``(index, key, value)`` of the lowest finite validation loss (training loss without one)."""
    for key in ("val_loss", "train_loss"):
        col = _column(rows, key)
        if col is not None and np.isfinite(col).any():
            i = int(np.nanargmin(np.where(np.isfinite(col), col, np.nan)))
            return i, key, float(col[i])
    return None


@styled
def history_figure(rows: Sequence[dict[str, Any]], title: str = "") -> Any:
    """Loss, accuracy and learning rate per epoch (the rows of ``metrics.jsonl``), best epoch marked.

    * loss: train and val; a log axis when the loss spans a decade or more;
    * accuracy: train and val, on [0, 1];
    * learning rate: the lr each epoch ran with; a log axis when it spans a decade or more.

    The best epoch (lowest validation loss, else lowest training loss) is a dashed line in
    every panel and a star on the validation curves. Non-finite values leave gaps.
    """
    fig, (ax_loss, ax_acc, ax_lr) = figure(1, 3, figsize=(MAX_WIDTH, 3.8))
    rows = list(rows)
    epochs = np.asarray([r.get("epoch", i + 1) for i, r in enumerate(rows)], dtype=np.float64)
    marker = "o" if len(rows) <= 60 else None
    losses = []
    for ax, what in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for split in ("train", "val"):
            col = _column(rows, f"{split}_{what}")
            if col is not None:
                ax.plot(epochs, col, marker=marker, color=color(split), label=split)
                if what == "loss":
                    losses.append(col)
    lr = _column(rows, "lr")
    if lr is not None:
        ax_lr.plot(epochs, lr, marker=marker, color=color("reference"), label="lr")
        if not log_scale_if_wide(ax_lr, lr):
            ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    if losses:
        log_scale_if_wide(ax_loss, np.concatenate(losses))
    best = _best_epoch(rows)
    if best is not None:
        i, key, value = best
        mark_best((ax_loss, ax_acc, ax_lr), epochs[i], f"best epoch {int(epochs[i])}")
        split = key.split("_", 1)[0]
        ax_loss.plot([epochs[i]], [value], "*", ms=13, color=color(split), zorder=5)
        acc = _column(rows, f"{split}_accuracy")
        if acc is not None and math.isfinite(acc[i]):
            ax_acc.plot([epochs[i]], [acc[i]], "*", ms=13, color=color(split), zorder=5)
            ax_acc.annotate(f"{acc[i]:.3f}", (epochs[i], acc[i]), textcoords="offset points", xytext=(6, -14))
        ax_loss.annotate(f"{value:.3g}", (epochs[i], value), textcoords="offset points", xytext=(6, 6))
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    if not rows:
        for ax in (ax_loss, ax_acc, ax_lr):
            ax.text(0.5, 0.5, "no epochs yet", ha="center", va="center", transform=ax.transAxes)
    for ax in (ax_loss, ax_acc):
        legend(ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- monitor figures
def layer_label(monitor: Any, name: str) -> str:
    """``"3 ReLU"``: a monitored layer's name and type."""
    return f"{name} {monitor._type(name)}"


def _depth_colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(0.9 * i / max(n - 1, 1)) for i in range(n)]


def _series(monitor: Any, name: str, stat: str) -> tuple[np.ndarray, np.ndarray] | None:
    pairs = [(r.step, r.layers[name][stat]) for r in monitor.steps if stat in r.layers.get(name, {})]
    if not pairs:
        return None
    steps, values = zip(*pairs, strict=True)
    return np.asarray(steps), np.asarray(values, dtype=np.float64)


def _positive(values: np.ndarray) -> np.ndarray:
    return np.where(values > 0, values, np.nan)


def _profile(ax: Any, monitor: Any, names: list[str], labels: dict[str, str], colors: dict[str, Any],
             prefix: str = "") -> None:
    """Activation std and gradient std by layer at the monitor's last sampled step."""
    last = monitor.steps[-1]
    profile = []
    for stat, key, label in (("act_std", "train", "activation std"), ("grad_std", "val", "gradient std")):
        idx = [i for i, n in enumerate(names) if stat in last.layers.get(n, {})]
        vals = np.asarray([last.layers[names[i]][stat] for i in idx], dtype=np.float64)
        if idx:
            ax.plot(idx, _positive(vals), **series(key), label=label)
            profile.append(vals)
    if profile:
        log_scale_if_wide(ax, np.concatenate(profile))
    every = math.ceil(len(names) / 12)       # at most 12 tick labels
    ticked = names[::every]
    ax.set_xticks(range(0, len(names), every))
    for tick, name in zip(ax.set_xticklabels([labels[n] for n in ticked], rotation=40, ha="right"),
                          ticked, strict=True):
        tick.set_color(colors[name])
    ax.set(xlabel="layer", ylabel="std", title=f"{prefix}by layer at step {last.step}")
    legend(ax)


@styled
def monitor_figure(monitor: Any, layers: Sequence[str] | None = None) -> Any:
    """Four panels from a :class:`~trainlab.monitor.Monitor`'s sampled steps.

    (a) activation std of each activation layer (every layer when the net has none) per step;
    (b) gradient norm at each layer's output per step; (c) the update ratio ||dw||/||w|| of
    each weight matrix per step, with the monitor's thresholds; (d) activation std and
    gradient std by layer at the last sampled step, the profile that shows vanishing or
    exploding signals at a glance. A layer has one colour in every panel (dark: first
    layer); y axes are logarithmic where the values span a decade or more. With a single
    sampled step (one :meth:`Monitor.observe`) there is no time axis: only (d) is drawn.
    """
    from trainlab import monitor as mon

    if not monitor.steps:
        raise ValueError("Monitor.plot: nothing recorded yet; train with Trainer(monitor=...) "
                         "or call monitor.observe(x, y, loss)")
    names = list(layers) if layers is not None else list(monitor.layer_names)
    unknown = [n for n in names if n not in monitor.layer_names]
    if unknown:
        raise ValueError(f"Monitor.plot: unknown layers {unknown}; layers: {', '.join(monitor.layer_names)}")
    labels = {n: layer_label(monitor, n) for n in names}
    colors = dict(zip(names, _depth_colors(len(names)), strict=True))
    kinds = {ly.name: ly.kind for ly in monitor._layers}
    weight_stat = {ly.name: f"{local}.update_ratio" for ly in monitor._layers
                   for local, _, p in ly.params if p.data.ndim >= 2 and local == "weight"}
    if len(monitor.steps) == 1:
        fig, ax = figure(figsize=(min(MAX_WIDTH, 3.0 + 0.45 * len(names)), 4.2))
        _profile(ax, monitor, names, labels, colors)
        fig.tight_layout()
        return fig
    fig, axes = figure(2, 2, figsize=(MAX_WIDTH, 8.6))
    (ax_act, ax_grad), (ax_upd, ax_prof) = axes
    marker = "o" if len(monitor.steps) <= 30 else None
    drawn: dict[str, Any] = {}
    panels = ((ax_act, [n for n in names if kinds.get(n)] or names, lambda n: "act_std"),
              (ax_grad, names, lambda n: "grad_norm"),
              (ax_upd, [n for n in names if n in weight_stat], weight_stat.get))
    for ax, shown, stat_of in panels:
        values = []
        for name in shown:
            series = _series(monitor, name, stat_of(name))
            if series is not None:
                (line,) = ax.plot(series[0], series[1], marker=marker, ms=3, color=colors[name])
                drawn.setdefault(name, line)
                values.append(series[1])
        if values:
            log_scale_if_wide(ax, np.concatenate(values))
    if any(n in weight_stat for n in names) and ax_upd.lines:
        ax_upd.set_yscale("log")
        for y, ls, text in ((mon.UPDATE_RATIO_HIGH, "--", "too high"), (1e-3, ":", "about right"),
                            (mon.UPDATE_RATIO_LOW, "--", "too low")):
            ax_upd.axhline(y, color=color("reference"), ls=ls, lw=1)
            ax_upd.annotate(text, (0.99, y), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                            color=color("reference"), fontsize=10)
    else:
        ax_upd.text(0.5, 0.5, "no update ratios recorded\n(observe() does not step an optimizer)",
                    ha="center", va="center", transform=ax_upd.transAxes)
        ax_upd.set_xticks([])
        ax_upd.set_yticks([])
    ax_act.set(xlabel="step", ylabel="std of the layer's output", title="(a) activation std")
    ax_grad.set(xlabel="step", ylabel="||dL/da|| at the layer's output", title="(b) gradient norm")
    ax_upd.set(xlabel="step", ylabel="||Δw|| / ||w||", title="(c) update ratio of each weight")
    _profile(ax_prof, monitor, names, labels, colors, "(d) ")
    if len(drawn) <= 15:
        handles = [drawn[n] for n in names if n in drawn]
        fig.legend(handles, [labels[n] for n in names if n in drawn], loc="lower center",
                   ncols=min(5, len(handles)) or 1, title="layer", bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout(rect=(0, 0.06 + 0.035 * math.ceil(len(handles) / 5), 1, 1))
    else:
        import matplotlib

        fig.tight_layout()
        norm = matplotlib.colors.Normalize(0, max(len(names) - 1, 1) / 0.9)
        mappable = matplotlib.cm.ScalarMappable(cmap="viridis", norm=norm)
        fig.colorbar(mappable, ax=list(axes.flat), label="layer index", shrink=0.6)
    return fig


@styled
def histogram_figure(monitor: Any, what: str = "act", step: int | None = None, *,
                     layers: Sequence[str] | None = None, columns: int = 5) -> Any:
    """One panel per layer (``layers``, default all): the histogram of ``what`` (``"act"``,
    ``"grad"``, ``"weight"``...) at sampled step ``step`` (default: the last one that recorded
    histograms), with its std. Needs ``Monitor(histograms=True)``.
    """
    if not monitor.histograms:
        raise ValueError("Monitor.plot_histograms: this monitor records no histograms; "
                         "create it with Monitor(model, histograms=True)")
    records = [r for r in monitor.steps if r.histograms]
    if step is not None:
        records = [r for r in records if r.step == step]
        if not records:
            raise ValueError(f"Monitor.plot_histograms: no histograms at step {step}; steps with histograms: "
                             f"{[r.step for r in monitor.steps if r.histograms]}")
    if not records:
        raise ValueError("Monitor.plot_histograms: nothing recorded yet")
    record = records[-1]
    names = list(layers) if layers is not None else list(monitor.layer_names)
    unknown = [n for n in names if n not in monitor.layer_names]
    if unknown:
        raise ValueError(f"Monitor.plot_histograms: unknown layers {unknown}; "
                         f"layers: {', '.join(monitor.layer_names)}")
    shown = [(n, record.histograms[n][what]) for n in names
             if what in record.histograms.get(n, {}) and record.histograms[n][what].num]
    if not shown:
        raise ValueError(f"Monitor.plot_histograms: no {what!r} histograms at step {record.step}")
    cols = min(columns, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = figure(rows, cols, figsize=(min(MAX_WIDTH, 2.4 * cols), 2.3 * rows + 0.5), squeeze=False)
    colors = _depth_colors(len(shown))
    for ax, (name, h), c in zip(axes.flat, shown, colors, strict=False):
        ax.stairs(h.counts, h.edges, fill=True, color=c)
        mean = h.sum / h.num
        std = math.sqrt(max(h.sum_squares / h.num - mean * mean, 0.0))
        ax.set_title(f"{layer_label(monitor, name)}\nstd {std:.2g}", fontsize=11)
        ax.set_yticks([])
        ax.set_xticks([h.edges[0], h.edges[-1]])
        ax.set_xticklabels([f"{h.edges[0]:.2g}", f"{h.edges[-1]:.2g}"])
        ax.grid(False)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_axis_off()
    names = {"act": "activations", "grad": "gradients at the layer outputs"}
    fig.suptitle(f"{names.get(what, what)} at step {record.step}")
    fig.supxlabel(f"value of the {names.get(what, what)} (the axis spans each layer's range)",
                  fontsize=RC["axes.labelsize"])
    fig.tight_layout()
    return fig
