"""Safe checkpoints: tensors in safetensors, everything else in JSON metadata, never pickle.

A checkpoint is one ``.safetensors`` file holding

* every entry of ``model.state_dict()`` under its PyTorch key (``"0.weight"``, ...);
* the states of the generators that modules own (Dropout), so training resumes bit for bit;
* ``optim/<path>`` and ``meta/<path>``: the arrays of ``optimizer.state_dict()`` and of
  ``meta`` (the ``/`` keeps them apart from model keys, which use ``.``).

:func:`save_weights` writes the model alone, a plain safetensors file that
``torch_model.load_state_dict(safetensors.torch.load_file(path))`` accepts as it is.
The metadata ``trainlab`` (JSON) holds the optimizer state with arrays replaced by
references, the user's ``meta`` (epoch, RNG states, config, ...), and a SHA-256 over
all tensor names, dtypes, shapes and bytes, so a truncated or bit-flipped file is
refused.

Writes are atomic: the bytes go to a temporary file in the same folder, are flushed and
fsync'ed, then renamed over the target; a crash mid-write leaves the previous checkpoint
intact. Loading parses a JSON header and raw little-endian arrays only: it cannot execute
code.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["save", "load", "read", "save_weights", "torch_state_dict", "atomic_write_bytes", "CheckpointError",
           "rng_state", "set_rng_state"]

FORMAT = "trainlab-checkpoint/1"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or does not fit the model."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The JSON-able state of a generator (its bit generator's name and state)."""
    return {"bit_generator": type(rng.bit_generator).__name__, "state": rng.bit_generator.state}


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    """Restore a state produced by :func:`rng_state` into ``rng`` (same bit generator type)."""
    name = type(rng.bit_generator).__name__
    if state.get("bit_generator") != name:
        raise CheckpointError(f"RNG state is for {state.get('bit_generator')}, the generator is {name}")
    rng.bit_generator.state = state["state"]


def module_rng_states(model: Any) -> dict[str, Any]:
    """The states of the generators owned by modules (e.g. Dropout masks), keyed by module name."""
    return {name: rng_state(m.rng) for name, m in model.named_modules()
            if isinstance(getattr(m, "rng", None), np.random.Generator)}


def _check_module_rngs(model: Any, states: dict[str, Any], path: Path) -> None:
    owners = module_rng_states(model)
    missing = [name for name in states if name not in owners]
    wrong = [name for name, st in states.items()
             if name in owners and st.get("bit_generator") != owners[name]["bit_generator"]]
    if missing or wrong:
        raise CheckpointError(f"checkpoint {path} does not fit: random generator state for module(s) "
                              f"{', '.join(missing + wrong)} has no matching generator in the model")


def _set_module_rng_states(model: Any, states: dict[str, Any]) -> None:
    modules = dict(model.named_modules())
    for name, state in states.items():
        set_rng_state(modules[name].rng, state)


def _split(obj: Any, prefix: str, tensors: dict[str, np.ndarray]) -> Any:
    """Replace every array in a nested dict/list with ``{"__tensor__": key}``, collecting them."""
    if isinstance(obj, np.ndarray):
        tensors[prefix] = np.asarray(obj, order="C")
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _split(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__} at {prefix!r}; "
                    f"only arrays, numbers, strings, lists and dicts")


def _join(obj: Any, tensors: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        return {k: _join(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        arr = np.asarray(tensors[key], order="C")
        h.update(f"{key}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _serialize(model: Any, optimizer: Any, meta: dict[str, Any]) -> bytes:
    from safetensors.numpy import save as st_save

    tensors: dict[str, np.ndarray] = {}
    for key, value in model.state_dict().items():
        tensors[key] = np.asarray(value, order="C")
    optim_tree = None if optimizer is None else _split(optimizer.state_dict(), "optim", tensors)
    meta_tree = _split(meta, "meta", tensors)
    header = {"format": FORMAT, "optimizer": optim_tree, "meta": meta_tree,
              "module_rngs": module_rng_states(model), "sha256": _digest(tensors)}
    return st_save(tensors, metadata={"trainlab": json.dumps(header)})


def save(path: str | os.PathLike, model: Any, optimizer: Any = None, **meta: Any) -> Path:
    """Save ``model`` (parameters and buffers), ``optimizer`` state and ``meta`` atomically.

    Args:
        path: the ``.safetensors`` file to write (folders are created).
        model: a :class:`trainlab.nn.Module`.
        optimizer: a :class:`trainlab.optim.Optimizer` or None.
        **meta: JSON-able values (numbers, strings, lists, dicts; arrays are stored as
            tensors), e.g. ``epoch=3, rng=rng_state(rng), config={...}``.

    Returns:
        The path written.
    """
    data = _serialize(model, optimizer, meta)
    atomic_write_bytes(path, data)
    return Path(path)


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a checkpoint: returns ``(tensors, header)``.

    Raises:
        CheckpointError: if the file is missing, truncated, corrupted or not a trainlab checkpoint.
    """
    from safetensors.numpy import load as st_load

    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: no such file") from None
    if len(raw) < 8:
        raise CheckpointError(f"checkpoint {path}: file is truncated ({len(raw)} bytes)")
    (header_len,) = struct.unpack("<Q", raw[:8])
    if header_len > len(raw) - 8:
        raise CheckpointError(f"checkpoint {path}: file is truncated (header says {header_len} bytes, "
                              f"{len(raw) - 8} present)")
    try:
        st_header = json.loads(raw[8:8 + header_len])
        header = json.loads(st_header["__metadata__"]["trainlab"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: not a trainlab checkpoint or corrupted header "
                              f"({type(exc).__name__}: {exc})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: unknown format {header.get('format')!r}, expected {FORMAT!r}")
    try:
        tensors = st_load(raw)
    except Exception as exc:  # safetensors raises its own error type for malformed data
        raise CheckpointError(f"checkpoint {path}: corrupted tensor data ({exc})") from None
    if _digest(tensors) != header.get("sha256"):
        raise CheckpointError(f"checkpoint {path}: checksum mismatch: the file is corrupted")
    return tensors, header


def load(path: str | os.PathLike, model: Any, optimizer: Any = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save` into ``model`` (and ``optimizer``).

    Nothing is changed unless the whole file verifies and fits.

    Returns:
        The ``meta`` dict given to :func:`save`.

    Raises:
        CheckpointError: corrupted/truncated file, or state that does not fit the model.
    """
    tensors, header = read(path)
    model_sd = _model_part(tensors)
    optim_sd = None
    if optimizer is not None:
        if header.get("optimizer") is None:
            raise CheckpointError(f"checkpoint {path}: holds no optimizer state")
        optim_sd = _join(header["optimizer"], tensors)
    module_rngs = header.get("module_rngs", {})
    _check_module_rngs(model, module_rngs, Path(path))
    backup = model.state_dict()
    try:
        model.load_state_dict(model_sd, strict=True)
        if optim_sd is not None:
            optimizer.load_state_dict(optim_sd)
    except (KeyError, ValueError, TypeError) as exc:
        model.load_state_dict(backup, strict=True)
        raise CheckpointError(f"checkpoint {path} does not fit: {exc}") from None
    _set_module_rng_states(model, module_rngs)
    return _join(header["meta"], tensors)


def _model_part(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in tensors.items() if "/" not in k}


def torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The model part of a checkpoint as a PyTorch-keyed dict of arrays (verified)."""
    return _model_part(read(path)[0])


def save_weights(path: str | os.PathLike, model: Any) -> Path:
    """Write ``model.state_dict()`` alone as a plain safetensors file (atomic).

    The file loads into the equivalent torch module with
    ``load_state_dict(safetensors.torch.load_file(path))``, and back with :func:`load`
    (``optimizer=None``).
    """
    return save(path, model)
