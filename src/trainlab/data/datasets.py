"""``load(name)``: named datasets and user files as standardized train/val/test splits.

=================  ==========================================  ===============  ===============
name               source                                      split            standardization
=================  ==========================================  ===============  ===============
``digits``         scikit-learn ``load_digits`` (embedded)      70/10/20         global
``mnist``          IDX files, downloaded once, checksummed      55k/5k + 10k     global
``fashion_mnist``  IDX files, downloaded once, checksummed      55k/5k + 10k     global
``spiral``         :func:`make_spiral` (K arms)                 70/10/20         per_feature
``circles``        :func:`make_circles`                         70/10/20         per_feature
``moons``          :func:`make_moons`                           70/10/20         per_feature
``blobs``          :func:`make_blobs`                           70/10/20         per_feature
``*.npz``          arrays ``x``, ``y``                           70/10/20         per_feature
                                                                                 (global if x has
                                                                                 > 1 axis/sample)
``*.csv``          header row, ``label_column``                 70/10/20         per_feature
=================  ==========================================  ===============  ===============

Every split is stratified (:func:`~trainlab.data.splits.stratified_split`); held-out
sizes are ``ceil(fraction * N)``. MNIST and Fashion-MNIST keep the official 10k test set
and split the official 60k training set into 55k train / 5k val. The split (and, for
synthetic sets, the data) is decided by ``rng``; ``rng=None`` means
``np.random.default_rng(0)``. Standardization statistics come from the train split only;
see :mod:`trainlab.data.splits` for the convention.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.data import download, files, synthetic
from trainlab.data.errors import DataError
from trainlab.data.idx import read_idx
from trainlab.data.splits import Splits, build_splits, resolve_mode, split_sizes, stratified_split

__all__ = ["load", "names", "DEFAULT_SEED"]

DEFAULT_SEED = 0
FILE_SUFFIXES = (".npz", ".csv")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _split_and_build(name: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *,
                     mode: str, val_fraction: float, test_fraction: float, info: dict[str, Any],
                     num_classes: int | None = None) -> Splits:
    sizes = split_sizes(len(y), val_fraction, test_fraction)
    train, val, test = stratified_split(y, sizes, rng=rng)
    info = {"split": f"stratified, val_fraction={val_fraction}, test_fraction={test_fraction}", **info}
    parts = {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}
    k = int(y.max()) + 1 if num_classes is None else num_classes
    return build_splits(name, parts, mode=mode, num_classes=k, info=info)


def _load_digits(rng: np.random.Generator, *, flatten: bool = True, standardize: bool | str = True,
                 val_fraction: float = 0.1, test_fraction: float = 0.2) -> Splits:
    """scikit-learn's 1,797 8x8 digit images (values 0..16): x (N, 64) or (N, 1, 8, 8)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("data.load('digits') needs scikit-learn: pip install scikit-learn") from exc
    x, y = load_digits(return_X_y=True)
    x = x if flatten else x.reshape(-1, 1, 8, 8)
    info = {"source": "sklearn.datasets.load_digits (UCI optdigits test set)",
            "class_names": tuple("0123456789")}
    return _split_and_build("digits", x, y.astype(np.int64), rng, mode=resolve_mode(standardize, "global"),
                            val_fraction=val_fraction, test_fraction=test_fraction, info=info, num_classes=10)


def _idx_loader(dataset: str, class_names: tuple[str, ...]) -> Callable[..., Splits]:
    def loader(rng: np.random.Generator, *, flatten: bool = True, standardize: bool | str = True,
               val_size: int = 5000, verify: bool = True, root: str | os.PathLike | None = None,
               timeout: float = download.DEFAULT_TIMEOUT, max_bytes: int | None = None) -> Splits:
        paths = download.fetch(dataset, root=root, verify=verify, timeout=timeout)
        arrays = {role: read_idx(path, max_bytes=max_bytes) for role, path in paths.items()}
        for part in ("train", "test"):
            images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
            where = f"{paths[f'{part}_images']} / {paths[f'{part}_labels'].name}"
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(f"{where}: expected images (N, H, W) and labels (N,) of one length, "
                                f"got {images.shape} and {labels.shape}")
            if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
                i = int(np.argmax((labels < 0) | (labels >= len(class_names))))
                raise DataError(f"{paths[f'{part}_labels']}: row {i}: label {labels[i]} outside "
                                f"0..{len(class_names) - 1}")
            if len(labels) == 0:
                raise DataError(f"{paths[f'{part}_labels']}: holds no labels")
        x_all, y_all = arrays["train_images"], arrays["train_labels"].astype(np.int64)
        if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < len(y_all):
            raise ValueError(f"val_size must be an integer in [0, {len(y_all)}), got {val_size!r}")
        train, val = stratified_split(y_all, (len(y_all) - val_size, val_size), rng=rng)

        def shaped(x: np.ndarray) -> np.ndarray:
            return x.reshape(len(x), -1) if flatten else x[:, None]

        parts = {"train": (shaped(x_all[train]), y_all[train]), "val": (shaped(x_all[val]), y_all[val]),
                 "test": (shaped(arrays["test_images"]), arrays["test_labels"].astype(np.int64))}
        info = {"source": download.SOURCES[dataset].mirrors[0],
                "files": {role: str(path) for role, path in paths.items()},
                "split": f"official train -> stratified {len(train)} train / {val_size} val; official test",
                "verified": bool(verify), "class_names": class_names}
        return build_splits(dataset, parts, mode=resolve_mode(standardize, "global"),
                            num_classes=len(class_names), info=info)

    loader.__name__ = f"_load_{dataset}"
    return loader


def _synthetic_loader(maker: Callable[..., tuple[np.ndarray, np.ndarray]]) -> Callable[..., Splits]:
    def loader(rng: np.random.Generator, *, standardize: bool | str = True, val_fraction: float = 0.1,
               test_fraction: float = 0.2, **params: Any) -> Splits:
        x, y = maker(**params, rng=rng)
        name = maker.__name__.removeprefix("make_")
        info = {"source": f"trainlab.data.{maker.__name__}", "params": dict(params)}
        return _split_and_build(name, x, y, rng, mode=resolve_mode(standardize, "per_feature"),
                                val_fraction=val_fraction, test_fraction=test_fraction, info=info)

    loader.params = tuple(p for p in inspect.signature(maker).parameters if p != "rng")
    return loader


def _load_file(path: Path, rng: np.random.Generator, *, label_column: str = "label",
               standardize: bool | str = True, val_fraction: float = 0.1, test_fraction: float = 0.2,
               max_bytes: int | None = None, max_classes: int | None = None) -> Splits:
    info: dict[str, Any] = {"source": str(path)}
    limits = {"max_bytes": max_bytes, "max_classes": max_classes}
    if path.suffix.lower() == ".npz":
        x, y = files.load_npz(path, **limits)
    else:
        x, y, info["feature_names"] = files.load_csv(path, label_column=label_column, **limits)
    default = "global" if x.ndim > 2 else "per_feature"
    return _split_and_build(str(path), x, y, rng, mode=resolve_mode(standardize, default),
                            val_fraction=val_fraction, test_fraction=test_fraction, info=info)


_REGISTRY: dict[str, Callable[..., Splits]] = {
    "digits": _load_digits,
    "mnist": _idx_loader("mnist", tuple("0123456789")),
    "fashion_mnist": _idx_loader("fashion_mnist", FASHION_CLASSES),
    "spiral": _synthetic_loader(synthetic.make_spiral),
    "circles": _synthetic_loader(synthetic.make_circles),
    "moons": _synthetic_loader(synthetic.make_moons),
    "blobs": _synthetic_loader(synthetic.make_blobs),
}


def names() -> tuple[str, ...]:
    """The registered dataset names (files are loaded by path ending in .npz or .csv)."""
    return tuple(_REGISTRY)


def _accepted(loader: Callable[..., Splits]) -> tuple[str, ...]:
    params = inspect.signature(loader).parameters
    named = tuple(p for p, v in params.items() if p != "rng" and v.kind is v.KEYWORD_ONLY)
    return named + getattr(loader, "params", ())


def load(name: str | os.PathLike, *, rng: np.random.Generator | None = None, **kwargs: Any) -> Splits:
    """Load a dataset as standardized, stratified train/val/test :class:`Splits`.

    Args:
        name: a registered name (:func:`names`: ``"digits"``, ``"mnist"``,
            ``"fashion_mnist"``, ``"spiral"``, ``"circles"``, ``"moons"``, ``"blobs"``;
            case and ``-``/``_`` are ignored) or a path to a ``.npz`` / ``.csv`` file.
        rng: ``numpy.random.Generator`` deciding the split (and synthetic data);
            ``None`` means ``np.random.default_rng(0)``.
        **kwargs: per dataset:

            * all: ``standardize`` = True (the dataset's default mode), False, ``"global"``
              or ``"per_feature"``.
            * digits / synthetic / files: ``val_fraction=0.1``, ``test_fraction=0.2``.
            * digits, mnist, fashion_mnist: ``flatten=True`` gives x (N, H*W), ``False``
              gives (N, 1, H, W).
            * mnist, fashion_mnist: ``val_size=5000``, ``verify=True`` (size, SHA-256 and
              MD5 of each download), ``root`` (cache folder, default ``$TRAINLAB_DATA`` or
              ``~/.cache/trainlab``), ``timeout=60``, ``max_bytes``.
            * spiral: ``n_samples=300, classes=3, noise=0.2``; circles: ``n_samples,
              noise=0.1, factor=0.5``; moons: ``n_samples, noise=0.1``; blobs: ``n_samples,
              centers=3, n_features=2, cluster_std=1.0, center_box=(-10, 10)``.
            * ``.csv``: ``label_column="label"``.
            * ``.npz`` / ``.csv``: ``max_bytes`` (default 1 GiB) and ``max_classes``
              (default 10,000), the limits of :mod:`trainlab.data.errors`; the environment
              variables ``TRAINLAB_DATA_MAX_BYTES`` / ``TRAINLAB_DATA_MAX_CLASSES`` set them too.

    Returns:
        :class:`Splits` with float32 ``x`` (N, *input_shape), int64 ``y`` in
        ``[0, num_classes)``; ``info["standardizer"]`` holds the train-split statistics.

    Raises:
        DataError: (a ``ValueError``) a missing, corrupt or oversized file, naming the file
            and the line, row or member; :class:`DownloadError` and :class:`ChecksumError`
            for MNIST-style downloads.
        ValueError: unknown name (with the valid names and a close match) or bad arguments.
        TypeError: an argument the dataset does not take, or ``rng`` not a Generator.
    """
    seed = DEFAULT_SEED if rng is None else None
    if rng is None:
        rng = np.random.default_rng(DEFAULT_SEED)
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}; "
                        "pass rng=np.random.default_rng(seed)")
    if isinstance(name, os.PathLike) or (isinstance(name, str) and name.lower().endswith(FILE_SUFFIXES)):
        path = Path(name)
        if path.suffix.lower() not in FILE_SUFFIXES:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; "
                            f"expected one of {FILE_SUFFIXES}")
        if not path.is_file():
            raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
        loader, key = (lambda r, **kw: _load_file(path, r, **kw)), str(path)
        accepted = ("label_column", "standardize", "val_fraction", "test_fraction", "max_bytes", "max_classes")
    elif isinstance(name, str):
        key = name.strip().lower().replace("-", "_")
        if key not in _REGISTRY:
            close = difflib.get_close_matches(key, _REGISTRY, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown dataset {name!r}; valid names: {list(_REGISTRY)}, or a path to a "
                             f".npz or .csv file.{hint}")
        loader = _REGISTRY[key]
        accepted = _accepted(loader)
    else:
        raise TypeError(f"name must be a dataset name or a file path, got {type(name).__name__}")
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"load({key!r}) got unexpected keyword argument(s) {unknown}; "
                        f"it accepts {sorted(accepted)}")
    splits = loader(rng, **kwargs)
    splits.info["seed"] = seed  # DEFAULT_SEED when rng was None, else None (the caller's generator)
    return splits
