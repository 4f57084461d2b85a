"""Checkpoint files built and taken apart by hand, and the invariants a load must keep.

The format is written out here independently of :mod:`trainlab.checkpoint` (the layout and
the digest's definition are the oracle): a file is ``u64 n | n bytes of JSON header | data``,
and its SHA-256 is taken over the whole file with the 64 digits at offset 44 read as ``0``.

:func:`seal` recomputes that digest, so a crafted file reaches the decoder instead of being
refused at the checksum. :func:`resume_fresh` is the fuzz tests' sandbox target: it builds
the small trainer of :func:`small_trainer`, resumes it from a file and checks that a refused
load changed nothing and that an accepted one holds the file's tensors.
"""

from __future__ import annotations

import copy
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

PREFIX = b'{"__metadata__":{"trainlab.sha256":"'
DIGEST_AT = 8 + len(PREFIX)


def seal(raw: bytes) -> bytes:
    """``raw`` with its digest recomputed (the header must start with :data:`PREFIX` + 64 chars)."""
    zeroed = raw[:DIGEST_AT] + b"0" * 64 + raw[DIGEST_AT + 64:]
    return zeroed[:DIGEST_AT] + hashlib.sha256(zeroed).hexdigest().encode() + zeroed[DIGEST_AT + 64:]


def split(raw: bytes) -> tuple[dict[str, Any], Any, bytes]:
    """``(tensor table, trainlab metadata as parsed JSON, data bytes)`` of a sealed file."""
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    trainlab = json.loads(header.pop("__metadata__")["trainlab"])
    return header, trainlab, raw[8 + n:]


def build(table: dict[str, Any], trainlab: Any, data: bytes, *, trainlab_text: str | None = None,
          metadata: dict[str, Any] | None = None) -> bytes:
    """A sealed file from a tensor table, trainlab metadata (or its raw text) and data bytes."""
    meta = {"trainlab.sha256": "0" * 64,
            "trainlab": trainlab_text if trainlab_text is not None else json.dumps(trainlab, separators=(",", ":"))}
    meta.update(metadata or {})
    head = json.dumps({"__metadata__": meta, **table}, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return seal(struct.pack("<Q", len(head)) + head + data)


def small_trainer(seed: int = 0) -> tuple[Any, Any]:
    """A tiny model (Linear, BatchNorm, Dropout, Linear) with Adam, StepLR and two callbacks."""
    from trainlab import Trainer, nn, optim
    from trainlab.optim.schedule import StepLR
    from trainlab.train import Checkpoint, EarlyStopping

    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(3, 2, rng=rng), nn.BatchNorm1d(2), nn.ReLU(),
                          nn.Dropout(0.5, rng=np.random.default_rng(seed + 1)), nn.Linear(2, 2, rng=rng))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), schedule=StepLR(opt, step_size=1, gamma=0.5),
                      callbacks=[EarlyStopping(patience=3), Checkpoint("unused", every=10**6, monitor=None)],
                      progress=False, log=None)
    return trainer, np.random.default_rng(seed + 2)


def trained_checkpoint(path: Path, epochs: int = 1) -> bytes:
    """Train :func:`small_trainer` for ``epochs`` epochs, save its checkpoint to ``path``; the bytes."""
    trainer, rng = small_trainer()
    data = np.random.default_rng(9)
    x, y = data.standard_normal((8, 3)).astype(np.float32), data.integers(0, 2, 8)
    trainer.fit((x, y), (x[:4], y[:4]), epochs=epochs, batch_size=4, rng=rng)
    trainer.save_checkpoint(path, config={"lr": 0.01})
    return Path(path).read_bytes()


def snapshot(trainer: Any, rng: np.random.Generator) -> dict[str, Any]:
    """Every array and state a resume may touch, copied."""
    schedules = [cb.schedule.state_dict() for cb in trainer.callbacks if hasattr(cb, "schedule")]
    return copy.deepcopy({
        "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
        "param_ids": [id(p.data) for p in trainer.model.parameters()],
        "module_rngs": [m.rng.bit_generator.state for m in trainer.model.modules() if hasattr(m, "rng")],
        "rng": rng.bit_generator.state, "schedules": schedules,
        "callbacks": [cb.state_dict() for cb in trainer.callbacks],
        "trainer": (trainer.epoch, trainer.global_step, trainer.history.rows(), id(trainer.history),
                    id(trainer.rng)),
    })


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Exact equality of nested dicts/lists/arrays (arrays: same dtype, shape and bits)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: values differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def resume_fresh(path: str) -> str:
    """Resume a fresh :func:`small_trainer` from ``path``; the sandbox target of the fuzz tests.

    A refused load must raise ``CheckpointError`` with the file named and leave every state as
    it was; an accepted one must hold the file's model tensors as an independent reader
    (``safetensors``) sees them. Anything else raises ``AssertionError``.
    """
    from trainlab.checkpoint import CheckpointError

    trainer, rng = small_trainer(seed=5)
    before = snapshot(trainer, rng)
    try:
        epoch = trainer.resume(path, rng)
    except CheckpointError as exc:
        assert str(path) in str(exc), f"the message does not name the file: {exc}"
        assert_same(snapshot(trainer, rng), before, "after a refused load")
        raise
    from safetensors.numpy import load_file

    held = load_file(path)
    for key, value in trainer.model.state_dict().items():
        assert_same(value, held[key].astype(value.dtype), f"model {key}")
    return f"epoch {epoch}"


def tree(value: Any) -> Any:
    """``value`` in the metadata's tree encoding (dicts as ``{"__dict__": [[key, value], ...]}``)."""
    if isinstance(value, dict):
        return {"__dict__": [[k, tree(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [tree(v) for v in value]
    return value


def meta_pairs(trainlab: dict[str, Any]) -> list[list[Any]]:
    """The ``[key, value]`` list of the ``meta`` tree (edit it in place)."""
    return trainlab["meta"]["__dict__"]


def set_meta(trainlab: dict[str, Any], key: str, value: Any, *, encoded: bool = False) -> None:
    """Set (or add) ``meta[key]``; ``value`` is encoded with :func:`tree` unless ``encoded``."""
    pairs = meta_pairs(trainlab)
    value = value if encoded else tree(value)
    for pair in pairs:
        if pair[0] == key:
            pair[1] = value
            return
    pairs.append([key, value])


def drop_meta(trainlab: dict[str, Any], key: str) -> None:
    trainlab["meta"]["__dict__"] = [p for p in meta_pairs(trainlab) if p[0] != key]


def edited(raw: bytes, trainlab: Any = None, table: Any = None, data: Any = None) -> bytes:
    """``raw`` re-built and sealed after ``trainlab(t)``, ``table(t)`` and ``data(d)`` edit its parts.

    Each editor may change its argument in place (returning None) or return a replacement;
    a ``trainlab`` editor that returns a ``str`` replaces the metadata's JSON text verbatim.
    """
    t, tl, d = split(raw)
    text = None
    if trainlab is not None:
        out = trainlab(tl)
        if isinstance(out, str):
            text = out
        elif out is not None:
            tl = out
    if table is not None:
        t = table(t) or t
    if data is not None:
        d = data(d)
    return build(t, tl, d, trainlab_text=text)


def add_tensor(raw: bytes, name: str, dtype: str, shape: list[int], payload: bytes) -> bytes:
    """``raw`` with one more tensor appended to the data and referred to as ``meta[name]``."""
    t, tl, d = split(raw)
    t[f"meta/{name}"] = {"dtype": dtype, "shape": shape, "data_offsets": [len(d), len(d) + len(payload)]}
    set_meta(tl, name, {"__tensor__": f"meta/{name}"}, encoded=True)
    return build(t, tl, d + payload)
