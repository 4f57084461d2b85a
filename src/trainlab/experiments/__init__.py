"""Studies of the seed's claims; each returns numbers, figures and numeric verdicts.

========== ===================================================================
name       what it shows
========== ===================================================================
init-depth forward/backward statistics through a 10-layer, 500-unit net
init-train deep MLPs trained on the digits for each init x activation
depth-30   a 30-layer ReLU net: xavier stalls at chance, he trains
batchnorm  gradient flow, lr range, init sensitivity, regularization, drift
optimizers the six update rules on 2-D surfaces and on the digits MLP
========== ===================================================================

From Python::

    from trainlab import experiments
    result = experiments.run("init-depth", quick=True, out="lab")
    for v in result.verdicts:
        print(v)

From the shell: ``trainlab experiment init-depth --quick --out lab`` (``--workers N``,
``--dask-local N`` or ``--scheduler ADDRESS`` choose where the trials run).

Every study is a list of trials on :mod:`trainlab.trials` and an analysis of their records
(see :mod:`trainlab.experiments.common`).
"""

from __future__ import annotations

import importlib
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainlab.experiments.common import StudyResult, Table, Verdict

__all__ = ["STUDIES", "names", "get", "run", "command", "StudyResult", "Verdict", "Table"]

#: study name -> module in this package (its ``trials``, ``analyse`` and ``run``; see :mod:`.common`)
STUDIES = {
    "init-depth": "init_depth",
    "init-train": "init_train",
    "depth-30": "depth30",
    "batchnorm": "batchnorm_study",
    "optimizers": "optimizers_study",
}


def names() -> list[str]:
    return list(STUDIES)


def get(name: str) -> Callable[..., StudyResult]:
    """The ``run`` function of study ``name``; an unknown name raises ``ValueError``."""
    if name not in STUDIES:
        import difflib

        near = difflib.get_close_matches(str(name), list(STUDIES), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"unknown experiment {name!r}{hint}; valid: {', '.join(STUDIES)}")
    return importlib.import_module(f"trainlab.experiments.{STUDIES[name]}").run


def command(name: str, *, quick: bool = False, out: str | Path = "lab", seeds: tuple[int, ...] | None = None) -> str:
    """The shell command that reruns :func:`run` with these arguments (``--quick``, ``--out``, ``--seeds``)."""
    parts = ["trainlab", "experiment", name, *(["--quick"] if quick else []), "--out", str(out)]
    if seeds is not None:
        parts += ["--seeds", *map(str, seeds)]
    return shlex.join(parts)


def run(name: str, *, quick: bool = False, out: str | Path = "lab", seeds: tuple[int, ...] | None = None,
        report: bool = True, executor: Any = None, extend: bool = False, progress: bool = False) -> StudyResult:
    """Run study ``name``, write ``<out>/<name>.json`` (and ``<out>/report.html``), return its result.

    The trials run on ``executor`` (default: serially in this process; see
    :func:`trainlab.trials.make_executor`) and are recorded in ``<out>/trials/<name>``, so a
    rerun skips the finished ones; other ``seeds`` than the recorded ones are refused unless
    ``extend``. The result records the command that reproduces this very call (:func:`command`)
    and ``numbers["quick"]``, so the report can say that a result is of the quick size.
    """
    study = get(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"quick": quick, "out": out, "executor": executor, "extend": extend,
                              "progress": progress}
    if seeds is not None:
        kwargs["seeds"] = tuple(seeds)
    result = study(**kwargs)
    result.command = command(name, quick=quick, out=out, seeds=seeds)
    result.numbers["quick"] = bool(quick)
    result.save(out)
    if report:
        from trainlab.report import write_report

        write_report([StudyResult.load(p) for p in sorted(out.glob("*.json")) if p.stem in STUDIES], out)
    return result
