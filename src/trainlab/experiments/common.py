"""What every study is and returns: trials on the engine, then an analysis with verdicts and figures.

A study is a module registered in :data:`trainlab.experiments.STUDIES` that defines

* ``NAME`` and ``choose_seeds(quick, seeds) -> tuple[int, ...]``;
* ``trials(*, quick, seeds) -> list[spec]``: the trials it needs, as
  :mod:`trainlab.trials` specs (``{"trial": "module:function", "params": {...}}``), each a
  pure function of its params, which carry the seeds the study always used; listed longest
  first, which balances the workers best;
* ``analyse(results, *, quick, seeds, out) -> StudyResult``: figures (PNG, and GIF where
  animated) written into ``out``, tables and numeric verdicts, from the trials' records.

:func:`run_study` joins them: the trials run on any executor (serial, local processes,
Dask) and are recorded in ``out/trials/<name>[-quick]/results.jsonl`` as they finish, so an
interrupted study resumes where it stopped. :mod:`trainlab.report` turns one or more
results into a self-contained ``report.html``, and ``<name>.json`` holds the same numbers
for machines.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from trainlab.checkpoint import atomic_write_bytes

__all__ = ["Verdict", "Table", "StudyResult", "save_figure", "verdict", "new_figure", "study_seeds", "given_seeds",
           "run_study", "trials_folder", "digits"]


@dataclass
class Verdict:
    """One claim of the seed, the number measured for it, the threshold, and pass/fail.

    Attributes:
        claim: the claim in words, e.g. ``"small random weights vanish through 10 tanh layers"``.
        measured: the measured number (or a short text when the claim is about several numbers).
        threshold: the condition it was judged by, e.g. ``"layer-10 std < 1e-5"``.
        passed: whether the measured value meets the threshold.
        detail: optional extra context (seeds, spread).
    """

    claim: str
    measured: float | str
    threshold: str
    passed: bool
    detail: str = ""

    def __str__(self) -> str:
        value = f"{self.measured:.3g}" if isinstance(self.measured, float) else str(self.measured)
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.claim}: {value} ({self.threshold})"


def verdict(claim: str, measured: float, threshold: str, passed: bool, detail: str = "") -> Verdict:
    """Build a :class:`Verdict`, turning NumPy scalars into floats and NaN into a failure."""
    value = float(measured)
    return Verdict(claim, value, threshold, bool(passed) and not math.isnan(value), detail)


@dataclass
class Table:
    """A small table for the report: a title, column headers and rows of cells."""

    title: str
    header: list[str]
    rows: list[list[Any]]


@dataclass
class StudyResult:
    """Everything a study produced.

    Attributes:
        name: the registry name (``"init-depth"``).
        title: a human title.
        summary: a paragraph saying what was done and what it shows.
        command: the exact command that reproduces it (``trainlab experiment init-depth``).
        verdicts: the claims with their numeric verdicts.
        figures: caption -> path of a PNG/GIF written into the output folder.
        tables: tables shown in the report.
        numbers: any further raw numbers (JSON-able) kept in ``result.json``.
        seconds: wall time of the study.
    """

    name: str
    title: str
    summary: str
    command: str
    verdicts: list[Verdict] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_json_default)

    def save(self, out: str | Path) -> Path:
        """Write ``<out>/<name>.json`` atomically and return its path."""
        path = Path(out) / f"{self.name}.json"
        atomic_write_bytes(path, (self.to_json() + "\n").encode())
        self._folder = Path(out)
        return path

    @classmethod
    def load(cls, path: str | Path) -> StudyResult:
        raw = json.loads(Path(path).read_text())
        raw["verdicts"] = [Verdict(**v) for v in raw.get("verdicts", [])]
        raw["tables"] = [Table(**t) for t in raw.get("tables", [])]
        result = cls(**raw)
        result._folder = Path(path).parent
        return result

    def _repr_html_(self) -> str:
        """The study as a notebook shows it: title, summary, the verdicts (PASS/FAIL), the figures
        (embedded; relative paths are looked up in the folder the result was saved to or loaded
        from, then the working directory), the tables and the command that reproduces it."""
        return _study_html(self, [getattr(self, "_folder", Path("."))])


#: the notebook view's CSS, every rule under .trainlab-study so that nothing else on the page changes
_STUDY_CSS = """
.trainlab-study { font-family: system-ui, "DejaVu Sans", sans-serif; line-height: 1.4; max-width: 1220px; }
.trainlab-study table { border-collapse: collapse; margin: 6px 0 12px; }
.trainlab-study th, .trainlab-study td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; }
.trainlab-study th { background: #f6f8fa; }
.trainlab-study td.num { text-align: right; font-variant-numeric: tabular-nums; }
.trainlab-study .pass { color: #1a7f37; background: #dafbe1; font-weight: 700; }
.trainlab-study .fail { color: #b42318; background: #fde2e1; font-weight: 700; }
.trainlab-study td.detail, .trainlab-study figcaption, .trainlab-study .meta { color: #57606a; }
.trainlab-study figure { margin: 10px 0 18px; }
.trainlab-study img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
.trainlab-study .missing { color: #b42318; }
"""


def _study_html(result: StudyResult, bases: list[Path]) -> str:
    """One study as an HTML fragment (the report's verdict table, figures and tables)."""
    from trainlab.report import _data_uri, _e, _verdict_table, table_html

    n_pass = sum(v.passed for v in result.verdicts)
    badge = "pass" if result.passed else "fail"
    parts = [f"<style>{_STUDY_CSS}</style>", '<div class="trainlab-study">',
             f"<h3>{_e(result.title)} <code>{_e(result.name)}</code> "
             f'<span class="{badge}">{n_pass}/{len(result.verdicts)} claims pass</span></h3>',
             f"<p>{_e(result.summary)}</p>"]
    if result.verdicts:
        parts.append(_verdict_table([(None, v, None) for v in result.verdicts], with_study=False))
    for caption, path in result.figures.items():
        uri, reason = _data_uri(path, bases)
        body = (f'<img src="{uri}" alt="{_e(caption)}">' if uri is not None
                else f'<p class="missing">figure missing ({_e(reason)})</p>')
        parts.append(f"<figure>{body}<figcaption>{_e(caption)}</figcaption></figure>")
    parts += [table_html(t) for t in result.tables]
    seconds = f" ({result.seconds:.1f} s)" if result.seconds else ""
    parts += [f'<p class="meta">reproduce: <code>{_e(result.command)}</code>{seconds}</p>', "</div>"]
    return "\n".join(parts)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON")


def save_figure(fig: Any, path: str | Path, dpi: int | None = None) -> str:
    """Save a matplotlib figure as PNG atomically (:func:`trainlab.plotting.save_png`, at
    :data:`trainlab.plotting.DPI` unless ``dpi``) and return the path as a string."""
    from trainlab import plotting

    return str(plotting.save_png(fig, path, plotting.DPI if dpi is None else dpi))


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure drawn by Agg, outside pyplot (no backend or global state is touched).

    The studies' figures come from :func:`trainlab.plotting.figure` (the shared style); this bare
    one serves drawings that are not figures of their own (the canvas a GIF's frames are drawn on).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def given_seeds(name: str, seeds: Iterable[int] | None, default: tuple[int, ...], quick_default: tuple[int, ...],
                quick: bool) -> tuple[int, ...]:
    """``seeds`` as given (all of them, also when ``quick``), else the study's default for its size."""
    chosen = tuple(int(s) for s in seeds) if seeds is not None else (quick_default if quick else default)
    if not chosen:
        raise ValueError(f"{name}: seeds must not be empty")
    return chosen


def study_seeds(name: str, seeds: Iterable[int], quick: bool) -> tuple[int, ...]:
    """The seeds a study runs: all of ``seeds``, or the first one when ``quick``; never empty."""
    chosen = tuple(int(s) for s in seeds)
    if quick:
        chosen = chosen[:1]
    if not chosen:
        raise ValueError(f"{name}: seeds must not be empty")
    return chosen


@functools.lru_cache(maxsize=1)
def digits() -> Any:
    """``data.load("digits")`` (its default split), loaded once per process: trials only read it."""
    from trainlab import data

    return data.load("digits")


def trials_folder(out: str | Path, name: str, quick: bool) -> Path:
    """Where a study's trial records live: ``out/trials/<name>`` (``<name>-quick`` for ``--quick``)."""
    return Path(out) / "trials" / (f"{name}-quick" if quick else name)


def run_study(study: ModuleType, *, quick: bool, out: str | Path, seeds: Iterable[int] | None = None,
              executor: Any = None, extend: bool = False, progress: bool = False) -> StudyResult:
    """Run a study's trials on the engine (skipping those already recorded), then its analysis.

    Args:
        study: the study's module (see the module docstring).
        quick: the CI size.
        out: folder for figures; the trial records go to :func:`trials_folder`.
        seeds: the seeds to use (None: the study's own).
        executor: a :class:`trainlab.trials.Executor` (default: serially in this process). Every
            trial runs single-threaded (BLAS, OpenMP, Numba) on every executor, so a study's
            numbers are the same serially, on local workers and on a Dask cluster.
        extend: accept different seeds (or a different trial list) than the folder's records.
        progress: show the progress bar.

    Raises:
        trainlab.trials.PlanChanged: the folder holds this study with other seeds (and not ``extend``).
        trainlab.trials.TrialsFailed: a trial failed or was killed (its error is in the message).
    """
    from trainlab import trials

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = study.choose_seeds(quick, None if seeds is None else tuple(seeds))
    start = time.perf_counter()
    specs = study.trials(quick=quick, seeds=chosen)
    plan = trials.Plan("study", study.NAME, {"study": study.NAME, "quick": quick, "seeds": list(chosen)}, specs)
    results = trials.run(plan, trials_folder(out, study.NAME, quick), executor=executor, extend=extend,
                         progress=progress)
    results.require_complete()
    result = study.analyse(results, quick=quick, seeds=chosen, out=out)
    result.seconds = time.perf_counter() - start
    records = list(results.values())
    result.numbers["trials"] = {"count": len(records),
                                "seconds": round(sum(r["seconds"] or 0.0 for r in records), 2),
                                "diverged": sum(r["status"] == "diverged" for r in records),
                                "records": str(trials_folder(out, study.NAME, quick) / "results.jsonl")}
    return result
