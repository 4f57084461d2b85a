"""The user's own data: ``.npz`` archives and ``.csv`` tables, validated cell by cell.

Every problem raises ``ValueError`` whose message starts with the file's path and names
the place: ``line L`` (1-based line of the file, header = line 1) for CSV, ``row i``
(0-based index along the first axis) for ``.npz``.

* ``.npz``: arrays ``x`` (N, ...) numeric and ``y`` (N,) integer class labels, loaded
  with ``allow_pickle=False`` always: an object array is refused, never unpickled.
* ``.csv``: a header row naming the columns is required; ``label_column`` names the
  labels, every other column is a numeric feature. Blank lines are skipped.

Labels must be whole numbers >= 0 (``2`` or ``2.0``, not ``1.5``, ``-1`` or ``"cat"``).
"""

from __future__ import annotations

import csv
import difflib
import os
import zipfile
from collections.abc import Callable

import numpy as np

__all__ = ["load_npz", "load_csv", "check_labels"]


def check_labels(y: np.ndarray, source: str, place: Callable[[int], str]) -> np.ndarray:
    """Return class labels ``y`` as int64, or raise naming the first bad one.

    Args:
        y: (N,) numeric labels; floats must be whole numbers.
        source: the file, for the message.
        place: maps a 0-based sample index to its place in the file ("line 7", "row 6").
    """
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind not in "iuf":
        raise ValueError(f"{source}: labels must be integers, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"{source}: {place(i)}: label {y[i]!r} is not a whole number (class labels are 0..K-1)"
            )
    if y.dtype.kind != "u" and len(y) and y.min() < 0:
        i = int(np.argmax(y < 0))
        raise ValueError(f"{source}: {place(i)}: label {y[i]!r} is negative (class labels are 0..K-1)")
    if y.dtype.kind == "u" and y.dtype.itemsize == 8 and len(y) and y.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{source}: labels do not fit in int64")
    return y.astype(np.int64)


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read arrays ``x`` and ``y`` from an ``.npz`` archive (never unpickling).

    Args:
        path: the archive (``np.savez(path, x=..., y=...)``).

    Returns:
        ``x`` as stored (numeric, (N, ...) with at least 2 axes, all finite) and ``y``
        as int64 (N,).
    """
    source = os.fspath(path)
    try:
        archive = np.load(source, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{source}: cannot read as an .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{source}: is a single .npy array, expected an .npz archive with arrays 'x' and 'y'"
        )
    with archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise ValueError(
                f"{source}: missing array(s) {missing}; the archive holds {sorted(archive.files)}; "
                "expected 'x' (inputs, N x features) and 'y' (integer labels, N)"
            )
        arrays = {}
        for key in ("x", "y"):
            try:
                arrays[key] = archive[key]
            except ValueError as exc:  # object arrays need pickle, which is refused
                raise ValueError(
                    f"{source}: array {key!r} cannot be loaded without unpickling ({exc}); "
                    "trainlab never unpickles data: save plain numeric arrays"
                ) from exc
    x, y = arrays["x"], arrays["y"]
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{source}: x must be numeric, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{source}: x must have shape (N, features...), got {x.shape}; reshape to (N, 1)")
    if y.ndim != 1:
        raise ValueError(f"{source}: y must have shape (N,), got {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{source}: x has {len(x)} samples (rows) but y has {len(y)} labels")
    if len(x) == 0:
        raise ValueError(f"{source}: x and y are empty")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            where = np.unravel_index(int(np.argmax(bad)), x.shape)
            feature = where[1] if x.ndim == 2 else tuple(int(i) for i in where[1:])
            raise ValueError(f"{source}: row {where[0]}: x has {x[where]} (NaN/Inf) at feature {feature}")
    return x, check_labels(y, source, lambda i: f"row {i}")


def load_csv(
    path: str | os.PathLike, label_column: str = "label"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a CSV table with a header row; one column holds the class labels.

    Args:
        path: the file (UTF-8; a byte-order mark is ignored).
        label_column: name of the label column; every other column is a feature.

    Returns:
        ``x`` float64 (N, D) in the file's column order, ``y`` int64 (N,), and the D
        feature names.
    """
    source = os.fspath(path)
    with open(source, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{source}: the file is empty; a header row naming the columns is required")
        header = [name.strip() for name in header]
        _check_header(source, header, label_column)
        rows, lines = [], []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{source}: line {reader.line_num}: ragged row with {len(row)} cells, "
                    f"the header has {len(header)} columns"
                )
            rows.append(row)
            lines.append(reader.line_num)
    if not rows:
        raise ValueError(f"{source}: no data rows after the header")
    table = _to_float(source, rows, lines, header)
    bad = ~np.isfinite(table)
    if bad.any():
        i, j = np.unravel_index(int(np.argmax(bad)), table.shape)
        raise ValueError(
            f"{source}: line {lines[i]}, column {header[j]!r}: value {rows[i][j].strip()!r} "
            "is not finite (NaN/Inf)"
        )
    label_index = header.index(label_column)
    y = check_labels(table[:, label_index], source, lambda i: f"line {lines[i]}, column {label_column!r}")
    x = np.delete(table, label_index, axis=1)
    return x, y, [name for name in header if name != label_column]


def _check_header(source: str, header: list[str], label_column: str) -> None:
    for j, name in enumerate(header):
        if not name:
            raise ValueError(
                f"{source}: line 1: column {j + 1} has no name; a header row naming the columns is required"
            )
        try:
            float(name)
        except ValueError:
            continue
        raise ValueError(
            f"{source}: line 1: header cell {name!r} is a number; the first line must be a header "
            "row naming the columns"
        )
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ValueError(f"{source}: line 1: duplicate column names {duplicates}")
    if label_column not in header:
        close = difflib.get_close_matches(label_column, header, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{source}: line 1: missing label column {label_column!r}; available columns: {header}.{hint} "
            "Pass label_column=<name>."
        )
    if len(header) < 2:
        raise ValueError(f"{source}: line 1: no feature columns besides the label column {label_column!r}")


def _to_float(source: str, rows: list[list[str]], lines: list[int], header: list[str]) -> np.ndarray:
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        pass
    table = np.empty((len(rows), len(header)), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            try:
                table[i, j] = float(cell)
            except ValueError:
                what = "empty cell" if not cell.strip() else f"{cell.strip()!r} is not a number"
                raise ValueError(f"{source}: line {lines[i]}, column {header[j]!r}: {what}") from None
    return table
