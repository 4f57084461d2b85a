"""The playground's state: every control as a typed, bounded field, parsed from a URL's query.

The page keeps its whole state in the URL (``?ds=spiral&depth=10&act=tanh&init=small_random&...``),
so a shared link reproduces a run exactly: the server builds the run from these values alone,
the seed included. :func:`parse_state` turns the query's key/value pairs into a normalized
:class:`State` or raises :class:`ConfigError` naming the key, the value and what is valid;
:func:`to_query` writes a state back. The field table is sent to the page, which builds its
controls from it, so the limits live here only.

Keys:

* data (shared by both sides of compare mode): ``ds``, ``n``, ``noise``, ``batch``, ``seed``, ``every``;
* run (one network and its optimizer): ``depth``, ``width``, ``act``, ``init``, ``scale``, ``bn``,
  ``opt``, ``lr``, ``mom``, ``alpha``, ``b1``, ``b2``, ``eps``, ``epsin``, ``bc``, ``wd``;
* ``cmp=1`` turns on compare mode; side B then takes ``b.KEY`` for any run key and inherits A's value
  for the others;
* the optimizer tab: ``surf``, ``osteps``, ``orules`` and per rule ``o.RULE.HP`` (``o.adam.lr=0.1``);
* ``tab`` (``train`` or ``opt``), the page's open tab.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trainlab import optim
from trainlab.data.splits import split_sizes

__all__ = ["Field", "ConfigError", "State", "DATA_FIELDS", "RUN_FIELDS", "SURFACE_FIELDS", "RULE_FIELDS",
           "RULES", "parse_state", "to_query", "schema", "LIMITS", "optimizer_kwargs", "rule_kwargs"]

#: every rule of the seed's table, the seed-exact Adam and AdamW (trainlab.optim's registry names)
RULES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adam_seed", "adamw")
_EPS_RULES = ("adagrad", "rmsprop", "adam", "adam_seed", "adamw")
_ADAM_RULES = ("adam", "adam_seed", "adamw")

DIGITS_SAMPLES = 1797          #: scikit-learn's digits
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2   #: trainlab.data.load's default split

#: the sizes and times a session may not exceed (the server's bounds)
LIMITS = {
    "max_sessions": 16,         # concurrent sessions (tabs) per server
    "max_steps": 100_000,       # training steps per session; then it pauses for good
    "max_seconds": 1800.0,      # wall-clock lifetime of one session's training
    "max_width_x_batch_x_depth": 30 * 128 * 128,   # depth x width x batch: what one step may cost
    "trajectory_steps": 2000,   # most steps of an optimizer-tab trajectory
}


class ConfigError(ValueError):
    """A state value out of range or of the wrong type; ``key`` names the field."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Field:
    """One control: its URL key, type, default and bounds.

    ``kind`` is ``"int"``, ``"float"``, ``"choice"`` or ``"bool"``. Numbers lie in ``[lo, hi]``
    (``lo_open``/``hi_open`` exclude an end). ``only`` lists the optimizers a run field applies
    to (empty: all); ``by`` names a field whose value picks the default from ``defaults``.
    """

    key: str
    kind: str
    default: Any
    label: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    names: tuple[str, ...] = ()         # display names of the choices
    log: bool = False                   # a value best edited on a log scale (learning rates, eps)
    only: tuple[str, ...] = ()
    by: str = ""
    defaults: tuple[tuple[str, Any], ...] = ()
    help: str = ""

    def default_for(self, values: Mapping[str, Any]) -> Any:
        if self.by:
            return dict(self.defaults).get(values.get(self.by), self.default)
        return self.default

    def range_text(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "bool":
            return "0 or 1"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        kind = "an integer" if self.kind == "int" else "a number"
        return f"{kind} in {left}{_fmt(self.lo)}, {_fmt(self.hi)}{right}"

    def parse(self, raw: Any, where: str) -> Any:
        """The value of ``raw`` (a URL string or a JSON value), or :class:`ConfigError`."""
        def bad() -> ConfigError:
            return ConfigError(where, f"{where} must be {self.range_text()}, got {raw!r}")

        if self.kind == "choice":
            value = str(raw).strip().lower().replace("-", "_")
            if value not in self.choices:
                near = difflib.get_close_matches(value, self.choices, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(where, f"{where} must be one of {', '.join(self.choices)}, got {raw!r}{hint}")
            return value
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "on", "yes"):
                return True
            if text in ("0", "false", "off", "no"):
                return False
            raise bad()
        try:
            if isinstance(raw, bool):
                raise ValueError
            number = float(raw)
        except (TypeError, ValueError):
            raise bad() from None
        if not math.isfinite(number):
            raise bad()
        if self.kind == "int":
            if number != int(number):
                raise bad()
            number = int(number)
        too_low = number <= self.lo if self.lo_open else number < self.lo
        too_high = number >= self.hi if self.hi_open else number > self.hi
        if too_low or too_high:
            raise bad()
        return number

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "default": self.default, "label": self.label,
                "lo": self.lo, "hi": self.hi, "lo_open": self.lo_open, "hi_open": self.hi_open,
                "choices": list(self.choices), "names": list(self.names or self.choices), "log": self.log,
                "only": list(self.only), "by": self.by, "defaults": dict(self.defaults), "help": self.help}


def _fmt(x: float | None) -> str:
    return "" if x is None else (f"{x:g}" if abs(x) < 1e6 else f"{x:.3g}")


DATA_FIELDS = (
    Field("ds", "choice", "spiral", "dataset", choices=("spiral", "circles", "moons", "blobs", "digits"),
          help="digits: scikit-learn's 1,797 8x8 handwritten digits (64 inputs, 10 classes)"),
    Field("n", "int", 600, "samples", lo=60, hi=3000, help="points drawn for a 2-D set (digits: always 1,797)"),
    Field("noise", "float", 0.2, "noise", lo=0.0, hi=3.0, by="ds",
          defaults=(("spiral", 0.2), ("circles", 0.1), ("moons", 0.1), ("blobs", 1.0), ("digits", 0.0)),
          help="spiral: angle noise (radians); circles, moons: coordinate noise; blobs: cluster std"),
    Field("batch", "int", 32, "batch size", lo=1, hi=256),
    Field("seed", "int", 0, "seed", lo=0, hi=2**31 - 1,
          help="draws the data, the split, the weights and the batch order"),
    Field("every", "int", 5, "sample every", lo=1, hi=100,
          help="the monitor records histograms, update ratios and the validation metrics every this many steps"),
)

RUN_FIELDS = (
    Field("depth", "int", 4, "hidden layers", lo=1, hi=30),
    Field("width", "int", 16, "width", lo=2, hi=128),
    Field("act", "choice", "relu", "activation", choices=("relu", "leaky_relu", "tanh", "sigmoid"),
          names=("ReLU", "LeakyReLU", "tanh", "sigmoid")),
    Field("init", "choice", "he", "initializer", choices=("small_random", "xavier", "he", "normal", "zeros"),
          names=("small random (0.01)", "xavier √(1/n)", "he √(2/n)", "N(0, 1)", "zeros")),
    Field("scale", "float", 1.0, "init scale", lo=0.0, hi=100.0, log=True,
          help="multiplies the initializer's standard deviation (1: the seed's formula)"),
    Field("bn", "bool", False, "BatchNorm", help="BatchNorm1d after each hidden Linear, before its activation"),
    Field("opt", "choice", "sgd", "optimizer", choices=RULES,
          names=("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "Adam (seed-exact)", "AdamW")),
    Field("lr", "float", 0.1, "learning rate", lo=0.0, hi=10.0, lo_open=True, log=True),
    Field("mom", "float", 0.9, "momentum μ", lo=0.0, hi=1.0, hi_open=True, only=("momentum", "nesterov")),
    Field("alpha", "float", 0.99, "decay γ", lo=0.0, hi=1.0, hi_open=True, only=("rmsprop",),
          help="RMSProp's moving-average decay (the seed's γ; PyTorch's alpha)"),
    Field("b1", "float", 0.9, "β1", lo=0.0, hi=1.0, hi_open=True, only=_ADAM_RULES),
    Field("b2", "float", 0.999, "β2", lo=0.0, hi=1.0, hi_open=True, only=_ADAM_RULES),
    Field("eps", "float", 1e-8, "ε", lo=0.0, hi=1.0, lo_open=True, log=True, only=_EPS_RULES),
    Field("epsin", "bool", False, "ε inside √", only=("adagrad", "rmsprop", "adam", "adamw"),
          help="the seed's placement √(G + ε); off: PyTorch's √G + ε (Adam (seed-exact) always inside)"),
    Field("bc", "bool", True, "bias correction", only=("adam", "adamw"),
          help="divide the moments by 1 − β^t (Adam (seed-exact) never does)"),
    Field("wd", "float", 0.01, "weight decay", lo=0.0, hi=1.0, only=("adamw",),
          help="AdamW's decoupled weight decay λ: w ← w·(1 − αλ)"),
)

SURFACE_FIELDS = (
    Field("surf", "choice", "valley", "surface", choices=("saddle", "valley", "rosenbrock"),
          names=("saddle x² − y²", "valley ½(x² + 100y²)", "Rosenbrock")),
    Field("osteps", "int", 300, "steps", lo=1, hi=LIMITS["trajectory_steps"]),
)

#: the optimizer tab's per-rule hyperparameters, ``o.RULE.KEY`` in the URL
RULE_FIELDS = (
    Field("lr", "float", 0.01, "lr", lo=0.0, hi=10.0, lo_open=True, log=True, by="rule",
          defaults=(("sgd", 0.01), ("momentum", 0.01), ("nesterov", 0.01), ("adagrad", 0.5), ("rmsprop", 0.05),
                    ("adam", 0.1), ("adam_seed", 0.1), ("adamw", 0.1))),
    *(f for f in RUN_FIELDS if f.key in ("mom", "alpha", "b1", "b2", "eps", "epsin", "bc", "wd")),
)

_TABS = ("train", "opt")
_RUN_KEYS = {f.key: f for f in RUN_FIELDS}
_DATA_KEYS = {f.key: f for f in DATA_FIELDS}
_SURFACE_KEYS = {f.key: f for f in SURFACE_FIELDS}
_RULE_KEYS = {f.key: f for f in RULE_FIELDS}


@dataclass
class State:
    """A normalized playground state.

    ``data`` holds the data keys, ``runs`` one dict of run keys per side (two in compare mode),
    ``surface`` the optimizer tab's surface and steps, ``rules`` the shown rules and their
    hyperparameters (``{rule: {key: value}}``), ``tab`` the open tab.
    """

    data: dict[str, Any]
    runs: list[dict[str, Any]]
    surface: dict[str, Any] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    tab: str = "train"

    @property
    def compare(self) -> bool:
        return len(self.runs) == 2

    def to_dict(self) -> dict[str, Any]:
        return {"data": dict(self.data), "runs": [dict(r) for r in self.runs], "surface": dict(self.surface),
                "rules": {k: dict(v) for k, v in self.rules.items()}, "tab": self.tab,
                "query": to_query(self)}


def _applies(f: Field, opt: str) -> bool:
    return not f.only or opt in f.only


def _unknown(key: str, known: list[str]) -> ConfigError:
    near = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ConfigError(key, f"unknown key {key!r}{hint}")


def parse_state(params: Mapping[str, Any]) -> State:
    """Parse a URL query's key/value pairs (strings, or JSON values) into a :class:`State`.

    Missing keys take their defaults; unknown keys, values of the wrong type and values out of
    range raise :class:`ConfigError`. Cross-field limits: ``batch`` at most the training split,
    and depth x width x batch at most ``LIMITS["max_width_x_batch_x_depth"]``.
    """
    if not isinstance(params, Mapping):
        raise ConfigError("state", f"the state must be a mapping of keys to values, got {type(params).__name__}")
    raw = {str(k): v for k, v in params.items()}
    known = [*_DATA_KEYS, *_RUN_KEYS, *(f"b.{k}" for k in _RUN_KEYS), *_SURFACE_KEYS, "cmp", "tab", "orules"]
    for key in raw:
        if key.startswith("o."):
            parts = key.split(".")
            if len(parts) != 3 or parts[1] not in RULES or parts[2] not in _RULE_KEYS:
                raise ConfigError(key, f"unknown key {key!r}: optimizer-tab keys are o.RULE.KEY with RULE one of "
                                       f"{', '.join(RULES)} and KEY one of {', '.join(_RULE_KEYS)}")
            if parts[2] != "lr" and not _applies(_RULE_KEYS[parts[2]], parts[1]):
                takes = [k for k, f in _RULE_KEYS.items() if k == "lr" or _applies(f, parts[1])]
                raise ConfigError(key, f"{key}: {parts[1]} has no {parts[2]!r}; it takes {', '.join(takes)}")
        elif key not in known:
            raise _unknown(key, known)

    data: dict[str, Any] = {}
    for f in DATA_FIELDS:
        data[f.key] = f.parse(raw[f.key], f.key) if f.key in raw else f.default_for(data)
    side_a = _parse_run(raw, "")
    runs = [side_a]
    compare = _DATA_BOOL.parse(raw["cmp"], "cmp") if "cmp" in raw else False
    if compare:
        runs.append(_parse_run(raw, "b.", inherit=side_a))
    elif any(k.startswith("b.") for k in raw):
        key = next(k for k in raw if k.startswith("b."))
        raise ConfigError(key, f"{key} sets side B, which exists only in compare mode (cmp=1)")
    _check_sizes(data, runs)

    surface = {f.key: f.parse(raw[f.key], f.key) if f.key in raw else f.default for f in SURFACE_FIELDS}
    if "orules" in raw:
        listed = [r.strip().lower() for r in str(raw["orules"]).split(",") if r.strip()]
        for rule in listed:
            if rule not in RULES:
                raise ConfigError("orules", f"orules must list rules among {', '.join(RULES)}, got {rule!r}")
        shown = [r for r in RULES if r in listed]
    else:
        shown = [r for r in RULES if r != "adamw"]
    rules = {}
    for rule in shown:
        values: dict[str, Any] = {"rule": rule}
        for f in RULE_FIELDS:
            if _applies(f, rule) or f.key == "lr":
                key = f"o.{rule}.{f.key}"
                values[f.key] = f.parse(raw[key], key) if key in raw else f.default_for(values)
        del values["rule"]
        rules[rule] = values
    tab = str(raw.get("tab", "train")).lower()
    if tab not in _TABS:
        raise ConfigError("tab", f"tab must be one of {', '.join(_TABS)}, got {raw['tab']!r}")
    return State(data, runs, surface, rules, tab)


_DATA_BOOL = Field("cmp", "bool", False, "compare")


def _parse_run(raw: Mapping[str, Any], prefix: str, inherit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    run: dict[str, Any] = {}
    for f in RUN_FIELDS:
        key = prefix + f.key
        if key in raw:
            run[f.key] = f.parse(raw[key], key)
        elif inherit is not None:
            run[f.key] = inherit[f.key]
        else:
            run[f.key] = f.default_for(run)
    return run


def _check_sizes(data: Mapping[str, Any], runs: list[dict[str, Any]]) -> None:
    n = DIGITS_SAMPLES if data["ds"] == "digits" else data["n"]
    train = split_sizes(n, VAL_FRACTION, TEST_FRACTION)[0]
    if data["batch"] > train:
        raise ConfigError("batch", f"batch must be at most the training split ({train} samples of {n}), "
                                   f"got {data['batch']}")
    budget = LIMITS["max_width_x_batch_x_depth"]
    for prefix, run in zip(("", "b."), runs, strict=False):
        cost = run["depth"] * run["width"] * data["batch"]
        if cost > budget:
            raise ConfigError(prefix + "width", f"{prefix}depth x {prefix}width x batch = {run['depth']} x "
                                                f"{run['width']} x {data['batch']} = {cost} is above this server's "
                                                f"limit of {budget}; use a smaller network or batch")


def to_query(state: State) -> str:
    """The URL query that :func:`parse_state` turns back into ``state``.

    Every data key and every key of side A that applies to its optimizer is written, so the link
    does not depend on this version's defaults; side B writes only what differs from A. The
    optimizer tab's keys are written, all of them, when that tab is open or differs from its defaults.
    """
    parts = [f"{f.key}={_text(state.data[f.key])}" for f in DATA_FIELDS
             if not (f.key in ("n", "noise") and state.data["ds"] == "digits")]
    a = state.runs[0]
    parts += [f"{f.key}={_text(a[f.key])}" for f in RUN_FIELDS if _applies(f, a["opt"])]
    if state.compare:
        b = state.runs[1]
        parts.append("cmp=1")
        parts += [f"b.{f.key}={_text(b[f.key])}" for f in RUN_FIELDS
                  if b[f.key] != a[f.key] and _applies(f, b["opt"])]
    if state.tab != "train":
        parts.append(f"tab={state.tab}")
    default = DEFAULT_OPTIMIZER_TAB
    if state.tab == "opt" or state.surface != default.surface or state.rules != default.rules:
        parts += [f"{k}={_text(v)}" for k, v in state.surface.items()]
        parts.append("orules=" + ",".join(state.rules))
        parts += [f"o.{rule}.{k}={_text(v)}" for rule, values in state.rules.items() for k, v in values.items()]
    return "&".join(parts)


DEFAULT_OPTIMIZER_TAB = parse_state({})   #: the optimizer tab's keys are written once any differs from this


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e16 else str(int(value))
    return str(value)


def optimizer_kwargs(run: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``optim.create(run["opt"], params, ...)`` for a run's (or rule's) values."""
    opt = run["opt"]
    kwargs: dict[str, Any] = {"lr": run["lr"]}
    if opt in ("momentum", "nesterov"):
        kwargs["momentum"] = run["mom"]
    if opt == "rmsprop":
        kwargs["alpha"] = run["alpha"]
    if opt in _ADAM_RULES:
        kwargs["betas"] = (run["b1"], run["b2"])
    if opt in _EPS_RULES:
        kwargs["eps"] = run["eps"]
    if opt in ("adagrad", "rmsprop", "adam", "adamw"):
        kwargs["eps_inside_sqrt"] = run["epsin"]
    if opt in ("adam", "adamw"):
        kwargs["bias_correction"] = run["bc"]
    if opt == "adamw":
        kwargs["weight_decay"] = run["wd"]
    optim.get(opt)   # the registry's own error for a name it lacks
    return kwargs


def rule_kwargs(rule: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`optimizer_kwargs` for one rule of the optimizer tab."""
    return optimizer_kwargs({**values, "opt": rule})


def schema() -> dict[str, Any]:
    """The field tables and limits, as the page receives them."""
    return {"data": [f.to_dict() for f in DATA_FIELDS], "run": [f.to_dict() for f in RUN_FIELDS],
            "surface": [f.to_dict() for f in SURFACE_FIELDS], "rule": [f.to_dict() for f in RULE_FIELDS],
            "rules": list(RULES), "limits": dict(LIMITS)}
