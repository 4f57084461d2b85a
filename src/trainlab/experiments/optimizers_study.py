"""Study ``optimizers``: the seed's six update rules on 2-D surfaces and on the digits MLP.

Rules: SGD, Momentum, Nesterov, Adagrad, RMSprop, Adam (PyTorch's defaults for every
hyperparameter but the learning rate), plus the seed-exact Adam (``optim.adam_seed``:
no bias correction, ε inside the square root).

**Surfaces** (:mod:`trainlab.experiments.surfaces`, float64, trainlab's own optimizers).
Every optimizer runs at every learning rate of one shared grid and is judged at its best:

* ``valley`` ½(x² + 100y²) from (−10, 1): steps until f < 1e-6.
  Claim: momentum and Nesterov need at most half the steps of plain gradient descent.
* ``saddle`` x² − y² from (1, 1e-6), i.e. on the stable axis with a 1e-6 nudge along the
  unstable one: steps until the point has *escaped*, f ≤ −1. Gradient descent multiplies
  y by (1 + 2·lr) per step, so from 1e-6 it needs ln(1e6)/ln(1 + 2·lr) steps and stalls
  for small lr; the adaptive rules divide by the gradient's running size and step ≈ lr
  from the first step. Claim: each adaptive rule (Adagrad, RMSprop, Adam) escapes in at
  most a third of SGD's steps.
* ``rosenbrock`` from (−1.5, 2): f after a fixed number of steps (figure only).

**Digits MLP** 64-128-128-10 ReLU (he init, no BatchNorm), batch 64, a 3-point
half-decade learning-rate grid per optimizer chosen to bracket its usual range; the
training loss on the whole training split is measured every 2 steps. Claim: at its best
lr, Adam reaches training loss 0.1 in fewer steps than SGD at its best lr (mean over seeds).

Figures: trajectories on the three surfaces (PNG) and the same as an animated GIF; loss
curves of the MLP.
"""

from __future__ import annotations

import io
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainlab import data, models, nn, optim, plotting
from trainlab.experiments import surfaces as S
from trainlab.experiments.common import (
    StudyResult,
    Table,
    Verdict,
    digits,
    given_seeds,
    new_figure,
    run_study,
    verdict,
)
from trainlab.trials import Diverged, Results, make_spec

__all__ = ["run", "trials", "analyse", "choose_seeds", "surface_trial", "mlp_trial", "OPTIMIZERS", "ADAPTIVE",
           "DEFAULT_SEEDS", "QUICK_SEEDS", "MLP_LRS"]

DEFAULT_SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adam_seed")
ADAPTIVE = ("adagrad", "rmsprop", "adam")
LABELS = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "adagrad": "Adagrad",
          "rmsprop": "RMSprop", "adam": "Adam", "adam_seed": "Adam (seed)"}
#: the momentum family, whose paths coincide on the saddle (the figure's zoomed row draws them apart)
MOMENTUM_FAMILY = ("sgd", "momentum", "nesterov")

# ---- thresholds, fixed before any run ---------------------------------------------------
VALLEY_TARGET = 1e-6          #: the valley is solved when f < this
SADDLE_ESCAPE = -1.0          #: the saddle is escaped when f <= this
MOMENTUM_MAX_RATIO = 0.5      #: momentum/Nesterov steps <= this x gradient-descent steps
SADDLE_MAX_RATIO = 1.0 / 3.0  #: each adaptive rule's escape steps <= this x SGD's
LOSS_TARGET = 0.1             #: MLP training-loss target
ADAM_MAX_RATIO = 1.0          #: Adam's steps to LOSS_TARGET < this x SGD's (strictly fewer)

SADDLE_DISPLAY_LR = 0.1       #: the saddle panel of the figures uses this lr for every rule
VALLEY_DISPLAY_LR = 0.01      #: the valley panel of the figures uses this lr for every rule
MLP_HIDDEN = (128, 128)
MLP_BATCH = 64
MLP_EVAL_EVERY = 2
#: per-optimizer learning-rate grids for the MLP (half decades around each rule's usual range)
MLP_LRS = {
    "sgd": (0.1, 0.3, 1.0),
    "momentum": (0.03, 0.1, 0.3),
    "nesterov": (0.03, 0.1, 0.3),
    "adagrad": (0.01, 0.03, 0.1),
    "rmsprop": (1e-3, 3e-3, 1e-2),
    "adam": (1e-3, 3e-3, 1e-2),
    "adam_seed": (1e-3, 3e-3, 1e-2),
}


#: what each part returns: its verdicts, tables, {caption: figure file name}, raw numbers
PartResult = tuple[list[Verdict], list[Table], dict[str, str], dict[str, Any]]


@dataclass(frozen=True)
class Config:
    surface_lrs: tuple[float, ...]
    valley_steps: int
    saddle_steps: int
    rosenbrock_steps: int
    mlp_epochs: int
    gif_frames: int


FULL = Config(surface_lrs=tuple(np.logspace(-3, 0, 13)), valley_steps=3000, saddle_steps=1000,
              rosenbrock_steps=2000, mlp_epochs=10, gif_frames=60)
QUICK = Config(surface_lrs=tuple(np.logspace(-3, 0, 7)), valley_steps=3000, saddle_steps=1000,
               rosenbrock_steps=1000, mlp_epochs=5, gif_frames=20)




def _fmt_lr(lr: float) -> str:
    return f"{lr:.3g}"


def _fmt_steps(steps: float | None) -> str:
    if steps is None or not math.isfinite(steps):
        return "—"
    return f"{steps:.0f}" if float(steps).is_integer() else f"{steps:.1f}"


# ------------------------------------------------------------------------- surfaces
#: per surface: the stopping rule of the sweep, the lr of the figures' panel, and the longest display run
_STOPS = {"valley": lambda w: S.VALLEY.f(w) < VALLEY_TARGET, "saddle": lambda w: S.SADDLE.f(w) <= SADDLE_ESCAPE,
          "rosenbrock": None}
_DISPLAY_LR = {"saddle": SADDLE_DISPLAY_LR, "valley": VALLEY_DISPLAY_LR}
_HORIZON_FACTOR = {"saddle": 1.1, "valley": 1.05}


def surface_trial(params: dict, ctx: object) -> dict:
    """One optimizer on one surface at every lr: ``params = {surface, optimizer, lrs, steps}``.

    Returns per lr where the run stopped, whether it diverged and its last point; and the
    points of the run the figures draw: on the saddle and the valley the run at the lr
    nearest the panel's lr, for the longest horizon the figures can ask for (they draw a
    prefix of it), on Rosenbrock the run at this optimizer's best lr.
    """
    surface, name, lrs, steps = S.SURFACES[params["surface"]], params["optimizer"], params["lrs"], params["steps"]
    runs = [S.trajectory(surface, name, lr, steps, stop=_STOPS[surface.name]) for lr in lrs]
    if surface.name == "rosenbrock":
        display = runs[_best_rosenbrock(runs)].points
    else:
        lr = lrs[_nearest(tuple(lrs), _DISPLAY_LR[surface.name])]
        display = S.trajectory(surface, name, lr, int(_HORIZON_FACTOR[surface.name] * steps)).points
    return {"stopped_at": [r.stopped_at for r in runs], "diverged": [r.diverged for r in runs],
            "final_point": [r.points[-1] for r in runs], "display_points": display}


def _surface_spec(surface: str, name: str, cfg: Config) -> dict:
    steps = {"valley": cfg.valley_steps, "saddle": cfg.saddle_steps, "rosenbrock": cfg.rosenbrock_steps}[surface]
    return make_spec(surface_trial, {"surface": surface, "optimizer": name, "lrs": [float(v) for v in cfg.surface_lrs],
                                     "steps": steps})


def _sweep(records: Results, surface: str, cfg: Config) -> dict[str, list[S.Trajectory]]:
    """Each optimizer's runs over the lr grid (each Trajectory holds only its last point)."""
    out = {}
    for name in OPTIMIZERS:
        m = records.metrics(_surface_spec(surface, name, cfg))
        out[name] = [S.Trajectory(np.asarray([p]), stop, div)
                     for p, stop, div in zip(m["final_point"], m["stopped_at"], m["diverged"], strict=True)]
    return out


def _display(records: Results, surface: str, cfg: Config) -> dict[str, S.Trajectory]:
    return {name: S.Trajectory(np.asarray(records.metrics(_surface_spec(surface, name, cfg))["display_points"]),
                               None, False) for name in OPTIMIZERS}


def _best_by_steps(runs: list[S.Trajectory]) -> tuple[int | None, float | None]:
    """Index and steps of the lr that stops soonest (None when none stops)."""
    best = None
    for i, r in enumerate(runs):
        if r.stopped_at is not None and (best is None or r.stopped_at < runs[best].stopped_at):
            best = i
    return best, (None if best is None else float(runs[best].stopped_at))


def _best_rosenbrock(runs: list[S.Trajectory]) -> int:
    finals = [math.inf if r.diverged else S.ROSENBROCK.f(r.points[-1]) for r in runs]
    return int(np.argmin(finals))


#: how each rule's path is drawn on the surfaces, beyond its colour, line style and marker
#: (:func:`trainlab.plotting.series`): where paths coincide, the wider line lies below the
#: narrower, so every one of them shows (the momentum family: SGD widest, Nesterov on top)
_WIDTH = {"sgd": 3.6, "momentum": 2.4, "nesterov": 1.8, "adagrad": 3.0, "rmsprop": 2.3, "adam": 1.8, "adam_seed": 1.8}
_ZORDER = {"sgd": 2.0, "momentum": 2.2, "nesterov": 2.4, "adagrad": 2.1, "rmsprop": 2.3, "adam": 2.5, "adam_seed": 2.6}
#: the zoomed window of the saddle's small multiples: the stretch where the momentum family's paths coincide
_SADDLE_ZOOM = ((-0.85, 1.12), (-0.25, 1.65))
_NEAR_SADDLE = 0.05           #: the small multiples count the steps spent this close to (0, 0)


def _contour(ax: Any, surface: S.Surface, faint: bool = False) -> None:
    """Contours of ``surface``, its saddle point or minimum, and the start point; axes named x and y."""
    xs = np.linspace(*surface.xlim, 240)
    ys = np.linspace(*surface.ylim, 240)
    gx, gy = np.meshgrid(xs, ys)
    z = surface.f(np.stack([gx, gy]))
    kw = {"colors": "#c8c8c8" if faint else "#a0a0a0", "linewidths": 0.6, "linestyles": "solid", "zorder": 1}
    if surface.name == "saddle":
        ax.contour(gx, gy, z, levels=np.linspace(-2.5, 1.5, 9 if faint else 17), **kw)
        ax.plot([0], [0], "x", color="black", ms=9, mew=2, zorder=6, label="saddle point (0, 0)")
    else:
        levels = np.logspace(-3, np.log10(z.max()), 18)
        ax.contour(gx, gy, z, levels=levels, norm=_log_norm(), **kw)
        ax.plot(*surface.minimum, "*", color="black", ms=13, zorder=6, label="minimum")
    ax.plot(*surface.start, "o", ms=10, mfc="none", mec="black", mew=2, zorder=6, label="start")
    ax.set_xlim(*surface.xlim)
    ax.set_ylim(*surface.ylim)
    ax.set(xlabel="x", ylabel="y")
    ax.grid(False)


def _log_norm() -> Any:
    from matplotlib.colors import LogNorm

    return LogNorm()


def _path_style(name: str) -> dict[str, Any]:
    return plotting.series(name, lw=_WIDTH[name], zorder=_ZORDER[name], ms=8, mec="white", mew=0.8)


def _surface_panels(fig: Any, display: dict[str, dict[str, tuple[S.Trajectory, float]]]
                    ) -> tuple[list[Any], list[list[tuple[Any, S.Trajectory]]]]:
    """One panel a surface in the (sub)figure ``fig``: contours and one (empty) line per rule, whose
    marker sits at the line's last point; one legend below the panels says which is which."""
    axes = fig.subplots(1, len(display))
    lines = []
    for ax, (sname, runs) in zip(axes, display.items(), strict=True):
        surface = S.SURFACES[sname]
        _contour(ax, surface)
        lrs = {lr for _, lr in runs.values()}
        ax.set_title(sname + (f", lr {_fmt_lr(lrs.pop())}" if len(lrs) == 1 else ", each rule at its best lr")
                     + f"\nf = {surface.formula}")
        panel = []
        for name, (traj, lr) in runs.items():
            (line,) = ax.plot([], [], **_path_style(name), markevery=[-1], label=f"{LABELS[name]} ({_fmt_lr(lr)})")
            panel.append((line, traj))
        lines.append(panel)
    rules = [line for line, _ in lines[-1]]
    marks = [m for ax in axes for m in ax.lines if m.get_label() in ("start", "minimum", "saddle point (0, 0)")]
    unique_marks = list({m.get_label(): m for m in marks}.values())
    per_panel_lr = [sname for sname, runs in display.items() if len({lr for _, lr in runs.values()}) > 1]
    title = (f"rule (its lr on {', '.join(per_panel_lr)}); end of each path: its marker"
             if per_panel_lr else "rule; end of each path: its marker")
    plotting.figure_legend(fig, rules + unique_marks, ncols=5, title=title)
    return list(axes), lines


def _clip(points: np.ndarray, surface: S.Surface) -> np.ndarray:
    """Points beyond the window are drawn at its edge margin (so escapes stay visible)."""
    pts = points.copy()
    span_x = surface.xlim[1] - surface.xlim[0]
    span_y = surface.ylim[1] - surface.ylim[0]
    pts[:, 0] = np.clip(pts[:, 0], surface.xlim[0] - span_x, surface.xlim[1] + span_x)
    pts[:, 1] = np.clip(pts[:, 1], surface.ylim[0] - span_y, surface.ylim[1] + span_y)
    return pts


def _saddle_multiples(fig: Any, runs: dict[str, tuple[S.Trajectory, float]], horizon: int) -> list[Any]:
    """The saddle zoomed, one panel per rule of the momentum family, whose paths coincide there:
    every iterate a dot, the escape (the first f ≤ SADDLE_ESCAPE) marked, the other two in grey."""
    axes = fig.subplots(1, len(MOMENTUM_FAMILY), sharex=True, sharey=True)
    paths = {n: runs[n][0].points[: horizon + 1] for n in MOMENTUM_FAMILY}
    for ax, name in zip(axes, MOMENTUM_FAMILY, strict=True):
        _contour(ax, S.SADDLE, faint=True)
        for other in MOMENTUM_FAMILY:
            if other != name:
                ax.plot(paths[other][:, 0], paths[other][:, 1], color="#bbbbbb", lw=1.2, zorder=1.5,
                        ls=plotting.LINESTYLES[other])
        pts = paths[name]
        look = plotting.series(name)
        ax.plot(pts[:, 0], pts[:, 1], color=look["color"], ls=look["linestyle"], lw=1.6, zorder=3,
                marker=".", ms=6, label="one dot a step")
        escaped = np.nonzero(S.SADDLE.f(pts.T) <= SADDLE_ESCAPE)[0]
        near = int(np.sum(np.hypot(pts[:, 0], pts[:, 1]) < _NEAR_SADDLE))
        title = f"{LABELS[name]}, lr {_fmt_lr(runs[name][1])}"
        if escaped.size:
            k = int(escaped[0])
            ax.plot(*pts[k], marker=look["marker"], color=look["color"], ms=11, mec="black", zorder=5,
                    ls="none", label=f"escape (f ≤ {SADDLE_ESCAPE:g})")
            ax.annotate(f"step {k}", pts[k], xytext=(10, -4), textcoords="offset points", va="top",
                        fontweight="bold", color=look["color"])
            title += f": escapes at step {k}"
        ax.text(0.97, 0.5, f"{near} steps within {_NEAR_SADDLE:g}\nof the saddle point", transform=ax.transAxes,
                ha="right", va="center", bbox={"fc": "white", "ec": "#cccccc"})
        ax.set_title(title)
        ax.set_xlim(*_SADDLE_ZOOM[0])
        ax.set_ylim(*_SADDLE_ZOOM[1])
    for ax in axes[1:]:
        ax.set_ylabel("")
        ax.tick_params(labelleft=False)
    fig.suptitle("the saddle, zoomed, where the momentum family's paths coincide: one panel each, one dot a step "
                 "(grey: the other two)", fontsize=plotting.RC["axes.titlesize"])
    return list(axes)


@plotting.styled
def _trajectory_png(display: dict[str, dict[str, tuple[S.Trajectory, float]]], horizon: dict[str, int],
                    path: Path) -> Path:
    fig, _ = plotting.figure(0, figsize=(plotting.MAX_WIDTH, 9.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.2, 1.0))
    _, panels = _surface_panels(top, display)
    for sname, panel in zip(display, panels, strict=True):
        for line, traj in panel:
            pts = _clip(traj.points[: horizon[sname] + 1], S.SURFACES[sname])
            line.set_data(pts[:, 0], pts[:, 1])
    _saddle_multiples(bottom, display["saddle"], horizon["saddle"])
    return plotting.save_png(fig, path)


def _trajectory_figures(display: dict[str, dict[str, tuple[S.Trajectory, float]]], horizon: dict[str, int],
                        out: Path, frames: int) -> dict[str, str]:
    figures = {}
    png = _trajectory_png(display, horizon, out / "optimizers_trajectories.png")
    caption = (f"Trajectories (the real iterates): the saddle with every rule at lr {SADDLE_DISPLAY_LR:g} "
               f"({horizon['saddle']} steps), the ill-conditioned valley at lr {VALLEY_DISPLAY_LR:g} "
               f"({horizon['valley']} steps), Rosenbrock with each rule at its best lr of the grid "
               f"({horizon['rosenbrock']} steps; the legend gives the lr). Below: the saddle zoomed, one panel "
               "for each of SGD, Momentum and Nesterov, whose paths coincide there (one dot a step)")
    figures[caption] = png.name

    _write_gif(display, horizon, out / "optimizers_trajectories.gif", frames)
    figures["Animated trajectories (same runs as the figure above)"] = "optimizers_trajectories.gif"
    return figures


def _gif_palette() -> Any:
    """A palette image: 64 greys (background, contours, text) and each line colour with 3 tints."""
    from matplotlib.colors import to_rgb
    from PIL import Image

    entries = [(v, v, v) for v in np.linspace(0, 255, 64).round().astype(int)]
    for color in (plotting.color(n) for n in OPTIMIZERS):
        rgb = np.array(to_rgb(color)) * 255
        entries += [tuple(int(round(c)) for c in rgb + (255 - rgb) * t) for t in (0.0, 0.35, 0.65)]
    flat = [c for entry in entries for c in entry]
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat + flat[-3:] * (256 - len(entries)))
    return palette


def _shared_palette_writer() -> type:
    """A PillowWriter whose frames share one fixed palette (see :func:`_gif_palette`).

    PillowWriter lets Pillow quantize every frame on its own, so the antialiased
    background gets a slightly different palette each time, every pixel changes and the
    GIF grows to megabytes. With one palette and no dithering, unchanged pixels stay
    identical and Pillow stores only the changed rectangle of each frame.
    """
    from matplotlib.animation import PillowWriter
    from PIL import Image

    class SharedPaletteWriter(PillowWriter):
        def setup(self, fig: Any, outfile: Any, dpi: float | None = None) -> None:
            super().setup(fig, outfile, dpi=dpi)
            self.rgb_frames: list[Any] = []

        def grab_frame(self, **savefig_kwargs: Any) -> None:
            buf = io.BytesIO()
            self.fig.savefig(buf, **{**savefig_kwargs, "format": "rgba", "dpi": self.dpi})
            frame = Image.frombuffer("RGBA", self.frame_size, buf.getbuffer(), "raw", "RGBA", 0, 1)
            self.rgb_frames.append(frame.convert("RGB"))

        def finish(self) -> None:
            palette = _gif_palette()
            frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in self.rgb_frames]
            frames[0].save(self.outfile, save_all=True, append_images=frames[1:],
                           duration=int(1000 / self.fps), loop=0)

    return SharedPaletteWriter


def _write_gif(display: dict[str, dict[str, tuple[S.Trajectory, float]]], horizon: dict[str, int], path: Path,
               frames: int, dpi: int = 80) -> None:
    """Animate the trajectories with FuncAnimation + PillowWriter, written atomically to ``path``.

    The contours, axes and legends are drawn once into a background image; each frame
    then draws only that image and the growing lines (in its pixel coordinates), which
    is an order of magnitude faster than redrawing every text and contour per frame.
    """
    from matplotlib.animation import FuncAnimation
    from matplotlib.transforms import Bbox, TransformedBbox

    with plotting.style():
        fig, _ = plotting.figure(0, figsize=(plotting.MAX_WIDTH, 5.4), layout="constrained")
        axes, panels = _surface_panels(fig, display)
        for panel in panels:
            for line, _ in panel:
                line.set_visible(False)
        fig.set_dpi(dpi)
        fig.canvas.draw()
    # the drawn figure, with a white strip below it for the step counter
    strip = int(0.3 * dpi)
    drawn = np.asarray(fig.canvas.buffer_rgba())
    background = np.concatenate([drawn, np.full((strip, *drawn.shape[1:]), 255, dtype=drawn.dtype)])
    height, width = background.shape[:2]
    # trajectories in background pixels (origin bottom left, shifted up by the strip), clip boxes
    tracks = []
    for ax, sname, panel in zip(axes, display, panels, strict=True):
        surface = S.SURFACES[sname]
        x0, y0, w, h = ax.bbox.bounds
        tracks.append([(ax.transData.transform(_clip(traj.points[: horizon[sname] + 1], surface))
                        + [0, strip], name, (x0, y0 + strip, w, h))
                       for name, (line, traj) in zip(display[sname], panel, strict=True)])

    anim_fig = new_figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas_ax = anim_fig.add_axes((0.0, 0.0, 1.0, 1.0))
    canvas_ax.imshow(background, extent=(0, width, 0, height), origin="upper", interpolation="nearest")
    canvas_ax.set_xlim(0, width)
    canvas_ax.set_ylim(0, height)
    canvas_ax.set_axis_off()
    artists = []
    for sname, panel in zip(display, tracks, strict=True):
        for pixels, name, clip in panel:
            box = TransformedBbox(Bbox.from_bounds(*clip), canvas_ax.transData)
            look = _path_style(name)
            marker = look.pop("marker")
            (line,) = canvas_ax.plot([], [], **look)
            (head,) = canvas_ax.plot([], [], marker, color=look["color"], ms=7, zorder=look["zorder"] + 1,
                                     mec="white", mew=0.6)
            line.set_clip_box(box)
            head.set_clip_box(box)
            artists.append((sname, pixels, line, head))
    label = canvas_ax.text(width / 2, strip / 2, "", ha="center", va="center", fontsize=11)

    def step_of(sname: str, frame: int) -> int:
        return int(round(horizon[sname] * frame / max(frames - 1, 1)))

    def draw(frame: int) -> list[Any]:
        for sname, pixels, line, head in artists:
            k = min(step_of(sname, frame), len(pixels) - 1)
            line.set_data(pixels[: k + 1, 0], pixels[: k + 1, 1])
            head.set_data(pixels[k: k + 1, 0], pixels[k: k + 1, 1])
        label.set_text("step: " + ", ".join(f"{s} {step_of(s, frame)}" for s in display))
        return [a for _, _, line, head in artists for a in (line, head)] + [label]

    anim = FuncAnimation(anim_fig, draw, frames=frames, blit=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".gif", dir=path.parent)
    umask = os.umask(0o022)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the GIF the usual permissions, like the PNGs
    os.close(fd)
    try:
        anim.save(tmp, writer=_shared_palette_writer()(fps=10), dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _surface_study(records: Results, cfg: Config, out: Path) -> PartResult:
    lrs = cfg.surface_lrs
    valley = _sweep(records, "valley", cfg)
    saddle = _sweep(records, "saddle", cfg)
    rosen = _sweep(records, "rosenbrock", cfg)

    best_valley = {n: _best_by_steps(valley[n]) for n in OPTIMIZERS}
    best_saddle = {n: _best_by_steps(saddle[n]) for n in OPTIMIZERS}
    best_rosen = {n: _best_rosenbrock(rosen[n]) for n in OPTIMIZERS}

    verdicts = []
    gd_steps = best_valley["sgd"][1]
    for name in ("momentum", "nesterov"):
        steps = best_valley[name][1]
        ratio = _ratio(steps, gd_steps)
        verdicts.append(verdict(
            f"{LABELS[name]} beats plain gradient descent in the ill-conditioned valley ½(x² + 100y²)",
            ratio, f"steps to f < {VALLEY_TARGET:g}, {LABELS[name]} / GD ≤ {MOMENTUM_MAX_RATIO:g} "
                   "(each at its best lr of the same grid)",
            ratio <= MOMENTUM_MAX_RATIO,
            f"{LABELS[name]}: {_fmt_steps(steps)} steps at lr {_lr_at(lrs, best_valley[name][0])}; GD: "
            f"{_fmt_steps(gd_steps)} steps at lr {_lr_at(lrs, best_valley['sgd'][0])}"))

    sgd_steps = best_saddle["sgd"][1]
    adaptive_steps = {n: best_saddle[n][1] for n in ADAPTIVE}
    worst = max((math.inf if s is None else s) for s in adaptive_steps.values())
    ratio = _ratio(worst, sgd_steps)
    stalled = [_fmt_lr(lr) for lr, r in zip(lrs, saddle["sgd"], strict=True) if r.stopped_at is None]
    at_display = {n: saddle[n][_nearest(lrs, SADDLE_DISPLAY_LR)].stopped_at for n in ("sgd",) + ADAPTIVE}
    verdicts.append(verdict(
        "The adaptive methods (Adagrad, RMSprop, Adam) escape the saddle x² − y² where SGD stalls",
        ratio, f"steps to escape (f ≤ {SADDLE_ESCAPE:g}) from (1, 1e-6): slowest adaptive / SGD ≤ "
               f"{SADDLE_MAX_RATIO:.3g} (each at its best lr of the same grid)",
        ratio <= SADDLE_MAX_RATIO,
        "best lr: " + ", ".join(f"{LABELS[n]} {_fmt_steps(best_saddle[n][1])} steps (lr "
                                f"{_lr_at(lrs, best_saddle[n][0])})" for n in ("sgd",) + ADAPTIVE)
        + f"; at lr {SADDLE_DISPLAY_LR:g}: "
        + ", ".join(f"{LABELS[n]} {_fmt_steps(s)}" for n, s in at_display.items())
        + (f"; SGD does not escape within {cfg.saddle_steps} steps at lr " + ", ".join(stalled)
           if stalled else "")))

    tables = [
        _lr_table(f"Valley ½(x² + 100y²): steps to f < {VALLEY_TARGET:g} by learning rate "
                  f"(— = not within {cfg.valley_steps} steps or diverged)", valley, lrs),
        _lr_table(f"Saddle x² − y² from (1, 1e-6): steps to escape (f ≤ {SADDLE_ESCAPE:g}) by learning rate "
                  f"(— = not within {cfg.saddle_steps} steps or diverged)", saddle, lrs),
        Table(f"Rosenbrock from (−1.5, 2): f after {cfg.rosenbrock_steps} steps at the best lr",
              ["optimizer", "best lr", "final f", "distance to (1, 1)"],
              [[LABELS[n], _fmt_lr(lrs[best_rosen[n]]),
                f"{S.ROSENBROCK.f(rosen[n][best_rosen[n]].points[-1]):.3g}",
                f"{np.linalg.norm(rosen[n][best_rosen[n]].points[-1] - np.array([1.0, 1.0])):.3g}"]
               for n in OPTIMIZERS]),
    ]

    # figures: the saddle and the valley at one shared lr each (the stall, the zig-zag),
    # Rosenbrock at each rule's best lr; the saddle runs until SGD has escaped, the valley
    # until gradient descent has converged
    saddle_lr, valley_lr = lrs[_nearest(lrs, SADDLE_DISPLAY_LR)], lrs[_nearest(lrs, VALLEY_DISPLAY_LR)]
    sgd_escape = saddle["sgd"][_nearest(lrs, SADDLE_DISPLAY_LR)].stopped_at
    gd_converge = valley["sgd"][_nearest(lrs, VALLEY_DISPLAY_LR)].stopped_at
    horizon = {"saddle": int(1.1 * (sgd_escape or cfg.saddle_steps)),
               "valley": int(1.05 * (gd_converge or cfg.valley_steps)),
               "rosenbrock": cfg.rosenbrock_steps}
    # the trials ran the display runs for the longest horizon; the figures draw the first horizon + 1 points
    shown = {sname: _display(records, sname, cfg) for sname in ("saddle", "valley", "rosenbrock")}
    display = {
        "saddle": {n: (shown["saddle"][n], saddle_lr) for n in OPTIMIZERS},
        "valley": {n: (shown["valley"][n], valley_lr) for n in OPTIMIZERS},
        "rosenbrock": {n: (shown["rosenbrock"][n], lrs[best_rosen[n]]) for n in OPTIMIZERS},
    }
    figures = _trajectory_figures(display, horizon, out, cfg.gif_frames)

    numbers = {
        "surface_lrs": list(lrs),
        "valley_steps": {n: [r.stopped_at for r in valley[n]] for n in OPTIMIZERS},
        "saddle_steps": {n: [r.stopped_at for r in saddle[n]] for n in OPTIMIZERS},
        "rosenbrock_final_f": {n: [None if r.diverged else S.ROSENBROCK.f(r.points[-1]) for r in rosen[n]]
                               for n in OPTIMIZERS},
    }
    return verdicts, tables, figures, numbers


def _ratio(num: float | None, den: float | None) -> float:
    """``num / den`` for step counts, None meaning never: never/never is NaN (a failure)."""
    num = math.inf if num is None else float(num)
    den = math.inf if den is None else float(den)
    if math.isinf(den):
        return math.nan if math.isinf(num) else 0.0
    return num / den


def _nearest(lrs: tuple[float, ...], lr: float) -> int:
    return int(np.argmin(np.abs(np.log(np.asarray(lrs)) - math.log(lr))))


def _lr_at(lrs: tuple[float, ...], i: int | None) -> str:
    return "—" if i is None else _fmt_lr(lrs[i])


def _lr_table(title: str, runs: dict[str, list[S.Trajectory]], lrs: tuple[float, ...]) -> Table:
    rows = [[_fmt_lr(lr)] + [_fmt_steps(runs[n][i].stopped_at) for n in OPTIMIZERS]
            for i, lr in enumerate(lrs)]
    return Table(title, ["lr"] + [LABELS[n] for n in OPTIMIZERS], rows)


# ------------------------------------------------------------------------- digits MLP
def _train_mlp(name: str, lr: float, seed: int, epochs: int, splits: Any) -> dict[str, Any]:
    """Train the MLP; full-training-set loss every MLP_EVAL_EVERY steps (inf after divergence)."""
    x, y = splits.train
    rng = np.random.default_rng(seed)
    model = models.mlp(x.shape[1], MLP_HIDDEN, splits.num_classes, activation="relu", rng=rng)
    opt = optim.create(name, model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    steps, losses = [0], [loss_fn(model(x), y)]
    step, diverged = 0, False
    with np.errstate(all="ignore"):
        for _ in range(epochs):
            for xb, yb in data.Batches(x, y, MLP_BATCH, rng=rng):
                loss = loss_fn(model(xb), yb)
                if not math.isfinite(loss):
                    diverged = True
                    break
                model.backward(loss_fn.backward(), input_grad=False)   # x is data
                opt.step()
                opt.zero_grad()
                step += 1
                if step % MLP_EVAL_EVERY == 0:
                    full = loss_fn(model(x), y)
                    steps.append(step)
                    losses.append(full if math.isfinite(full) else math.inf)
            if diverged:
                break
        model.eval()
        val_acc = float(np.mean(model(splits.val.x).argmax(axis=1) == splits.val.y))
    curve = np.asarray(losses, dtype=float)
    if diverged:
        total = epochs * len(data.Batches(x, y, MLP_BATCH, rng=rng))
        pad = np.arange(steps[-1] + MLP_EVAL_EVERY, total + 1, MLP_EVAL_EVERY)
        steps += pad.tolist()
        curve = np.concatenate([curve, np.full(len(pad), np.inf)])
    hit = np.nonzero(curve <= LOSS_TARGET)[0]
    return {"steps": np.asarray(steps), "loss": curve,
            "to_target": float(steps[hit[0]]) if len(hit) else math.inf,
            "final_loss": float(curve[-1]), "val_accuracy": val_acc if not diverged else math.nan}


def mlp_trial(params: dict, ctx: object) -> dict:
    """:func:`_train_mlp` as a trial: ``params = {optimizer, lr, seed, epochs}`` (diverged: non-finite loss)."""
    result = _train_mlp(params["optimizer"], params["lr"], params["seed"], params["epochs"], digits())
    if math.isnan(result["val_accuracy"]):
        raise Diverged(f"{params['optimizer']} at lr {params['lr']:g}: non-finite loss", result)
    return result


def _mlp_spec(name: str, lr: float, seed: int, cfg: Config) -> dict:
    return make_spec(mlp_trial, {"optimizer": name, "lr": lr, "seed": seed, "epochs": cfg.mlp_epochs})


def _mlp_study(records: Results, cfg: Config, seeds: tuple[int, ...], out: Path) -> PartResult:
    results: dict[str, dict[float, list[dict[str, Any]]]] = {
        n: {lr: [records.metrics(_mlp_spec(n, lr, s, cfg)) for s in seeds] for lr in MLP_LRS[n]}
        for n in OPTIMIZERS}

    def mean_steps(runs: list[dict[str, Any]]) -> float:
        return float(np.mean([r["to_target"] for r in runs]))

    def mean_final(runs: list[dict[str, Any]]) -> float:
        return float(np.mean([r["final_loss"] for r in runs]))

    best = {n: min(MLP_LRS[n], key=lambda lr: (mean_steps(results[n][lr]), mean_final(results[n][lr])))
            for n in OPTIMIZERS}
    adam, sgd = mean_steps(results["adam"][best["adam"]]), mean_steps(results["sgd"][best["sgd"]])
    ratio = _ratio(adam, sgd)
    verdicts = [verdict(
        f"On the digits MLP, Adam reaches training loss {LOSS_TARGET:g} in fewer steps than SGD",
        ratio, f"mean steps to full-train loss ≤ {LOSS_TARGET:g}, Adam / SGD < {ADAM_MAX_RATIO:g} "
               "(each at its best lr of its 3-point grid)",
        ratio < ADAM_MAX_RATIO,
        f"Adam {adam:.1f} steps (lr {_fmt_lr(best['adam'])}), SGD {sgd:.1f} steps (lr "
        f"{_fmt_lr(best['sgd'])}); seed-exact Adam "
        f"{mean_steps(results['adam_seed'][best['adam_seed']]):.1f} steps (lr "
        f"{_fmt_lr(best['adam_seed'])}); seeds {list(seeds)}")]

    rows = []
    for n in OPTIMIZERS:
        for lr in MLP_LRS[n]:
            runs = results[n][lr]
            rows.append([LABELS[n], _fmt_lr(lr) + (" (best)" if lr == best[n] else ""),
                         _fmt_steps(mean_steps(runs)),
                         f"{mean_final(runs):.4g}",
                         f"{np.mean([r['val_accuracy'] for r in runs]):.3f}"])
    tables = [Table(f"Digits MLP {'-'.join(map(str, (64, *MLP_HIDDEN, 10)))} (ReLU), batch {MLP_BATCH}, "
                    f"{cfg.mlp_epochs} epochs: mean over seeds {list(seeds)}",
                    ["optimizer", "lr", f"steps to train loss ≤ {LOSS_TARGET:g}", "final train loss",
                     "val accuracy"],
                    rows)]

    path = _mlp_figure(results, best, cfg, out / "optimizers_mlp_loss.png")
    figures = {f"Digits MLP training loss (mean over seeds); dotted line: target {LOSS_TARGET:g}": path.name}

    numbers = {
        "mlp_best_lr": best,
        "mlp_steps_to_target": {n: {str(lr): [r["to_target"] for r in results[n][lr]] for lr in MLP_LRS[n]}
                                for n in OPTIMIZERS},
        "mlp_final_loss": {n: {str(lr): [r["final_loss"] for r in results[n][lr]] for lr in MLP_LRS[n]}
                           for n in OPTIMIZERS},
    }
    return verdicts, tables, figures, numbers


@plotting.styled
def _mlp_figure(results: dict[str, dict[float, list[dict[str, Any]]]], best: dict[str, float], cfg: Config,
                path: Path) -> Path:
    """Each rule's loss curve at its best lr (mean over seeds), and its final loss over its lr grid."""
    fig, (ax, ax2) = plotting.figure(1, 2, figsize=(plotting.MAX_WIDTH, 5.0), layout="constrained")
    curves = []
    for n in OPTIMIZERS:
        runs = results[n][best[n]]
        curve = np.mean([r["loss"] for r in runs], axis=0)
        look = plotting.series(n, lw=1.7)
        marker = look.pop("marker")
        curves += ax.plot(runs[0]["steps"], curve, **look, label=f"{LABELS[n]} (best lr {_fmt_lr(best[n])})")
        finals = [float(np.mean([r["final_loss"] for r in results[n][lr]])) for lr in MLP_LRS[n]]
        ax2.plot(MLP_LRS[n], np.where(np.isfinite(finals), finals, np.nan), **look, marker=marker, ms=7)
        ax2.plot([best[n]], [finals[MLP_LRS[n].index(best[n])]], marker=marker, color=look["color"], ms=13,
                 mfc="none", mew=1.6, ls="none")
    curves.append(ax.axhline(LOSS_TARGET, color=plotting.color("reference"), lw=1.2, ls=":",
                             label=f"target {LOSS_TARGET:g}"))
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="training loss (whole training split)",
           title="each rule at its best lr")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set(xlabel="learning rate", ylabel=f"final training loss ({cfg.mlp_epochs} epochs)",
            title="each rule's lr grid (ring: its best lr,\nthe fewest steps to the target)")
    plotting.figure_legend(fig, curves, ncols=4)
    fig.suptitle("Digits MLP " + "-".join(map(str, (64, *MLP_HIDDEN, 10))) + f" (ReLU), batch {MLP_BATCH}, "
                 "mean over seeds")
    return plotting.save_png(fig, path)


# ------------------------------------------------------------------------- the study
NAME = "optimizers"


def choose_seeds(quick: bool, seeds: tuple[int, ...] | None) -> tuple[int, ...]:
    """The given seeds, else ``(0, 1, 2)`` (quick: ``(0,)``); they seed the MLP runs only."""
    return given_seeds(NAME, seeds, DEFAULT_SEEDS, QUICK_SEEDS, quick)


def trials(*, quick: bool, seeds: tuple[int, ...]) -> list[dict]:
    """Each optimizer on each surface (all lrs in one trial), then every MLP run."""
    cfg = QUICK if quick else FULL
    return ([_surface_spec(surface, n, cfg) for surface in ("valley", "rosenbrock", "saddle") for n in OPTIMIZERS]
            + [_mlp_spec(n, lr, s, cfg) for n in OPTIMIZERS for lr in MLP_LRS[n] for s in seeds])


def run(*, quick: bool = False, out: str | Path = "lab", seeds: tuple[int, ...] | None = None,
        **engine: Any) -> StudyResult:
    """Run the ``optimizers`` study; figures go into ``out``.

    Args:
        quick: the CI size (coarser lr grid on the surfaces, 5 MLP epochs, seed 0).
        out: folder for the figures (the trial records go to ``out/trials/optimizers``).
        seeds: seeds of the MLP runs (default ``(0, 1, 2)``, quick ``(0,)``); the surfaces are
            deterministic.
        engine: executor options of :func:`~trainlab.experiments.common.run_study`.
    """
    return run_study(sys.modules[__name__], quick=quick, out=out, seeds=seeds, **engine)


def analyse(records: Results, *, quick: bool, seeds: tuple[int, ...], out: Path) -> StudyResult:
    """Verdicts, tables, figures and the GIF from the trials' records."""
    cfg = QUICK if quick else FULL
    v1, t1, f1, n1 = _surface_study(records, cfg, out)
    v2, t2, f2, n2 = _mlp_study(records, cfg, seeds, out)
    summary = (
        "The seed's six update rules (SGD, Momentum, Nesterov, Adagrad, RMSprop, Adam; PyTorch's defaults "
        "apart from the learning rate) and the seed-exact Adam (no bias correction, ε inside the square "
        "root) run on three 2-D surfaces and on a digits MLP. On the surfaces every rule runs at every lr "
        f"of the grid {', '.join(_fmt_lr(lr) for lr in cfg.surface_lrs)} and is judged at its best lr. In "
        "the valley ½(x² + 100y²) gradient descent is limited by the steep direction (lr < 0.02) and then "
        "crawls along the flat one; momentum carries speed along the valley. At the saddle x² − y², started "
        "1e-6 off the stable axis, gradient descent's step is proportional to the vanishing gradient, so it "
        "lingers (SGD escapes in ln(1e6)/ln(1 + 2·lr) steps); the adaptive rules normalize the gradient and "
        "leave at a speed of about lr per step. Note that Adagrad's steps shrink like 1/√t, so at small "
        "learning rates it escapes no faster than SGD (see the saddle table). On the digits MLP each "
        "optimizer gets a 3-point half-decade lr grid around its usual range, and the steps to a training "
        f"loss of {LOSS_TARGET:g} are compared at each one's best lr."
    )
    return StudyResult(
        name="optimizers",
        title="Update rules: SGD, Momentum, Nesterov, Adagrad, RMSprop, Adam",
        summary=summary,
        command="trainlab experiment optimizers",
        verdicts=v1 + v2,
        figures={**f1, **f2},
        tables=t1 + t2,
        numbers={**n1, **n2, "seeds": list(seeds), "quick": quick},
    )
