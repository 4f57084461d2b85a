"""Tests for trainlab.data: datasets, IDX + download cache, synthetic sets, user files, Batches.

No test touches the network: downloads are replaced by local copies or by a failing urlopen.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from trainlab import data
from trainlab.data import download as dl
from trainlab.data.splits import split_sizes

# --------------------------------------------------------------------------- helpers

_IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
              np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """A minimal independent IDX writer: magic, big-endian dims, big-endian data."""
    array = np.asarray(array)
    header = bytes([0, 0, _IDX_CODES[array.dtype.newbyteorder("=")], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def make_fake_mnist(folder: Path, *, n_train: int = 120, n_test: int = 30, side: int = 6,
                    seed: int = 0) -> dict:
    """Tiny MNIST-like gzip IDX files under folder with the official file names."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for role, array in arrays.items():
        write_idx(folder / dl.SOURCES["mnist"].files[role].filename, array, compress=True)
    return arrays


def record_for(path: Path, filename: str) -> dl.FileRecord:
    raw = path.read_bytes()
    return dl.FileRecord(filename, len(raw), hashlib.sha256(raw).hexdigest(), hashlib.md5(raw).hexdigest())


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("TRAINLAB_DATA", str(root))
    return root


def no_network(*args, **kwargs):
    raise urllib.error.URLError("network is unreachable (test)")


# --------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_sizes():
    splits = data.load("digits")
    assert (len(splits.train.y), len(splits.val.y), len(splits.test.y)) == (1257, 180, 360)
    x, y = splits.train
    assert x.shape == (1257, 64) and x.dtype == np.float32 and y.dtype == np.int64
    assert splits.num_classes == 10 and splits.input_shape == (64,) and splits.name == "digits"
    for part in (splits.train, splits.val, splits.test):
        assert part.x.dtype == np.float32 and part.y.dtype == np.int64
        assert part.y.min() >= 0 and part.y.max() < 10
    images = data.load("digits", flatten=False)
    assert images.train.x.shape == (1257, 1, 8, 8) and images.input_shape == (1, 8, 8)
    np.testing.assert_array_equal(images.train.x.reshape(1257, 64), splits.train.x)


def test_digits_is_stratified():
    splits = data.load("digits", rng=np.random.default_rng(5))
    y_all = np.concatenate([splits.train.y, splits.val.y, splits.test.y])
    share = np.bincount(y_all, minlength=10) / len(y_all)
    for part in (splits.train, splits.val, splits.test):
        expected = share * len(part.y)
        assert np.all(np.abs(np.bincount(part.y, minlength=10) - expected) <= 2), part


def test_digits_standardized_with_train_statistics():
    splits = data.load("digits")
    standardizer = splits.info["standardizer"]
    assert standardizer.mode == "global" and standardizer.mean.shape == ()
    assert abs(float(splits.train.x.mean(dtype=np.float64))) < 1e-5
    assert abs(float(splits.train.x.std(dtype=np.float64)) - 1.0) < 1e-5
    # val/test use the train statistics, so they are close to but not exactly standardized
    assert abs(float(splits.test.x.mean())) < 0.1 and float(splits.test.x.mean()) != 0.0
    # the stored statistics reproduce the raw digit values 0..16
    raw = splits.train.x.astype(np.float64) * standardizer.std + standardizer.mean
    np.testing.assert_allclose(raw, np.round(raw), atol=1e-4)
    assert raw.min() > -1e-4 and raw.max() < 16 + 1e-4
    unscaled = data.load("digits", standardize=False)
    assert unscaled.train.x.max() == 16.0 and unscaled.info["standardizer"].mode == "none"


def test_digits_deterministic_per_rng():
    a = data.load("digits", rng=np.random.default_rng(1))
    b = data.load("digits", rng=np.random.default_rng(1))
    c = data.load("digits", rng=np.random.default_rng(2))
    default = data.load("digits")
    seeded0 = data.load("digits", rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.test.y, b.test.y)
    assert not np.array_equal(a.train.x, c.train.x)
    np.testing.assert_array_equal(default.train.x, seeded0.train.x)
    assert default.info["seed"] == 0 and a.info["seed"] is None


def test_split_sizes_and_disjoint_indices():
    assert split_sizes(1797, 0.1, 0.2) == (1257, 180, 360)
    assert split_sizes(300, 0.1, 0.2) == (210, 30, 60)
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    parts = data.stratified_split(y, (70, 10, 20), rng=np.random.default_rng(0))
    assert [len(p) for p in parts] == [70, 10, 20]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(100))
    with pytest.raises(ValueError, match="sum"):
        data.stratified_split(y, (70, 10, 10), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="test_fraction"):
        split_sizes(100, 0.1, 1.5)


def test_standardizer_per_feature_and_constant_features():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, [1.0, 5.0, 0.0], size=(200, 3))
    fitted = data.Standardizer.fit(x, "per_feature")
    assert fitted.mean.shape == (3,) and fitted.std[2] == 1.0
    out = fitted.apply(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (x - x.mean(0)) / np.where(x.std(0) < 1e-8, 1, x.std(0)), atol=1e-5)
    np.testing.assert_allclose(out[:, 2], 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        data.Standardizer.fit(x, "minmax")


# --------------------------------------------------------------------------- names and arguments


def test_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(ValueError, match="Did you mean 'digits'") as info:
        data.load("digit")
    for name in data.names():
        assert name in str(info.value)
    with pytest.raises(ValueError, match="valid names"):
        data.load("imagenet")


def test_bad_arguments():
    with pytest.raises(TypeError, match="unexpected keyword"):
        data.load("digits", n_samples=10)
    with pytest.raises(TypeError, match="default_rng"):
        data.load("digits", rng=0)
    with pytest.raises(ValueError, match="unsupported file type"):
        data.load(Path("table.txt"))
    with pytest.raises(ValueError, match="no such file"):
        data.load("does/not/exist.csv")


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([-3, 0, 7], dtype=np.int8),
    np.arange(-6, 6, dtype=np.int32).reshape(3, 4),
    np.linspace(-1, 1, 10, dtype=np.float64).reshape(5, 2),
    np.array([[1.5, -2.25]], dtype=np.float32),
])
def test_read_idx_round_trip(tmp_path, array, compress):
    path = write_idx(tmp_path / "tiny.idx", array, compress=compress)
    out = data.read_idx(path)
    assert out.shape == array.shape and out.dtype == array.dtype and out.dtype.isnative
    assert out.flags.writeable
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("payload, message", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x02", "header"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03\x01\x02", "size mismatch"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "size mismatch"),
    (b"\x00\x00", "too short"),
    (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04\x01\x02\x03\x04")[:-6], "gzip"),
])
def test_read_idx_rejects_bad_files(tmp_path, payload, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=message) as info:
        data.read_idx(path)
    assert "broken-idx1-ubyte" in str(info.value)


# --------------------------------------------------------------------------- MNIST-style downloads


def test_mnist_from_cache_without_verification(cache):
    arrays = make_fake_mnist(cache / "mnist")
    splits = data.load("mnist", verify=False, val_size=20, rng=np.random.default_rng(0))
    assert (len(splits.train.y), len(splits.val.y), len(splits.test.y)) == (100, 20, 30)
    assert splits.train.x.shape == (100, 36) and splits.input_shape == (36,)
    assert splits.info["standardizer"].mode == "global"
    assert abs(float(splits.train.x.mean())) < 1e-5
    np.testing.assert_array_equal(splits.test.y, arrays["test_labels"])  # official test set kept, in order
    np.testing.assert_array_equal(np.bincount(splits.val.y), np.full(10, 2))  # stratified val
    images = data.load("mnist", verify=False, val_size=20, flatten=False)
    assert images.train.x.shape == (100, 1, 6, 6)
    with pytest.raises(ValueError, match="val_size"):
        data.load("mnist", verify=False, val_size=500)


def test_mnist_verified_against_checksum_table(cache, monkeypatch):
    make_fake_mnist(cache / "mnist")
    source = dl.SOURCES["mnist"]
    files = {role: record_for(cache / "mnist" / rec.filename, rec.filename)
             for role, rec in source.files.items()}
    monkeypatch.setitem(dl.SOURCES, "mnist", dl.Source(source.mirrors, files))
    splits = data.load("mnist", val_size=10)
    assert splits.info["verified"] is True and len(splits.val.y) == 10


def test_fashion_mnist_alias_and_class_names(cache):
    make_fake_mnist(cache / "fashion_mnist")
    splits = data.load("Fashion-MNIST", verify=False, val_size=10)
    assert splits.name == "fashion_mnist" and splits.info["class_names"][9] == "Ankle boot"


def test_checksum_mismatch_raises_and_removes_download(cache, tmp_path, monkeypatch):
    local = write_idx(tmp_path / "local.gz", np.zeros((2, 2, 2), np.uint8), compress=True)
    calls = []

    def fake_download(url, dest, *, timeout):
        calls.append(url)
        shutil.copyfile(local, dest)

    monkeypatch.setattr(dl, "download", fake_download)
    with pytest.raises(data.ChecksumError, match="checksum mismatch") as info:
        data.load("mnist")
    target = cache / "mnist" / "train-images-idx3-ubyte.gz"
    assert str(target) in str(info.value) and "sha256" in str(info.value)
    assert calls == ["https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"]
    assert not target.exists() and list((cache / "mnist").iterdir()) == []
    assert isinstance(info.value, ValueError)


def test_corrupt_cached_file_is_deleted(cache):
    target = cache / "mnist" / "train-images-idx3-ubyte.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the real file")
    with pytest.raises(data.ChecksumError):
        data.fetch("mnist")
    assert not target.exists()


def test_offline_error_names_cache_folder_and_files(cache, monkeypatch):
    monkeypatch.setattr(dl, "urlopen", no_network)
    with pytest.raises(data.DownloadError) as info:
        data.load("fashion_mnist")
    message = str(info.value)
    folder = cache / "fashion_mnist"
    assert str(folder) in message and "TRAINLAB_DATA" in message
    for record in dl.SOURCES["fashion_mnist"].files.values():
        assert record.filename in message and record.sha256 in message
    assert "unreachable" in message and "\n" not in message and isinstance(info.value, data.DataError)
    assert not folder.exists() or list(folder.iterdir()) == []  # nothing half-written


def test_offline_switch_fails_fast_without_a_network_call(cache, monkeypatch):
    def network_touched(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(dl, "urlopen", network_touched)
    monkeypatch.setenv("TRAINLAB_OFFLINE", "1")
    with pytest.raises(data.DownloadError, match="TRAINLAB_OFFLINE is set") as info:
        data.load("mnist")
    message = str(info.value)
    assert str(cache / "mnist") in message and "\n" not in message
    for record in dl.SOURCES["mnist"].files.values():
        assert record.filename in message
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
    make_fake_mnist(cache / "mnist")                      # files in place: offline works
    assert len(data.load("mnist", verify=False, val_size=10).test.y) == 30
    monkeypatch.setenv("TRAINLAB_OFFLINE", "0")
    assert not dl.offline()


def test_download_is_atomic(tmp_path, monkeypatch):
    import io

    class Response(io.BytesIO):
        pass

    monkeypatch.setattr(dl, "urlopen", lambda url, timeout: Response(b"payload"))
    dest = tmp_path / "d" / "file.gz"
    dl.download("https://example.invalid/file.gz", dest, timeout=1)
    assert dest.read_bytes() == b"payload"

    class Broken(io.BytesIO):
        def read(self, *args):
            raise TimeoutError("timed out mid-stream")

    monkeypatch.setattr(dl, "urlopen", lambda url, timeout: Broken(b""))
    dest2 = tmp_path / "d" / "other.gz"
    with pytest.raises(TimeoutError):
        dl.download("https://example.invalid/other.gz", dest2, timeout=1)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["file.gz"]


def test_checksum_table_is_complete():
    for dataset in ("mnist", "fashion_mnist"):
        source = dl.SOURCES[dataset]
        assert set(source.files) == {"train_images", "train_labels", "test_images", "test_labels"}
        for record in source.files.values():
            assert len(record.sha256) == 64 and len(record.md5) == 32 and record.size > 0
            int(record.sha256, 16), int(record.md5, 16)
    assert dl.SOURCES["mnist"].mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path))
    assert data.cache_dir() == tmp_path
    monkeypatch.delenv("TRAINLAB_DATA")
    assert data.cache_dir() == Path.home() / ".cache" / "trainlab"


# --------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("maker, classes", [
    (data.make_spiral, 3), (data.make_circles, 2), (data.make_moons, 2), (data.make_blobs, 3),
])
def test_synthetic_generators_deterministic_and_shaped(maker, classes):
    x, y = maker(101, rng=np.random.default_rng(4))
    x2, y2 = maker(101, rng=np.random.default_rng(4))
    x3, _ = maker(101, rng=np.random.default_rng(5))
    assert x.shape == (101, 2) and x.dtype == np.float32 and y.shape == (101,) and y.dtype == np.int64
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, x3)
    counts = np.bincount(y)
    assert len(counts) == classes and counts.max() - counts.min() <= 1
    with pytest.raises(TypeError, match="default_rng"):
        maker(10)


def test_spiral_geometry_and_noise():
    x, y = data.make_spiral(300, 4, 0.0, np.random.default_rng(0))
    radius = np.hypot(x[:, 0], x[:, 1])
    assert radius.max() <= 1.0 + 1e-6 and np.bincount(y).tolist() == [75] * 4
    x_circ, y_circ = data.make_circles(200, noise=0.0, factor=0.3, rng=np.random.default_rng(0))
    np.testing.assert_allclose(np.hypot(*x_circ[y_circ == 1].T), 0.3, atol=1e-6)
    centers = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]])
    xb, yb = data.make_blobs(50, centers=centers, cluster_std=0.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(xb, centers[yb])
    with pytest.raises(ValueError, match="noise"):
        data.make_moons(10, noise=-1, rng=np.random.default_rng(0))


@pytest.mark.parametrize("name", ["spiral", "circles", "moons", "blobs"])
def test_synthetic_load(name):
    a = data.load(name, rng=np.random.default_rng(7), n_samples=200, noise=0.05) if name != "blobs" else \
        data.load(name, rng=np.random.default_rng(7), n_samples=200, cluster_std=0.5)
    b = data.load(name, rng=np.random.default_rng(7), n_samples=200, noise=0.05) if name != "blobs" else \
        data.load(name, rng=np.random.default_rng(7), n_samples=200, cluster_std=0.5)
    assert (len(a.train.y), len(a.val.y), len(a.test.y)) == (140, 20, 40)
    assert a.input_shape == (2,) and a.info["standardizer"].mode == "per_feature"
    np.testing.assert_allclose(a.train.x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(a.train.x.std(0), 1, atol=1e-5)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    spiral5 = data.load("spiral", classes=5, n_samples=250)
    assert spiral5.num_classes == 5


# --------------------------------------------------------------------------- user files


def test_npz_tabular_and_images(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "table.npz"
    np.savez(path, x=rng.normal(5, 2, (50, 3)), y=np.arange(50) % 3)
    splits = data.load(path)
    assert splits.train.x.shape == (35, 3) and splits.num_classes == 3
    assert splits.info["standardizer"].mode == "per_feature"
    images = tmp_path / "images.npz"
    np.savez(images, x=rng.integers(0, 255, (40, 1, 4, 4), dtype=np.uint8),
             y=(np.arange(40) % 2).astype(float))
    split_images = data.load(str(images), standardize=True)
    assert split_images.input_shape == (1, 4, 4) and split_images.info["standardizer"].mode == "global"
    assert split_images.train.y.dtype == np.int64


def test_csv_good_file(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,label,b\n1.0,0,2\n\n2.5,1,3\n3,1,-4e1\n4,0,5\n1,2,1\n2,2,2\n3,0,3\n4,1,4\n5,2,5\n6,0,6\n")
    splits = data.load(path, label_column="label", standardize=False)
    assert splits.num_classes == 3 and splits.input_shape == (2,)
    assert splits.info["feature_names"] == ["a", "b"]
    x, y, names = data.load_csv(path, label_column="label")
    np.testing.assert_array_equal(x[:3], [[1.0, 2.0], [2.5, 3.0], [3.0, -40.0]])
    np.testing.assert_array_equal(y[:4], [0, 1, 1, 0])


@pytest.mark.parametrize("content, kwargs, expected", [
    ("a,b,target\n1,2,0\n", {}, ["label", "target", "'a', 'b'"]),                      # missing label column
    ("a,b,label\n1,2,0\n3,4\n", {}, ["line 3", "ragged", "3 columns"]),
    ("a,b,label\n1,2,0\n3,x7,1\n", {}, ["line 3", "'b'", "'x7' is not a number"]),
    ("a,b,label\n1,2,0\n\n3,,1\n", {}, ["line 4", "'b'", "empty cell"]),
    ("a,b,label\n1,2,0\n3,nan,1\n", {}, ["line 3", "'b'", "NaN"]),
    ("a,b,label\n1,2,0\n3,4,1\n-inf,4,1\n", {}, ["line 4", "'a'", "not finite"]),
    ("a,b,label\n1,2,0\n3,4,1.5\n", {}, ["line 3", "'label'", "1.5", "whole number"]),
    ("a,b,label\n1,2,0\n3,4,-1\n", {}, ["line 3", "negative"]),
    ("a,b,label\n1,2,0\n3,4,cat\n", {}, ["line 3", "'label'", "'cat'"]),
    ("1,2,0\n3,4,1\n", {}, ["line 1", "header"]),
    ("", {}, ["empty", "header"]),
    ("a,label\n", {}, ["no data rows"]),
    ("a,a,label\n1,2,0\n", {}, ["line 1", "duplicate"]),
    ("a,b,klass\n1,2,0\n", {"label_column": "class"}, ["'class'", "Did you mean 'klass'"]),
])
def test_csv_bad_files_name_file_and_line(tmp_path, content, kwargs, expected):
    path = tmp_path / "bad_table.csv"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        data.load(path, **kwargs)
    message = str(info.value)
    assert "bad_table.csv" in message
    for part in expected:
        assert part in message, (part, message)


@pytest.mark.parametrize("arrays, expected", [
    ({"x": np.zeros((4, 2))}, ["missing", "'y'", "['x']"]),
    ({"inputs": np.zeros((4, 2)), "labels": np.zeros(4)}, ["missing", "inputs", "labels"]),
    ({"x": np.zeros((4, 2)), "y": np.zeros(3)}, ["4 samples", "3 labels"]),
    ({"x": np.array([[0.0, 1.0], [2.0, np.nan], [1.0, 1.0]]), "y": np.zeros(3)}, ["row 1", "feature 1"]),
    ({"x": np.zeros((3, 2)), "y": np.array([0.0, 1.5, 1.0])}, ["row 1", "1.5", "whole number"]),
    ({"x": np.zeros((3, 2)), "y": np.array([0, -2, 1])}, ["row 1", "negative"]),
    ({"x": np.zeros(3), "y": np.zeros(3)}, ["shape (N, features"]),
    ({"x": np.array([["a", "b"]]), "y": np.zeros(1)}, ["numeric"]),
])
def test_npz_bad_files(tmp_path, arrays, expected):
    path = tmp_path / "bad_arrays.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError) as info:
        data.load(path)
    message = str(info.value)
    assert "bad_arrays.npz" in message
    for part in expected:
        assert part in message, (part, message)


class _Exploit:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_npz_object_array_never_unpickled(tmp_path):
    marker = tmp_path / "code_was_executed"
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([_Exploit(marker)], dtype=object), y=np.zeros(1, dtype=np.int64))
    assert not marker.exists()
    with pytest.raises(ValueError, match="never unpickles") as info:
        data.load(path)
    assert "evil.npz" in str(info.value)
    assert not marker.exists()


def test_npz_not_an_archive(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="garbage.npz"):
        data.load(path)


# --------------------------------------------------------------------------- Batches


def test_batches_cover_every_sample_once_per_epoch():
    x = np.arange(103, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    y = np.arange(103)
    batches = data.Batches(x, y, 10, rng=np.random.default_rng(0))
    assert len(batches) == 11
    epochs = []
    for _ in range(2):
        seen = []
        for xb, yb in batches:
            assert len(xb) == len(yb) <= 10 and xb.dtype == np.float32
            np.testing.assert_array_equal(xb[:, 0], yb)  # rows stay paired
            seen.append(yb)
        order = np.concatenate(seen)
        np.testing.assert_array_equal(np.sort(order), y)
        epochs.append(order)
    assert not np.array_equal(epochs[0], epochs[1])  # fresh permutation each epoch
    assert not np.array_equal(epochs[0], y)


def test_batches_drop_last_and_sequential():
    x, y = np.arange(25.0).reshape(25, 1), np.arange(25)
    dropped = data.Batches(x, y, 10, rng=np.random.default_rng(0), drop_last=True)
    assert len(dropped) == 2 and [len(b) for _, b in dropped] == [10, 10]
    sequential = data.Batches(x, y, 10, shuffle=False)
    assert len(sequential) == 3
    got = [yb for _, yb in sequential]
    assert [len(b) for b in got] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate(got), y)
    xb, _ = next(iter(sequential))
    with pytest.raises(ValueError):
        xb[0, 0] = 99.0  # read-only views: the dataset cannot be corrupted through a batch
    assert len(data.Batches(x, y, 30, shuffle=False, drop_last=True)) == 0


def test_batches_deterministic_with_seed():
    x, y = np.arange(50.0).reshape(50, 1), np.arange(50)
    a = [yb for _, yb in data.Batches(x, y, 8, rng=np.random.default_rng(3))]
    b = [yb for _, yb in data.Batches(x, y, 8, rng=np.random.default_rng(3))]
    c = [yb for _, yb in data.Batches(x, y, 8, rng=np.random.default_rng(4))]
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
    assert not all(np.array_equal(left, right) for left, right in zip(a, c, strict=True))


def test_batches_validation():
    x, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(TypeError, match=r"rng=np.random.default_rng\(seed\)"):
        data.Batches(x, y, 4)
    with pytest.raises(TypeError, match="Generator"):
        data.Batches(x, y, 4, rng=42)
    with pytest.raises(ValueError, match="batch_size"):
        data.Batches(x, y, 0, shuffle=False)
    with pytest.raises(TypeError, match="batch_size"):
        data.Batches(x, y, 2.5, shuffle=False)
    with pytest.raises(ValueError, match="y has 9 rows"):
        data.Batches(x, y[:9], 4, shuffle=False)


# --------------------------------------------------------------------------- hardening: limits and messages


def test_error_types():
    assert issubclass(data.DataError, ValueError)
    assert issubclass(data.ChecksumError, data.DataError)
    assert issubclass(data.DownloadError, data.DataError) and issubclass(data.DownloadError, OSError)
    assert data.DEFAULT_MAX_BYTES == 2**30 and data.DEFAULT_MAX_CLASSES == 10_000


def twelve_rows(tmp_path, label: int, suffix: str) -> Path:
    labels = np.arange(12) % 3
    labels[5] = label
    path = tmp_path / f"twelve{suffix}"
    if suffix == ".npz":
        np.savez(path, x=np.ones((12, 2)), y=labels)
    else:
        path.write_text("a,b,label\n" + "".join(f"{i},1,{v}\n" for i, v in enumerate(labels)))
    return path


@pytest.mark.parametrize("suffix, place", [(".npz", "row 5"), (".csv", "line 7")])
def test_label_of_a_billion_in_twelve_rows_is_refused(tmp_path, suffix, place):
    path = twelve_rows(tmp_path, 10**9, suffix)
    with pytest.raises(data.DataError) as info:
        data.load(path)
    message = str(info.value)
    for part in (path.name, place, "label 1000000000", "1,000,000,001 classes", "10,000 allowed",
                 "4 distinct labels from 0 to 1000000000 in 12 samples", "max_classes=",
                 "TRAINLAB_DATA_MAX_CLASSES"):
        assert part in message, (part, message)


def test_class_bound_is_raisable_by_keyword_and_environment(tmp_path, monkeypatch):
    path = twelve_rows(tmp_path, 20_000, ".csv")
    with pytest.raises(data.DataError, match="20,001 classes"):
        data.load(path)
    assert data.load(path, max_classes=20_001).num_classes == 20_001
    monkeypatch.setenv("TRAINLAB_DATA_MAX_CLASSES", "50000")
    assert data.load(path).num_classes == 20_001
    with pytest.raises(data.DataError, match="20,001 classes, more than the 100 allowed"):
        data.load(path, max_classes=100)                  # the keyword wins over the environment
    monkeypatch.setenv("TRAINLAB_DATA_MAX_CLASSES", "lots")
    with pytest.raises(data.DataError, match="TRAINLAB_DATA_MAX_CLASSES='lots' is not valid"):
        data.load(path)
    with pytest.raises(ValueError, match="max_classes must be a positive integer"):
        data.load(path, max_classes=0)
    with pytest.raises(TypeError, match="max_classes"):
        data.load(path, max_classes=2.5)


def test_labels_that_skip_a_class_keep_the_empty_class(tmp_path):
    """Labels {0, 2}: K = 3 with class 1 empty, as for torch's CrossEntropyLoss; nothing is renumbered."""
    path = tmp_path / "gap.npz"
    np.savez(path, x=np.arange(20.0).reshape(10, 2), y=np.array([0, 2] * 5))
    splits = data.load(path)
    assert splits.num_classes == 3
    y_all = np.concatenate([splits.train.y, splits.val.y, splits.test.y])
    assert set(y_all.tolist()) == {0, 2}


def test_whole_float_labels_over_int64_range_are_refused(tmp_path):
    path = tmp_path / "huge.npz"
    np.savez(path, x=np.ones((3, 2)), y=np.array([0.0, 1e300, 1.0]))
    with pytest.raises(data.DataError, match="row 1: label 1000000"):
        data.load(path)


@pytest.mark.parametrize("arrays, compressed", [
    ({"x": np.arange(24.0).reshape(6, 4), "y": np.arange(6) % 2}, False),
    ({"x": np.asfortranarray(np.arange(24.0).reshape(6, 4)), "y": np.arange(6) % 2}, True),
    ({"x": np.arange(30, dtype=">i4").reshape(5, 3, 2), "y": np.arange(5, dtype=">u2") % 2}, False),
    ({"x": np.arange(12, dtype=np.float16).reshape(6, 2), "y": (np.arange(6) % 2).astype(bool)}, True),
    ({"x": np.zeros((4, 1), np.uint8), "y": np.zeros(4, np.int8), "extra": np.array(["kept", "aside"])}, False),
    ({"x": np.ones((1, 200_000)), "y": np.zeros(1)}, True),
])
def test_npz_reader_matches_numpy(tmp_path, arrays, compressed):
    path = tmp_path / "same.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    x, y = data.load_npz(path)
    with np.load(path) as reference:
        np.testing.assert_array_equal(x, reference["x"])
        assert x.dtype == reference["x"].dtype and x.shape == reference["x"].shape
        np.testing.assert_array_equal(y, reference["y"].astype(np.int64))
    assert y.dtype == np.int64


def test_npz_size_limit_by_keyword_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "table.npz"
    np.savez(path, x=np.ones((100, 10)), y=np.zeros(100, np.int64))      # 8,000 + 800 bytes (+ headers)
    with pytest.raises(data.DataError) as info:
        data.load(path, max_bytes=4096)
    message = str(info.value)
    assert "table.npz" in message and "over the 4,096-byte limit" in message
    assert "max_bytes=" in message and "TRAINLAB_DATA_MAX_BYTES" in message
    monkeypatch.setenv("TRAINLAB_DATA_MAX_BYTES", "8K")
    with pytest.raises(data.DataError, match="8,192-byte limit"):
        data.load_npz(path)
    monkeypatch.setenv("TRAINLAB_DATA_MAX_BYTES", "1MiB")
    assert data.load_npz(path)[0].shape == (100, 10)
    monkeypatch.setenv("TRAINLAB_DATA_MAX_BYTES", "-3")
    with pytest.raises(data.DataError, match="TRAINLAB_DATA_MAX_BYTES='-3' is not valid"):
        data.load_npz(path)


def test_npz_shapes_checked_before_reading(tmp_path):
    path = tmp_path / "mismatch.npz"
    np.savez(path, x=np.ones((5, 2)), y=np.zeros(4))
    with pytest.raises(data.DataError, match="x has 5 samples"):
        data.load(path)
    np.savez(path, x=np.ones((3, 2)), y=np.zeros((3, 1)))
    with pytest.raises(data.DataError, match=r"member 'y.npy': y must have shape \(N,\)"):
        data.load(path)


def test_single_npy_and_directories_and_missing_files(tmp_path):
    npy = tmp_path / "one.npz"
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npy").rename(npy)
    with pytest.raises(data.DataError, match="single .npy array"):
        data.load_npz(npy)
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    for reader in (data.load_npz, data.load_csv, data.read_idx):
        with pytest.raises(data.DataError, match="folder.npz: is a directory"):
            reader(folder)
        with pytest.raises(data.DataError, match="absent.npz: cannot read the file"):
            reader(tmp_path / "absent.npz")
    with pytest.raises(data.DataError, match="no such file"):
        data.load(tmp_path / "absent.csv")


def test_csv_non_utf8_names_file_line_and_byte(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"a,b,label\n1,2,0\n3,4,1\n" + "caf\u00e9,5,0\n".encode("latin1"))
    with pytest.raises(data.DataError) as info:
        data.load(path)
    message = str(info.value)
    assert "latin1.csv: line 4: byte b'\\xe9' at column 4 is not UTF-8" in message, message


def test_csv_huge_cell_and_nul(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("a,label\n1,0\n" + "9" * 131_073 + ",1\n")
    with pytest.raises(data.DataError, match=r"wide.csv: line 3: a cell longer than 131,072 characters.*quote"):
        data.load(path)
    path.write_text('a,label\n"1,0\n2,1\n' + "3,0\n" * 40_000)
    with pytest.raises(data.DataError, match="unclosed quote"):
        data.load(path)
    path.write_bytes(b"a,label\n1,0\n2\x00,1\n")
    with pytest.raises(data.DataError, match=r"line 3, column 'a': '2\\x00' is not a number"):
        data.load(path)


def test_csv_missing_label_column_says_how_to_choose_it(tmp_path):
    path = tmp_path / "iris.csv"
    path.write_text("width,height,species\n" + "1,2,0\n" * 10)
    with pytest.raises(data.DataError) as info:
        data.load(path)
    message = str(info.value)
    for part in ("iris.csv: line 1", "no label column 'label'", "['width', 'height', 'species']",
                 "--set data.label_column=NAME", "label_column='NAME'"):
        assert part in message, (part, message)
    assert data.load(path, label_column="species").num_classes == 1


def test_csv_long_header_and_cells_are_shortened_in_messages(tmp_path):
    path = tmp_path / "many.csv"
    path.write_text(",".join(f"c{j}" for j in range(500)) + "\n" + ",".join("1" * 500) + "\n")
    with pytest.raises(data.DataError) as info:
        data.load(path)
    assert "480 more" in str(info.value) and len(str(info.value)) < 600
    path.write_text("a,label\n" + "x" * 5000 + ",1\n")
    with pytest.raises(data.DataError, match=r"line 2, column 'a': 'xxx.*\(5,000 chars\) is not a number") as info:
        data.load(path)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("content, expected", [
    ("\n\na,label\n1,0\n", "line 1 is blank"),
    ("\ufeff", "the file is empty"),
    ("a,label\n\n\n", "no data rows after the header"),
])
def test_csv_blank_and_empty_files(tmp_path, content, expected):
    path = tmp_path / "blank.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(data.DataError, match=expected):
        data.load(path)


def test_csv_size_limits(tmp_path, monkeypatch):
    path = tmp_path / "long.csv"
    path.write_text("a,label\n" + "1,0\n2,1\n" * 3000)               # 24,008 bytes, 6,000 rows
    with pytest.raises(data.DataError, match="long.csv: the file has 24,008 bytes, over the 10,000-byte limit"):
        data.load(path, max_bytes=10_000)
    # the file fits but its float64 table (6,000 x 2 x 8 = 96,000 bytes) does not
    with pytest.raises(data.DataError, match="more than 3,125 rows of 2 columns, over the 50,000-byte limit"):
        data.load_csv(path, max_bytes=50_000)
    monkeypatch.setenv("TRAINLAB_DATA_MAX_BYTES", "100000")
    x, y, _ = data.load_csv(path)
    assert x.shape == (6000, 1) and y[:4].tolist() == [0, 1, 0, 1]


def test_csv_blocks_join_in_order(tmp_path):
    rows = 2 * 4096 + 17
    path = tmp_path / "blocks.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i}.5,{i % 7}\n" for i in range(rows)))
    x, y, _ = data.load_csv(path)
    np.testing.assert_array_equal(x[:, 0], np.arange(rows))
    np.testing.assert_array_equal(x[:, 1], np.arange(rows) + 0.5)
    np.testing.assert_array_equal(y, np.arange(rows) % 7)
    path.write_text("a,label\n" + "1,0\n" * 5000 + "oops,1\n")
    with pytest.raises(data.DataError, match="line 5002, column 'a': 'oops' is not a number"):
        data.load_csv(path)


def test_idx_size_limit_and_dimensions(tmp_path, monkeypatch):
    path = write_idx(tmp_path / "images-idx3-ubyte", np.zeros((10, 8, 8), np.uint8))
    with pytest.raises(data.DataError, match=r"images-idx3-ubyte: header dims \(10, 8, 8\) of uint8 declare 640 "
                                            "data bytes, over the 600-byte limit"):
        data.read_idx(path, max_bytes=600)
    monkeypatch.setenv("TRAINLAB_DATA_MAX_BYTES", "600")
    with pytest.raises(data.DataError, match="600-byte limit"):
        data.read_idx(path)
    assert data.read_idx(path, max_bytes=640).shape == (10, 8, 8)
    deep = tmp_path / "deep-idx"
    deep.write_bytes(bytes([0, 0, 8, 40]) + struct.pack(">40I", *[1] * 40) + b"\1")
    with pytest.raises(data.DataError, match="declares 40 dimensions.*expected 1 to 32"):
        data.read_idx(deep)
    empty = write_idx(tmp_path / "empty-idx", np.zeros((0, 3), np.uint8), compress=True)
    assert data.read_idx(empty).shape == (0, 3)
