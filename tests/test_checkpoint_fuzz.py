"""Fuzz the checkpoint loader: random bytes, truncations, bit flips and crafted headers.

Every case is written to a file and given to ``Trainer.resume`` in a sandboxed child process
(:mod:`fuzzing`: address space limited to 1.5 GiB, 20 s per call, restarted after a crash),
through :func:`checkpoint_files.resume_fresh`, which also checks that a refused load names the
file and changed nothing (model, optimizer, generators, schedule, callbacks, trainer) and that
an accepted one holds the file's tensors as an independent reader (``safetensors``) sees them.
Every case must end in ``CheckpointError`` or such a correct load: never another exception,
a ``MemoryError``, a hang or a crash. Bit flips and truncations must always be refused.

``TRAINLAB_FUZZ_LOG=FILE`` appends one line per case (test, outcome, problem) for a summary.
Examples per kind: ``TRAINLAB_FUZZ_EXAMPLES`` (:data:`fuzzing.DEFAULT_EXAMPLES` = 150 in CI;
``TRAINLAB_FUZZ_EXAMPLES=5000 python -m pytest tests/test_checkpoint_fuzz.py`` for a nightly run).
"""

from __future__ import annotations

import itertools
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import checkpoint_files as cf
from fuzzing import DEFAULT_EXAMPLES, Sandbox, flip_bit, fuzz_settings
from trainlab.checkpoint import CheckpointError

TARGET = "checkpoint_files:resume_fresh"


@pytest.fixture(scope="module")
def box():
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def good(folder):
    """A real trainer checkpoint (3 epochs: optimizer state, schedule, callbacks, history, RNGs)."""
    return cf.trained_checkpoint(folder / "good.safetensors", epochs=3)


_counter = itertools.count()


def _outcome(box, folder: Path, data: bytes, context: str):
    path = folder / f"case{next(_counter) % 4}.safetensors"
    path.write_bytes(data)
    out = box.call(TARGET, str(path))
    if os.environ.get("TRAINLAB_FUZZ_LOG"):   # one line per case: test, outcome, the message's problem
        with open(os.environ["TRAINLAB_FUZZ_LOG"], "a") as log:
            problem = out.message.split(": ", 1)[-1][:60].replace("\n", " ")
            log.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}\t{out.status}\t{problem}\n")
    out.check(CheckpointError, context=f"{context} ({len(data)} bytes)")
    return out


def _decoded(box, folder: Path, data: bytes, context: str) -> None:
    """A sealed crafted file: it must get past the digest (never "checksum mismatch")."""
    out = _outcome(box, folder, data, context)
    assert "checksum" not in out.message, f"{context}: the crafted file did not reach the decoder"


def _refused(box, folder: Path, data: bytes, context: str) -> None:
    out = _outcome(box, folder, data, context)
    assert out.raised(CheckpointError), f"{context}: a damaged file was accepted"


def test_the_good_file_loads(box, folder, good):
    assert _outcome(box, folder, good, "good").summary == "str"


# ------------------------------------------------------------------------------- random bytes
def _with_length(n: int, body: bytes) -> bytes:
    return struct.pack("<Q", n) + body


def _sealed_garbage(header: bytes, data: bytes) -> bytes:
    """Random header bytes behind a valid digest prefix, sealed: they reach the JSON parser."""
    head = cf.PREFIX + b"0" * 64 + header
    return cf.seal(struct.pack("<Q", len(head)) + head + data)


random_files = st.one_of(
    st.binary(max_size=2048),
    st.builds(_with_length, st.integers(0, 2 ** 64 - 1), st.binary(max_size=2048)),
    st.builds(lambda body: _with_length(len(body), body), st.binary(max_size=2048)),
    st.builds(_sealed_garbage, st.binary(max_size=512), st.binary(max_size=256)),
)


@fuzz_settings()
@given(data=random_files)
def test_random_bytes(box, folder, data):
    _outcome(box, folder, data, "random bytes")


# ------------------------------------------------------------------------------- truncation
@fuzz_settings()
@given(cut=st.floats(0, 1, exclude_max=True), reseal=st.booleans())
def test_truncation(box, folder, good, cut, reseal):
    """Cut anywhere; resealed cuts in the tensor data get past the digest to the size checks."""
    n = int(cut * len(good))
    data = good[:n]
    if reseal and n >= cf.DIGEST_AT + 64:
        data = cf.seal(data)
    _refused(box, folder, data, f"cut at {n}")


# ------------------------------------------------------------------------------- bit flips
@fuzz_settings()
@given(bits=st.lists(st.integers(0, 10 ** 9), min_size=1, max_size=16, unique=True))
def test_bit_flips(box, folder, good, bits):
    data = good
    bits = sorted({b % (8 * len(good)) for b in bits})
    for bit in bits:
        data = flip_bit(data, bit)
    _refused(box, folder, data, f"bits {bits}")


# ------------------------------------------------------------------------------- crafted headers
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats() | st.text(max_size=12)
    | st.sampled_from([{"__tensor__": "0.weight"}, {"__tensor__": "optim/state/0/exp_avg"}, {"__tensor__": 3},
                       {"__dict__": []}, {"__dict__": [[1]]}, {"__dict__": 7}, [], {}]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4)
    | st.builds(lambda pairs: {"__dict__": pairs}, st.lists(st.tuples(st.text(max_size=6) | st.integers(-3, 9),
                                                                      children).map(list), max_size=4)),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of dict keys and list indices) into a parsed JSON value."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _replace(node: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if rest:
        node[head] = _replace(node[head], rest, value, delete)
    elif delete:
        del node[head]
    else:
        node[head] = value
    return node


def _mutated(tree: Any, pick: int, value: Any, delete: bool) -> Any:
    paths = _paths(tree)
    path = paths[pick % len(paths)]
    return _replace(json.loads(json.dumps(tree)), path, value, delete and bool(path))


@fuzz_settings()
@given(edits=st.lists(st.tuples(st.integers(0, 10 ** 6), json_values, st.booleans()), min_size=1, max_size=3))
def test_crafted_metadata(box, folder, good, edits):
    """Replace or delete random parts of the trainlab metadata (optimizer, meta, module_rngs); sealed."""
    table, trainlab, data = cf.split(good)
    for pick, value, delete in edits:
        trainlab = _mutated(trainlab, pick, value, delete)
    _decoded(box, folder, cf.build(table, trainlab, data), f"edits {edits}")


table_values = st.one_of(
    json_values,
    st.sampled_from(["F32", "F64", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "x"]),
    st.lists(st.integers(-2, 2 ** 63), max_size=4),
    st.lists(st.integers(0, 300), min_size=2, max_size=2),
)


@fuzz_settings()
@given(edits=st.lists(st.tuples(st.integers(0, 10 ** 6), table_values, st.booleans()), min_size=1, max_size=3),
       tail=st.binary(max_size=64))
def test_crafted_tensor_table(box, folder, good, edits, tail):
    """Replace or delete random parts of the tensor table (dtypes, shapes, offsets, names); sealed."""
    table, trainlab, data = cf.split(good)
    for pick, value, delete in edits:
        table = _mutated(table, pick, value, delete)
    if not isinstance(table, dict):
        table = {"x": table}
    _decoded(box, folder, cf.build(table, trainlab, data + tail), f"edits {edits}, tail {tail!r}")


@fuzz_settings(examples=max(20, fuzz_settings().max_examples // 10))   # 20 in CI: each is up to 600 kB
@given(depth=st.integers(50, 300_000), where=st.sampled_from(["header", "metadata", "meta"]))
def test_deep_nesting(box, folder, good, depth, where):
    table, trainlab, data = cf.split(good)
    deep = "[" * depth + "]" * depth
    if where == "header":
        raw = _sealed_garbage(b'","trainlab":"x"},"a":' + deep.encode() + b"}", b"")
    elif where == "metadata":
        raw = cf.build(table, None, data, trainlab_text='{"format":"trainlab-checkpoint/2","meta":' + deep + "}")
    else:
        text = json.dumps(trainlab, separators=(",", ":")).replace('["epoch",3]', '["epoch",' + deep + "]", 1)
        raw = cf.build(table, None, data, trainlab_text=text)
    _refused(box, folder, raw, f"{depth} deep in the {where}")


def test_a_well_formed_file_larger_than_memory_is_refused_without_reading_it_whole(folder, good):
    """Its table declares a tensor larger than the child's address-space limit and the (sparse)
    file holds it, but the digest is wrong: refused after hashing in pieces, never read whole.
    CI: a 256 MiB tensor under a 192 MiB limit; nightly (more examples): 4 GiB under 1.5 GiB."""
    nightly = fuzz_settings().max_examples > DEFAULT_EXAMPLES
    size, memory = (4 << 30, 1536 << 20) if nightly else (256 << 20, 192 << 20)
    table, trainlab, data = cf.split(good)
    table["meta/huge"] = {"dtype": "U8", "shape": [size], "data_offsets": [len(data), len(data) + size]}
    cf.set_meta(trainlab, "huge", {"__tensor__": "meta/huge"}, encoded=True)
    raw = cf.build(table, trainlab, data)
    path = folder / "huge.safetensors"
    path.write_bytes(raw)
    with open(path, "r+b") as fh:
        fh.truncate(len(raw) + size)
    with Sandbox(memory=memory, timeout=300) as small:
        out = small.call(TARGET, str(path))
    out.check(CheckpointError, context=f"{size} bytes")
    assert out.raised(CheckpointError) and "checksum mismatch" in out.message, out.describe()
