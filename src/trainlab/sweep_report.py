"""``sweep.html``: a sweep's results as one self-contained page (built from :mod:`trainlab.report`'s pieces).

The page holds

* a header: the sweep's name, trial counts, the metric and the command that reruns it;
* heatmaps of the metric (mean over seeds) over two swept keys, one panel per value of a
  third key (``[sweep] heatmap`` / ``facet``, or the first three swept keys);
* for every swept key with three or more values, the metric against that key, one line per
  setting of the other keys, with a band of ± one standard deviation over seeds;
* tables: the best configurations, mean ± std over seeds per configuration, every trial.

Figures are PNGs written next to the page and embedded in it (``data:`` URIs), so the
file opens anywhere with no network. They are drawn in the shared style of
:mod:`trainlab.plotting` (its fonts, palette and markers; a metric that spans decades on a
log axis), so a sweep's figures read like the studies' and the run folders'.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from trainlab import plotting
from trainlab.checkpoint import atomic_write_bytes
from trainlab.experiments.common import Table
from trainlab.report import escape, figure_html, meta_line, page, table_html
from trainlab.trials.grid import unique
from trainlab.trials.sweep import Sweep, format_value, group_stats, metric_value, ranked

__all__ = ["write_sweep_html", "SWEEP_HTML"]

SWEEP_HTML = "sweep.html"
MAX_PANELS = 12   #: heatmap facets drawn at most
MAX_LINES = 10    #: lines per curve panel at most (more settings are averaged into fewer lines)


def _varied(sweep: Sweep, table: list[dict[str, Any]]) -> list[str]:
    """Swept keys that take at least two values among the recorded trials."""
    return [k for k in sweep.keys if len(unique([row[k] for row in table])) > 1]


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _axis(ax: Any, values: list[Any], which: str) -> list[float]:
    """Positions for ``values`` on an axis (log scale for positive numbers spanning 20x or more)."""
    if _numeric(values):
        positions = [float(v) for v in values]
        if min(positions) > 0 and max(positions) / min(positions) >= 20:
            (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        return positions
    positions = list(range(len(values)))
    (ax.set_xticks if which == "x" else ax.set_yticks)(positions)
    (ax.set_xticklabels if which == "x" else ax.set_yticklabels)([format_value(v) for v in values])
    return positions


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


#: the narrowest heatmap cell (inches) that still holds its value written out
_MIN_CELL_FOR_TEXT = 0.45


@plotting.styled
def _heatmap(sweep: Sweep, table: list[dict[str, Any]], keys: list[str], facet: str | None, path: Path) -> str:
    from matplotlib.colors import LogNorm, Normalize

    kx, ky = keys
    xs = unique([r[kx] for r in table])
    ys = unique([r[ky] for r in table])
    facets = unique([r[facet] for r in table])[:MAX_PANELS] if facet else [None]
    bar = 1.4                                     # inches for the colour bar and its label
    width = min(max(3.6, 0.62 * len(xs) + 1.4), plotting.MAX_WIDTH - bar)
    height = max(2.6, 0.5 * len(ys) + 1.8)
    cols = max(1, min(len(facets), 3, int((plotting.MAX_WIDTH - bar) // width)))
    rows_n = math.ceil(len(facets) / cols)
    fig, axes = plotting.figure(rows_n, cols, figsize=(width * cols + bar, height * rows_n), squeeze=False,
                                layout="constrained")
    axes = axes.ravel()
    digits = "{:.3g}" if len(xs) <= 8 else "{:.2f}"
    cells = []
    for f in facets:
        grid = np.full((len(ys), len(xs)), math.nan)
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                vals = [metric_value(sweep, r) for r in table
                        if _same(r[kx], x) and _same(r[ky], y) and (facet is None or _same(r[facet], f))]
                grid[i, j] = _mean(vals)
        cells.append(grid)
    finite = np.concatenate([g[np.isfinite(g)] for g in cells]) if cells else np.array([])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    cmap = "viridis" if sweep.mode == "max" else "viridis_r"
    # a metric spanning two decades or more (a loss) gets a logarithmic colour scale
    norm = LogNorm(lo, hi) if lo > 0 and hi / lo >= 100 else Normalize(lo, hi if hi > lo else lo + 1e-9)
    write_values = (width - 1.4) / max(len(xs), 1) >= _MIN_CELL_FOR_TEXT
    image = None
    for ax, f, grid in zip(axes, facets, cells, strict=False):
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto", origin="lower")
        ax.grid(False)
        for i in range(len(ys)) if write_values else ():
            for j in range(len(xs)):
                v = grid[i, j]
                # viridis is dark at its low end (the high end of viridis_r)
                dark = math.isfinite(v) and (norm(v) < 0.5) == (sweep.mode == "max")
                ax.text(j, i, digits.format(v) if math.isfinite(v) else "n/a", ha="center", va="center",
                        fontsize=plotting.MIN_FONT_SIZE, color="white" if dark else "black")
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([format_value(x) for x in xs], rotation=45 if len(xs) > 4 else 0)
        ax.set_yticks(range(len(ys)))
        ax.set_yticklabels([format_value(y) for y in ys])
        ax.set_xlabel(kx)
        ax.set_ylabel(ky)
        if facet is not None:
            ax.set_title(f"{facet} = {format_value(f)}")
    for ax in axes[len(facets):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[: len(facets)]), shrink=0.85, label=f"{sweep.metric} (mean over seeds)")
    return str(plotting.save_png(fig, path))


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


@plotting.styled
def _curves(sweep: Sweep, table: list[dict[str, Any]], key: str, others: list[str], path: Path) -> str:
    xs = unique([r[key] for r in table])
    # lines: settings of the other keys (the first keys' settings, at most MAX_LINES lines)
    line_keys: list[str] = []
    for k in others:
        settings = unique([tuple(r[c] for c in [*line_keys, k]) for r in table])
        if len(settings) > MAX_LINES:
            break
        line_keys.append(k)
    lines = unique([tuple(r[c] for c in line_keys) for r in table])
    fig, ax = plotting.figure(figsize=(8.5, 5.2), layout="constrained")
    positions = _axis(ax, xs, "x")
    markers = list(dict.fromkeys(plotting.MARKERS.values()))
    styles = ("-", "--", "-.", ":")
    drawn = []
    for n, setting in enumerate(lines):
        mean, std = [], []
        for x in xs:
            vals = [metric_value(sweep, r) for r in table
                    if _same(r[key], x) and all(_same(r[c], v) for c, v in zip(line_keys, setting, strict=True))]
            finite = [v for v in vals if math.isfinite(v)]
            mean.append(float(np.mean(finite)) if finite else math.nan)
            std.append(float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0)
        mean_a, std_a = np.array(mean), np.array(std)
        label = ", ".join(f"{c} = {format_value(v)}" for c, v in zip(line_keys, setting, strict=True)) or sweep.metric
        (line,) = ax.plot(positions, mean_a, color=plotting.PALETTE[n % len(plotting.PALETTE)],
                          ls=styles[(n // len(plotting.PALETTE)) % len(styles)], marker=markers[n % len(markers)],
                          ms=6, label=label)
        drawn.append(mean_a)
        if sweep.repeats > 1:
            ax.fill_between(positions, mean_a - std_a, mean_a + std_a, color=line.get_color(),
                            alpha=0.2 if len(lines) <= 3 else 0.1, lw=0)
    plotting.log_scale_if_wide(ax, np.concatenate(drawn) if drawn else [], decades=2.0)
    ax.set_xlabel(key)
    ax.set_ylabel(sweep.metric + (" (log scale)" if ax.get_yscale() == "log" else ""))
    averaged = [k for k in others if k not in line_keys]
    note = f"; averaged over {', '.join(averaged)}" if averaged else ""
    ax.set_title(f"{sweep.metric} against {key}\n(mean ± std over {sweep.repeats} seeds{note})")
    if len(lines) > 1 or line_keys:
        widest = max(len(line.get_label()) for line in ax.lines)
        plotting.figure_legend(fig, ax.lines, ncols=1 if widest > 48 else min(len(lines), 2 if widest > 24 else 4))
    return str(plotting.save_png(fig, path))


def _file_key(key: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in key)


def write_sweep_html(sweep: Sweep, table: list[dict[str, Any]], out: str | Path, *, command: str = "") -> Path:
    """Write ``out/sweep.html`` (and its figure PNGs) atomically; returns the page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []
    figures: list[str] = []
    varied = _varied(sweep, table)
    if len(varied) >= 2:
        keys = sweep.heatmap or varied[:2]
        facet = sweep.facet or next((k for k in varied if k not in keys), None)
        caption = (f"{sweep.metric} (mean over seeds) over {keys[0]} and {keys[1]}"
                   + (f", one panel per {facet}" if facet else "")
                   + "; n/a: every trial in the cell diverged, failed or was killed")
        path = _heatmap(sweep, table, keys, facet, out / "sweep_heatmap.png")
        figures.append(figure_html(caption, Path(path).name, [out], missing))
    # a curve per key with three or more values (two-valued keys show as lines or heatmap rows)
    curve_keys = [k for k in varied if len(unique([row[k] for row in table])) >= 3] or varied[:1]
    for key in curve_keys:
        path = _curves(sweep, table, key, [k for k in varied if k != key], out / f"sweep_{_file_key(key)}.png")
        figures.append(figure_html(f"{sweep.metric} against {key}", Path(path).name, [out], missing))

    groups = group_stats(sweep, table)
    over = f"mean ± std over {sweep.repeats} seed{'s' if sweep.repeats != 1 else ''}"
    best = Table(f"Best configurations by {sweep.metric} ({sweep.mode}, {over})",
                 ["rank", "configuration", sweep.metric, "notes"],
                 [[i, g.label(), g.text(), g.notes()] for i, g in enumerate(ranked(sweep, groups)[:10], 1)])
    per_group = Table(f"Every configuration: {sweep.metric}, {over}", [*sweep.keys, sweep.metric, "n", "notes"],
                      [[*(format_value(g.assignment[k]) for k in sweep.keys), g.text(), len(g.finite), g.notes()]
                       for g in groups])
    trials = Table("Every trial", [*sweep.keys, "seed", "status", sweep.metric, "epochs", "seconds", "trial id",
                                   "error"],
                   [[*(format_value(r[k]) for k in sweep.keys), r["seed"], r["status"],
                     "" if not math.isfinite(r[sweep.metric]) else f"{r[sweep.metric]:.4g}", r["epochs"],
                     "" if r["seconds"] is None else f"{r['seconds']:.2f}", r["trial_id"], r["error"]]
                    for r in table])
    counts: dict[str, int] = {}
    for row in table:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    complete = len(table) == len(sweep.trials) and not (counts.get("failed") or counts.get("killed"))
    body = [
        "<header>",
        f"<h1>sweep {escape(sweep.name)}</h1>",
        meta_line(),
        f'<p><span class="badge {"pass" if complete else "fail"}">{len(table)} of {len(sweep.trials)} trials '
        f"recorded</span> " + escape(", ".join(f"{n} {s}" for s, n in counts.items())) + "</p>",
        "</header>",
        f"<p>Metric: <code>{escape(sweep.metric)}</code> ({escape(sweep.mode)}); swept: "
        + escape(", ".join(sweep.keys) or "nothing") + f"; {sweep.repeats} seed(s) per configuration"
        + (f"; {sweep.samples} random samples" if sweep.samples else "") + ".</p>",
    ]
    if command:
        body += ["<h3>Rerun (finished trials are skipped)</h3>", f"<pre><code>{escape(command)}</code></pre>"]
    body += [table_html(best), *figures, table_html(per_group), table_html(trials),
             "<footer>Self-contained: the figures are embedded and nothing is loaded from a network. Every "
             "trial's record is in results.jsonl, one row per trial in results.csv.</footer>"]
    path = out / SWEEP_HTML
    atomic_write_bytes(path, page(f"sweep {sweep.name}", body).encode("utf-8"))
    return path
