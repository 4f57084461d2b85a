"""The fuzz sandbox itself: results, errors, the memory limit, hangs and crashes are told apart."""

from __future__ import annotations

import pytest

from fuzzing import Sandbox, flip_bit


@pytest.fixture(scope="module")
def box():
    with Sandbox(timeout=3.0) as sandbox:
        yield sandbox


def test_ok_and_error_outcomes(box):
    ok = box.call("numpy:zeros", [2, 3])
    assert ok.status == "ok" and ok.summary == "ndarray(2, 3):float64"
    bad = box.call("numpy:zeros", "x")
    assert bad.raised(TypeError) and not bad.raised(ValueError)
    bad.check(TypeError)
    with pytest.raises(AssertionError, match="expected success or one of"):
        bad.check(ValueError)


def test_memory_limit_turns_a_huge_allocation_into_memory_error(box):
    out = box.call("numpy:ones", 4 << 30, dtype="uint8")     # 4 GiB > the 1.5 GiB limit
    assert out.raised(MemoryError)
    with pytest.raises(AssertionError):
        out.check(MemoryError)                                 # MemoryError never counts as handled
    assert box.call("numpy:zeros", 3).status == "ok"          # the child survives it


def test_hang_and_crash_are_reported_and_the_child_restarts(box):
    assert box.call("time:sleep", 10).status == "hang"
    assert box.call("os:_exit", 3).status == "crash"
    assert box.call("numpy:zeros", 1).status == "ok"


def test_flip_bit():
    assert flip_bit(b"\x00\x01", 0) == b"\x01\x01"
    assert flip_bit(b"\x00\x01", 8) == b"\x00\x00"


def test_digest_tells_results_apart_and_memory_is_measured(box):
    a, b = box.call("numpy:arange", 6), box.call("numpy:arange", 6)
    c = box.call("numpy:arange", 7)
    assert a.digest == b.digest != c.digest and len(a.digest) == 64
    assert box.call("numpy:arange", 6, dtype="int32").digest != a.digest       # dtype counts
    assert box.call("numpy:zeros", 3).rss_start > 0
    big = box.call("numpy:ones", 200 << 20, dtype="uint8")                     # 200 MiB, touched
    small = box.call("numpy:ones", 1 << 10, dtype="uint8")
    if big.rss_peak:                                                           # /proc/self/clear_refs works
        assert big.rss_growth > 150 << 20
        assert small.rss_growth < 50 << 20                                     # the peak was reset between calls
