"""``DataError`` and the limits every file reader checks before it allocates.

Every problem with a data file (``.npz``, ``.csv``, IDX, a download) raises
:class:`DataError`, a ``ValueError``, whose message is one self-contained line: it starts
with the file's path, names the place (CSV ``line L``, ``.npz`` member and ``row i``, IDX
header field) and says what was expected, so a command line can print it as it is.

Limits (checked against what a file *declares*, before anything is allocated or inflated):

=================  =====================  ===============================  ==========================
limit              default                keyword                          environment variable
=================  =====================  ===============================  ==========================
bytes of data      1 GiB (``2**30``)      ``max_bytes=``                   ``TRAINLAB_DATA_MAX_BYTES``
classes ``K``      10,000                 ``max_classes=``                 ``TRAINLAB_DATA_MAX_CLASSES``
=================  =====================  ===============================  ==========================

``max_bytes`` bounds the array bytes a file may hold or inflate to: the declared size of
the arrays in an ``.npz`` (after decompression), of an IDX file's data (after gunzip), and
for a CSV both the file's size and the float64 table built from it. Compressed data is also
held to what deflate can produce, :data:`DEFLATE_MAX_RATIO` bytes per compressed byte, so a
header that lies about its size is refused even under a raised limit; and it is inflated
:data:`READ_CHUNK` bytes at a time, straight into the array the header declared.

The keyword wins over the environment variable, which wins over the default. Sizes in the
variable are bytes, optionally with a binary suffix: ``2147483648``, ``2G``, ``2GiB``, ``512M``.
"""

from __future__ import annotations

import numbers
import os
import re

__all__ = ["DataError", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_CLASSES", "MAX_BYTES_ENV", "MAX_CLASSES_ENV",
           "DEFLATE_MAX_RATIO", "READ_CHUNK", "max_bytes_limit", "max_classes_limit"]

DEFAULT_MAX_BYTES = 1 << 30      #: bytes of array data one file may hold or inflate to
DEFAULT_MAX_CLASSES = 10_000     #: the largest number of classes K a label column may imply
DEFLATE_MAX_RATIO = 1032         #: deflate emits at most 258 bytes per 2 bits of input
READ_CHUNK = 1 << 18             #: bytes inflated per read (256 KiB: as fast as one read, stays in cache)
MAX_BYTES_ENV = "TRAINLAB_DATA_MAX_BYTES"
MAX_CLASSES_ENV = "TRAINLAB_DATA_MAX_CLASSES"

_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"\s*(\d{1,19})\s*([KMGT]?)(?:I?B)?\s*", re.IGNORECASE)


class DataError(ValueError):
    """A data file is unreadable, corrupt, too large or not what was expected (names file and place)."""


def _limit(value: object, name: str, env: str, default: int, sizes: bool) -> int:
    if value is None:
        text = os.environ.get(env, "").strip()
        if not text:
            return default
        match = _SIZE.fullmatch(text) if sizes else re.fullmatch(r"\s*(\d{1,19})\s*()", text)
        if match is None or int(match[1]) < 1:
            example = "bytes such as 2147483648 or 2G" if sizes else "a positive integer such as 50000"
            raise DataError(f"environment variable {env}={text!r} is not valid; expected {example}")
        return int(match[1]) * _SUFFIXES[match[2].upper()]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def max_bytes_limit(max_bytes: int | None = None) -> int:
    """The byte limit in force: ``max_bytes`` if given, else ``$TRAINLAB_DATA_MAX_BYTES``, else 1 GiB."""
    return _limit(max_bytes, "max_bytes", MAX_BYTES_ENV, DEFAULT_MAX_BYTES, sizes=True)


def max_classes_limit(max_classes: int | None = None) -> int:
    """The class bound in force: ``max_classes``, else ``$TRAINLAB_DATA_MAX_CLASSES``, else 10,000."""
    return _limit(max_classes, "max_classes", MAX_CLASSES_ENV, DEFAULT_MAX_CLASSES, sizes=False)


def raise_hint(what: str) -> str:
    """The sentence telling a user how to raise a limit (``what`` is "bytes" or "classes")."""
    keyword, env = ("max_bytes", MAX_BYTES_ENV) if what == "bytes" else ("max_classes", MAX_CLASSES_ENV)
    return f"if the file is genuine, raise the limit with {keyword}= in Python or the {env} environment variable"


def shorten(text: object, limit: int = 40) -> str:
    """``repr`` of ``text`` cut to about ``limit`` characters, for quoting file contents in a message."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..." + f" ({len(str(text)):,} chars)"
