"""The user's own data: ``.npz`` archives and ``.csv`` tables, validated before and after reading.

Every problem raises :class:`~trainlab.data.errors.DataError` (a ``ValueError``) whose
one-line message starts with the file's path and names the place: ``line L`` (1-based line
of the file, header = line 1) for CSV, the member (``'x.npy'``) and ``row i`` (0-based
index along the first axis) for ``.npz``.

* ``.npz``: arrays ``x`` (N, ...) numeric and ``y`` (N,) integer class labels. The archive
  is read member by member with :mod:`zipfile`, never with ``np.load`` and never
  unpickling (object arrays are refused). Before any array is allocated or inflated, the
  sizes each member declares are checked: a stored member must fit in the file, a
  deflated member cannot inflate to more than 1032 times its compressed size (deflate's
  limit), the ``.npy`` header's shape times item size must equal the member's declared
  size, and the arrays together must fit in ``max_bytes`` (default 1 GiB). Then the
  data is inflated in 256 KiB chunks straight into the array, and the member's CRC-32 is
  checked.
* ``.csv``: UTF-8 (a byte-order mark is ignored), a header row naming the columns is
  required; ``label_column`` names the labels, every other column is a numeric feature.
  Blank lines are skipped. The file's size is checked against ``max_bytes`` before it is
  read, rows are converted to float64 in blocks of 4,096, and the table may not grow past
  ``max_bytes`` either.

Labels must be whole numbers ``0 <= label < max_classes`` (default 10,000; ``2`` or
``2.0``, not ``1.5``, ``-1``, ``10**9`` or ``"cat"``). The number of classes is
``K = max(label) + 1``: labels are class indices, as in PyTorch's ``CrossEntropyLoss``,
and are never renumbered, so labels ``{0, 2}`` give ``K = 3`` with class 1 empty (the
model gets an output that no sample asks for).

Limits are raised with the keywords ``max_bytes=`` / ``max_classes=`` or the environment
variables ``TRAINLAB_DATA_MAX_BYTES`` / ``TRAINLAB_DATA_MAX_CLASSES``
(:mod:`trainlab.data.errors`).
"""

from __future__ import annotations

import ast
import csv
import difflib
import math
import os
import re
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

import numpy as np

from trainlab.data.errors import (
    DEFLATE_MAX_RATIO,
    READ_CHUNK,
    DataError,
    max_bytes_limit,
    max_classes_limit,
    raise_hint,
    shorten,
)

__all__ = ["load_npz", "load_csv", "check_labels"]

CSV_BLOCK_ROWS = 4096       #: CSV rows converted to float64 at a time
_NPY_MAGIC = b"\x93NUMPY"
_MAX_NPY_HEADER = 10_000    #: characters; numpy's own default ``max_header_size``
_MAX_AXES = 32
_NPY_HEADER_CHARS = re.compile(r"[\w\s'\"{}(),:<>|=.]*")    # no operators: keeps literal_eval shallow
_NPY_DESCR = re.compile(r"[<>|=]?[A-Za-z?]\d{0,3}")        # a plain dtype such as '<f8' or '|u1'
# what zipfile and zlib raise on a damaged archive (struct.error: a short header field)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError,
               NotImplementedError, RuntimeError, struct.error, OverflowError)


def check_labels(y: np.ndarray, source: str, place: Callable[[int], str],
                 max_classes: int | None = None) -> np.ndarray:
    """Return class labels ``y`` as int64, or raise :class:`DataError` naming the first bad one.

    Args:
        y: (N,) numeric labels; floats must be whole numbers.
        source: the file, for the message.
        place: maps a 0-based sample index to its place in the file ("line 7", "row 6").
        max_classes: the largest K allowed (labels ``0..K-1``); None means
            ``$TRAINLAB_DATA_MAX_CLASSES`` or 10,000.
    """
    limit = max_classes_limit(max_classes)
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind not in "iuf":
        raise DataError(f"{source}: labels must be integers, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{source}: {place(i)}: label {y[i].item()!r} is not a whole number (class labels are 0..K-1)"
            )
    if len(y) == 0:
        return y.astype(np.int64)
    if y.dtype.kind != "u" and y.min() < 0:
        i = int(np.argmax(y < 0))
        raise DataError(f"{source}: {place(i)}: label {y[i].item()!r} is negative (class labels are 0..K-1)")
    if y.max() >= limit:
        i = int(np.argmax(y))
        found = np.unique(y)
        raise DataError(
            f"{source}: {place(i)}: label {y[i].item():.0f} would make {y[i].item() + 1:,.0f} classes, more "
            f"than the {limit:,} allowed (class labels are 0..K-1); the file has {len(found):,} distinct labels "
            f"from {found[0].item():.0f} to {found[-1].item():.0f} in {len(y):,} samples: check the label "
            f"column, or {raise_hint('classes')}"
        )
    return y.astype(np.int64)


# --------------------------------------------------------------------------- .npz


class _NpyHeader(NamedTuple):
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    size: int  #: bytes of the magic, length field and header text before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _file_size(source: str) -> int:
    try:
        if os.path.isdir(source):
            raise DataError(f"{source}: is a directory, expected a data file")
        return os.stat(source).st_size
    except OSError as exc:
        raise DataError(f"{source}: cannot read the file ({exc.strerror or exc})") from None


def _read_exact(stream: BinaryIO, n: int, where: str, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise DataError(f"{where}: ends inside the {what} ({len(data)} of {n} bytes)")
    return data


def _read_npy_header(stream: BinaryIO, where: str) -> _NpyHeader:
    """Parse a ``.npy`` header (format versions 1.0, 2.0, 3.0) without trusting any of it."""
    magic = _read_exact(stream, 8, where, ".npy magic number")
    if magic[:6] != _NPY_MAGIC:
        raise DataError(f"{where}: not a .npy array (starts with {magic[:6]!r}, expected {_NPY_MAGIC!r})")
    major, minor = magic[6], magic[7]
    if major not in (1, 2, 3):
        raise DataError(f"{where}: unsupported .npy format version {major}.{minor} (known: 1.0, 2.0, 3.0)")
    length_field = "<H" if major == 1 else "<I"
    (length,) = struct.unpack(length_field, _read_exact(stream, struct.calcsize(length_field), where,
                                                        ".npy header length"))
    if length > _MAX_NPY_HEADER:
        raise DataError(f"{where}: .npy header of {length:,} bytes, over the {_MAX_NPY_HEADER:,} a plain "
                        "numeric array needs")
    raw = _read_exact(stream, length, where, ".npy header")
    try:
        text = raw.decode("latin1" if major < 3 else "utf8")
    except UnicodeDecodeError:
        raise DataError(f"{where}: .npy header is not valid UTF-8") from None
    if not _NPY_HEADER_CHARS.fullmatch(text):
        raise DataError(f"{where}: .npy header {shorten(text)} is not a plain dictionary literal")
    try:
        fields = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        # MemoryError here is CPython's parser stack overflow on a <= 10 kB string, not a lack of memory
        raise DataError(f"{where}: cannot parse the .npy header {shorten(text)}") from None
    if not isinstance(fields, dict) or set(fields) != {"descr", "fortran_order", "shape"}:
        raise DataError(f"{where}: .npy header {shorten(text)} is not a dict of 'descr', 'fortran_order', "
                        "'shape'")
    shape, fortran_order, descr = fields["shape"], fields["fortran_order"], fields["descr"]
    if (not isinstance(shape, tuple) or len(shape) > _MAX_AXES
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise DataError(f"{where}: .npy header shape {shorten(shape)} is not a tuple of at most {_MAX_AXES} "
                        "non-negative integers")
    if not isinstance(fortran_order, bool):
        raise DataError(f"{where}: .npy header fortran_order {shorten(fortran_order)} is not True or False")
    if not isinstance(descr, str) or not _NPY_DESCR.fullmatch(descr):
        raise DataError(f"{where}: dtype {shorten(descr)} is not a plain numeric type; expected a numeric "
                        "array (bool, int, uint or float)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dtype = np.dtype(descr)
    except (TypeError, ValueError):
        raise DataError(f"{where}: unknown dtype {descr!r}") from None
    if dtype.kind == "O":
        raise DataError(f"{where}: is an object array, which only unpickling could load; trainlab never "
                        "unpickles data: save plain numeric arrays")
    if dtype.kind not in "biuf":
        raise DataError(f"{where}: dtype {dtype} is not numeric; expected bool, int, uint or float")
    return _NpyHeader(tuple(shape), fortran_order, dtype, 8 + struct.calcsize(length_field) + length)


def _check_declared(where: str, info: zipfile.ZipInfo, file_size: int) -> None:
    """Refuse a member whose declared sizes the archive cannot hold, before reading it."""
    if info.flag_bits & 0x1:
        raise DataError(f"{where}: is encrypted; save the arrays with np.savez or np.savez_compressed")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise DataError(f"{where}: compression method {info.compress_type} is not supported; save with "
                        "np.savez (stored) or np.savez_compressed (deflate)")
    if info.compress_size > file_size:
        raise DataError(f"{where}: declares {info.compress_size:,} compressed bytes in a {file_size:,}-byte "
                        "file (truncated or corrupt)")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise DataError(f"{where}: stored member declares {info.file_size:,} bytes but holds "
                        f"{info.compress_size:,} (corrupt)")
    bound = DEFLATE_MAX_RATIO * info.compress_size + 1024
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > bound:
        raise DataError(f"{where}: declares {info.file_size:,} bytes inflated from {info.compress_size:,} "
                        f"compressed, more than deflate can produce ({DEFLATE_MAX_RATIO}:1); corrupt archive")


def _read_data(stream: BinaryIO, header: _NpyHeader, where: str) -> np.ndarray:
    """Inflate the array's bytes in bounded chunks straight into a new array."""
    array = np.empty(math.prod(header.shape), dtype=header.dtype)
    view = array.view(np.uint8)  # the array's bytes, written in place by readinto
    filled = 0
    while filled < len(view):
        n = stream.readinto(view[filled:filled + READ_CHUNK])
        if not n:
            raise DataError(f"{where}: data ends after {filled:,} of {len(view):,} bytes (truncated)")
        filled += n
    if stream.read(1):
        raise DataError(f"{where}: more data than its shape {header.shape} of {header.dtype} holds")
    if header.fortran_order:
        return array.reshape(header.shape[::-1]).transpose()
    return array.reshape(header.shape)


def _npz_members(archive: zipfile.ZipFile, source: str) -> dict[str, zipfile.ZipInfo]:
    members = {}
    for info in archive.infolist():
        members[info.filename[:-4] if info.filename.endswith(".npy") else info.filename] = info
    missing = [key for key in ("x", "y") if key not in members]
    if missing:
        held = sorted(members)
        shown = held if len(held) <= 20 else held[:20] + [f"... {len(held) - 20} more"]
        raise DataError(f"{source}: missing array(s) {missing}; the archive holds {shown}; expected 'x' "
                        "(inputs, N x features) and 'y' (integer labels, N)")
    return {key: members[key] for key in ("x", "y")}


def load_npz(path: str | os.PathLike, *, max_bytes: int | None = None,
             max_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read arrays ``x`` and ``y`` from an ``.npz`` archive (never unpickling).

    Args:
        path: the archive (``np.savez(path, x=..., y=...)`` or ``np.savez_compressed``).
        max_bytes: the most bytes ``x`` and ``y`` may declare together; None means
            ``$TRAINLAB_DATA_MAX_BYTES`` or 1 GiB.
        max_classes: the most classes the labels may imply; None means
            ``$TRAINLAB_DATA_MAX_CLASSES`` or 10,000.

    Returns:
        ``x`` as stored (numeric, (N, ...) with at least 2 axes, all finite) and ``y``
        as int64 (N,).

    Raises:
        DataError: naming the file (and member, row), for anything but a good archive.
    """
    source = os.fspath(path)
    limit = max_bytes_limit(max_bytes)
    file_size = _file_size(source)
    try:
        with open(source, "rb") as f:
            start = f.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise DataError(f"{source}: cannot read the file ({exc.strerror or exc})") from None
    if start == _NPY_MAGIC:
        raise DataError(f"{source}: is a single .npy array, expected an .npz archive with arrays 'x' and 'y'")
    try:
        archive = zipfile.ZipFile(source)
    except _ZIP_ERRORS as exc:
        raise DataError(f"{source}: cannot read as an .npz (zip) archive ({type(exc).__name__}: {exc})") from None
    with archive:
        members = _npz_members(archive, source)
        wheres = {key: f"{source}: member {info.filename!r}" for key, info in members.items()}
        for key, info in members.items():
            _check_declared(wheres[key], info, file_size)
        declared = sum(info.file_size for info in members.values())
        if declared > limit:
            raise DataError(f"{source}: arrays 'x' and 'y' declare {declared:,} bytes, over the {limit:,}-byte "
                            f"limit on data files; {raise_hint('bytes')}")
        arrays = _read_members(archive, source, members, wheres)
    x, y = arrays["x"], arrays["y"]
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            where = np.unravel_index(int(np.argmax(bad)), x.shape)
            feature = where[1] if x.ndim == 2 else tuple(int(i) for i in where[1:])
            raise DataError(f"{wheres['x']}: row {where[0]}: x has {x[where]} (NaN/Inf) at feature {feature}")
    return x, check_labels(y, wheres["y"], lambda i: f"row {i}", max_classes)


def _read_members(archive: zipfile.ZipFile, source: str, members: dict[str, zipfile.ZipInfo],
                  wheres: dict[str, str]) -> dict[str, np.ndarray]:
    """Open both members, check their headers against each other, then read their data."""
    streams, headers, arrays, key = {}, {}, {}, "x"
    try:
        for key, info in members.items():
            streams[key] = archive.open(info)
            headers[key] = header = _read_npy_header(streams[key], wheres[key])
            if header.size + header.nbytes != info.file_size:
                raise DataError(
                    f"{wheres[key]}: header declares shape {header.shape} of {header.dtype} ({header.nbytes:,} "
                    f"bytes) but the member holds {info.file_size - header.size:,} data bytes (corrupt or crafted)")
        x, y = headers["x"].shape, headers["y"].shape
        if len(x) < 2:
            raise DataError(f"{wheres['x']}: x must have shape (N, features...), got {x}; reshape to (N, 1)")
        if len(y) != 1:
            raise DataError(f"{wheres['y']}: y must have shape (N,), got {y}")
        if x[0] != y[0]:
            raise DataError(f"{source}: x has {x[0]} samples (rows) but y has {y[0]} labels")
        if x[0] == 0:
            raise DataError(f"{source}: x and y are empty")
        for key in ("x", "y"):
            arrays[key] = _read_data(streams[key], headers[key], wheres[key])
        return arrays
    except DataError:
        raise
    except _ZIP_ERRORS as exc:
        raise DataError(f"{wheres[key]}: corrupt or truncated ({type(exc).__name__}: {exc})") from None
    finally:
        for stream in streams.values():
            stream.close()


# --------------------------------------------------------------------------- .csv


def load_csv(path: str | os.PathLike, label_column: str = "label", *, max_bytes: int | None = None,
             max_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a CSV table with a header row; one column holds the class labels.

    Args:
        path: the file (UTF-8; a byte-order mark is ignored).
        label_column: name of the label column; every other column is a feature.
        max_bytes: the largest file (and float64 table) allowed; None means
            ``$TRAINLAB_DATA_MAX_BYTES`` or 1 GiB.
        max_classes: the most classes the labels may imply; None means
            ``$TRAINLAB_DATA_MAX_CLASSES`` or 10,000.

    Returns:
        ``x`` float64 (N, D) in the file's column order, ``y`` int64 (N,), and the D
        feature names.

    Raises:
        DataError: naming the file, the line and the column, for anything but a good table.
    """
    source = os.fspath(path)
    limit = max_bytes_limit(max_bytes)
    size = _file_size(source)
    if size > limit:
        raise DataError(f"{source}: the file has {size:,} bytes, over the {limit:,}-byte limit on data files; "
                        f"{raise_hint('bytes')}")
    try:
        with open(source, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                header, blocks, lines = _read_table(source, reader, label_column, limit)
            except csv.Error as exc:
                raise DataError(_csv_problem(source, reader.line_num, exc)) from None
    except UnicodeDecodeError as exc:
        raise DataError(_not_utf8(source, exc)) from None
    except OSError as exc:
        raise DataError(f"{source}: cannot read the file ({exc.strerror or exc})") from None
    table = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    label_index = header.index(label_column)
    y = check_labels(table[:, label_index], source, lambda i: f"line {lines[i]}, column {label_column!r}",
                     max_classes)
    x = np.delete(table, label_index, axis=1)
    return x, y, [name for name in header if name != label_column]


def _read_table(source: str, reader: Iterator[list[str]], label_column: str,
                limit: int) -> tuple[list[str], list[np.ndarray], list[int]]:
    header = next(reader, None)
    if header is None:
        raise DataError(f"{source}: the file is empty; a header row naming the columns is required")
    header = [name.strip() for name in header]
    _check_header(source, header, label_column)
    blocks, lines, rows, row_lines = [], [], [], []
    max_rows = max(1, limit // (8 * len(header)))
    for row in reader:
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{source}: line {reader.line_num}: ragged row with {len(row)} cells, the header "
                            f"has {len(header)} columns")
        rows.append(row)
        row_lines.append(reader.line_num)
        if len(lines) + len(rows) > max_rows:
            raise DataError(f"{source}: more than {max_rows:,} rows of {len(header)} columns, over the "
                            f"{limit:,}-byte limit on data tables; {raise_hint('bytes')}")
        if len(rows) == CSV_BLOCK_ROWS:
            blocks.append(_to_float(source, rows, row_lines, header))
            lines += row_lines
            rows, row_lines = [], []
    if rows:
        blocks.append(_to_float(source, rows, row_lines, header))
        lines += row_lines
    if not blocks:
        raise DataError(f"{source}: no data rows after the header (line 1)")
    return header, blocks, lines


def _columns(header: list[str]) -> str:
    shown = [shorten(name, 30) for name in header[:20]]
    return "[" + ", ".join(shown) + (f", ... {len(header) - 20} more" if len(header) > 20 else "") + "]"


def _check_header(source: str, header: list[str], label_column: str) -> None:
    if not any(header):
        raise DataError(f"{source}: line 1 is blank; the first line must be a header row naming the columns")
    for j, name in enumerate(header):
        if not name:
            raise DataError(f"{source}: line 1: column {j + 1} has no name; a header row naming the columns "
                            "is required")
        try:
            float(name)
        except ValueError:
            continue
        raise DataError(f"{source}: line 1: header cell {shorten(name)} is a number; the first line must be a "
                        "header row naming the columns")
    counts: dict[str, int] = {}
    for name in header:
        counts[name] = counts.get(name, 0) + 1
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise DataError(f"{source}: line 1: duplicate column names {_columns(duplicates)}")
    if label_column not in header:
        close = difflib.get_close_matches(label_column, header[:1000], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"{source}: line 1: no label column {label_column!r}; the columns are {_columns(header)}.{hint} "
            "Choose the label column with --set data.label_column=NAME on the command line, or "
            "label_column='NAME' in Python."
        )
    if len(header) < 2:
        raise DataError(f"{source}: line 1: no feature columns besides the label column {label_column!r}")


def _to_float(source: str, rows: list[list[str]], lines: list[int], header: list[str]) -> np.ndarray:
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError:
        table = np.empty((len(rows), len(header)), dtype=np.float64)
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                try:
                    table[i, j] = float(cell)
                except ValueError:
                    what = "empty cell" if not cell.strip() else f"{shorten(cell.strip())} is not a number"
                    raise DataError(f"{source}: line {lines[i]}, column {shorten(header[j], 30)}: {what}") from None
    bad = ~np.isfinite(table)
    if bad.any():
        i, j = np.unravel_index(int(np.argmax(bad)), table.shape)
        raise DataError(f"{source}: line {lines[i]}, column {shorten(header[j], 30)}: value "
                        f"{shorten(rows[i][j].strip())} is not finite (NaN/Inf)")
    return table


def _csv_problem(source: str, line: int, exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return (f"{source}: line {line}: a cell longer than {csv.field_size_limit():,} characters; numeric "
                "cells are short, so check the delimiter and look for an unclosed quote (\") before this line")
    return f"{source}: line {line}: not a valid CSV row ({text})"


def _not_utf8(source: str, exc: UnicodeDecodeError) -> str:
    """Name the first line with a byte that is not UTF-8 (found by rescanning the file line by line)."""
    try:
        with open(source, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as bad:
                    byte = raw[bad.start:bad.start + 1]
                    return (f"{source}: line {number}: byte {byte!r} at column {bad.start + 1} is not UTF-8; save "
                            "the table as UTF-8 text")
    except OSError:
        pass
    return f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the table as UTF-8 text"
