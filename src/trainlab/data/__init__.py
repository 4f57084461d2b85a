"""Datasets and minibatches: ``load(name)`` -> standardized train/val/test, ``Batches``.

Quick start::

    import numpy as np
    from trainlab import data

    splits = data.load("digits", rng=np.random.default_rng(0))   # x (N, 64) float32
    x, y = splits.train
    for xb, yb in data.Batches(x, y, 64, rng=np.random.default_rng(1)):
        ...

Conventions: float32 inputs, int64 labels in ``[0, num_classes)``; standardization with
train-split statistics only (global mean/std for images, per-feature for tabular and
synthetic data), stored in ``splits.info["standardizer"]``; every random choice comes
from an explicit ``numpy.random.Generator`` (``rng=None`` in :func:`load` means
``np.random.default_rng(0)``).

Every problem with a data file raises :class:`DataError` (a ``ValueError``; its subclasses
``DownloadError`` and ``ChecksumError`` for downloads) with a one-line message naming the
file and the place. Files are checked against size and class limits before anything is
allocated (:mod:`trainlab.data.errors`: ``max_bytes`` 1 GiB, ``max_classes`` 10,000).
"""

from trainlab.data.batches import Batches
from trainlab.data.datasets import DEFAULT_SEED, load, names
from trainlab.data.download import ChecksumError, DownloadError, cache_dir, fetch
from trainlab.data.errors import DEFAULT_MAX_BYTES, DEFAULT_MAX_CLASSES, DataError
from trainlab.data.files import load_csv, load_npz
from trainlab.data.idx import read_idx
from trainlab.data.splits import Dataset, Splits, Standardizer, stratified_split
from trainlab.data.synthetic import make_blobs, make_circles, make_moons, make_spiral

__all__ = [
    "load", "names", "DEFAULT_SEED", "Dataset", "Splits", "Standardizer", "stratified_split", "Batches",
    "read_idx", "fetch", "cache_dir", "DataError", "ChecksumError", "DownloadError", "load_npz", "load_csv",
    "DEFAULT_MAX_BYTES", "DEFAULT_MAX_CLASSES",
    "make_spiral", "make_circles", "make_moons", "make_blobs",
]
