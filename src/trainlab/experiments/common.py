"""What every study returns: verdicts on claims, figures, tables and the command that reproduces it.

A study is a function ``run(*, quick: bool, out: Path, seeds: tuple[int, ...]) -> StudyResult``
registered in :data:`trainlab.experiments.STUDIES`. It writes its figures (PNG, and GIF
where animated) into ``out`` and returns a :class:`StudyResult`; :mod:`trainlab.report`
turns one or more results into a self-contained ``report.html``, and ``result.json``
holds the same numbers for machines.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainlab.checkpoint import atomic_write_bytes

__all__ = ["Verdict", "Table", "StudyResult", "save_figure", "verdict", "blas_single_thread", "new_figure",
           "study_seeds"]


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
        return path

    @classmethod
    def load(cls, path: str | Path) -> StudyResult:
        raw = json.loads(Path(path).read_text())
        raw["verdicts"] = [Verdict(**v) for v in raw.get("verdicts", [])]
        raw["tables"] = [Table(**t) for t in raw.get("tables", [])]
        return cls(**raw)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON")


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> str:
    """Save a matplotlib figure as PNG atomically, close it, and return the path as a string."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return str(path)


@contextmanager
def blas_single_thread() -> Iterator[None]:
    """Run BLAS single-threaded: the studies' matrices are small and threads only contend."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        ctx: Any = nullcontext()
    else:
        ctx = threadpool_limits(limits=1, user_api="blas")
    with ctx:
        yield


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure drawn by Agg, outside pyplot (no backend or global state is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def study_seeds(name: str, seeds: Iterable[int], quick: bool) -> tuple[int, ...]:
    """The seeds a study runs: all of ``seeds``, or the first one when ``quick``; never empty."""
    chosen = tuple(int(s) for s in seeds)
    if quick:
        chosen = chosen[:1]
    if not chosen:
        raise ValueError(f"{name}: seeds must not be empty")
    return chosen
