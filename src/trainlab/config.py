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

Errors name the key (``optimizer.lr``) and what is valid; an unknown key suggests the
nearest known one.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "DEFAULTS", "load_config", "validate", "apply_override", "dumps", "SCHEDULES"]


class ConfigError(ValueError):
    """A configuration key is unknown, of the wrong type, or out of range."""


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


def _suggest(key: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list"}.get(type(value), type(value).__name__)


def _check_type(path: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{path}: expected {_type_name(default)}, got {value!r}")
    return value


def _signature_defaults(cls: Any, skip: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name, p in inspect.signature(cls).parameters.items():
        if name in ("self", *skip) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[name] = None if p.default is inspect.Parameter.empty else p.default
    return out


def _check_callable_args(table: str, cls: Any, given: dict[str, Any], skip: tuple[str, ...]) -> None:
    valid = _signature_defaults(cls, skip)
    for key, value in given.items():
        if key == "name":
            continue
        if key not in valid:
            owner = getattr(cls, "__name__", table)
            raise ConfigError(f"{table}.{key}: unknown key for {owner}{_suggest(key, list(valid))}; "
                              f"valid: {', '.join(['name', *valid])}")
        default = valid[key]
        if default is not None and not isinstance(default, tuple):
            _check_type(f"{table}.{key}", value, default)


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults into ``config`` and check every key; returns a new, complete config.

    Raises:
        ConfigError: naming the key and what is valid.
    """
    from trainlab import optim

    if not isinstance(config, dict):
        raise ConfigError(f"config: expected a table, got {type(config).__name__}")
    out = copy.deepcopy(DEFAULTS)
    for table, values in config.items():
        if table not in DEFAULTS:
            raise ConfigError(f"{table}: unknown table{_suggest(table, list(DEFAULTS))}; "
                              f"valid: {', '.join(DEFAULTS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{table}: expected a table of keys, got {values!r}")
        free = table in ("optimizer", "schedule")
        for key, value in values.items():
            path = f"{table}.{key}"
            if key in DEFAULTS[table]:
                out[table][key] = _check_type(path, value, DEFAULTS[table][key])
            elif free:
                out[table][key] = value
            else:
                raise ConfigError(f"{path}: unknown key{_suggest(key, list(DEFAULTS[table]))}; "
                                  f"valid: {', '.join(DEFAULTS[table])}")
    for (table, key), choices in _CHOICES.items():
        if out[table][key] not in choices:
            raise ConfigError(f"{table}.{key}: {out[table][key]!r} is not one of {', '.join(choices)}"
                              f"{_suggest(str(out[table][key]), list(choices))}")
    _check_ranges(out)
    name = out["optimizer"]["name"]
    if name not in optim.names:
        raise ConfigError(f"optimizer.name: unknown optimizer {name!r}{_suggest(name, list(optim.names))}; "
                          f"valid: {', '.join(optim.names)}")
    _check_callable_args("optimizer", optim.get(name), out["optimizer"], ("params",))
    sched = out["schedule"]["name"]
    if sched not in SCHEDULES:
        raise ConfigError(f"schedule.name: unknown schedule {sched!r}{_suggest(sched, list(SCHEDULES))}; "
                          f"valid: {', '.join(SCHEDULES)}")
    if SCHEDULES[sched]:
        _check_callable_args("schedule", getattr(optim, SCHEDULES[sched]), out["schedule"], ("optimizer",))
    return out


def _check_ranges(cfg: dict[str, Any]) -> None:
    def need(cond: bool, path: str, value: Any, what: str) -> None:
        if not cond:
            raise ConfigError(f"{path}: {value!r} is out of range; expected {what}")

    t, m, o = cfg["train"], cfg["model"], cfg["optimizer"]
    need(t["epochs"] >= 1, "train.epochs", t["epochs"], "an integer >= 1")
    need(t["batch_size"] >= 1, "train.batch_size", t["batch_size"], "an integer >= 1")
    need(t["early_stopping"] >= 0, "train.early_stopping", t["early_stopping"], "patience >= 0 (0 = off)")
    need(t["checkpoint_every"] >= 1, "train.checkpoint_every", t["checkpoint_every"], "an integer >= 1")
    need(t["monitor_every"] >= 0, "train.monitor_every", t["monitor_every"], "steps >= 0 (0 = no monitor)")
    need(0.0 <= m["dropout"] < 1.0, "model.dropout", m["dropout"], "a number in [0, 1)")
    need(all(h >= 1 for h in m["hidden"]), "model.hidden", m["hidden"], "positive layer widths")
    need(len(m["channels"]) >= 1 and all(c >= 1 for c in m["channels"]), "model.channels", m["channels"],
         "one or more positive channel counts")
    lr = o["lr"]
    need(isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0, "optimizer.lr", lr,
         "a finite number >= 0")
    name = cfg["run"]["name"]
    need(bool(name) and "/" not in name and name not in (".", ".."), "run.name", name,
         "a non-empty folder name without '/'")


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> dict[str, Any]:
    """Read a TOML file (or start from the defaults), apply ``--set`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    for item in overrides:
        apply_override(raw, item)
    return validate(raw)


def apply_override(config: dict[str, Any], item: str) -> None:
    """Apply ``"table.key=value"`` (value parsed as TOML, else taken as a string) in place."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"--set {item!r}: expected TABLE.KEY=VALUE, e.g. optimizer.lr=0.01")
    dotted, text = item.split("=", 1)
    table, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    config.setdefault(table, {})
    if not isinstance(config[table], dict):
        raise ConfigError(f"--set {item!r}: {table} is not a table")
    config[table][key] = value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
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
