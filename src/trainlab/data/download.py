"""Download-once cache for MNIST and Fashion-MNIST, verified by size, SHA-256 and MD5.

Files live in ``<cache>/<dataset>/<file name>`` where ``<cache>`` is ``$TRAINLAB_DATA`` if
set, else ``~/.cache/trainlab``. With ``TRAINLAB_OFFLINE=1`` (or ``true``/``yes``) a missing
file raises :class:`DownloadError` at once, without any network call; cached files are
used as usual. A missing file is streamed from the first mirror that
answers into a temporary file beside its destination and renamed into place only when
complete (``os.replace``, atomic on one file system), then verified. Every
:func:`fetch` verifies every file, cached or fresh; a file that fails is deleted and
:class:`ChecksumError` raised, so a corrupt copy is never used twice.

Checksums (:data:`SOURCES`): the SHA-256 values are the ones TensorFlow Datasets pins in
``tensorflow_datasets/url_checksums/{mnist,fashion_mnist}.txt`` (also torchvision's
prototype datasets ``_CHECKSUMS``); the MD5 values are torchvision's
(``torchvision/datasets/mnist.py``); sizes in bytes are TFDS's. The bytes are the same on
every mirror listed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple
from urllib.error import URLError
from urllib.request import urlopen

from trainlab.data.errors import DataError

__all__ = [
    "FileRecord", "Source", "SOURCES", "ChecksumError", "DownloadError", "cache_dir", "download",
    "verify_file", "fetch", "offline",
]

ENV_VAR = "TRAINLAB_DATA"
OFFLINE_ENV = "TRAINLAB_OFFLINE"
DEFAULT_TIMEOUT = 60.0


class FileRecord(NamedTuple):
    """One archive: its file name, size in bytes and hex digests."""

    filename: str
    size: int
    sha256: str
    md5: str


class Source(NamedTuple):
    """A dataset's mirrors (base URLs, tried in order) and its files by role."""

    mirrors: tuple[str, ...]
    files: dict[str, FileRecord]


SOURCES: dict[str, Source] = {
    "mnist": Source(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
            "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
        ),
        files={
            "train_images": FileRecord(
                "train-images-idx3-ubyte.gz", 9_912_422,
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train_labels": FileRecord(
                "train-labels-idx1-ubyte.gz", 28_881,
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "d53e105ee54ea40749a09fcbcd1e9432"),
            "test_images": FileRecord(
                "t10k-images-idx3-ubyte.gz", 1_648_877,
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "9fb629c4189551a2d022fa330f9573f3"),
            "test_labels": FileRecord(
                "t10k-labels-idx1-ubyte.gz", 4_542,
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                "ec29112dd5afa0611ce80d1b7f02629c"),
        },
    ),
    "fashion_mnist": Source(
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando's canonical
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        files={
            "train_images": FileRecord(
                "train-images-idx3-ubyte.gz", 26_421_880,
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train_labels": FileRecord(
                "train-labels-idx1-ubyte.gz", 29_515,
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "25c81989df183df01b3e8a0aad5dffbe"),
            "test_images": FileRecord(
                "t10k-images-idx3-ubyte.gz", 4_422_102,
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "bef4ecab320f06d8554ea6380940ec79"),
            "test_labels": FileRecord(
                "t10k-labels-idx1-ubyte.gz", 5_148,
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "bb300cfdad3c16e7a12a480ee83cd310"),
        },
    ),
}


class ChecksumError(DataError):
    """A downloaded or cached file does not match its pinned size or digests."""


class DownloadError(DataError, OSError):
    """No mirror could deliver a file (offline, timeout, HTTP error); a ``DataError`` and an ``OSError``."""


def offline() -> bool:
    """True when ``$TRAINLAB_OFFLINE`` is ``1``, ``true``, ``yes`` or ``on`` (any case)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir() -> Path:
    """The cache root: ``$TRAINLAB_DATA`` if set and non-empty, else ``~/.cache/trainlab``."""
    root = os.environ.get(ENV_VAR)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "trainlab"


def download(url: str, dest: str | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Stream ``url`` to ``dest`` atomically (temporary sibling file, then ``os.replace``).

    On any failure the temporary file is removed and ``dest`` is left untouched.
    Network errors propagate (``urllib.error.URLError``, ``TimeoutError``, ...); :func:`fetch`
    turns them into :class:`DownloadError`, while local errors (a read-only cache) pass through.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def verify_file(path: str | os.PathLike, record: FileRecord) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has ``record``'s size, SHA-256 and MD5."""
    path = Path(path)
    size = path.stat().st_size
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha256.update(chunk)
            md5.update(chunk)
    problems = []
    if size != record.size:
        problems.append(f"size {size} bytes, expected {record.size}")
    if sha256.hexdigest() != record.sha256:
        problems.append(f"sha256 {sha256.hexdigest()}, expected {record.sha256}")
    if md5.hexdigest() != record.md5:
        problems.append(f"md5 {md5.hexdigest()}, expected {record.md5}")
    if problems:
        raise ChecksumError(f"{path}: checksum mismatch: " + "; ".join(problems))


def fetch(
    dataset: str,
    *,
    root: str | os.PathLike | None = None,
    verify: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Path]:
    """Make sure every file of ``dataset`` is in the cache, downloading what is missing.

    Args:
        dataset: a key of :data:`SOURCES` (``"mnist"``, ``"fashion_mnist"``).
        root: cache root; default :func:`cache_dir`. Files go to ``root/dataset/``.
        verify: check size, SHA-256 and MD5 of every file (default True). ``False`` is for
            tests and hand-made files only.
        timeout: seconds per network operation.

    Returns:
        ``{"train_images": path, "train_labels": ..., "test_images": ..., "test_labels": ...}``.

    Raises:
        DownloadError: a file is missing and no mirror delivered it, or ``$TRAINLAB_OFFLINE``
            is set; the one-line message names the folder and every file (with its size and
            SHA-256) to place there by hand.
        ChecksumError: a file failed verification; it has been deleted.
    """
    if dataset not in SOURCES:
        raise ValueError(f"no download source for {dataset!r}; known: {sorted(SOURCES)}")
    source = SOURCES[dataset]
    folder = Path(root).expanduser() if root is not None else cache_dir()
    folder = folder / dataset
    paths = {}
    for role, record in source.files.items():
        path = folder / record.filename
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            _download_from_mirrors(dataset, source, record, path, timeout)
        if verify:
            try:
                verify_file(path, record)
            except ChecksumError as exc:
                path.unlink(missing_ok=True)
                raise ChecksumError(
                    f"{exc}. The file was deleted; run again to download a fresh copy, or place a "
                    f"correct copy at {path} by hand."
                ) from None
        paths[role] = path
    return paths


def _download_from_mirrors(dataset: str, source: Source, record: FileRecord, path: Path,
                           timeout: float) -> None:
    reasons = []
    if offline():
        reasons.append(f"{OFFLINE_ENV} is set, so nothing is downloaded")
    else:
        for mirror in source.mirrors:
            url = mirror + record.filename
            try:
                download(url, path, timeout=timeout)
                return
            except (URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                reasons.append(f"{url}: {exc}")
    folder = path.parent
    manual = "; ".join(
        f"{r.filename} ({r.size:,} bytes, sha256 {r.sha256}"
        + (")" if (folder / r.filename).exists() else ", missing)")
        for r in source.files.values()
    )
    raise DownloadError(
        f"{path}: could not download {record.filename} for {dataset!r} ({'; '.join(reasons)}). "
        f"To use {dataset!r} offline, download these files from {source.mirrors[0]} on another machine and "
        f"put them, still gzip-compressed, in {folder}{os.sep}: {manual}. "
        f"Set ${ENV_VAR} to use another cache folder than {folder.parent}."
    )
