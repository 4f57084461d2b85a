"""Fuzzing the config loader: random bytes, truncations, bit flips and crafted deep structures.

Every case runs ``trainlab.config.load_config`` on a file in the fuzz sandbox (a child
process under a memory limit, with a deadline per call): it must end in a loaded config
or a ``ConfigError``, never another exception, a hang or ``MemoryError``. The number of
examples per test is ``TRAINLAB_FUZZ_EXAMPLES`` (see ``tests/fuzzing.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import Sandbox, flip_bit, fuzz_settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RICH = b"""# every table, several value kinds
[run]
name = "fuzz"
seed = 7
out = "runs"

[data]
name = "digits"
label_column = "label"

[model]
kind = "mlp"
hidden = [32, 16]
channels = [8]
activation = "tanh"
batchnorm = false
dropout = 0.25
init = "xavier"

[optimizer]
name = "adam"
lr = 3e-3
betas = [0.9, 0.999]
eps = 1e-8
amsgrad = true

[schedule]
name = "cosine"
T_max = 10
eta_min = 0.0

[train]
epochs = 3
batch_size = 32
early_stopping = 2
checkpoint_every = 1
monitor_every = 0
"""
SEEDS = [RICH, (EXAMPLES / "mlp.toml").read_bytes(), (EXAMPLES / "cnn.toml").read_bytes()]
TARGET = "trainlab.config:load_config"


@pytest.fixture(scope="module")
def box():
    with Sandbox(timeout=10.0) as sandbox:
        yield sandbox


def check(box, tmp_path, data: bytes, what: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    box.call(TARGET, str(path)).check("ConfigError", context=f"{what}: {data[:120]!r}")


def test_the_seed_configs_load(box, tmp_path):
    for seed in SEEDS:
        path = tmp_path / "seed.toml"
        path.write_bytes(seed)
        assert box.call(TARGET, str(path)).status == "ok"


@fuzz_settings()
@given(data=st.binary(max_size=4096))
def test_random_bytes(box, tmp_path, data):
    check(box, tmp_path, data, "random bytes")


@fuzz_settings()
@given(seed=st.sampled_from(SEEDS), cut=st.floats(0, 1))
def test_truncations(box, tmp_path, seed, cut):
    check(box, tmp_path, seed[:int(cut * len(seed))], "truncated")


@fuzz_settings()
@given(seed=st.sampled_from(SEEDS), bits=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=3))
def test_bit_flips(box, tmp_path, seed, bits):
    data = seed
    for b in bits:
        data = flip_bit(data, int(b * 8 * len(data)))
    check(box, tmp_path, data, "bit flips")


def crafted(kind: str, depth: int, filler: str) -> bytes:
    """A config whose structure is ``depth`` deep in one of several ways."""
    if kind == "array":
        body = "[model]\nhidden = " + "[" * depth + filler + "]" * depth
    elif kind == "open_array":
        body = "x = " + "[" * depth
    elif kind == "inline":
        body = "x = " + "{a = " * depth + filler + "}" * depth
    elif kind == "dotted":
        body = "a" + ".a" * depth + f" = {filler}"
    elif kind == "header":
        body = "[" + ".".join(["t"] * depth) + "]\nk = 1"
    elif kind == "array_of_tables":
        body = "[[" + ".".join(["t"] * depth) + "]]\nk = 1"
    elif kind == "inline_dotted":
        body = "x = {" + ".".join(["k"] * depth) + f" = {filler}}}"
    elif kind == "mixed":
        body = "x = " + "[{a = " * depth + filler + "}]" * depth
    elif kind == "string":
        body = '[run]\nname = "' + "\\u00e9" * depth + '"'
    elif kind == "many_keys":
        body = "[optimizer]\n" + "".join(f"k{i} = {i}\n" for i in range(depth))
    elif kind == "quoted_dotted":
        body = ".".join(['"a"'] * depth) + " = 1"
    else:  # "number"
        body = "[train]\nepochs = " + "9" * depth
    return body.encode()


@fuzz_settings()
@given(kind=st.sampled_from(["array", "open_array", "inline", "dotted", "header", "array_of_tables",
                             "inline_dotted", "mixed", "string", "many_keys", "quoted_dotted", "number"]),
       depth=st.one_of(st.integers(0, 40), st.integers(40, 200_000), st.sampled_from([50_000, 100_000])),
       filler=st.sampled_from(["1", '"x"', "1.5", "true", "nan", "-inf", "1979-05-27", "[]", "{}", ""]))
def test_crafted_deep_structures(box, tmp_path, kind, depth, filler):
    check(box, tmp_path, crafted(kind, depth, filler), f"{kind} x {depth}")
