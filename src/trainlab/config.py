"""Run configuration: TOML in, validated nested dict out, TOML back (``config.toml`` of a run).

A config has five tables; every key has a default, so an empty file is a valid run::

    [run]        name = "digits-mlp", seed = 0, out = "runs"
    [data]       name = "digits", label_column = "label"
    [model]      kind = "mlp", hidden = [128, 128], channels = [32, 64], activation = "relu",
                 batchnorm = true, dropout = 0.0, init = "auto"
    [optimizer]  name = "adam", lr = 0.001, and any argument of that optimizer
    [schedule]   name = "none", and any argument of that schedule
    [train]      epochs = 20, batch_size = 64, early_stopping = 0, checkpoint_every = 1,
                 monitor_every = 10 (sample per-layer health every N steps; 0 = off),
                 tensorboard = false (TensorBoard event files in the run folder's tb/)

Every error is a :class:`ConfigError` that names the key (``optimizer.lr``) or the file and
says what was expected; an unknown key suggests the nearest known one.

**One place decides what is valid.** :func:`validate` checks the types and ranges of the
fixed keys, then builds what the config describes, with the same functions the run uses:
the optimizer (:func:`build_optimizer`) on a dummy parameter, the schedule
(:func:`build_schedule`) on that optimizer, the initializer through ``init.get``, and the
dataset name against the data registry. A ``ValueError``/``TypeError`` from a constructor
becomes a ``ConfigError`` naming ``table.argument`` (from the exception's ``argument``
attribute when it has one, else the table). So a config that validates builds, and one that
would not build is refused by :func:`validate`. Only what needs the data itself (a CSV's
label column, a CNN on non-image data) is checked when the run loads its data.

**Hostile files end in a ConfigError, quickly.** :func:`load_config` refuses a path that is
not a file, a file over :data:`MAX_CONFIG_BYTES`, bytes that are not UTF-8 (naming the line
and column), arrays or inline tables nested deeper than :data:`MAX_NESTING`, and dotted
keys of more than :data:`MAX_KEY_DEPTH` parts. The last two are found by a linear scan
before ``tomllib`` parses (``tomllib`` recurses once per nesting level, and its cost grows
with the square of a dotted key's depth: 50,000 parts take minutes).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import re
import tomllib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "ConfigWarning", "DEFAULTS", "SCHEDULES", "MAX_CONFIG_BYTES", "MAX_NESTING",
           "MAX_KEY_DEPTH", "load_config", "parse_toml", "validate", "apply_override", "dumps",
           "build_optimizer", "build_schedule", "config_warnings", "warn_about"]

MAX_CONFIG_BYTES = 1 << 20   #: the largest config file read (1 MiB; a real config is a few hundred bytes)
MAX_NESTING = 32             #: arrays / inline tables inside one another
MAX_KEY_DEPTH = 32           #: parts of one dotted key (``a.b.c`` has 3)


class ConfigError(ValueError):
    """A configuration file or key is unreadable, unknown, of the wrong type, or out of range."""


class ConfigWarning(UserWarning):
    """A config that is valid but almost certainly not what was meant (e.g. ``optimizer.lr = 0``)."""


DEFAULTS: dict[str, dict[str, Any]] = {
    "run": {"name": "run", "seed": 0, "out": "runs"},
    "data": {"name": "digits", "label_column": "label"},
    "model": {"kind": "mlp", "hidden": [128, 128], "channels": [32, 64], "activation": "relu",
              "batchnorm": True, "dropout": 0.0, "init": "auto"},
    "optimizer": {"name": "adam", "lr": 1e-3},
    "schedule": {"name": "none"},
    "train": {"epochs": 20, "batch_size": 64, "early_stopping": 0, "checkpoint_every": 1,
              "monitor_every": 10, "tensorboard": False},
}

SCHEDULES = {"none": None, "step": "StepLR", "exponential": "ExponentialLR", "cosine": "CosineAnnealingLR",
             "warmup": "LinearWarmup", "plateau": "ReduceLROnPlateau"}

_CHOICES = {("model", "kind"): ("mlp", "cnn"),
            ("model", "activation"): ("relu", "leaky_relu", "tanh", "sigmoid")}


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (messages never echo a megabyte of input)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + " ..."


def _name(key: Any, limit: int = 60) -> str:
    text = str(key)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _suggest(key: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(_name(key), valid, n=1, cutoff=0.5)
    return f" (did you mean {near[0]!r}?)" if near else ""


# ---------------------------------------------------------------------- reading TOML
_SPECIAL = re.compile(r"[\n#\"'\[\]{}=.,]")          # the only characters the scan below acts on
_STRING_END = {'"': re.compile(r'[\\"\n]'), "'": re.compile(r"['\n]"),
               '"""': re.compile(r'\\|"""'), "'''": re.compile(r"'''")}


def _skip_string(text: str, i: int) -> int:
    """Index just past the TOML string starting at ``text[i]`` (a quote); an unterminated one-line
    string ends before its newline, an unterminated multi-line one at the end of the text."""
    quote = text[i]
    opener = quote * 3 if text.startswith(quote * 3, i) else quote
    pattern, j = _STRING_END[opener], i + len(opener)
    while (m := pattern.search(text, j)) is not None:
        found = m.group()
        if found == "\\":
            j = m.end() + 1                     # an escape: skip the escaped character
        elif found == "\n":
            return m.start()
        else:
            j = m.end()
            while len(opener) == 3 and text[j:j + 1] == quote and j < m.end() + 2:
                j += 1                          # '""""' : up to two quotes may end the content
            return j
    return len(text)


def _check_structure(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_NESTING and dotted keys longer than MAX_KEY_DEPTH (one linear pass).

    Strings and comments are skipped. A key is read at the start of a line outside any
    array or inline table (including ``[table.headers]``) and after ``{`` or ``,`` inside
    an inline table, up to its ``=``; each ``.`` there separates two parts of the key.
    """
    stack: list[str] = []      # open '[' / '{' of values
    in_key, key_parts, line, i = True, 1, 1, 0
    while (m := _SPECIAL.search(text, i)) is not None:
        i = m.start()
        c = text[i]
        if c == "\n":
            line += 1
            if not stack:
                in_key, key_parts = True, 1
        elif c == "#":
            j = text.find("\n", i)
            if j < 0:
                break
            i = j
            continue
        elif c in "\"'":
            end = _skip_string(text, i)
            line += text.count("\n", i, end)
            i = end
            continue
        elif in_key:
            if c == "=":
                in_key = False
            elif c == ".":
                key_parts += 1
                if key_parts > MAX_KEY_DEPTH:
                    raise ConfigError(f"{source}: line {line}: a dotted key with more than {MAX_KEY_DEPTH} "
                                      "parts; a config needs two (table.key)")
            elif c == "}" and stack and stack[-1] == "{":   # '{}' or a trailing ','
                stack.pop()
                in_key = False
        elif c in "[{":
            stack.append(c)
            if len(stack) > MAX_NESTING:
                raise ConfigError(f"{source}: line {line}: arrays or inline tables nested more than "
                                  f"{MAX_NESTING} deep")
            if c == "{":
                in_key, key_parts = True, 1
        elif c in "]}":
            if stack:
                stack.pop()
        elif c == "," and stack and stack[-1] == "{":
            in_key, key_parts = True, 1
        i += 1


def parse_toml(text: str, source: str = "config") -> dict[str, Any]:
    """Parse TOML text into a dict; every problem is a :class:`ConfigError` starting with ``source``."""
    _check_structure(text, source)
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, and int-conversion limits (a 5,000-digit integer)
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except RecursionError:  # pragma: no cover - _check_structure bounds the nesting first
        raise ConfigError(f"{source}: invalid TOML: nested too deep") from None


def _read_text(path: Path) -> str:
    where = f"config file {path}"
    try:
        if path.is_dir():
            raise ConfigError(f"{where}: is a directory; expected a TOML file (e.g. examples/mlp.toml)")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_CONFIG_BYTES >> 20} MiB; a config is a short TOML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[:exc.start]
        line, column = before.count(b"\n") + 1, exc.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(f"{where}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line}, column "
                          f"{column}; save the file as UTF-8") from None
    return text.removeprefix("\ufeff")


# ---------------------------------------------------------------------- types and ranges
def _type_name(default: Any) -> str:
    if isinstance(default, list):
        return "a list of integers"
    return {bool: "a boolean (true or false)", int: "an integer", float: "a number",
            str: "a string"}.get(type(default), type(default).__name__)


def _check_text(path: str, value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{path}: {_short(value)} is not valid text (it holds undecodable bytes)") from None
    return value


def _check_type(path: str, value: Any, default: Any) -> Any:
    ok = False
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                value, ok = float(value), True
            except OverflowError:
                raise ConfigError(f"{path}: {_short(value)} is too large for a number") from None
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    else:
        ok = isinstance(value, str)
        if ok:
            _check_text(path, value)
    if not ok:
        raise ConfigError(f"{path}: expected {_type_name(default)}, got {_short(value)}")
    return value


def _check_ranges(cfg: dict[str, Any]) -> None:
    def need(cond: bool, path: str, value: Any, what: str) -> None:
        if not cond:
            raise ConfigError(f"{path}: {_short(value)} is out of range; expected {what}")

    r, t, m = cfg["run"], cfg["train"], cfg["model"]
    need(r["seed"] >= 0, "run.seed", r["seed"], "an integer >= 0")
    need(t["epochs"] >= 1, "train.epochs", t["epochs"], "an integer >= 1")
    need(t["batch_size"] >= 1, "train.batch_size", t["batch_size"], "an integer >= 1")
    need(t["early_stopping"] >= 0, "train.early_stopping", t["early_stopping"], "patience >= 0 (0 = off)")
    need(t["checkpoint_every"] >= 1, "train.checkpoint_every", t["checkpoint_every"], "an integer >= 1")
    need(t["monitor_every"] >= 0, "train.monitor_every", t["monitor_every"], "steps >= 0 (0 = no monitor)")
    need(0.0 <= m["dropout"] < 1.0, "model.dropout", m["dropout"], "a number in [0, 1)")
    need(all(h >= 1 for h in m["hidden"]), "model.hidden", m["hidden"], "positive layer widths")
    need(len(m["channels"]) >= 1 and all(c >= 1 for c in m["channels"]), "model.channels", m["channels"],
         "one or more positive channel counts")
    name = r["name"]
    need(bool(name) and "/" not in name and "\\" not in name and "\0" not in name and name not in (".", ".."),
         "run.name", name, "a non-empty folder name without '/' or '\\'")


# ---------------------------------------------------------------------- building (the one place)
def _toml_to_python(value: Any) -> Any:
    """TOML arrays become tuples (``betas = [0.9, 0.999]`` -> ``(0.9, 0.999)``); the rest is unchanged."""
    return tuple(value) if isinstance(value, list) else value


def _construct(table: str, label: str, factory: Callable[..., Any], first: Any, given: dict[str, Any],
               skip: str) -> Any:
    """``factory(first, **given)`` with the arguments checked against its signature; errors name the key."""
    signature = inspect.signature(factory).parameters
    params = {k: p for k, p in signature.items() if k != skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.values())
    kwargs = {}
    for key, value in given.items():
        if key == "name":
            continue
        if key not in params and not open_ended:
            raise ConfigError(f"{table}.{_name(key)}: unknown key for {label}{_suggest(key, list(params))}; "
                              f"valid: {', '.join(['name', *params])}")
        if isinstance(value, str):
            _check_text(f"{table}.{key}", value)
        kwargs[key] = _toml_to_python(value)
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        example = " ".join(f"--set {table}.{k}=..." for k in missing)
        raise ConfigError(f"{table}.{missing[0]}: required by {label}; set it in [{table}] ({example})")
    try:
        return factory(first, **kwargs)
    except (ValueError, TypeError) as exc:
        argument = getattr(exc, "argument", None)
        key = f"{table}.{argument}" if isinstance(argument, str) and argument else table
        raise ConfigError(f"{key}: {exc}") from None


def build_optimizer(table: dict[str, Any], params: list[Any]) -> Any:
    """The optimizer an ``[optimizer]`` table describes, over ``params``; ``ConfigError`` naming the key."""
    from trainlab import optim

    name = table.get("name", DEFAULTS["optimizer"]["name"])
    if not isinstance(name, str) or name not in optim.names:
        raise ConfigError(f"optimizer.name: unknown optimizer {_short(name)}"
                          f"{_suggest(str(name), list(optim.names))}; valid: {', '.join(optim.names)}")
    factory = optim.get(name)
    label = getattr(factory, "__name__", name)
    return _construct("optimizer", label, factory, params, table, skip="params")


def build_schedule(table: dict[str, Any], optimizer: Any) -> Any:
    """The learning-rate schedule a ``[schedule]`` table describes (None for ``"none"``)."""
    from trainlab import optim

    name = table.get("name", "none")
    if not isinstance(name, str) or name not in SCHEDULES:
        raise ConfigError(f"schedule.name: unknown schedule {_short(name)}{_suggest(str(name), list(SCHEDULES))}; "
                          f"valid: {', '.join(SCHEDULES)}")
    if SCHEDULES[name] is None:
        return None             # the other keys are ignored, so --set schedule.name="none" switches one off
    cls = getattr(optim, SCHEDULES[name])
    return _construct("schedule", f"the {name} schedule ({cls.__name__})", cls, optimizer, table, skip="optimizer")


#: torch.nn.init's names -> (torch's function, trainlab's initializer with the same distribution); torch's
#: defaults: a=0 and fan_in for kaiming, Glorot's fan_avg for xavier (trainlab's "xavier" is the seed's fan_in).
_TORCH_INITS = {"kaiming": ("kaiming_normal_", "he"), "kaiming_normal": ("kaiming_normal_", "he"),
                "kaiming_normal_": ("kaiming_normal_", "he"), "kaiming_uniform": ("kaiming_uniform_", "he_uniform"),
                "kaiming_uniform_": ("kaiming_uniform_", "he_uniform"), "xavier_normal": ("xavier_normal_", "glorot"),
                "xavier_normal_": ("xavier_normal_", "glorot"),
                "xavier_uniform_": ("xavier_uniform_", "glorot_uniform"), "normal_": ("normal_", "normal"),
                "orthogonal_": ("orthogonal_", "orthogonal"), "zeros_": ("zeros_", "zeros"),
                "ones_": ("ones_", "ones")}


def _check_init(name: str) -> None:
    from trainlab import init

    if name == "auto":
        return
    try:
        init.get(name)
    except (ValueError, TypeError) as exc:
        if name in _TORCH_INITS:
            torch_name, ours = _TORCH_INITS[name]
            hint = f"torch's {torch_name} is trainlab's {ours!r}: --set model.init=\"{ours}\""
        else:
            hint = "or 'auto': he before ReLU, xavier before tanh/sigmoid"
        raise ConfigError(f"model.init: {exc} ({hint})") from None


def _check_data_name(name: str) -> None:
    from trainlab import data

    if name.lower().endswith((".npz", ".csv")):
        return                      # a file: read (and checked row by row) when the run loads it
    key = name.strip().lower().replace("-", "_")
    valid = list(data.names())
    if key not in valid:
        raise ConfigError(f"data.name: unknown dataset {_short(name)}{_suggest(key, valid)}; valid: "
                          f"{', '.join(valid)}, or a path to a .npz or .csv file")


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults into ``config`` and check every key; returns a new, complete config.

    Checks the types and ranges of the fixed keys, then builds the optimizer and schedule
    on a dummy parameter, resolves the initializer and checks the dataset name (see the
    module docstring): a config that passes builds.

    Raises:
        ConfigError: naming the key and what is valid.
    """
    import numpy as np

    from trainlab.nn import Parameter

    if not isinstance(config, dict):
        raise ConfigError(f"config: expected a table, got {type(config).__name__}")
    out = copy.deepcopy(DEFAULTS)
    for table, values in config.items():
        if table not in DEFAULTS:
            raise ConfigError(f"{_name(table)}: unknown table{_suggest(table, list(DEFAULTS))}; "
                              f"valid: {', '.join(DEFAULTS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{table}: expected a table of keys, got {_short(values)}")
        free = table in ("optimizer", "schedule")
        for key, value in values.items():
            path = f"{table}.{_name(key)}"
            if key in DEFAULTS[table]:
                out[table][key] = _check_type(path, value, DEFAULTS[table][key])
            elif free:
                out[table][key] = copy.deepcopy(value)
            else:
                raise ConfigError(f"{path}: unknown key{_suggest(key, list(DEFAULTS[table]))}; "
                                  f"valid: {', '.join(DEFAULTS[table])}")
    for (table, key), choices in _CHOICES.items():
        if out[table][key] not in choices:
            raise ConfigError(f"{table}.{key}: {_short(out[table][key])} is not one of {', '.join(choices)}"
                              f"{_suggest(str(out[table][key]), list(choices))}")
    _check_ranges(out)
    _check_init(out["model"]["init"])
    _check_data_name(out["data"]["name"])
    optimizer = build_optimizer(out["optimizer"], [Parameter(np.zeros(1, dtype=np.float32))])
    build_schedule(out["schedule"], optimizer)
    return out


def config_warnings(config: dict[str, Any]) -> list[str]:
    """Valid settings that are almost certainly mistakes, one sentence each (``[]`` when none)."""
    found = []
    if config["optimizer"].get("lr") == 0:
        found.append("optimizer.lr = 0: no weight will change (every update is scaled by lr); the run only "
                     "measures the initial model. Set e.g. --set optimizer.lr=0.001")
    return found


def warn_about(config: dict[str, Any]) -> None:
    """Issue a :class:`ConfigWarning` for each of :func:`config_warnings` (the CLI prints one line each)."""
    for message in config_warnings(config):
        warnings.warn(message, ConfigWarning, stacklevel=2)


# ---------------------------------------------------------------------- files and overrides
def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> dict[str, Any]:
    """Read a TOML file (or start from the defaults), apply ``--set`` overrides, validate.

    Raises:
        ConfigError: the file is missing, a directory, too large, not UTF-8, not TOML, too
            deeply nested, or a key is invalid (see :func:`validate`).
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        raw = parse_toml(_read_text(path), f"config file {path}")
    for item in overrides:
        apply_override(raw, item)
    return validate(raw)


def apply_override(config: dict[str, Any], item: str) -> None:
    """Apply ``"table.key=value"`` (value parsed as TOML, else taken as a string) in place."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"--set {_short(item)}: expected TABLE.KEY=VALUE, e.g. optimizer.lr=0.01")
    dotted, text = item.split("=", 1)
    table, key = (part.strip() for part in dotted.split(".", 1))
    if not table or not key:
        raise ConfigError(f"--set {_short(item)}: expected TABLE.KEY=VALUE, e.g. optimizer.lr=0.01")
    try:
        value = parse_toml(f"v = {text.strip()}", f"--set {_name(dotted)}")["v"]
    except ConfigError:
        value = text.strip()
    config.setdefault(table, {})
    if not isinstance(config[table], dict):
        raise ConfigError(f"--set {_short(item)}: {_name(table)} is not a table")
    config[table][key] = value


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or c == "\x7f" else c)
                             for c in value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        raise ConfigError("config: TOML cannot hold None; leave the key out instead")
    raise ConfigError(f"config: cannot write a {type(value).__name__} to TOML")


def dumps(config: dict[str, Any]) -> str:
    """Write a config (tables of scalars and lists) as TOML that :func:`load_config` reads back."""
    lines = []
    for table, values in config.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml_value(v)}" for key, v in values.items() if v is not None]
        lines.append("")
    return "\n".join(lines)
