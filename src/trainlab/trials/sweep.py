"""``trainlab sweep FILE.toml``: a grid (and random samples) of ``trainlab train`` configs on the engine.

The file holds a base config in the format of ``trainlab train`` (``[run]``, ``[data]``,
``[model]``, ``[optimizer]``, ``[schedule]``, ``[train]``; every key has a default) and::

    [sweep]                       # all optional
    name = "lr-batchnorm"         # default: the file's stem; output in sweeps/<name>/
    metric = "val_accuracy"       # what the summary ranks and sweep.html draws (see METRICS)
    mode = "auto"                 # "max" / "min"; auto: max for accuracies, min for losses
    seed = 0                      # draws the [random] samples and the repeats' seeds
    repeats = 3                   # or: seeds = [0, 1, 2]   (also accepted at the top of the file)
    heatmap = ["optimizer.lr", "model.batchnorm"]   # the heatmap's two keys (default: the first two)
    facet = "model.hidden"        # one heatmap per value of this key (default: the third swept key)

    [grid]                        # cartesian product, dotted config keys (see trainlab.trials.grid)
    "optimizer.lr" = [0.01, 0.1, 1.0]
    [random]                      # n samples, combined with every grid point
    n = 8
    "optimizer.weight_decay" = { loguniform = [1e-6, 1e-3] }

Seeds: ``seeds = [...]`` sets ``run.seed`` of repeat ``r`` to ``seeds[r]``; ``repeats = N``
derives it from the sweep's seed (:func:`trainlab.trials.grid.repeat_seed`); with neither,
each configuration runs once with the base ``run.seed``. Either way repeat ``r`` of every
configuration has the same seed: configurations are compared on the same data split,
weight stream and batch order (a paired comparison), and the seed is fixed in the spec
before anything runs, never by the worker or the scheduling order.

Each trial is :func:`trainlab.trials.config_trial.train` (a ``trainlab train`` run without
a run folder). With ``tensorboard = true`` in ``[train]``, every trial writes TensorBoard event
files into ``<out>/tb/<trial id>`` (``tensorboard --logdir <out>/tb`` compares them, the HParams
view by their configs); logging is not part of a trial's spec, so its id is the same either way.
The output folder holds ``plan.json``, ``results.jsonl`` (every record, as it finished),
``results.csv`` (one row per trial: the swept keys, repeat and seed, status, final and best
metrics, seconds, trial id) and ``sweep.html``; the terminal gets the best
configurations and the mean ± std over seeds of every group.
"""

from __future__ import annotations

import copy
import csv
import difflib
import io
import json
import math
import statistics
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.checkpoint import atomic_write_bytes
from trainlab.config import DEFAULTS, ConfigError, validate
from trainlab.trials import config_trial
from trainlab.trials.grid import GridError, expand, flatten_space, repeat_seed
from trainlab.trials.spec import make_spec, trial_id
from trainlab.trials.store import Plan, peek, plan_changes

__all__ = ["Sweep", "SweepTrial", "SweepError", "load_sweep", "parse_sweep", "rows", "write_csv", "group_stats",
           "summary", "ranked", "metric_value", "format_value", "dry_run", "METRICS", "CSV_NAME"]

CSV_NAME = "results.csv"
CURVE_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
#: the metrics a sweep can rank by: final epoch values, best epoch values, and the test split after training
METRICS = (*CURVE_KEYS, *(f"best_{k}" for k in CURVE_KEYS), "test_loss", "test_accuracy")
_SWEEP_KEYS = ("name", "metric", "mode", "seed", "repeats", "seeds", "heatmap", "facet")


class SweepError(ValueError):
    """A sweep file is malformed; the message names the file, the key and what was expected."""


@dataclass
class SweepTrial:
    """One trial of a sweep: its assignment of swept keys, repeat index, seed and spec."""

    assignment: dict[str, Any]
    repeat: int
    seed: int
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return trial_id(self.spec)

    def label(self) -> str:
        parts = [f"{k}={format_value(v)}" for k, v in self.assignment.items()]
        return " ".join([*parts, f"seed={self.seed}"])


@dataclass
class Sweep:
    """A parsed sweep file (see the module docstring)."""

    name: str
    base: dict[str, Any]                       #: the validated base config
    grid: dict[str, list[Any]]
    random: dict[str, dict[str, Any]]
    samples: int
    seed: int
    seeds: list[int] | None
    repeats: int
    metric: str
    mode: str
    heatmap: list[str] | None = None
    facet: str | None = None
    source: str = ""
    derive_seeds: bool = False                 #: repeats = N: run.seed from the sweep's seed and the repeat
    tensorboard: bool = False                  #: [train] tensorboard = true: event files in <out>/tb/<trial id>
    trials: list[SweepTrial] = field(default_factory=list)
    duplicates: int = 0

    @property
    def keys(self) -> list[str]:
        """The swept keys, grid first, in file order."""
        return [*self.grid, *self.random]

    def definition(self) -> dict[str, Any]:
        """What a rerun compares: base config, grid, random space, seeds, metric."""
        return {"base": self.base, "grid": self.grid, "random": {"n": self.samples, **self.random},
                "seed": self.seed, "seeds": self.seeds, "repeats": self.repeats, "metric": self.metric,
                "mode": self.mode}

    def plan(self) -> Plan:
        return Plan("sweep", self.name, self.definition(), [t.spec for t in self.trials])

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b


def format_value(value: Any) -> str:
    """A swept value as a short label: ``0.1``, ``true``, ``3x100`` for ``[100, 100, 100]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) > 1 and all(v == value[0] for v in value) and isinstance(value[0], int):
        return f"{len(value)}x{value[0]}"  # model.hidden = [100, 100, 100] -> 3x100
    return str(value).replace(" ", "")


def _suggest(key: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean {near[0]!r}?)" if near else ""


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file (errors name the file and the key)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"sweep file {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"sweep file {path}: invalid TOML: {exc}") from None
    try:
        return parse_sweep(raw, default_name=path.stem, source=str(path))
    except (SweepError, GridError, ConfigError) as exc:
        raise SweepError(f"{path}: {exc}") from None


def parse_sweep(raw: dict[str, Any], *, default_name: str = "sweep", source: str = "") -> Sweep:
    """Build a :class:`Sweep` (and its trials) from a parsed sweep file."""
    raw = copy.deepcopy(raw)
    settings = raw.pop("sweep", {})
    if not isinstance(settings, dict):
        raise SweepError(f"sweep: expected a table, got {settings!r}")
    for key in ("seeds", "repeats"):  # the top-level form: seeds = [...] / repeats = N before any table
        if key in raw and not isinstance(raw[key], dict):
            if key in settings:
                raise SweepError(f"{key}: given both at the top of the file and in [sweep]")
            settings[key] = raw.pop(key)
    for key in settings:
        if key not in _SWEEP_KEYS:
            raise SweepError(f"sweep.{key}: unknown key{_suggest(key, list(_SWEEP_KEYS))}; "
                             f"valid: {', '.join(_SWEEP_KEYS)}")
    grid = flatten_space(raw.pop("grid", {}), "grid")
    random_table = raw.pop("random", {})
    if not isinstance(random_table, dict):
        raise SweepError(f"random: expected a table, got {random_table!r}")
    samples = random_table.pop("n", 0)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise SweepError(f"random.n: expected a number of samples >= 1, got {samples!r}")
    random = flatten_space(random_table, "random", random=True) if random_table else {}
    if samples and not random:
        raise SweepError("random.n: given, but [random] names no key to sample")
    for key in raw:
        if key not in DEFAULTS:
            raise SweepError(f"{key}: unknown table{_suggest(key, [*DEFAULTS, 'sweep', 'grid', 'random'])}; "
                             f"valid: sweep, grid, random, {', '.join(DEFAULTS)}")
    base = validate(raw)
    if "train.tensorboard" in grid or "train.tensorboard" in random:
        raise SweepError("train.tensorboard: logging is not a search dimension; set tensorboard = true in "
                         "[train] to log every trial")
    tensorboard = base["train"]["tensorboard"]   # how the sweep logs, not what a trial computes:
    base["train"]["tensorboard"] = False         # it stays out of the plan and of the trial ids

    name = settings.get("name", default_name)
    if not isinstance(name, str) or not name or "/" in name:
        raise SweepError(f"sweep.name: expected a folder name without '/', got {name!r}")
    seed = settings.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SweepError(f"sweep.seed: expected an integer >= 0, got {seed!r}")
    seeds, repeats = settings.get("seeds"), settings.get("repeats")
    if seeds is not None and repeats is not None:
        raise SweepError("seeds and repeats: give one (seeds = [0, 1, 2] or repeats = 3), not both")
    if seeds is not None:
        if (not isinstance(seeds, list) or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
            raise SweepError(f"seeds: expected a list of integers >= 0, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise SweepError(f"seeds: {seeds} repeats a seed")
        repeats = len(seeds)
    elif repeats is not None:
        if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
            raise SweepError(f"repeats: expected an integer >= 1, got {repeats!r}")
    else:
        repeats = 1
    if "run.seed" in grid or "run.seed" in random:
        if settings.get("seeds") is not None or settings.get("repeats") is not None:
            raise SweepError("run.seed is swept and seeds/repeats are given: choose one way to vary the seed")
    metric = settings.get("metric", "val_accuracy")
    if metric not in METRICS:
        raise SweepError(f"sweep.metric: unknown metric {metric!r}{_suggest(str(metric), list(METRICS))}; "
                         f"valid: {', '.join(METRICS)}")
    mode = settings.get("mode", "auto")
    if mode == "auto":
        mode = "max" if "accuracy" in metric else "min"
    if mode not in ("max", "min"):
        raise SweepError(f"sweep.mode: expected 'max', 'min' or 'auto', got {mode!r}")
    sweep = Sweep(name=name, base=base, grid=grid, random=random, samples=samples, seed=seed,
                  seeds=list(seeds) if seeds is not None else None, repeats=repeats, metric=metric, mode=mode,
                  source=source, derive_seeds=settings.get("repeats") is not None, tensorboard=tensorboard)
    sweep.heatmap, sweep.facet = _check_heatmap(sweep, settings.get("heatmap"), settings.get("facet"))
    _expand_trials(sweep, raw)
    return sweep


def _check_heatmap(sweep: Sweep, heatmap: Any, facet: Any) -> tuple[list[str] | None, str | None]:
    keys = sweep.keys
    if heatmap is not None:
        if not isinstance(heatmap, list) or len(heatmap) != 2 or not all(k in keys for k in heatmap):
            raise SweepError(f"sweep.heatmap: expected two swept keys (of {', '.join(keys) or 'none'}), "
                             f"got {heatmap!r}")
    if facet is not None and (facet not in keys or (heatmap and facet in heatmap)):
        raise SweepError(f"sweep.facet: expected a swept key other than the heatmap's, got {facet!r}")
    return heatmap, facet


def _expand_trials(sweep: Sweep, raw: dict[str, Any]) -> None:
    trials: list[SweepTrial] = []
    seen: set[str] = set()
    for assignment in expand(sweep.grid, sweep.random, sweep.samples, sweep.seed):
        config = copy.deepcopy(raw)
        for dotted, value in assignment.items():
            table, key = dotted.split(".")
            config.setdefault(table, {})[key] = value
        for repeat in range(sweep.repeats):
            if sweep.seeds is not None:
                config.setdefault("run", {})["seed"] = sweep.seeds[repeat]
            elif sweep.derive_seeds:
                config.setdefault("run", {})["seed"] = repeat_seed(sweep.seed, repeat)
            where = " ".join(f"{k}={json.dumps(v)}" for k, v in assignment.items()) or "the base config"
            try:
                full = validate(config)
            except ConfigError as exc:
                raise SweepError(f"{where}: {exc}") from None
            full["train"]["tensorboard"] = False     # see parse_sweep: Sweep.tensorboard
            spec = make_spec(config_trial.TRIAL, {"config": full, "repeat": repeat})
            trial = SweepTrial(dict(assignment), repeat, full["run"]["seed"], spec)
            if trial.id in seen:
                sweep.duplicates += 1
                continue
            seen.add(trial.id)
            trials.append(trial)
    if not trials:
        raise SweepError("the sweep has no trials")
    sweep.trials = trials


# ---------------------------------------------------------------------- results
def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def rows(sweep: Sweep, records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per recorded trial (plan order): swept keys, repeat, seed, status, metrics, seconds, id."""
    out = []
    for trial in sweep.trials:
        record = records.get(trial.id)
        if record is None:
            continue
        curves, metrics = record.get("curves") or [], record.get("metrics") or {}
        row: dict[str, Any] = {**trial.assignment, "repeat": trial.repeat, "seed": trial.seed,
                               "status": record["status"]}
        for key in CURVE_KEYS:
            values = [_number(c.get(key)) for c in curves]
            finite = [v for v in values if math.isfinite(v)]
            row[key] = values[-1] if values else math.nan
            pick = max if "accuracy" in key else min
            row[f"best_{key}"] = pick(finite) if finite else math.nan
        row["test_loss"] = _number(metrics.get("test_loss"))
        row["test_accuracy"] = _number(metrics.get("test_accuracy"))
        row["epochs"] = len(curves)
        row["seconds"] = record.get("seconds")
        row["trial_id"] = trial.id
        row["error"] = record.get("error") or ""
        out.append(row)
    return out


def metric_value(sweep: Sweep, row: dict[str, Any]) -> float:
    """The row's value of the sweep's metric; NaN unless the trial finished ``ok``."""
    return row[sweep.metric] if row["status"] == "ok" else math.nan


def write_csv(sweep: Sweep, table: list[dict[str, Any]], path: str | Path) -> Path:
    """``results.csv`` (atomic): the swept keys, repeat, seed, status, metrics, epochs, seconds, trial id, error."""
    columns = [*sweep.keys, "repeat", "seed", "status", *METRICS, "epochs", "seconds", "trial_id", "error"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    def cell(column: str, value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return ""
        if column in sweep.keys and isinstance(value, (bool, list)):
            return json.dumps(value)  # true / [100, 100]: as written in the sweep file
        return value

    for row in table:
        writer.writerow([cell(c, row[c]) for c in columns])
    atomic_write_bytes(path, buf.getvalue().encode())
    return Path(path)


@dataclass
class Group:
    """The trials of one configuration (all repeats): the metric's mean, std and counts."""

    assignment: dict[str, Any]
    values: list[float]
    statuses: list[str]

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values if math.isfinite(v)]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.finite) if self.finite else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.finite) if len(self.finite) > 1 else math.nan

    def label(self) -> str:
        return " ".join(f"{k}={format_value(v)}" for k, v in self.assignment.items()) or "(base config)"

    def text(self) -> str:
        if not self.finite:
            return "—"
        spread = f" ± {self.std:.4g}" if math.isfinite(self.std) else ""
        return f"{self.mean:.4g}{spread}"

    def notes(self) -> str:
        counts = {s: self.statuses.count(s) for s in ("diverged", "failed", "killed") if s in self.statuses}
        return ", ".join(f"{n} {s}" for s, n in counts.items())


def group_stats(sweep: Sweep, table: list[dict[str, Any]]) -> list[Group]:
    """One :class:`Group` per configuration, in plan order."""
    groups: dict[str, Group] = {}
    for row in table:
        assignment = {k: row[k] for k in sweep.keys}
        key = repr([(k, type(v).__name__, v) for k, v in assignment.items()])
        group = groups.setdefault(key, Group(assignment, [], []))
        group.values.append(metric_value(sweep, row))
        group.statuses.append(row["status"])
    return list(groups.values())


def ranked(sweep: Sweep, groups: list[Group]) -> list[Group]:
    """Groups with a finite mean, best first."""
    good = [g for g in groups if math.isfinite(g.mean)]
    return sorted(good, key=lambda g: -g.mean if sweep.mode == "max" else g.mean)


def summary(sweep: Sweep, table: list[dict[str, Any]], *, top: int = 5) -> str:
    """The terminal summary: counts, the best configurations, and mean ± std over seeds per group."""
    counts: dict[str, int] = {}
    for row in table:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    groups = group_stats(sweep, table)
    over = f"{sweep.repeats} seed{'s' if sweep.repeats != 1 else ''}"
    lines = [f"sweep {sweep.name}: {len(table)} of {len(sweep.trials)} trials recorded ("
             + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"]
    best = ranked(sweep, groups)[:top]
    if best:
        lines.append(f"best configurations by mean {sweep.metric} over {over} ({sweep.mode}):")
        width = max(len(g.label()) for g in best)
        for i, g in enumerate(best, 1):
            lines.append(f"  {i}. {g.label():<{width}}  {g.text()}" + (f"  ({g.notes()})" if g.notes() else ""))
    else:
        lines.append(f"no configuration has a finite {sweep.metric}")
    if sweep.keys:
        lines.append(f"{sweep.metric}, mean ± std over {over}, per configuration:")
        header = [*sweep.keys, sweep.metric, "n", "notes"]
        cells = [[*(format_value(g.assignment[k]) for k in sweep.keys), g.text(), str(len(g.finite)), g.notes()]
                 for g in groups]
        widths = [max(len(str(c)) for c in col) for col in zip(header, *cells, strict=True)]
        lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        for row in cells:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def dry_run(sweep: Sweep, folder: str | Path) -> str:
    """The trials, in order, with their ids and whether ``folder`` has them recorded (nothing is written)."""
    old_plan, records = peek(folder)
    plan = sweep.plan()
    lines = [f"sweep {sweep.name}: {len(sweep.trials)} trials"
             + (f" ({sweep.duplicates} duplicate assignments dropped)" if sweep.duplicates else "")
             + f", output folder {folder}"]
    if old_plan is not None:
        changes = plan_changes(old_plan, plan.to_json())
        if changes:
            lines.append("the folder holds a different sweep (a run needs --extend); changed:")
            lines += [f"  {c}" for c in changes]
    width = len(str(len(sweep.trials)))
    for i, trial in enumerate(sweep.trials, 1):
        status = records[trial.id]["status"] if trial.id in records else "to run"
        lines.append(f"  {i:>{width}}  {trial.id}  {status:<8}  {trial.label()}")
    done = sum(t.id in records for t in sweep.trials)
    lines.append(f"{done} recorded, {len(sweep.trials) - done} to run")
    return "\n".join(lines)
