"""Fuzz tests for the three data-file readers: ``.npz`` (load_npz), ``.csv`` (load_csv), IDX (read_idx).

Each reader gets four kinds of hostile input, drawn by Hypothesis: random bytes (pure, behind
a valid magic number, or spliced into a good file), truncations of good files, bit flips of
good files, and crafted headers (well-formed containers whose size, shape, dtype and type
fields lie). Every case runs in a :class:`fuzzing.Sandbox` child (1.5 GiB address-space
limit, 20 s deadline) and must end in :class:`trainlab.data.DataError` or in a correct load:

* a correct ``.npz`` load after bit flips equals the original arrays (the zip CRC-32 covers
  the data, so a flip that loads can only have hit unchecked zip fields);
* a correct gzip IDX load after bit flips equals the original; a raw IDX one has the
  original shape (raw IDX has no checksum: a flip in the data or in the type code 0x08 <->
  0x09 is a different, valid file);
* a CSV load has float64 ``x`` with one column per non-label header cell and int64 ``y``.

The number of examples per test is ``TRAINLAB_FUZZ_EXAMPLES`` (default 150 in CI; a
nightly-style run sets e.g. 5000). Then come the named cases of the hardening issue: a
546-byte ``.npz`` declaring 8 GiB, a 1.6 MB zip bomb inflating to 1.5 GiB, a member of shape
``(2**62,)``, and a gzip IDX that inflates to 3 GiB, each refused with its resident memory
measured.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import Sandbox, flip_bit, fuzz_settings
from trainlab.data import DataError

NPZ, CSV, IDX = "trainlab.data.files:load_npz", "trainlab.data.files:load_csv", "trainlab.data.idx:read_idx"
MIB = 1 << 20


@pytest.fixture(scope="module")
def box():
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def run(box, target: str, path: Path, payload: bytes, **kwargs):
    path.write_bytes(payload)
    outcome = box.call(target, str(path), **kwargs)
    outcome.check(DataError, context=f"{target} on {len(payload)} bytes {payload[:64]!r}...")
    if outcome.status == "error":
        assert path.name in outcome.message, outcome.message   # every error names the file
        assert "\n" not in outcome.message, outcome.message     # and is one line
    return outcome


# --------------------------------------------------------------------------- builders


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def npy_header(header: str, version: int = 1) -> bytes:
    """A .npy preamble (magic, version, length, header text padded to 64 bytes)."""
    text = header.encode("latin1", "replace") if version < 3 else header.encode("utf8", "surrogatepass")
    field = "<H" if version == 1 else "<I"
    pad = -(6 + 2 + struct.calcsize(field) + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(field, len(text)) + text


def zip_bytes(members: list[tuple[str, bytes, int]], *, declared: dict | None = None) -> bytes:
    """A zip archive written by hand, so every size field can lie.

    ``members``: (name, payload, method) with method 0 (stored; payload as is) or 8 (deflated;
    payload is the raw deflate stream). ``declared`` maps a member name to overrides of
    ``crc``, ``size`` (inflated) and ``csize``; sizes >= 2**32 - 1 go into a zip64 extra field.
    """
    declared = declared or {}
    local, central = b"", b""
    for name, payload, method in members:
        info = {"crc": zlib.crc32(payload) if method == 0 else 0, "size": len(payload), "csize": len(payload)}
        overrides = declared.get(name, {})
        if method == 8 and not {"crc", "size"} <= set(overrides):
            inflated = zlib.decompressobj(-15).decompress(payload)
            info.update(crc=zlib.crc32(inflated), size=len(inflated))
        info.update(overrides)
        extra = b""
        size32, csize32 = info["size"], info["csize"]
        if info["size"] >= 0xFFFFFFFF or info["csize"] >= 0xFFFFFFFF:
            extra = struct.pack("<HHQQ", 1, 16, info["size"], info["csize"])
            size32 = csize32 = 0xFFFFFFFF
        raw_name = name.encode()
        offset = len(local)
        local += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, method, 0, 0x21, info["crc"] & 0xFFFFFFFF,
                             csize32, size32, len(raw_name), len(extra)) + raw_name + extra + payload
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, 0, method, 0, 0x21,
                               info["crc"] & 0xFFFFFFFF, csize32, size32, len(raw_name), len(extra), 0, 0, 0, 0,
                               offset) + raw_name + extra
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0)
    return local + central + end


def deflate(data: bytes) -> bytes:
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush()


def zero_stream(prefix: bytes, zeros: int) -> bytes:
    """A raw deflate stream of ``prefix`` then ``zeros`` zero bytes, built from one repeated 1 MiB block.

    After a full flush deflate starts afresh, so 1 MiB of zeros compresses to the same 1,037
    bytes every time: a 1.5 GiB stream costs 1.6 MB and no time to build.
    """
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = co.compress(prefix) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(bytes(MIB)) + co.flush(zlib.Z_FULL_FLUSH)
    tail = co.compress(bytes(zeros % MIB)) + co.flush()
    return head + block * (zeros // MIB) + tail


def gzip_wrap(stream: bytes, inflated: bytes | None = None) -> bytes:
    """A gzip member around a raw deflate ``stream`` (trailer CRC/size of ``inflated`` if given)."""
    trailer = struct.pack("<II", zlib.crc32(inflated), len(inflated) & 0xFFFFFFFF) if inflated is not None else \
        b"\0" * 8
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + trailer


_IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
              np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def idx_bytes(array: np.ndarray) -> bytes:
    code = _IDX_CODES[array.dtype.newbyteorder("=")]
    return idx_header(code, array.shape) + array.astype(array.dtype.newbyteorder(">")).tobytes()


# --------------------------------------------------------------------------- good files


def _npz(compressed: bool, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


_rng = np.random.default_rng(0)
GOOD_NPZ = [
    _npz(False, x=_rng.normal(size=(12, 3)), y=np.arange(12) % 3),
    _npz(True, x=_rng.normal(size=(12, 3)).astype(np.float32), y=(np.arange(12) % 4).astype(np.uint8)),
    _npz(False, x=_rng.integers(0, 255, (6, 1, 3, 3), dtype=np.uint8), y=np.arange(6) % 2 == 0),
    _npz(True, x=np.asfortranarray(_rng.normal(size=(8, 5))), y=(np.arange(8) % 2).astype(np.float64)),
]
GOOD_CSV = [
    b"a,b,label\n1.5,2,0\n-3e2,4,1\n5,6,2\n7,8,0\n9,10,1\n",
    "\ufefff\u00e9ature,label,z\r\n0.25,1,3\r\n\r\n\"15\",0,2\r\n2.5,1,1\r\n".encode(),
    b"x1,x2,x3,label\n" + b"".join(b"%d,%d.5,%d,%d\n" % (i, i, -i, i % 3) for i in range(30)),
]
GOOD_IDX = [
    idx_bytes(_rng.integers(0, 256, (5, 4, 4), dtype=np.uint8)),
    idx_bytes((np.arange(20) % 10).astype(np.uint8)),
    idx_bytes(_rng.normal(size=(3, 7)).astype(np.float32)),
    idx_bytes(_rng.integers(-1000, 1000, (4, 3)).astype(np.int32)),
    gzip.compress(idx_bytes(_rng.integers(0, 256, (6, 5, 5), dtype=np.uint8)), mtime=0),
    gzip.compress(idx_bytes(_rng.normal(size=(5, 2))), mtime=0),
]
CSV_FEATURES = [2, 2, 3]


@pytest.fixture(scope="module")
def originals(box, folder):
    """The outcome of each good file, loaded in the sandbox: what a correct load must equal."""
    result = {}
    for kind, target, files in (("npz", NPZ, GOOD_NPZ), ("csv", CSV, GOOD_CSV), ("idx", IDX, GOOD_IDX)):
        for i, payload in enumerate(files):
            path = folder / f"good{i}.{kind}"
            outcome = run(box, target, path, payload)
            assert outcome.status == "ok", outcome.describe()
            result[kind, i] = outcome
    return result


def shape_of(summary: str, position: int = 0) -> tuple[int, ...]:
    shapes = re.findall(r"ndarray\(([\d, ]*)\)", summary)
    return tuple(int(n) for n in shapes[position].split(",") if n.strip())


def check_csv_load(outcome, n_features: int | None = None) -> None:
    if outcome.status == "ok":
        assert re.fullmatch(r"\(ndarray\(\d+, \d+\):float64, ndarray\(\d+,\):int64, list\)", outcome.summary)
        x, y = shape_of(outcome.summary, 0), shape_of(outcome.summary, 1)
        assert x[0] == y[0] >= 1, outcome.summary
        if n_features is not None:
            assert x[1] == n_features, outcome.summary


NOISE = st.binary(max_size=600)


def random_payload(data, prefixes: list[bytes], goods: list[bytes], noise=NOISE) -> bytes:
    """Random bytes: alone, behind one of ``prefixes`` (magic numbers), or spliced into a good file."""
    prefix = data.draw(st.sampled_from([*prefixes, None]))
    chunk = data.draw(noise)
    if prefix is not None:
        return prefix + chunk
    good = goods[data.draw(st.integers(0, len(goods) - 1))]
    start = data.draw(st.integers(0, len(good) - 1))
    return good[:start] + chunk + good[start + len(chunk):]


def flipped(data, goods: list[bytes]) -> tuple[int, bytes]:
    """One of the good files (its index) with 1 to 3 bits flipped."""
    i = data.draw(st.integers(0, len(goods) - 1))
    payload = goods[i]
    for _ in range(data.draw(st.integers(1, 3))):
        payload = flip_bit(payload, data.draw(st.integers(0, 8 * len(payload) - 1)))
    return i, payload


# --------------------------------------------------------------------------- .npz


@fuzz_settings()
@given(st.data())
def test_npz_random_bytes(box, folder, data):
    payload = random_payload(data, [b"", b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY\x01\x00"], GOOD_NPZ)
    run(box, NPZ, folder / "random.npz", payload)


def members_of(payload: bytes) -> list[tuple[str, bytes, int, dict]]:
    """(name, raw member bytes, method, declared sizes and CRC) of each member of a good archive."""
    out = []
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        for info in archive.infolist():
            start = info.header_offset + 30 + len(info.filename.encode()) + \
                struct.unpack("<H", payload[info.header_offset + 28:info.header_offset + 30])[0]
            out.append((info.filename, payload[start:start + info.compress_size], info.compress_type,
                        {"crc": info.CRC, "size": info.file_size, "csize": info.compress_size}))
    return out


@fuzz_settings()
@given(st.data())
def test_npz_truncation(box, folder, originals, data):
    i = data.draw(st.integers(0, len(GOOD_NPZ) - 1))
    good = GOOD_NPZ[i]
    if data.draw(st.booleans()):        # the file cut short: the central directory at its end is gone
        payload = good[:data.draw(st.integers(0, len(good) - 1))]
    else:                               # one member's data cut short, the directory still declaring it whole
        members = members_of(good)
        k = data.draw(st.integers(0, len(members) - 1))
        name, raw, method, declared = members[k]
        members[k] = (name, raw[:data.draw(st.integers(0, len(raw) - 1))], method, declared)
        payload = zip_bytes([m[:3] for m in members], declared={m[0]: m[3] for m in members})
    outcome = run(box, NPZ, folder / "truncated.npz", payload)
    # a load can only succeed where the bytes after the cut (the directory) complete the deflate
    # stream's last bits: then the CRC-32 vouches for the data, which must be the original
    assert outcome.status == "error" or outcome.digest == originals["npz", i].digest, outcome.summary


@fuzz_settings()
@given(st.data())
def test_npz_bit_flips(box, folder, originals, data):
    i, payload = flipped(data, GOOD_NPZ)
    outcome = run(box, NPZ, folder / "flipped.npz", payload)
    if outcome.status == "ok":        # a flip in a field no reader checks: the arrays are unchanged
        assert outcome.digest == originals["npz", i].digest, outcome.summary


_DESCRS = ["<f8", "<f4", "|u1", "<i8", ">i4", "|b1", "<f2", "|O", "<U3", "<c16", "|V8", "f8,i4", "(2,)f8",
           "bogus", "<M8[ns]", "S0"]
_DIMS = st.one_of(st.integers(0, 6), st.sampled_from([2**31, 2**32, 2**62, 2**64, -1, -(2**63)]))


@st.composite
def npy_member(draw, n: int, ndim: int):
    """A .npy member: a coherent header or one with a lying field, and data of fitting or wrong length."""
    descr = draw(st.sampled_from(_DESCRS[:7] * 2 + _DESCRS[7:]) | st.text(max_size=8))
    shape = draw(st.one_of(
        st.just((n,) + (3,) * (ndim - 1)), st.just((n,) + (3,) * (ndim - 1)),
        st.lists(_DIMS, max_size=4).map(tuple),
        st.sampled_from([[3, 2], "(3,)", None, (2.5,), (True,), tuple(range(40))]),
    ))
    fortran = draw(st.sampled_from([False, True, False, True, 0, None, "False"]))
    header = repr({"descr": descr, "fortran_order": fortran, "shape": shape})
    header = draw(st.sampled_from([header] * 8 + [header.replace("'shape'", "'shap'"), "[1, 2]", "{" * 300,
                                                  "-" * 3000 + "1", "not " * 2000 + "1", header + "}"]))
    preamble = npy_header(header, draw(st.sampled_from([1, 1, 2, 3])))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                  # numpy's deprecated aliases such as 'a'
            itemsize = np.dtype(descr).itemsize
        count = int(np.prod(shape)) if isinstance(shape, tuple) else 0
        fitting = itemsize * count if 0 <= itemsize * count <= 4096 else 16
    except Exception:
        fitting = 16
    length = draw(st.sampled_from([fitting, fitting, fitting - 1, fitting + 1, 0]) | st.integers(0, 64))
    body = draw(st.binary(min_size=max(length, 0), max_size=max(length, 0)))
    return preamble + body


@fuzz_settings()
@given(st.data())
def test_npz_crafted_headers(box, folder, data):
    n = data.draw(st.integers(0, 5))
    members = []
    for name, ndim in (("x.npy", 2), ("y.npy", 1)):
        if data.draw(st.integers(0, 2)) == 0:
            payload = npy_bytes(np.zeros((n,) + (3,) * (ndim - 1), dtype=np.int64))   # a good member
        else:
            payload = data.draw(npy_member(n, ndim))
        method = data.draw(st.sampled_from([0, 8]))
        members.append((name, deflate(payload) if method == 8 else payload, method))
    lie = data.draw(st.sampled_from([None] * 6 + ["size", "csize", "crc"]))
    declared = {}
    if lie is not None:
        value = data.draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**33, 2**62]) | st.integers(0, 4096))
        declared = {data.draw(st.sampled_from(["x.npy", "y.npy"])): {lie: value}}
    outcome = run(box, NPZ, folder / "crafted.npz", zip_bytes(members, declared=declared))
    if outcome.status == "ok":
        assert shape_of(outcome.summary, 0)[0] == shape_of(outcome.summary, 1)[0] >= 1, outcome.summary


# --------------------------------------------------------------------------- .csv


@fuzz_settings()
@given(st.data())
def test_csv_random_bytes(box, folder, data):
    noise = st.binary(max_size=600) | st.text(max_size=300).map(str.encode)
    payload = random_payload(data, [b"", b"a,b,label\n", b"\xef\xbb\xbfa,label\n"], GOOD_CSV, noise)
    check_csv_load(run(box, CSV, folder / "random.csv", payload))


@fuzz_settings()
@given(st.data())
def test_csv_truncation(box, folder, data):
    i = data.draw(st.integers(0, len(GOOD_CSV) - 1))
    good = GOOD_CSV[i]
    cut = data.draw(st.integers(0, len(good) - 1))
    outcome = run(box, CSV, folder / "truncated.csv", good[:cut])
    check_csv_load(outcome, CSV_FEATURES[i])   # a cut at a line end (or mid-number) can be a good, shorter table


@fuzz_settings()
@given(st.data())
def test_csv_bit_flips(box, folder, data):
    _, payload = flipped(data, GOOD_CSV)
    check_csv_load(run(box, CSV, folder / "flipped.csv", payload))


_NUMBERS = st.one_of(st.integers(-(10**6), 10**6).map(str), st.floats(-1e6, 1e6).map(repr),
                     st.sampled_from(["0", "1", "2", " 3 ", "-0", "1e3", "+4", '"5"']))
_ODD_CELLS = st.one_of(
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e400", "cat", '"1,5"', '"unclosed', "1_0", "0x10", "\x00",
                     "1" + "0" * 9, "1.5", "-1", "\u00e9", "\ufeff", "\r", "\n", '""', "1 2"]),
    st.floats().map(repr), st.text(max_size=6),
)


def rarely(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws (a middle value: Hypothesis favours the ends of a range)."""
    return st.integers(0, n - 1).map(lambda pick: pick == n // 2)


_ODD_NAMES = st.one_of(st.sampled_from(["", " ", "1.5", "nan", "label", '"q"', '"a,b"', "\u00e9t\u00e9", "\ufeffa"]),
                       st.text(max_size=5))


@st.composite
def csv_header(draw) -> list[str]:
    """Mostly a good header (unique names, the label among them); sometimes an odd one."""
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "x1", "width"]), min_size=1, max_size=4, unique=True))
    if draw(st.integers(0, 3)):
        names.insert(draw(st.integers(0, len(names))), "label")
    for _ in range(draw(st.sampled_from([0] * 6 + [1, 2]))):
        names.insert(draw(st.integers(0, len(names))), draw(_ODD_NAMES))
    return names


@fuzz_settings()
@given(st.data())
def test_csv_crafted_headers(box, folder, data):
    header = data.draw(csv_header())
    width = len(header)
    rows = []
    for _ in range(data.draw(st.integers(0, 8))):
        ragged = data.draw(st.sampled_from([-1, 1])) if data.draw(rarely(12)) else 0
        rows.append(data.draw(st.lists(_NUMBERS, min_size=max(width + ragged, 0), max_size=max(width + ragged, 0))))
        if rows[-1] and data.draw(rarely(5)):
            rows[-1][data.draw(st.integers(0, len(rows[-1]) - 1))] = data.draw(_ODD_CELLS)
        if "label" in header:                                # labels: mostly small class indices
            odd = data.draw(rarely(8))
            labels = st.sampled_from(["-1", "1.5", "2.0", "10000", "1e9"]) if odd else st.integers(0, 4).map(str)
            label = data.draw(labels)
            if len(rows[-1]) > header.index("label"):
                rows[-1][header.index("label")] = label
        if data.draw(rarely(10)):
            rows.append([])                                  # a blank line
    big = data.draw(st.sampled_from(["cell", "quote"])) if data.draw(rarely(6)) else None
    if big == "cell" and rows and rows[0]:
        rows[0][0] = "9" * 131_073                           # over the csv module's 131,072-character limit
    elif big == "quote":
        rows.append(['"' + "1," * 70_000])                   # an unclosed quote swallows the rest of the file
    newline = data.draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(",".join(row) for row in [header, *rows]) + data.draw(st.sampled_from(["", newline]))
    payload = text.encode("utf-8", "surrogatepass")
    if data.draw(rarely(6)):
        at = data.draw(st.integers(0, len(payload)))
        payload = payload[:at] + data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"])) + \
            payload[at:]
    label = data.draw(st.sampled_from(["label"] * 6 + ["a", "missing"]))
    outcome = run(box, CSV, folder / "crafted.csv", payload, label_column=label)
    check_csv_load(outcome)


# --------------------------------------------------------------------------- IDX


@fuzz_settings()
@given(st.data())
def test_idx_random_bytes(box, folder, data):
    prefixes = [b"", b"\x00\x00\x08\x03", b"\x00\x00\x0d\x01", b"\x1f\x8b",
                b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"]
    run(box, IDX, folder / "random-idx", random_payload(data, prefixes, GOOD_IDX))


@fuzz_settings()
@given(st.data())
def test_idx_truncation(box, folder, data):
    good = GOOD_IDX[data.draw(st.integers(0, len(GOOD_IDX) - 1))]
    outcome = run(box, IDX, folder / "truncated-idx", good[:data.draw(st.integers(0, len(good) - 1))])
    assert outcome.status == "error"    # the header fixes the size, and gzip's trailer the stream's end


@fuzz_settings()
@given(st.data())
def test_idx_bit_flips(box, folder, originals, data):
    i, payload = flipped(data, GOOD_IDX)
    outcome = run(box, IDX, folder / "flipped-idx", payload)
    original = originals["idx", i]
    if outcome.status == "ok" and GOOD_IDX[i][:2] == b"\x1f\x8b":
        assert outcome.digest == original.digest, outcome.summary       # gzip: CRC-32 over the data
    elif outcome.status == "ok":
        assert shape_of(outcome.summary) == shape_of(original.summary), outcome.summary


@fuzz_settings()
@given(st.data())
def test_idx_crafted_headers(box, folder, data):
    odd = data.draw(rarely(4))
    code = data.draw(st.integers(0, 255) if odd else st.sampled_from(sorted(_IDX_CODES.values())))
    ndim = data.draw(st.integers(0, 255) if data.draw(rarely(4)) else st.integers(1, 4))
    dims = data.draw(st.lists(st.sampled_from([2**16, 2**31, 2**32 - 1]) if data.draw(rarely(3)) else
                              st.integers(0, 6), min_size=ndim, max_size=ndim))
    magic = data.draw(st.sampled_from([b"\0\1", b"\x08\x03", b"\1\0"])) if data.draw(rarely(8)) else b"\0\0"
    header = magic + bytes([code, ndim]) + struct.pack(f">{ndim}I", *dims)
    itemsize = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(code, 1)
    fitting = int(np.prod(dims, dtype=object)) * itemsize if dims else 0
    fitting = fitting if fitting <= 4096 else 8
    length = data.draw(st.sampled_from([fitting + 1, max(fitting - 1, 0), 0])) if data.draw(rarely(3)) else fitting
    payload = header + data.draw(st.binary(min_size=length, max_size=length))
    if data.draw(st.booleans()):
        payload = gzip.compress(payload, mtime=0)
    outcome = run(box, IDX, folder / "crafted-idx", payload)
    if outcome.status == "ok":
        assert shape_of(outcome.summary) == tuple(dims), outcome.summary


# --------------------------------------------------------------------------- the named cases


def test_npz_546_bytes_declaring_8_gib(box, folder):
    header = npy_header(repr({"descr": "<f8", "fortran_order": False, "shape": (2**30,)}))
    members = [("x.npy", header + bytes(64), 0), ("y.npy", npy_bytes(np.zeros(3, np.int64)), 0)]
    for declared in (None, {"x.npy": {"size": len(header) + 8 * 2**30}},
                     {"x.npy": {"size": len(header) + 8 * 2**30, "csize": len(header) + 8 * 2**30}}):
        payload = zip_bytes(members, declared=declared)
        assert len(payload) < 700
        outcome = run(box, NPZ, folder / "eight-gib.npz", payload)
        assert outcome.status == "error" and outcome.rss_growth < 64 * MIB, (outcome.describe(), outcome.rss_growth)
    deflated = [("x.npy", deflate(header + bytes(64)), 8), members[1]]
    outcome = run(box, NPZ, folder / "eight-gib.npz", zip_bytes(deflated, declared={"x.npy": {"size": 8 << 30}}))
    assert "more than deflate can produce" in outcome.message and outcome.rss_growth < 64 * MIB


def test_npz_zip_bomb_refused_before_inflating(box, folder):
    n = (3 << 29) // 8                                        # 1.5 GiB of float64 zeros
    header = npy_header(repr({"descr": "<f8", "fortran_order": False, "shape": (n // 4, 4)}))
    stream = zero_stream(header, 8 * n)
    y_header = npy_header(repr({"descr": "|i1", "fortran_order": False, "shape": (n // 4,)}))
    y = ("y.npy", zero_stream(y_header, n // 4), 8)
    assert 1.5 * MIB < len(stream) + len(y[1]) < 1.7 * MIB
    bomb = zip_bytes([("x.npy", stream, 8), y], declared={"x.npy": {"size": len(header) + 8 * n, "crc": 0},
                                                          "y.npy": {"size": len(y_header) + n // 4, "crc": 0}})
    outcome = run(box, NPZ, folder / "bomb.npz", bomb)
    assert "over the 1,073,741,824-byte limit" in outcome.message and "TRAINLAB_DATA_MAX_BYTES" in outcome.message
    assert outcome.rss_growth < 64 * MIB, outcome.rss_growth
    # the same stream behind a member that declares only 4 kB: inflating stops at 4 kB
    small = zip_bytes([("x.npy", stream, 8), y], declared={"x.npy": {"size": 4096, "crc": 0}})
    outcome = run(box, NPZ, folder / "bomb.npz", small)
    assert outcome.status == "error" and outcome.rss_growth < 64 * MIB, (outcome.describe(), outcome.rss_growth)


def test_npz_member_of_shape_2_to_the_62(box, folder):
    header = npy_header(repr({"descr": "|u1", "fortran_order": False, "shape": (2**62,)}))
    payload = zip_bytes([("x.npy", npy_bytes(np.zeros((3, 2)))[:200], 0), ("y.npy", header + bytes(16), 0)])
    outcome = run(box, NPZ, folder / "huge-shape.npz", payload)
    assert "(4611686018427387904,)" in outcome.message and "'y.npy'" in outcome.message


def test_idx_gzip_inflating_to_3_gib(box, folder):
    gib3 = 3 << 30
    # the header declares all 3 GiB: refused from the header, nothing inflated
    declared = gzip_wrap(zero_stream(idx_header(0x08, (gib3 // 784, 28, 28)), gib3))
    assert len(declared) < 4 * MIB
    outcome = run(box, IDX, folder / "bomb-idx3-ubyte.gz", declared)
    assert "over the 1,073,741,824-byte limit" in outcome.message, outcome.describe()
    assert outcome.rss_growth < 64 * MIB, outcome.rss_growth
    # the header declares MNIST's 47 MB but the stream runs on to 3 GiB: stops one chunk past it
    lying = gzip_wrap(zero_stream(idx_header(0x08, (60000, 28, 28)), gib3))
    outcome = run(box, IDX, folder / "bomb-idx3-ubyte.gz", lying)
    assert "more than the 47,040,000 data bytes" in outcome.message, outcome.describe()
    assert outcome.rss_growth < 47_040_000 + 48 * MIB, outcome.rss_growth


def test_idx_gzip_declaring_more_than_deflate_can_produce(box, folder):
    header = idx_header(0x08, (2**16, 6))                     # 393 kB declared in a 60-byte file
    payload = gzip.compress(header + bytes(32), mtime=0)
    outcome = run(box, IDX, folder / "ratio-idx2-ubyte.gz", payload)
    assert "more than a" in outcome.message and "gzip file can inflate to" in outcome.message, outcome.describe()


def test_idx_large_gzip_is_read_within_the_limit(box, folder):
    """A genuine file is not refused for its compression ratio (1000:1 here), only for its size."""
    n = 64 * MIB
    header = idx_header(0x08, (n // 64, 8, 8))
    payload = gzip_wrap(zero_stream(header, n), header + bytes(n))
    outcome = run(box, IDX, folder / "big-idx3-ubyte.gz", payload, max_bytes=32 * MIB)
    assert "over the 33,554,432-byte limit" in outcome.message
    outcome = run(box, IDX, folder / "big-idx3-ubyte.gz", payload)
    assert outcome.status == "ok" and outcome.summary == f"ndarray({n // 64}, 8, 8):uint8"
    assert outcome.rss_growth < n + 48 * MIB, outcome.rss_growth
