"""Checkpoints: round trips, atomic writes, corruption detection, no code execution, torch interop."""

import json
import os
import re
import struct
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

import checkpoint_files as cf
from checkpoint_files import DIGEST_AT, PREFIX, seal
from fuzzing import flip_bit
from trainlab import checkpoint, models, nn, optim
from trainlab.checkpoint import CheckpointError


def make(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, rng=rng, dtype=dtype), nn.BatchNorm2d(3, dtype=dtype),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(48, 10, rng=rng, dtype=dtype),
                          nn.BatchNorm1d(10, dtype=dtype), nn.Tanh(), nn.Dropout(0.1, rng=rng),
                          nn.Linear(10, 4, rng=rng, dtype=dtype))
    return model, optim.Adam(model.parameters(), lr=1e-2, amsgrad=True)


def train_steps(model, opt, n, seed=1):
    rng = np.random.default_rng(seed)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(n):
        x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
        loss_fn(model(x), rng.integers(0, 4, 8))
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()


def test_round_trip_restores_model_optimizer_and_meta(tmp_path):
    model, opt = make()
    train_steps(model, opt, 3)
    rng = np.random.default_rng(5)
    rng.random(7)
    path = checkpoint.save(tmp_path / "c.safetensors", model, opt, epoch=3, rng=checkpoint.rng_state(rng),
                           config={"lr": 0.01, "hidden": [1, 2]}, note="x", extra=np.arange(3))
    model2, opt2 = make(seed=9)
    meta = checkpoint.load(path, model2, opt2)
    assert meta["epoch"] == 3 and meta["config"] == {"lr": 0.01, "hidden": [1, 2]} and meta["note"] == "x"
    np.testing.assert_array_equal(meta["extra"], np.arange(3))
    rng2 = np.random.default_rng(0)
    checkpoint.set_rng_state(rng2, meta["rng"])
    assert rng2.random() == rng.random()
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=k)
        assert a.dtype == b.dtype
    # continuing both gives identical parameters bit for bit
    train_steps(model, opt, 2, seed=4)
    train_steps(model2, opt2, 2, seed=4)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_interrupted_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    model, opt = make()
    path = tmp_path / "last.safetensors"
    checkpoint.save(path, model, opt, epoch=1)
    before = path.read_bytes()
    train_steps(model, opt, 2)
    real_fsync = checkpoint.os.fsync

    def crash(fd):
        raise OSError("simulated crash mid-write")

    monkeypatch.setattr(checkpoint.os, "fsync", crash)
    with pytest.raises(OSError, match="simulated crash"):
        checkpoint.save(path, model, opt, epoch=2)
    monkeypatch.setattr(checkpoint.os, "fsync", real_fsync)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temp file left behind
    fresh, fresh_opt = make(seed=3)
    assert checkpoint.load(path, fresh, fresh_opt)["epoch"] == 1


def test_interrupted_while_writing_bytes(tmp_path, monkeypatch):
    model, opt = make()
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, model, opt, epoch=1)
    before = path.read_bytes()

    class Exploding:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise KeyboardInterrupt("power cut")

    real_fdopen = checkpoint.os.fdopen
    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode, **kw: Exploding(real_fdopen(fd, mode, **kw)))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, model, opt, epoch=2)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("damage", ["truncate_half", "truncate_header", "flip_data_bit", "flip_header", "empty"])
def test_damaged_file_raises_clear_error(tmp_path, damage):
    model, opt = make()
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, model, opt, epoch=1)
    raw = bytearray(path.read_bytes())
    (header_len,) = struct.unpack("<Q", raw[:8])
    if damage == "truncate_half":
        raw = raw[: len(raw) // 2]
    elif damage == "truncate_header":
        raw = raw[:20]
    elif damage == "flip_data_bit":
        raw[8 + header_len + 100] ^= 0x04
    elif damage == "flip_header":
        raw[8 + 30] ^= 0x20
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    fresh, fresh_opt = make(seed=2)
    before = fresh.state_dict()
    with pytest.raises(CheckpointError, match=str(path.name)):
        checkpoint.load(path, fresh, fresh_opt)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_loading_never_executes_code(tmp_path):
    """A file whose metadata holds a pickle payload is parsed as text, never unpickled."""
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = pickle.dumps(Evil()).hex()
    model, opt = make()
    path = checkpoint.save(tmp_path / "c.safetensors", model, opt, payload=payload)
    meta = checkpoint.load(path, model, opt)
    assert meta["payload"] == payload and not marker.exists()
    src = open(checkpoint.__file__).read()
    assert "pickle" not in src.replace("never pickle", "").replace("Never pickle", "")


def test_wrong_model_is_refused_and_left_unchanged(tmp_path):
    model, opt = make()
    path = checkpoint.save(tmp_path / "c.safetensors", model, opt)
    other = models.mlp(64, [5], 3, rng=np.random.default_rng(0))
    before = other.state_dict()
    with pytest.raises(CheckpointError, match="does not fit"):
        checkpoint.load(path, other)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.load(tmp_path / "missing.safetensors", model)


def test_file_layout_and_digest_as_documented(tmp_path):
    """The header starts with the digest; the digest is the SHA-256 of the file with its digits zeroed."""
    from safetensors.numpy import load_file

    model, opt = make()
    train_steps(model, opt, 1)
    extras = {"f16": np.arange(5, dtype=np.float16), "flags": np.array([True, False]),
              "u8": np.arange(3, dtype=np.uint8), "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
              "empty": np.zeros((0, 4)), "scalar": np.array(2.5),
              "big_endian": np.arange(3, dtype=">f8"), "strided": np.arange(10.0)[::3]}
    path = checkpoint.save(tmp_path / "c.safetensors", model, opt, epoch=1, extras=extras)
    raw = path.read_bytes()
    assert raw[8:DIGEST_AT] == PREFIX and checkpoint.DIGEST_OFFSET == DIGEST_AT == 44
    assert seal(raw) == raw                                   # the digest is exactly the documented one
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and n < len(raw)
    header = json.loads(raw[8:8 + n])
    assert list(header["__metadata__"]) == ["trainlab.sha256", "trainlab"]
    meta = json.loads(header["__metadata__"]["trainlab"])
    assert meta["format"] == "trainlab-checkpoint/2" and set(meta) == {"format", "optimizer", "meta", "module_rngs"}
    assert "0.weight" in header and "1.num_batches_tracked" in header
    assert any(k.startswith("optim/") for k in header)
    # an independent reader sees the same tensors, and ours gives back what was saved
    ours, _ = checkpoint.read(path)
    theirs = load_file(str(path))
    assert set(ours) == set(theirs)
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape, key
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
        assert ours[key].flags.writeable and ours[key].flags.aligned, key
    fresh, fresh_opt = make(seed=4)
    back = checkpoint.load(path, fresh, fresh_opt)["extras"]
    for key, value in extras.items():
        assert back[key].dtype == value.dtype.newbyteorder("=") and back[key].shape == value.shape, key
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_weights_load_into_torch_through_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    model, opt = make(dtype=np.float64)
    train_steps(model, opt, 2)
    path = checkpoint.save_weights(tmp_path / "model.safetensors", model)
    t = torch.nn
    twin = t.Sequential(t.Conv2d(1, 3, 3, padding=1), t.BatchNorm2d(3), t.ReLU(), t.MaxPool2d(2), t.Flatten(),
                        t.Linear(48, 10), t.BatchNorm1d(10), t.Tanh(), t.Dropout(0.1), t.Linear(10, 4)).double()
    twin.load_state_dict(load_file(str(path)), strict=True)
    model.eval()
    twin.eval()
    x = np.random.default_rng(3).standard_normal((6, 1, 8, 8))
    ours = model(x)
    ref = twin(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    np.testing.assert_array_equal(ours.argmax(1), ref.argmax(1))
    # and the checkpoint's model part is the same dict
    full = checkpoint.save(tmp_path / "full.safetensors", model, opt, epoch=2)
    assert set(checkpoint.torch_state_dict(full)) == set(model.state_dict())


def test_atomic_write_gives_usual_permissions(tmp_path):
    import os
    import stat

    path = tmp_path / "f.bin"
    checkpoint.atomic_write_bytes(path, b"abc")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask and path.read_bytes() == b"abc"


# ---------------------------------------------------------------------------------------------
# Hostile and damaged files: every one is a CheckpointError naming the file, and changes nothing
# ---------------------------------------------------------------------------------------------
def _trainer_file(tmp_path):
    return cf.trained_checkpoint(tmp_path / "good.safetensors")


def test_an_independent_writer_reproduces_the_file(tmp_path):
    """tests/checkpoint_files.py writes the documented layout itself: byte for byte the same file."""
    raw = _trainer_file(tmp_path)
    assert cf.build(*cf.split(raw)) == raw
    assert cf.resume_fresh(str(tmp_path / "good.safetensors")) == "epoch 1"


def _flip_each(path, raw, bits):
    """Yield each bit of ``bits`` after flipping it in ``path`` (flipped back before the next)."""
    path.write_bytes(raw)
    fd = os.open(path, os.O_RDWR)     # in place: rewriting the whole file each time is 40x slower
    try:
        for bit in bits:
            i = bit // 8
            os.pwrite(fd, bytes([raw[i] ^ (1 << (bit % 8))]), i)
            yield bit
            os.pwrite(fd, raw[i:i + 1], i)
    finally:
        os.close(fd)


def _refusals(path, raw, bits, model, optimizer):
    """``(accepted bits, bits whose error does not name the file)`` over the flips of ``bits``."""
    accepted, unnamed = [], []
    for bit in _flip_each(path, raw, bits):
        try:
            checkpoint.load(path, model, optimizer)
            accepted.append(bit)
        except CheckpointError as exc:
            if str(path) not in str(exc):
                unnamed.append(bit)
    return accepted, unnamed


def test_every_single_bit_flip_is_refused(tmp_path):
    """Exhaustive over every bit of a small trainer checkpoint (its header and its tensors)."""
    raw = _trainer_file(tmp_path)
    (n,) = struct.unpack("<Q", raw[:8])
    assert n > 3000 and len(raw) - 8 - n > 200                 # a real header: trainer meta, optimizer, RNGs
    trainer, rng = cf.small_trainer(seed=5)
    before = cf.snapshot(trainer, rng)
    path = tmp_path / "flipped.safetensors"
    assert _refusals(path, raw, range(8 * len(raw)), trainer.model, trainer.optimizer) == ([], [])
    cf.assert_same(cf.snapshot(trainer, rng), before)


def test_sampled_bit_flips_in_a_larger_checkpoint_are_refused(tmp_path):
    model, opt = make()
    train_steps(model, opt, 2)
    raw = checkpoint.save(tmp_path / "c.safetensors", model, opt, epoch=2).read_bytes()
    fresh, fresh_opt = make(seed=3)
    before = {"model": fresh.state_dict(), "optimizer": fresh_opt.state_dict()}
    bits = [int(b) for b in np.random.default_rng(0).choice(8 * len(raw), 1000, replace=False)]
    assert _refusals(tmp_path / "c.safetensors", raw, bits, fresh, fresh_opt) == ([], [])
    cf.assert_same({"model": fresh.state_dict(), "optimizer": fresh_opt.state_dict()}, before)


def _without(key):
    def edit(t):
        del t[key]
    return edit


def _setting(key, value):
    def edit(t):
        t[key] = value
    return edit


def _meta(key, value, encoded=False):
    return lambda t: cf.set_meta(t, key, value, encoded=encoded)


def _deep(n):
    return "[" * n + "]" * n


def _text(edit):
    """An editor of the metadata's JSON text."""
    return lambda t: edit(json.dumps(t, separators=(",", ":")))


def _rng_module_state(t):
    t["module_rngs"]["3"]["state"] = {"x": 1}


def _rng_for_linear(t):
    t["module_rngs"]["0"] = t["module_rngs"]["3"]


def _first_moment(t):
    groups = dict(t["optimizer"]["__dict__"])
    groups["state"]["__dict__"][0][1]["__dict__"][1][1] = {"__tensor__": "optim/nope"}


def _lr_string(t):
    group = dict(t["optimizer"]["__dict__"])["param_groups"][0]["__dict__"]
    group[0][1] = "abc"


def _transposed_moment(table):
    table["optim/state/0/exp_avg"]["shape"] = [3, 2]


def _orphan(table):
    table["meta/orphan"] = {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}


def _entry(name, key, value):
    def edit(table):
        table[name][key] = value
    return edit


def _overlap(table):
    table["0.bias"]["data_offsets"] = [table["0.bias"]["data_offsets"][0] + 4, table["0.bias"]["data_offsets"][1] + 4]


def _huge_tensor(raw):
    """A table that declares a 4 GiB tensor in a file of a few KiB."""
    t, tl, d = cf.split(raw)
    t["meta/huge"] = {"dtype": "F32", "shape": [2 ** 30], "data_offsets": [len(d), len(d) + 2 ** 32]}
    cf.set_meta(tl, "huge", {"__tensor__": "meta/huge"}, encoded=True)
    return cf.build(t, tl, d)


def _sealed_deep_header(raw):
    head = cf.PREFIX + b"0" * 64 + b'","trainlab":"x"},"a":' + _deep(200_000).encode() + b"}"
    head += b" " * (-len(head) % 8)
    return cf.seal(struct.pack("<Q", len(head)) + head)


def _with_length(n):
    return lambda raw: struct.pack("<Q", n) + raw[8:]


_TRAINER_STATE = {"epoch": 1, "global_step": 2}
CRAFTED = {
    # the trainlab metadata
    "meta missing": (dict(trainlab=_without("meta")), "lacks 'meta'"),
    "meta is a JSON list": (dict(trainlab=_setting("meta", [1, 2])), r"meta is \[1, 2\]"),
    "metadata is a JSON list": (dict(trainlab=lambda t: "[1, 2]"), "is a JSON list"),
    "metadata nested 200,000 deep": (dict(trainlab=lambda t: '{"format":"trainlab-checkpoint/2","meta":'
                                          + _deep(200_000) + "}"), "nested too deeply"),
    "meta value nested 100 deep": (dict(trainlab=_meta("x", json.loads(_deep(100)))), "deeper than 64"),
    "unknown format": (dict(trainlab=_setting("format", "trainlab-checkpoint/3")), "unknown checkpoint format"),
    "unexpected key": (dict(trainlab=_setting("extra", 1)), "has unexpected 'extra'"),
    "duplicate JSON key": (dict(trainlab=_text(lambda s: s[:-1] + ',"meta":null}')), "duplicate key 'meta'"),
    "duplicate dict entry": (dict(trainlab=lambda t: cf.meta_pairs(t).append(["epoch", 1])), "duplicate key 'epoch'"),
    "malformed dict entry": (dict(trainlab=lambda t: cf.meta_pairs(t).append([1])), "a dict entry must be"),
    "plain JSON object in the tree": (dict(trainlab=_meta("x", {"a": 1}, encoded=True)), "unexpected value"),
    "huge integer": (dict(trainlab=_text(lambda s: s.replace('["epoch",1]', '["epoch",' + "9" * 5000 + "]"))),
                     "not valid JSON"),
    "no optimizer state": (dict(trainlab=_setting("optimizer", None)), "holds no optimizer state"),
    "optimizer state is a list": (dict(trainlab=_setting("optimizer", [1])), "optimizer state is a list"),
    "reference to a missing tensor": (dict(trainlab=_first_moment), "refers to tensor 'optim/nope'"),
    "optimizer lr is a string": (dict(trainlab=_lr_string), "optimizer state: .*lr"),
    "optimizer moment of the wrong shape": (dict(table=_transposed_moment), "optimizer state: .*shape"),
    "garbage module-RNG state": (dict(trainlab=_rng_module_state), "generator state of module '3'"),
    "module RNG for a module without one": (dict(trainlab=_rng_for_linear), "module.s. 0 has no matching generator"),
    "module_rngs is a list": (dict(trainlab=_setting("module_rngs", [])), "module_rngs is"),
    # what Trainer.resume needs
    "epoch missing": (dict(trainlab=lambda t: cf.drop_meta(t, "epoch")), "has no 'epoch'"),
    "epoch 2.5": (dict(trainlab=_meta("epoch", 2.5)), "'epoch' must be an int >= 0, got 2.5"),
    "epoch true": (dict(trainlab=_meta("epoch", True)), "'epoch' must be an int"),
    "epoch '3'": (dict(trainlab=_meta("epoch", "3")), "'epoch' must be an int"),
    "global_step -1": (dict(trainlab=_meta("global_step", -1)), "'global_step' must be an int >= 0"),
    "trainer RNG garbage": (dict(trainlab=_meta("rng", {"bit_generator": "PCG64", "state": {"state": "x"}})),
                            "the trainer's RNG state: not a valid PCG64 state"),
    "trainer RNG of another kind": (dict(trainlab=_meta("rng", {"bit_generator": "MT19937", "state": {}})),
                                    "is for 'MT19937'"),
    "history missing": (dict(trainlab=lambda t: cf.drop_meta(t, "history")), "has no 'history'"),
    "history is a number": (dict(trainlab=_meta("history", 5)), "'history' must be a list"),
    "history row with a string": (dict(trainlab=_meta("history", [{"epoch": 1, "train_loss": "x"}])), "history row 0"),
    "history row with an unknown column": (dict(trainlab=_meta("history", [{"epoch": 1, "bogus": 1.0}])),
                                           "history row 0"),
    "callbacks is a list": (dict(trainlab=_meta("callbacks", [1])), "'callbacks' must be a dict"),
    "callback best is a string": (dict(trainlab=_meta("callbacks", {"1:EarlyStopping": {"best": "x", "wait": 0}})),
                                  "callback 1:EarlyStopping: .*'best' must be a number"),
    "callback wait -1": (dict(trainlab=_meta("callbacks", {"1:EarlyStopping": {"best": 1.0, "wait": -1}})),
                         "'wait' must be an int >= 0"),
    "callback state with an unknown key": (dict(trainlab=_meta("callbacks", {"2:Checkpoint": {"best": 1.0, "x": 0}})),
                                           r"callback 2:Checkpoint: .*unexpected key\(s\) \['x'\]"),
    "schedule state half valid": (dict(trainlab=_meta("schedule", {"last_epoch": 7, "step_count": 8, "base_lrs": ["x"],
                                                                   "last_lr": [0.1], "step_size": 1, "gamma": 0.5})),
                                  "schedule StepLR"),
    # the tensor table
    "dtype BF16": (dict(table=_entry("0.bias", "dtype", "BF16")), "unsupported dtype 'BF16'"),
    "negative side": (dict(table=_entry("0.bias", "shape", [-2])), "is not a list of at most 32 non-negative ints"),
    "float side": (dict(table=_entry("0.bias", "shape", [2.0])), "is not a list of at most 32 non-negative ints"),
    "shape and offsets disagree": (dict(table=_entry("0.bias", "shape", [3])), "takes 12 bytes"),
    "overlapping tensors": (dict(table=_overlap), "must tile the data"),
    "extra key in an entry": (dict(table=_entry("0.bias", "x", 1)), "expected 'dtype', 'shape' and 'data_offsets'"),
    "unreferenced tensor": (dict(table=_orphan), "meta/orphan are referred to by nothing"),
}
RAW = {
    "BOOL byte 2": (lambda raw: cf.add_tensor(raw, "flag", "BOOL", [1], b"\x02"), "BOOL bytes other than 0 and 1"),
    "zero-size tensor with huge sides": (lambda raw: cf.add_tensor(raw, "z", "F32", [0, 2 ** 62, 2 ** 62], b""),
                                         "cannot be allocated"),
    "tensor larger than the file": (_huge_tensor, "truncated: the tensors take 4294967"),
    "header nested 200,000 deep": (_sealed_deep_header, "nested too deeply"),
    "extra safetensors metadata": (lambda raw: cf.build(*cf.split(raw), metadata={"x": "y"}),
                                   "safetensors metadata has keys"),
    "empty file": (lambda raw: b"", r"truncated \(0 bytes"),
    "7 bytes": (lambda raw: raw[:7], r"truncated \(7 bytes"),
    "header length past the end": (_with_length(5000), "header says 5000 bytes"),
    "header length of 1 TiB": (_with_length(2 ** 40), "exceeds the limit"),
    "truncated in the tensors": (lambda raw: raw[:-10], "checksum mismatch"),
    "one byte appended": (lambda raw: raw + b"\x00", "checksum mismatch"),
    "header not UTF-8": (lambda raw: cf.seal(raw[:DIGEST_AT + 66] + b"\xff" + raw[DIGEST_AT + 67:]), "not valid JSON"),
    "digest digit changed": (lambda raw: raw[:DIGEST_AT] + (b"1" if raw[DIGEST_AT:DIGEST_AT + 1] == b"0" else b"0")
                             + raw[DIGEST_AT + 1:], "checksum mismatch"),
    "digest digit not hex": (lambda raw: raw[:DIGEST_AT] + b"g" + raw[DIGEST_AT + 1:], "checksum field damaged"),
    "random bytes": (lambda raw: np.random.default_rng(0).bytes(4096), "header length"),
}


def _check_refused(path, fragment, memory_limit=64 << 20):
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=fragment) as info:
            cf.resume_fresh(str(path))      # asserts the file is named and nothing changed
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < memory_limit, f"{peak} bytes allocated"
    return str(info.value)


@pytest.mark.parametrize("case", list(CRAFTED), ids=list(CRAFTED))
def test_crafted_metadata_is_refused_and_changes_nothing(tmp_path, case):
    """Each file is sealed with a valid digest, so it reaches the decoder."""
    edits, fragment = CRAFTED[case]
    raw = cf.edited(_trainer_file(tmp_path), **edits)
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(raw)
    _check_refused(path, fragment)


@pytest.mark.parametrize("case", list(RAW), ids=list(RAW))
def test_damaged_files_are_refused_and_change_nothing(tmp_path, case):
    build, fragment = RAW[case]
    path = tmp_path / "damaged.safetensors"
    path.write_bytes(build(_trainer_file(tmp_path)))
    _check_refused(path, fragment)


def test_files_that_are_not_checkpoints(tmp_path):
    _check_refused(tmp_path / "missing.safetensors", "no such file")
    (tmp_path / "folder").mkdir()
    _check_refused(tmp_path / "folder", "is a folder")
    os.mkfifo(tmp_path / "fifo")
    _check_refused(tmp_path / "fifo", "not a regular file")   # and does not block on the open


def test_4_gib_files_are_refused_without_reading_them(tmp_path):
    """Sparse 4 GiB files: zeros, and a good checkpoint followed by 4 GiB; refused from the header alone."""
    zeros = tmp_path / "zeros.safetensors"
    with open(zeros, "wb") as fh:
        fh.truncate(4 << 30)
    _check_refused(zeros, "not valid JSON|header")
    padded = tmp_path / "padded.safetensors"
    padded.write_bytes(_trainer_file(tmp_path))
    with open(padded, "r+b") as fh:
        fh.truncate(4 << 30)
    start = time.perf_counter()
    message = _check_refused(padded, "longer than its tensors")
    assert time.perf_counter() - start < 2.0, "the file was read, not just its header"
    assert str(padded) in message


# ---------------------------------------------------------------------------------------------
# Format 1 files (trainlab 0.1.0) still load
# ---------------------------------------------------------------------------------------------
V1 = Path(__file__).parent / "data" / "checkpoint_v1.safetensors"


def _v1_trainer():
    """The trainer that wrote tests/data/checkpoint_v1.safetensors with trainlab 0.1.0 (2 epochs of
    ``fit`` on 24 rows of seed-9 normal data, ``Checkpoint`` callback, ``last.safetensors``)."""
    from trainlab import Trainer
    from trainlab.optim.schedule import StepLR
    from trainlab.train import EarlyStopping

    rng = np.random.default_rng(7)
    model = nn.Sequential(nn.Linear(4, 3, rng=rng), nn.BatchNorm1d(3), nn.ReLU(),
                          nn.Dropout(0.5, rng=np.random.default_rng(8)), nn.Linear(3, 2, rng=rng))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    return Trainer(model, opt, nn.CrossEntropyLoss(), schedule=StepLR(opt, step_size=1, gamma=0.5),
                   callbacks=[EarlyStopping(patience=3)], progress=False, log=None)


def test_format_1_files_still_load_with_a_warning(tmp_path):
    from safetensors.numpy import load_file

    trainer, rng = _v1_trainer(), np.random.default_rng(0)
    with pytest.warns(UserWarning, match="format 1 .*does not cover its metadata"):
        assert trainer.resume(V1, rng) == 2
    held = load_file(str(V1))
    for key, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(value, held[key], err_msg=key)
    assert trainer.global_step == 6 and [row["epoch"] for row in trainer.history.rows()] == [1, 2]
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0025 and trainer.callbacks[1].wait == 0
    # re-saved, it is format 2, and both continue the same way bit for bit
    trainer.save_checkpoint(tmp_path / "v2.safetensors")
    assert cf.split((tmp_path / "v2.safetensors").read_bytes())[1]["format"] == "trainlab-checkpoint/2"
    data = np.random.default_rng(9)
    x, y = data.standard_normal((24, 4)).astype(np.float32), data.integers(0, 2, 24)
    finals = []
    for source in (V1, tmp_path / "v2.safetensors"):
        again, rng = _v1_trainer(), np.random.default_rng(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = again.resume(source, rng)
        again.fit((x, y), (x[:8], y[:8]), epochs=4, batch_size=8, rng=rng, start_epoch=start)
        finals.append(again.model.state_dict())
    cf.assert_same(finals[0], finals[1])


def test_damaged_format_1_files_are_refused(tmp_path):
    raw = V1.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    trainer = _v1_trainer()
    before = trainer.model.state_dict()
    path = tmp_path / "v1.safetensors"
    for bit in [8 * (8 + n) + 5, 8 * (len(raw) - 3), 8 * 20 + 1]:   # tensor bytes, and the header's JSON
        path.write_bytes(flip_bit(raw, bit))
        with pytest.raises(CheckpointError, match="v1.safetensors"):
            trainer.resume(path, np.random.default_rng(0))
    cf.assert_same(trainer.model.state_dict(), before)


# ---------------------------------------------------------------------------------------------
# Temporary files left by a SIGKILL mid-save
# ---------------------------------------------------------------------------------------------
_SAVERS = """
import os, signal, sys, time
import numpy as np
from trainlab import checkpoint, nn
signal.signal(signal.SIGCHLD, signal.SIG_IGN)      # the kernel reaps the savers
model = nn.Sequential(nn.Linear(256, 256, rng=np.random.default_rng(0)))
for line in sys.stdin:                             # "<mode> <path>": fork one saver, which prints its pid
    mode, path = line.split()
    if os.fork() == 0:
        try:
            if mode == "hold":                     # stop inside the save: bytes written, not yet renamed
                def hold(fd):
                    print(os.getpid(), flush=True)
                    time.sleep(120)
                checkpoint.os.fsync = hold
            else:                                  # "loop": save over and over until killed
                print(os.getpid(), flush=True)
            for _ in range(100_000):
                checkpoint.save(path, model, epoch=1)
        finally:
            os._exit(0)
"""


@pytest.fixture(scope="module")
def savers():
    """Start saver processes (forked from one child, so trainlab is imported once) and SIGKILL them."""
    import select
    import signal
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-c", _SAVERS], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    started = []

    class Savers:
        def start(self, mode, path):
            server.stdin.write(f"{mode} {path}\n")
            server.stdin.flush()
            assert select.select([server.stdout], [], [], 60)[0], "no saver started"
            pid = int(server.stdout.readline())
            started.append(pid)
            return pid

        def kill(self, pid):
            os.kill(pid, signal.SIGKILL)
            for _ in range(1000):                  # until it is gone, and its locks with it
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.01)
            raise AssertionError(f"saver {pid} did not die")

    try:
        yield Savers()
    finally:
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        server.stdin.close()
        server.wait(30)
        server.stdout.close()


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_stale_temp_files_are_removed_at_the_next_save_and_live_ones_kept(tmp_path, savers):
    """SIGKILL a process mid-save: its temp file is stale and goes; a process saving right now keeps its own."""
    model, opt = make()
    savers.kill(savers.start("hold", tmp_path / "last.safetensors"))
    stale = _temps(tmp_path)
    assert len(stale) == 1 and re.fullmatch(r"\.last\.safetensors\.trainlab-[a-z0-9_]{8}\.tmp", stale[0])
    alive = savers.start("hold", tmp_path / "best.safetensors")       # holds its temp file's lock
    try:
        live = [name for name in _temps(tmp_path) if name not in stale]
        assert len(live) == 1 and live[0].startswith(".best.safetensors.trainlab-")
        others = [".notes.txt.trainlab-abcdefgh.tmp.bak", ".x.abcdefgh.tmp", "y.trainlab-abcdefgh.tmp",
                  ".z.trainlab-abcdefg.tmp"]
        for name in others:                                           # not trainlab's pattern: never touched
            (tmp_path / name).write_text("keep")
        checkpoint.save(tmp_path / "other.safetensors", model, opt, epoch=1)
        assert _temps(tmp_path) == sorted(live + [n for n in others if n.endswith(".tmp")])
    finally:
        savers.kill(alive)
    checkpoint.atomic_write_bytes(tmp_path / "metrics.jsonl", b"{}\n")   # any atomic write cleans its folder
    assert [n for n in _temps(tmp_path) if "trainlab-" in n] == [".z.trainlab-abcdefg.tmp", "y.trainlab-abcdefgh.tmp"]
    assert (tmp_path / "other.safetensors").is_file() and not (tmp_path / "best.safetensors").exists()


def test_sigkill_at_random_moments_never_leaves_a_half_written_checkpoint(tmp_path, savers):
    """Savers killed at 20 random moments: the target always loads, and the next save removes the temp file."""
    target = tmp_path / "last.safetensors"
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(256, 256, rng=np.random.default_rng(0)))
    mid_save = 0
    for _ in range(20):
        pid = savers.start("loop", target)
        time.sleep(float(rng.uniform(0.0, 0.05)))
        savers.kill(pid)
        mid_save += bool(_temps(tmp_path))
        if target.exists():
            assert checkpoint.load(target, model)["epoch"] == 1
        checkpoint.save(tmp_path / "next.safetensors", model, epoch=2)
        assert _temps(tmp_path) == []
    assert mid_save >= 1, "no kill hit a save in progress (they do about half the time)"


# ---------------------------------------------------------------------------------------------
# Loads change nothing unless they succeed; saves refuse what they could not read back
# ---------------------------------------------------------------------------------------------
def _model_optimizer_generators(model, opt):
    return {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "generators": [m.rng.bit_generator.state for m in model.modules() if hasattr(m, "rng")]}


@pytest.mark.parametrize("case", ["meta missing", "garbage module-RNG state", "module RNG for a module without one",
                                  "optimizer lr is a string", "optimizer moment of the wrong shape",
                                  "reference to a missing tensor", "metadata nested 200,000 deep"])
def test_checkpoint_load_refusals_change_nothing(tmp_path, case):
    edits, fragment = CRAFTED[case]
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(cf.edited(_trainer_file(tmp_path), **edits))
    trainer, _ = cf.small_trainer(seed=5)
    model, opt = trainer.model, trainer.optimizer
    before = _model_optimizer_generators(model, opt)
    with pytest.raises(CheckpointError, match=fragment):
        checkpoint.load(path, model, opt)
    cf.assert_same(_model_optimizer_generators(model, opt), before)


def test_a_step_that_fails_late_is_rolled_back(tmp_path, monkeypatch):
    """If the model refuses its state after the optimizer took its own, the optimizer is restored."""
    path = tmp_path / "good.safetensors"
    _trainer_file(tmp_path)
    trainer, _ = cf.small_trainer(seed=5)
    model, opt = trainer.model, trainer.optimizer
    before = _model_optimizer_generators(model, opt)
    prepared = checkpoint.prepare(path, model, opt)

    def refuse(state, strict=True):
        for value in model.parameters():
            value.data[...] = 7.0            # half-applied, then a failure
        raise RuntimeError("disk on fire")

    real = model.load_state_dict
    monkeypatch.setattr(model, "load_state_dict", lambda state, strict=True: (
        refuse(state) if state is prepared.model_state else real(state, strict)))
    with pytest.raises(CheckpointError, match="does not fit: model state: disk on fire"):
        prepared.apply()
    cf.assert_same(_model_optimizer_generators(model, opt), before)


def test_callback_states_are_checked_before_they_are_set():
    from trainlab.train import Checkpoint, EarlyStopping

    stop = EarlyStopping(patience=2)
    stop.load_state_dict({"best": 0.5, "wait": 1})
    assert (stop.best, stop.wait) == (0.5, 1)
    for bad, message in [({"best": "x", "wait": 0}, "'best' must be a number"), ({"best": 0.1, "wait": 1.5}, "'wait'"),
                         ({"best": 0.1, "wait": True}, "'wait'"), ({"best": 0.1, "wait": -1}, "'wait'"),
                         ({"best": [1]}, "'best'"), ({"wait": 0, "patience": 3}, "unexpected key"), ([], "a dict")]:
        with pytest.raises(ValueError, match=message):
            stop.load_state_dict(bad)
        assert (stop.best, stop.wait) == (0.5, 1)
    ckpt = Checkpoint("unused", monitor="val_loss")
    ckpt.load_state_dict({"best": None})
    assert ckpt.best == float("inf")
    with pytest.raises(ValueError, match="Checkpoint.load_state_dict: 'best' must be a number"):
        ckpt.load_state_dict({"best": "0.1"})
    assert ckpt.best == float("inf")


def test_save_refuses_what_it_could_not_read_back(tmp_path):
    model, opt = make()
    cases = [({"x": np.zeros(2, dtype=np.complex64)}, TypeError, "complex64 array 'meta/x'"),
             ({"x": np.array(["a"], dtype=object)}, TypeError, "object array"),
             ({"x": {1.5: 1}}, TypeError, "key 1.5 at 'meta/x'"),
             ({"x": {True: 1}}, TypeError, "key True"),
             ({"x": {(1, 2): 1}}, TypeError, r"key \(1, 2\)"),
             ({"x": object()}, TypeError, "cannot store a object"),
             ({"x": np.datetime64("2020-01-01")}, TypeError, "cannot store a datetime64 at 'meta/x'"),
             ({"x": np.complex64(1)}, TypeError, "cannot store a complex at 'meta/x'"),
             ({"x": json.loads(_deep(70))}, ValueError, "nested deeper than 64"),
             ({"x": "y" * (checkpoint.MAX_HEADER_BYTES + 1)}, CheckpointError, "more than the 16777216")]
    for meta, error, message in cases:
        with pytest.raises(error, match=message):
            checkpoint.save(tmp_path / "c.safetensors", model, opt, **meta)
    assert list(tmp_path.iterdir()) == []                       # nothing written, no temp file left


def test_arrays_whose_names_collide_are_kept_apart(tmp_path):
    model, opt = make()
    meta = {"a/0": np.arange(2), "a": [np.arange(3)]}           # both would be "meta/a/0"
    back = checkpoint.load(checkpoint.save(tmp_path / "c.safetensors", model, opt, **meta), model, opt)
    np.testing.assert_array_equal(back["a/0"], np.arange(2))
    np.testing.assert_array_equal(back["a"][0], np.arange(3))
