"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 dimensions, then the
``prod(dims)`` values big-endian, row-major. Type codes: 0x08 uint8, 0x09 int8,
0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

__all__ = ["read_idx", "IDX_TYPES"]

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file into a new, writable, native-byte-order array.

    Compression is detected from the content (gzip magic ``1f 8b``), not the file name.

    Args:
        path: the ``.idx``/``-ubyte`` file, raw or gzip-compressed.

    Returns:
        Array of shape ``dims`` from the header, dtype from its type code, e.g.
        (60000, 28, 28) uint8 for MNIST training images and (60000,) uint8 for labels.

    Raises:
        ValueError: naming the file, for a corrupt gzip stream, a bad magic number, an
            unknown type code, zero dimensions, or a data size that disagrees with the header.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes is too short for an IDX header (4-byte magic number)")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: bad IDX magic number 0x{magic:08x}; IDX files start with two zero bytes")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02x}" for code in IDX_TYPES)
        raise ValueError(
            f"{path}: unknown IDX type code 0x{type_code:02x} in magic 0x{magic:08x}; known: {known}"
        )
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions (magic 0x{magic:08x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: file ends inside the header ({len(raw)} bytes, {ndim} dimensions need {header})"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_TYPES[type_code]
    count = math.prod(dims)
    expected, actual = count * dtype.itemsize, len(raw) - header
    if actual != expected:
        raise ValueError(
            f"{path}: size mismatch: header dims {dims} of {dtype.name} need {expected} data bytes, "
            f"file has {actual}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)
