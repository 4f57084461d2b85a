"""Checkpoints: round trips, atomic writes, corruption detection, no code execution, torch interop."""

import json
import struct

import numpy as np
import pytest

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
    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: Exploding(real_fdopen(fd, mode)))
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


def test_metadata_is_json_and_tensors_are_plain(tmp_path):
    model, opt = make()
    train_steps(model, opt, 1)
    path = checkpoint.save(tmp_path / "c.safetensors", model, opt, epoch=1)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = json.loads(header["__metadata__"]["trainlab"])
    assert meta["format"] == "trainlab-checkpoint/1" and len(meta["sha256"]) == 64
    assert "0.weight" in header and "1.num_batches_tracked" in header
    assert any(k.startswith("optim/") for k in header)


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
