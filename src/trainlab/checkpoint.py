"""Safe checkpoints: tensors in safetensors, everything else in JSON metadata, never pickle.

A checkpoint is one ``.safetensors`` file holding

* every entry of ``model.state_dict()`` under its PyTorch key (``"0.weight"``, ...);
* the states of the generators that modules own (Dropout), so training resumes bit for bit;
* ``optim/<path>`` and ``meta/<path>``: the arrays of ``optimizer.state_dict()`` and of
  ``meta`` (the ``/`` keeps them apart from model keys, which use ``.``).

:func:`save_weights` writes the model alone, a plain safetensors file that
``torch_model.load_state_dict(safetensors.torch.load_file(path))`` accepts as it is.

File layout (format 2)
----------------------
The safetensors layout: an unsigned 64-bit little-endian header length ``n``, ``n`` bytes of
UTF-8 JSON (padded with spaces to a multiple of 8), then the little-endian bytes of every
tensor back to back, in the order of their ``data_offsets``. The header is::

    {"__metadata__":{"trainlab.sha256":"<64 hex digits>","trainlab":"<JSON text>"},
     "<tensor name>":{"dtype":"F32","shape":[3,4],"data_offsets":[begin,end]}, ...}

``trainlab`` holds the optimizer state with arrays replaced by references, the user's
``meta`` (epoch, RNG states, config, ...) and the module generators' states.
``trainlab.sha256`` comes first, so its 64 digits sit at a fixed offset of the file
(:data:`DIGEST_OFFSET`); they are the SHA-256 of the whole file with those 64 digits read
as ASCII ``0``. Every byte that is loaded (the length, the tensor table, the metadata and
the tensor bytes) is covered, so a truncated file or a single flipped bit anywhere is refused.

Loading verifies before it allocates, and decodes before it changes anything:

1. the header length is checked against :data:`MAX_HEADER_BYTES` and the file size, and
   only then is the header read (never the whole file at once);
2. the file is hashed in pieces of at most 1 MiB and the digest compared, before the header
   is parsed or any tensor allocated (a file with more than 64 MiB of tensors has step 3
   first, so that a table that does not fit the file's size costs no hashing);
3. the tensor table is checked: known dtypes, non-negative integer shapes, offsets that
   tile the data exactly and match each tensor's size and the file's size, so no tensor can
   be larger than the file holds;
4. (:func:`load`) the table's keys and shapes are checked against the model;
5. the tensors are read into their arrays (the file must not have changed since step 1);
6. the metadata is decoded (at most :data:`MAX_DEPTH` levels, no duplicate keys, every
   reference resolved) and the module generators' states are tried on scratch generators;
7. only then are the optimizer, the model and the generators set, in that order; if one
   still refuses its state, those already set are restored, and nothing has changed.

Every failure is a :class:`CheckpointError` naming the file and the problem.

Format 1 (trainlab 0.1.0) files still load: their SHA-256 covers the tensors but not the
metadata, so :func:`read` warns that a damaged header would go unnoticed; any save writes
format 2.

Writes are atomic: the bytes go to a temporary file ``.<name>.trainlab-XXXXXXXX.tmp`` in
the same folder, are flushed and fsync'ed, then renamed over the target; a crash mid-write
leaves the previous file intact. The writer holds an exclusive ``flock`` on its temporary
file from creation to rename. A temporary file is *stale* when no process holds that lock:
its writer has died (a lock dies with its process, SIGKILL included) or closed it without
renaming. Every atomic write removes the stale temporary files of that folder first; a file
that another process is writing right now stays. On a file system without ``flock``, or a
file trainlab does not own (another name pattern), nothing is removed. Loading parses JSON
and raw little-endian arrays only: it cannot execute code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: temp files are never judged stale
    fcntl = None  # type: ignore[assignment]

__all__ = ["save", "load", "read", "prepare", "Prepared", "apply_all", "save_weights", "torch_state_dict",
           "atomic_write_bytes", "remove_stale_temp_files", "CheckpointError", "rng_state", "set_rng_state",
           "check_rng_state"]

FORMAT = "trainlab-checkpoint/2"
FORMAT_V1 = "trainlab-checkpoint/1"
MAX_HEADER_BYTES = 16 << 20     #: the largest header (tensor table + metadata) saved or loaded
MAX_DEPTH = 64                  #: the deepest nesting of metadata values saved or loaded
_PREFIX = b'{"__metadata__":{"trainlab.sha256":"'
DIGEST_OFFSET = 8 + len(_PREFIX)  #: where the 64 hex digits of the SHA-256 start in the file
_ZERO_DIGEST = b"0" * 64
_TABLE_FIRST = 64 << 20       # files with more tensor bytes than this get their table checked before hashing
_HEX = re.compile(rb"[0-9a-f]{64}")
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "|i1",
           "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "|u1", "BOOL": "|b1"}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
_TMP_MARK = ".trainlab-"
_TMP_NAME = re.compile(r"\..+\.trainlab-[a-z0-9_]{8}\.tmp")
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or does not fit the model."""


def _error(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path}: {problem}")


# ---------------------------------------------------------------------- atomic writes
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    _atomic_write(Path(path), [data])


def _atomic_write(path: Path, chunks: Iterable[Any]) -> None:
    """Write the buffers ``chunks`` one after the other to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    fd, tmp = _locked_temp_file(path)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb", closefd=False) as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)           # still locked: a cleaner never sees it unlocked before this
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        os.close(fd)
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _try_lock(fd: int, blocking: bool) -> bool | None:
    """flock ``fd`` exclusively: True if locked, False if another holds it, None if unsupported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None


def _locked_temp_file(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path``, locked; retried if a cleaner removed it before the lock."""
    for _ in range(100):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP_MARK}", suffix=".tmp", dir=path.parent)
        _try_lock(fd, blocking=True)   # waits only while a cleaner is looking at this very file
        try:
            st, fst = os.stat(tmp, follow_symlinks=False), os.fstat(fd)
            if (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev):
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OSError(f"could not create a temporary file beside {path}")


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove trainlab's stale temporary files in ``folder``; returns the paths removed.

    A file counts when its name is ``.<name>.trainlab-XXXXXXXX.tmp`` (what :func:`atomic_write_bytes`
    and :func:`save` create) and no process holds an exclusive ``flock`` on it: its writer died
    mid-write (the lock dies with the process). A file being written right now is locked and
    stays. Failures (permissions, a file system without locks) leave files in place silently.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = [e.name for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith(".tmp")]
    except OSError:
        return removed
    for name in entries:
        if _TMP_MARK not in name or not _TMP_NAME.fullmatch(name):
            continue
        target = folder / name
        try:
            fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _try_lock(fd, blocking=False):
                st, fst = os.stat(target, follow_symlinks=False), os.fstat(fd)
                if (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev):
                    os.unlink(target)
                    removed.append(target)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


# ---------------------------------------------------------------------- generators
def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The JSON-able state of a generator (its bit generator's name and state)."""
    return {"bit_generator": type(rng.bit_generator).__name__, "state": rng.bit_generator.state}


def check_rng_state(rng: np.random.Generator, state: Any, what: str = "RNG state") -> None:
    """Raise ``ValueError`` unless ``state`` (from :func:`rng_state`) can be set on ``rng``.

    The state is tried on a scratch bit generator of ``rng``'s type; ``rng`` is not touched.
    """
    name = type(rng.bit_generator).__name__
    if not isinstance(state, dict) or set(state) != {"bit_generator", "state"}:
        raise ValueError(f"{what}: expected a dict with 'bit_generator' and 'state', got {_brief(state)}")
    if state["bit_generator"] != name:
        raise ValueError(f"{what} is for {_brief(state['bit_generator'])}, the generator is {name}")
    scratch = type(rng.bit_generator)()
    try:
        scratch.state = state["state"]
    except Exception as exc:  # numpy raises TypeError, ValueError, KeyError or OverflowError
        raise ValueError(f"{what}: not a valid {name} state ({type(exc).__name__}: {exc})") from None


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    """Restore a state produced by :func:`rng_state` into ``rng`` (same bit generator type).

    Raises:
        CheckpointError: the state is not one of ``rng``'s bit generator (``rng`` is unchanged).
    """
    try:
        check_rng_state(rng, state)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    rng.bit_generator.state = state["state"]


def module_rng_states(model: Any) -> dict[str, Any]:
    """The states of the generators owned by modules (e.g. Dropout masks), keyed by module name."""
    return {name: rng_state(m.rng) for name, m in model.named_modules()
            if isinstance(getattr(m, "rng", None), np.random.Generator)}


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------- encoding
def _split(obj: Any, prefix: str, tensors: dict[str, np.ndarray], depth: int = 0) -> Any:
    """Replace every array in a nested dict/list with ``{"__tensor__": key}``, collecting them."""
    if depth > MAX_DEPTH:
        raise ValueError(f"checkpoint: {prefix!r} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, np.ndarray):
        key = prefix
        while key in tensors:      # "a/0" and ("a", index 0) would share a name
            key += "'"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        pairs = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint: key {k!r} at {prefix!r} must be a str or an int")
            pairs.append([k, _split(v, f"{prefix}/{k}", tensors, depth + 1)])
        return {"__dict__": pairs}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}/{i}", tensors, depth + 1) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic) and not isinstance(obj, (np.datetime64, np.timedelta64)):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__} at {prefix!r}; "
                    f"only arrays, numbers, strings, lists and dicts")


def _little_endian(key: str, value: Any) -> np.ndarray:
    arr = np.asarray(value, order="C")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype not in _CODES:
        raise TypeError(f"checkpoint: cannot store the {arr.dtype} array {key!r}; "
                        f"dtypes: float16/32/64, (u)int8..64, bool")
    return arr


def _encode(model: Any, optimizer: Any, meta: dict[str, Any]) -> list[Any]:
    """The file's bytes as a list of buffers: length + sealed header, then every tensor."""
    tensors: dict[str, np.ndarray] = dict(model.state_dict())
    optim_tree = None if optimizer is None else _split(optimizer.state_dict(), "optim", tensors)
    meta_tree = _split(meta, "meta", tensors)
    tensors = {k: _little_endian(k, v) for k, v in tensors.items()}
    text = json.dumps({"format": FORMAT, "optimizer": optim_tree, "meta": meta_tree,
                       "module_rngs": module_rng_states(model)}, separators=(",", ":"))
    order = sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k))  # every offset stays aligned
    table: dict[str, Any] = {"__metadata__": {"trainlab.sha256": _ZERO_DIGEST.decode(), "trainlab": text}}
    offset = 0
    for key in order:
        arr = tensors[key]
        table[key] = {"dtype": _CODES[arr.dtype], "shape": list(arr.shape),
                      "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    head = json.dumps(table, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    if len(head) > MAX_HEADER_BYTES:
        raise CheckpointError(f"checkpoint: the metadata takes {len(head)} bytes, more than the "
                              f"{MAX_HEADER_BYTES} a checkpoint may hold; store large values as arrays")
    assert head.startswith(_PREFIX)
    start = bytearray(struct.pack("<Q", len(head)) + head)
    body = [tensors[k].reshape(-1).view(np.uint8) for k in order]
    h = hashlib.sha256(start)
    for part in body:
        h.update(part)
    start[DIGEST_OFFSET:DIGEST_OFFSET + 64] = h.hexdigest().encode()
    return [start, *body]


def save(path: str | os.PathLike, model: Any, optimizer: Any = None, **meta: Any) -> Path:
    """Save ``model`` (parameters and buffers), ``optimizer`` state and ``meta`` atomically.

    Args:
        path: the ``.safetensors`` file to write (folders are created).
        model: a :class:`trainlab.nn.Module`.
        optimizer: a :class:`trainlab.optim.Optimizer` or None.
        **meta: JSON-able values (numbers, strings, lists, dicts with str or int keys, at most
            :data:`MAX_DEPTH` deep; arrays are stored as tensors), e.g.
            ``epoch=3, rng=rng_state(rng), config={...}``.

    Returns:
        The path written.

    Raises:
        TypeError: a value that cannot be stored (named by its path in ``meta``).
        ValueError: values nested deeper than :data:`MAX_DEPTH`.
        CheckpointError: metadata larger than :data:`MAX_HEADER_BYTES` (nothing is written).
    """
    path = Path(path)
    _atomic_write(path, _encode(model, optimizer, meta))
    return path


# ---------------------------------------------------------------------- reading
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {dup!r}")
    return out


def _parse_json(data: bytes | str, path: Path, what: str) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise _error(path, f"{what} is nested too deeply to be a checkpoint's") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, duplicate keys, huge ints
        raise _error(path, f"{what} is not valid JSON ({exc}); the file is corrupted or not a "
                           f"trainlab checkpoint") from None


def _read_exact(fh: BinaryIO, n: int, path: Path, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise _error(path, f"file is truncated ({what}: {len(data)} of {n} bytes)")
    return data


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_table(st_header: Any, data_len: int, path: Path) -> dict[str, tuple[np.dtype, tuple, int, int]]:
    """Check the safetensors header's tensor entries: ``{name: (dtype, shape, begin, end)}``."""
    if not isinstance(st_header, dict):
        raise _error(path, f"the header is a JSON {type(st_header).__name__}, expected an object")
    table = {}
    for name, entry in st_header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _error(path, f"tensor {name!r}: expected 'dtype', 'shape' and 'data_offsets', got {_brief(entry)}")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(code, str) or code not in _DTYPES:
            raise _error(path, f"tensor {name!r}: unsupported dtype {_brief(code)} (known: {', '.join(_DTYPES)})")
        if not isinstance(shape, list) or len(shape) > 32 or not all(_is_count(d) for d in shape):
            raise _error(path, f"tensor {name!r}: shape {_brief(shape)} is not a list of at most 32 "
                               f"non-negative ints")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
                and offsets[0] <= offsets[1]):
            raise _error(path, f"tensor {name!r}: data_offsets {_brief(offsets)} are not [begin, end]")
        dtype = np.dtype(_DTYPES[code])
        size = dtype.itemsize
        for d in shape:
            size *= d
        if size != offsets[1] - offsets[0]:
            raise _error(path, f"tensor {name!r}: shape {shape} of {code} takes {size} bytes, "
                               f"its data_offsets span {offsets[1] - offsets[0]}")
        table[name] = (dtype, tuple(shape), offsets[0], offsets[1])
    end = 0
    for name, (_, _, begin, stop) in sorted(table.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != end:
            raise _error(path, f"tensor {name!r} starts at byte {begin} of the data, expected {end} "
                               f"(tensors must tile the data without gaps or overlaps)")
        end = stop
    if end != data_len:
        what = "truncated" if end > data_len else "longer than its tensors"
        raise _error(path, f"file is {what}: the tensors take {end} bytes, the file holds {data_len} after "
                           f"the header")
    return table


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns


class _Raw:
    """A checkpoint file opened and its header read (``n`` checked first); nothing parsed yet."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:  # O_NONBLOCK: a FIFO or device named as a checkpoint must not block the open
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise _error(path, "no such file") from None
        except OSError as exc:
            raise _error(path, f"cannot be read ({exc.strerror or exc})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise _error(path, "is a folder, not a file" if stat.S_ISDIR(st.st_mode) else "is not a regular file")
        self.fh: BinaryIO = os.fdopen(fd, "rb")
        self.table: dict[str, tuple[np.dtype, tuple, int, int]] | None = None
        try:
            self._read_header()
        except BaseException:
            self.fh.close()
            raise

    def _read_header(self) -> None:
        path = self.path
        st = os.fstat(self.fh.fileno())
        size, self.identity = st.st_size, _identity(st)
        if size < 8:
            raise _error(path, f"file is truncated ({size} bytes; a checkpoint starts with an 8-byte length)")
        (n,) = struct.unpack("<Q", _read_exact(self.fh, 8, path, "header length"))
        if n > MAX_HEADER_BYTES:
            raise _error(path, f"header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes; "
                               f"the file is corrupted or not a checkpoint")
        if n > size - 8:
            raise _error(path, f"file is truncated (header says {n} bytes, {size - 8} present)")
        self.head = _read_exact(self.fh, n, path, "header")
        self.data_len = size - 8 - n
        digits = self.head[len(_PREFIX):len(_PREFIX) + 64]
        self.sealed = (self.head.startswith(_PREFIX) and _HEX.fullmatch(digits) is not None
                       and self.head[len(_PREFIX) + 64:len(_PREFIX) + 65] == b'"')
        self.digest = digits.decode() if self.sealed else ""

    def parse(self) -> None:
        """Parse the header: the ``trainlab`` metadata text and the checked tensor table."""
        if self.table is not None:
            return
        path = self.path
        st_header = _parse_json(self.head, path, "the header")
        if not isinstance(st_header, dict):
            raise _error(path, f"the header is a JSON {type(st_header).__name__}, expected an object")
        metadata = st_header.get("__metadata__")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("trainlab"), str):
            raise _error(path, "not a trainlab checkpoint (no 'trainlab' entry in the safetensors metadata)")
        if not self.sealed and "trainlab.sha256" in metadata:
            raise _error(path, "checksum field damaged (the header does not start with it): the file is corrupted")
        keys = {"trainlab.sha256", "trainlab"} if self.sealed else {"trainlab"}
        if set(metadata) != keys:
            raise _error(path, f"the safetensors metadata has keys {sorted(metadata)}, expected {sorted(keys)}")
        self.trainlab: str = metadata["trainlab"]
        self.table = _tensor_table(st_header, self.data_len, path)

    def _hashed_start(self) -> bytes:
        """The file's first ``8 + n`` bytes as hashed: the digest's digits read as zeros."""
        start = struct.pack("<Q", len(self.head)) + self.head
        if self.sealed:
            start = start[:DIGEST_OFFSET] + _ZERO_DIGEST + start[DIGEST_OFFSET + 64:]
        return start

    def digest_matches(self) -> bool:
        """Hash the file in pieces of at most 1 MiB (no tensor allocated); compare with its digest."""
        h = hashlib.sha256(self._hashed_start())
        self.fh.seek(8 + len(self.head))
        buf = bytearray(min(self.data_len, 1 << 20))
        while n := self.fh.readinto(buf):
            h.update(memoryview(buf)[:n])
        return h.hexdigest() == self.digest

    def read_tensors(self) -> dict[str, np.ndarray]:
        """Every tensor in its own array (read in file order); refused if the file changed meanwhile."""
        path = self.path
        self.fh.seek(8 + len(self.head))
        tensors: dict[str, np.ndarray] = {}
        for name, (dtype, shape, begin, end) in sorted(self.table.items(), key=lambda kv: kv[1][2]):
            try:
                arr = np.empty(shape, dtype=dtype)
            except MemoryError:
                raise _error(path, f"not enough memory for tensor {name!r} ({end - begin} bytes)") from None
            except ValueError as exc:  # "array is too big": a zero-size shape whose other sides overflow
                raise _error(path, f"tensor {name!r}: shape {list(shape)} cannot be allocated ({exc})") from None
            view = arr.reshape(-1).view(np.uint8)
            if end > begin and self.fh.readinto(memoryview(view)) != end - begin:
                raise _error(path, f"file is truncated (tensor {name!r} ends early)")
            if dtype == np.bool_ and view.size and view.max() > 1:
                raise _error(path, f"tensor {name!r}: BOOL bytes other than 0 and 1")
            tensors[name] = arr
        if self.fh.read(1) or _identity(os.fstat(self.fh.fileno())) != self.identity:
            raise _error(path, "the file changed while it was being read")
        return tensors

    def close(self) -> None:
        self.fh.close()


_HEADER_KEYS = {FORMAT: {"format", "optimizer", "meta", "module_rngs"},
                FORMAT_V1: {"format", "optimizer", "meta", "module_rngs", "sha256"}}


def _digest_v1(tensors: dict[str, np.ndarray]) -> str:
    """Format 1's SHA-256: over every tensor's name, dtype, shape and bytes (not the metadata)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        arr = tensors[key]
        h.update(f"{key}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _format_of(header: Any, path: Path) -> str:
    fmt = header.get("format") if isinstance(header, dict) else None
    if fmt in (FORMAT, FORMAT_V1):
        return fmt
    raise _error(path, f"unknown checkpoint format {_brief(fmt)}; this trainlab reads {FORMAT!r} "
                       f"and {FORMAT_V1!r}")


def _read(path: Path, expect: Callable[[dict[str, tuple]], None] | None = None
          ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Verify and read a checkpoint; ``expect(table)`` may refuse it before any tensor is allocated.

    Format 2: the whole file is hashed in pieces before its header is parsed (except that the
    table of a file with more than 64 MiB of tensors is checked first, so that a table that does
    not fit the file's size is refused without reading the file), then read into arrays: two
    passes, so that nothing is allocated on the word of an unverified header. Format 1 has no
    digest over its header: it is parsed, read once (the table tiles the file, so at most the
    file's size is allocated) and its tensors' digest checked.
    """
    raw = _Raw(path)
    try:
        if raw.sealed:
            fmt, header = FORMAT, None
            if raw.data_len > _TABLE_FIRST:  # parse first: a table that does not fit the file costs no hashing
                raw.parse()
            if not raw.digest_matches():
                raise _error(path, "checksum mismatch: the file is truncated or corrupted")
            raw.parse()
        else:  # format 1, or a damaged format 2 file: this metadata is not authenticated
            raw.parse()
            header = _parse_json(raw.trainlab, path, "the trainlab metadata")
            fmt = _format_of(header, path)
            if fmt == FORMAT:
                raise _error(path, "checksum field damaged (the header does not start with it): "
                                   "the file is corrupted")
        if expect is not None:
            expect(raw.table)  # type: ignore[arg-type]
        tensors = raw.read_tensors()
    finally:
        raw.close()
    if fmt == FORMAT:
        header = _parse_json(raw.trainlab, path, "the trainlab metadata")
    else:
        if not isinstance(header, dict) or _digest_v1(tensors) != header.get("sha256"):
            raise _error(path, "checksum mismatch: the file is truncated or corrupted")
        warnings.warn(f"checkpoint {path} is in format 1 (trainlab 0.1.0), whose checksum does not cover "
                      f"its metadata; it loads, and any save writes format 2", UserWarning, stacklevel=4)
    if not isinstance(header, dict):
        raise _error(path, f"the trainlab metadata is a JSON {type(header).__name__}, expected an object")
    if _format_of(header, path) != fmt:
        raise _error(path, f"format {header['format']!r} does not match its header layout")
    expected = _HEADER_KEYS[fmt]
    if set(header) != expected:
        missing, extra = sorted(expected - set(header)), sorted(set(header) - expected)
        raise _error(path, "the trainlab metadata " + "; ".join(
            ([f"lacks {', '.join(map(repr, missing))}"] if missing else [])
            + ([f"has unexpected {', '.join(map(repr, extra))}"] if extra else [])))
    return tensors, header


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a checkpoint: returns ``(tensors, header)`` (``header``: the trainlab metadata).

    Raises:
        CheckpointError: if the file is missing, truncated, corrupted or not a trainlab checkpoint.
    """
    path = Path(path)
    try:
        return _read(path)
    except MemoryError:
        raise _error(path, "not enough memory to read it") from None


# ---------------------------------------------------------------------- decoding
class _Decoder:
    """Turn the JSON trees written by :func:`_split` back into dicts, lists and arrays."""

    def __init__(self, tensors: dict[str, np.ndarray], path: Path) -> None:
        self.tensors, self.path, self.used = tensors, path, set()

    def __call__(self, node: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise _error(self.path, f"{where} is nested deeper than {MAX_DEPTH} levels")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(node)]
        if isinstance(node, dict) and set(node) == {"__tensor__"}:
            key = node["__tensor__"]
            if not isinstance(key, str) or key not in self.tensors:
                raise _error(self.path, f"{where} refers to tensor {_brief(key)}, which the file does not hold")
            self.used.add(key)
            return self.tensors[key]
        if isinstance(node, dict) and set(node) == {"__dict__"} and isinstance(node["__dict__"], list):
            out: dict[Any, Any] = {}
            for pair in node["__dict__"]:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))
                        and not isinstance(pair[0], bool)):
                    raise _error(self.path, f"{where}: a dict entry must be [str or int key, value], "
                                            f"got {_brief(pair)}")
                key, value = pair
                if key in out:
                    raise _error(self.path, f"{where}: duplicate key {key!r}")
                out[key] = self(value, f"{where}[{key!r}]", depth + 1)
            return out
        raise _error(self.path, f"{where}: unexpected value {_brief(node)}")


class Prepared:
    """A checkpoint verified and decoded against a model (and optimizer), not applied yet.

    Attributes:
        path: the file.
        meta: the ``meta`` dict given to :func:`save`.
    """

    def __init__(self, path: Path, model: Any, optimizer: Any, model_state: dict[str, np.ndarray],
                 optimizer_state: dict[str, Any] | None, module_rngs: dict[str, Any], meta: dict[str, Any]) -> None:
        self.path, self.model, self.optimizer = path, model, optimizer
        self.model_state, self.optimizer_state = model_state, optimizer_state
        self.module_rngs, self.meta = module_rngs, meta

    def steps(self) -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
        """``(what, apply, undo)`` for the optimizer, the model and the module generators."""
        model, optimizer = self.model, self.optimizer
        out = []
        if self.optimizer_state is not None:
            before_opt = optimizer.state_dict()
            out.append(("optimizer state", lambda: optimizer.load_state_dict(self.optimizer_state),
                        lambda: optimizer.load_state_dict(before_opt)))
        before_model = model.state_dict()
        out.append(("model state", lambda: model.load_state_dict(self.model_state, strict=True),
                    lambda: model.load_state_dict(before_model, strict=True)))
        modules = dict(model.named_modules())
        before_rngs = module_rng_states(model)

        def set_rngs(states: dict[str, Any]) -> None:
            for name, state in states.items():
                modules[name].rng.bit_generator.state = state["state"]

        out.append(("module generators", lambda: set_rngs(self.module_rngs), lambda: set_rngs(before_rngs)))
        return out

    def apply(self) -> dict[str, Any]:
        """Set the optimizer, the model and the module generators; returns :attr:`meta`.

        If one of them refuses its state, the ones already set are restored and a
        :class:`CheckpointError` is raised: nothing has changed.
        """
        apply_all(self.path, self.steps())
        return self.meta


def apply_all(path: Path, steps: list[tuple[str, Callable[[], None], Callable[[], None]]]) -> None:
    """Run every ``apply`` in order; if one raises, run the ``undo`` of it and of each earlier one.

    ``undo`` callables restore snapshots taken before the first ``apply``. Raises
    :class:`CheckpointError` naming ``path`` and the step that failed.
    """
    done: list[Callable[[], None]] = []
    for what, apply, undo in steps:
        done.append(undo)
        try:
            apply()
        except Exception as exc:
            for restore in reversed(done):
                restore()
            raise _error(path, f"does not fit: {what}: {exc}") from None


def prepare(path: str | os.PathLike, model: Any, optimizer: Any = None) -> Prepared:
    """Verify and decode a checkpoint for ``model`` (and ``optimizer``) without changing them.

    Everything :func:`load` checks is checked here; :meth:`Prepared.apply` then sets the state.

    Raises:
        CheckpointError: corrupted/truncated file, or state that does not fit the model.
    """
    path = Path(path)
    try:
        return _prepare(path, model, optimizer)
    except MemoryError:
        raise _error(path, "not enough memory to load it") from None


def _prepare(path: Path, model: Any, optimizer: Any) -> Prepared:
    def fits(table: dict[str, tuple]) -> None:
        expected = {**{k: p.data.shape for k, p in model.named_parameters()},
                    **{k: np.shape(b) for k, b in model.named_buffers()}}
        held = {k: v[1] for k, v in table.items() if "/" not in k}
        missing = [k for k in expected if k not in held]
        unexpected = [k for k in held if k not in expected]
        shapes = [f"{k} (model {tuple(s)}, file {held[k]})" for k, s in expected.items()
                  if k in held and tuple(s) != held[k]]
        problems = ([f"missing keys: {', '.join(missing)}"] if missing else []) + \
                   ([f"unexpected keys: {', '.join(unexpected)}"] if unexpected else []) + \
                   ([f"wrong shapes: {', '.join(shapes)}"] if shapes else [])
        if problems:
            raise _error(path, f"does not fit the model: {'; '.join(problems)}")

    tensors, header = _read(path, fits)
    decode = _Decoder(tensors, path)
    optimizer_state = None
    if optimizer is not None:
        if header["optimizer"] is None:
            raise _error(path, "holds no optimizer state")
        optimizer_state = decode(header["optimizer"], "optimizer state")
        if not isinstance(optimizer_state, dict):
            raise _error(path, f"optimizer state is a {type(optimizer_state).__name__}, expected a dict")
    elif header["optimizer"] is not None:
        decode(header["optimizer"], "optimizer state")   # checked even when not loaded
    meta = decode(header["meta"], "meta")
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise _error(path, f"meta is {_brief(meta)}, expected a dict with str keys")
    unused = sorted(k for k in tensors if "/" in k and k not in decode.used)
    if unused:
        raise _error(path, f"tensor(s) {', '.join(unused[:5])} are referred to by nothing")
    module_rngs = _check_module_rngs(model, header["module_rngs"], path)
    return Prepared(path, model, optimizer, {k: v for k, v in tensors.items() if "/" not in k},
                    optimizer_state, module_rngs, meta)


def _check_module_rngs(model: Any, states: Any, path: Path) -> dict[str, Any]:
    if not isinstance(states, dict):
        raise _error(path, f"module_rngs is {_brief(states)}, expected a dict")
    owners = {name: m.rng for name, m in model.named_modules()
              if isinstance(getattr(m, "rng", None), np.random.Generator)}
    missing = [name for name in states if name not in owners]
    if missing:
        raise _error(path, f"does not fit: random generator state for module(s) {', '.join(missing)} "
                           f"has no matching generator in the model")
    for name, state in states.items():
        try:
            check_rng_state(owners[name], state, f"random generator state of module {name!r}")
        except ValueError as exc:
            raise _error(path, str(exc)) from None
    return states


def load(path: str | os.PathLike, model: Any, optimizer: Any = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save` into ``model`` (and ``optimizer``).

    Nothing is changed unless the whole file verifies, decodes and fits (see the module's
    docstring for the order of the checks).

    Returns:
        The ``meta`` dict given to :func:`save`.

    Raises:
        CheckpointError: corrupted/truncated file, or state that does not fit the model.
    """
    return prepare(path, model, optimizer).apply()


def torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The model part of a checkpoint as a PyTorch-keyed dict of arrays (verified)."""
    return {k: v for k, v in read(path)[0].items() if "/" not in k}


def save_weights(path: str | os.PathLike, model: Any) -> Path:
    """Write ``model.state_dict()`` alone as a plain safetensors file (atomic).

    The file loads into the equivalent torch module with
    ``load_state_dict(safetensors.torch.load_file(path))``, and back with :func:`load`
    (``optimizer=None``).
    """
    return save(path, model)
