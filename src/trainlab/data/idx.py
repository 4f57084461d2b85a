"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 dimensions, then the
``prod(dims)`` values big-endian, row-major. Type codes: 0x08 uint8, 0x09 int8,
0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.

The header is read first and the data size it declares, ``prod(dims) * itemsize``, is
checked before anything is allocated or inflated: against ``max_bytes`` (default 1 GiB,
:mod:`trainlab.data.errors`), and against the file itself (a raw file must hold exactly
that many bytes after the header; a gzip file cannot inflate to more than 1032 times its
size). The data is then inflated in 256 KiB chunks straight into the array, so a file whose
stream runs on past its header's size costs at most one chunk more, and the gzip CRC-32 is
checked at the end.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from typing import BinaryIO

import numpy as np

from trainlab.data.errors import DEFLATE_MAX_RATIO, READ_CHUNK, DataError, max_bytes_limit, raise_hint

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
_MAX_DIMS = 32


def read_idx(path: str | os.PathLike, *, max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file into a new, writable, native-byte-order array.

    Compression is detected from the content (gzip magic ``1f 8b``), not the file name.

    Args:
        path: the ``.idx``/``-ubyte`` file, raw or gzip-compressed.
        max_bytes: the most data bytes the header may declare; None means
            ``$TRAINLAB_DATA_MAX_BYTES`` or 1 GiB.

    Returns:
        Array of shape ``dims`` from the header, dtype from its type code, e.g.
        (60000, 28, 28) uint8 for MNIST training images and (60000,) uint8 for labels.

    Raises:
        DataError: naming the file, for a corrupt gzip stream, a bad magic number, an
            unknown type code, zero dimensions, a declared size over the limit, or a data
            size that disagrees with the header.
    """
    path = os.fspath(path)
    limit = max_bytes_limit(max_bytes)
    compressed = False
    try:
        if os.path.isdir(path):
            raise DataError(f"{path}: is a directory, expected an IDX file")
        with open(path, "rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if not compressed:
                return _read(raw, path, size, limit, compressed=False)
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read(stream, path, size, limit, compressed=True)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        if not compressed:
            raise DataError(f"{path}: cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None
        raise DataError(f"{path}: corrupt or truncated gzip data ({type(exc).__name__}: {exc})") from None


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _read(stream: BinaryIO, path: str, size: int, limit: int, *, compressed: bool) -> np.ndarray:
    what = "gzip-inflated data" if compressed else "file"
    start = _read_exact(stream, 4)
    if len(start) < 4:
        raise DataError(f"{path}: {len(start)} bytes is too short for an IDX header (4-byte magic number)")
    magic = int.from_bytes(start, "big")
    if start[0] != 0 or start[1] != 0:
        raise DataError(f"{path}: bad IDX magic number 0x{magic:08x}; IDX files start with two zero bytes")
    type_code, ndim = start[2], start[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02x}" for code in IDX_TYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x} in magic 0x{magic:08x}; known: {known}")
    if ndim == 0 or ndim > _MAX_DIMS:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions (magic 0x{magic:08x}); expected 1 to "
                        f"{_MAX_DIMS}")
    header = 4 + 4 * ndim
    fields = _read_exact(stream, 4 * ndim)
    if len(fields) < 4 * ndim:
        raise DataError(f"{path}: {what} ends inside the header ({4 + len(fields)} bytes, {ndim} dimensions "
                        f"need {header})")
    dims = struct.unpack(f">{ndim}I", fields)
    dtype = IDX_TYPES[type_code]
    expected = math.prod(dims) * dtype.itemsize
    if expected > limit:
        raise DataError(f"{path}: header dims {dims} of {dtype.name} declare {expected:,} data bytes, over the "
                        f"{limit:,}-byte limit on data files; {raise_hint('bytes')}")
    if not compressed and size - header != expected:
        raise DataError(f"{path}: size mismatch: header dims {dims} of {dtype.name} need {expected:,} data bytes, "
                        f"file has {size - header:,}")
    if compressed and expected > DEFLATE_MAX_RATIO * size + 1024:
        raise DataError(f"{path}: header dims {dims} of {dtype.name} declare {expected:,} data bytes, more than a "
                        f"{size:,}-byte gzip file can inflate to (corrupt)")
    data = np.empty(dims, dtype=dtype)
    view = data.reshape(-1).view(np.uint8)  # the array's bytes, written in place by readinto
    filled = 0
    while filled < expected:
        n = stream.readinto(view[filled:filled + READ_CHUNK])
        if not n:
            raise DataError(f"{path}: size mismatch: header dims {dims} of {dtype.name} need {expected:,} data "
                            f"bytes, {what} has {filled:,}")
        filled += n
    if stream.read(1):  # also reads the gzip trailer, which checks the CRC-32 and length
        raise DataError(f"{path}: size mismatch: {what} has more than the {expected:,} data bytes its header dims "
                        f"{dims} of {dtype.name} declare")
    if not dtype.isnative:
        data = data.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return data
