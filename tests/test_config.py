"""Configs: hostile files end in a ConfigError naming the file or key; validate() and build agree."""

import tomllib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz_settings
from trainlab import init
from trainlab.config import (
    MAX_KEY_DEPTH,
    MAX_NESTING,
    ConfigError,
    apply_override,
    config_warnings,
    dumps,
    load_config,
    parse_toml,
    validate,
)
from trainlab.run import build


def write(tmp_path, data, name="c.toml"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def test_non_utf8_bytes_name_the_file_line_and_column(tmp_path):
    path = write(tmp_path, b'[run]\nname = "ok"\n[model]\nactivation = "r\xffelu"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"config file {path}: not UTF-8 text: byte 0xff at line 4, column 16; "
                               "save the file as UTF-8")


def test_a_byte_order_mark_is_accepted(tmp_path):
    assert load_config(write(tmp_path, b"\xef\xbb\xbf[train]\nepochs = 3\n"))["train"]["epochs"] == 3


@pytest.mark.parametrize("text, message", [
    ("x = " + "[" * 100_000 + "]" * 100_000, f"line 1: arrays or inline tables nested more than {MAX_NESTING} deep"),
    ("x = " + "{a = " * 100_000, "line 1: arrays or inline tables nested more than"),
    ("a" + ".a" * 50_000 + " = 1", f"line 1: a dotted key with more than {MAX_KEY_DEPTH} parts"),
    ("[train]\n[" + "a." * 50_000 + "a]", f"line 2: a dotted key with more than {MAX_KEY_DEPTH} parts"),
    ("x = {" + "a." * 50_000 + "b = 1}", "line 1: a dotted key with more than"),
])
def test_deep_nesting_and_deep_dotted_keys_are_refused_before_parsing(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"config file {path}: {message}"), str(info.value)


def test_the_structure_scan_ignores_strings_comments_and_floats():
    text = ('s = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.h.i.j"  # [[[[.\n'
            "m = '''\n" + "[" * 40 + "\n'''\n"
            "f = [" + ", ".join(["0.5"] * 40) + "]\n"
            "t = {a.b = 1, c = {d = [1, {e.f = 2}]}}\n")
    assert parse_toml(text) == tomllib.loads(text)
    at_limit = "a" + ".a" * (MAX_KEY_DEPTH - 1) + " = 1\nx = " + "[" * MAX_NESTING + "]" * MAX_NESTING
    assert parse_toml(at_limit) == tomllib.loads(at_limit)


def test_paths_that_are_not_config_files(tmp_path):
    with pytest.raises(ConfigError, match=r"is a directory; expected a TOML file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=r"no such file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"larger than 1 MiB"):
        load_config(write(tmp_path, "# " + "x" * (1 << 20)))
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 1"):
        load_config(write(tmp_path, "[run\n"))
    with pytest.raises(ConfigError, match=r"invalid TOML: Exceeds the limit"):
        load_config(write(tmp_path, "[run]\nseed = " + "9" * 5000))


@pytest.mark.parametrize("override, message", [
    ('run.seed="1"', "run.seed: expected an integer, got '1'"),
    ("run.name=3", "run.name: expected a string, got 3"),
    ("train.epochs=2.5", "train.epochs: expected an integer, got 2.5"),
    ("train.batch_size=true", "train.batch_size: expected an integer, got True"),
    ('model.batchnorm="yes"', "model.batchnorm: expected a boolean (true or false), got 'yes'"),
    ("model.hidden=[1, 2.5]", "model.hidden: expected a list of integers, got [1, 2.5]"),
    ("model.hidden=7", "model.hidden: expected a list of integers, got 7"),
    ('model.dropout="0.1"', "model.dropout: expected a number, got '0.1'"),
    ("model.dropout=" + "9" * 400, "model.dropout: 99"),
    ('optimizer.lr="fast"', "optimizer.lr: expected a number, got 'fast'"),
    ("data.name=[1]", "data.name: expected a string, got [1]"),
    ("run.seed=-1", "run.seed: -1 is out of range; expected an integer >= 0"),
    ("data={a=1}", "--set 'data={a=1}': expected TABLE.KEY=VALUE"),
])
def test_wrong_value_types_name_the_key_and_the_expected_type(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value).startswith(message), str(info.value)
    assert len(str(info.value)) < 300


def test_a_table_that_is_not_a_table(tmp_path):
    with pytest.raises(ConfigError, match=r"^train: expected a table of keys, got 3"):
        load_config(write(tmp_path, "train = 3\n"))


# The cases where validate() passed and the build then failed: each is refused by validate()
@pytest.mark.parametrize("overrides, key, words", [
    (["optimizer.betas=[0.9]"], "optimizer", "betas"),
    (["optimizer.betas='ab'"], "optimizer", "betas"),
    (["optimizer.betas=[0.9, 1.5]"], "optimizer", "betas"),
    (['optimizer.name="sgd"', "optimizer.momentum=1.5"], "optimizer", "momentum"),
    (['optimizer.name="sgd"', "optimizer.nesterov=true"], "optimizer", "nesterov"),
    (['optimizer.name="sgd"', 'optimizer.lr="x"'], "optimizer.lr", "number"),
    (["optimizer.lr=-1"], "optimizer", "lr"),
    (['schedule.name="cosine"'], "schedule.T_max", "required by the cosine schedule"),
    (['schedule.name="step"', "schedule.step_size=0"], "schedule", "step_size"),
    (['schedule.name="step"', "schedule.step_size=2", "schedule.gama=0.5"], "schedule.gama", "did you mean 'gamma'"),
    (['schedule.name="plateau"', 'schedule.mode="upward"'], "schedule", "mode"),
    (['data.name="cifar10"'], "data.name", "unknown dataset 'cifar10'"),
    (['data.name="digit"'], "data.name", "did you mean 'digits'"),
    (['model.init="xavier_uniform_"'], "model.init", "torch's xavier_uniform_ is trainlab's 'glorot_uniform'"),
    (['model.init="hee"'], "model.init", "unknown initializer"),
])
def test_validate_refuses_what_the_build_would_refuse(overrides, key, words):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    text = str(info.value)
    assert text.startswith(key) and words in text, text


def test_constructor_errors_carry_the_argument_name_into_the_key(monkeypatch):
    from trainlab import optim

    class Named(ValueError):
        argument = "betas"

    def adam(params, **kwargs):
        raise Named("Adam: betas must be a pair")

    monkeypatch.setitem(optim._REGISTRY, "adam", adam)
    with pytest.raises(ConfigError, match=r"^optimizer\.betas: Adam: betas must be a pair$"):
        validate({"optimizer": {"betas": [0.9]}})


@pytest.mark.parametrize("name, torch_name, ours", [("kaiming", "kaiming_normal_", "he"),
                                                     ("kaiming_uniform_", "kaiming_uniform_", "he_uniform"),
                                                     ("xavier_normal", "xavier_normal_", "glorot")])
def test_torch_init_names_get_trainlab_s_name_as_a_hint(name, torch_name, ours):
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"model.init={name!r}"])
    text = str(info.value)
    assert text.startswith(f"model.init: init.get: unknown initializer {name!r}")
    assert text.endswith(f"(torch's {torch_name} is trainlab's {ours!r}: --set model.init=\"{ours}\")"), text
    assert init.get(ours)                                     # the hint names a real initializer


def test_schedule_none_ignores_the_keys_of_a_switched_off_schedule():
    cfg = load_config(None, ['schedule.name="none"', "schedule.T_max=5"])
    assert cfg["schedule"] == {"name": "none", "T_max": 5}


def test_lr_zero_is_valid_but_warned_about():
    assert config_warnings(load_config(None, ["optimizer.lr=0"]))[0].startswith("optimizer.lr = 0: no weight")
    assert config_warnings(load_config(None)) == []


def test_strings_round_trip_through_dumps(tmp_path):
    cfg = load_config(None, ['data.label_column="a \\"b\\" \\\\ \\t \\u0001 é"'])
    assert cfg["data"]["label_column"] == 'a "b" \\ \t \x01 é'
    path = write(tmp_path, dumps(cfg))
    assert load_config(path) == cfg
    with pytest.raises(ConfigError, match=r"run.name: .* is not valid text"):
        validate({"run": {"name": "bad\udcff"}})


def test_apply_override_parses_toml_or_takes_a_string():
    cfg = {}
    apply_override(cfg, "data.name=moons")
    apply_override(cfg, "optimizer.betas=[0.8, 0.9]")
    apply_override(cfg, "model.hidden=[" + "[" * 1000)  # too deep to parse: taken as text, refused by type
    assert cfg["data"]["name"] == "moons" and cfg["optimizer"]["betas"] == [0.8, 0.9]
    with pytest.raises(ConfigError, match="model.hidden: expected a list of integers"):
        validate(cfg)


# ----------------------------------------------------------------- validation and building agree
OPTIMIZER_VALUES = st.sampled_from([0.0, 0.5, 0.9, 0.999, 1.0, 1.5, -0.1, 2, True, "0.9", "ab", [0.9], [0.9, 0.99],
                                    [0.9, 1.0], [0.5, 0.5, 0.5], {"a": 1}])


@fuzz_settings(examples=60)
@given(name=st.sampled_from(["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "adam_seed"]),
       args=st.dictionaries(st.sampled_from(["lr", "momentum", "betas", "alpha", "eps", "weight_decay", "nesterov",
                                             "amsgrad", "lr_decay", "centered"]), OPTIMIZER_VALUES, max_size=3),
       schedule=st.sampled_from([{}, {"name": "cosine"}, {"name": "cosine", "T_max": 3},
                                 {"name": "step", "step_size": 1, "gamma": 0.5}, {"name": "step", "gamma": 0.5},
                                 {"name": "exponential", "gamma": 2}, {"name": "warmup", "total_iters": 0},
                                 {"name": "plateau", "factor": 1.5}, {"name": "plateau", "patience": -1}]))
def test_a_config_that_validates_builds(name, args, schedule):
    """validate() either refuses with a ConfigError or the run's own build succeeds (never a raw error)."""
    raw = {"data": {"name": "blobs"}, "model": {"hidden": [4]}, "optimizer": {"name": name, **args},
           "schedule": schedule}
    try:
        cfg = validate(raw)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    splits, model, optimizer, sched = build(cfg)
    assert optimizer.param_groups[0]["lr"] == cfg["optimizer"]["lr"]
    assert np.isfinite(splits.train.x).all() and (sched is None) == (cfg["schedule"]["name"] == "none")
