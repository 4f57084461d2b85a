"""A sandbox for fuzz tests: run loader calls in a child process under a memory limit and a timeout.

A fuzz test generates hostile inputs (random bytes, truncations, bit flips, crafted headers)
in the test process, writes each to a file and asks a :class:`Sandbox` to call a loader on it.
The child process has an address-space limit (``resource.setrlimit(RLIMIT_AS)``), one BLAS
thread, and a deadline per call, so a loader that allocates without bound ends in
``MemoryError`` (reported as such) instead of swapping the machine, and one that hangs is
killed and reported as a hang. The child is restarted after a hang or a crash.

Each call returns an :class:`Outcome`: ``ok`` (with a short summary of what was returned and
a SHA-256 ``digest`` of its arrays, so a fuzz test can tell a correct load from a wrong one),
``error`` (the exception's class, its MRO names and message), ``hang`` or ``crash``. Every
outcome from a live child also carries the call's memory: ``rss_start`` (resident bytes
before the call) and ``rss_peak`` (the high-water mark during it, reset before each call
through ``/proc/self/clear_refs``; 0 where that is unavailable). The usual assertion is
:meth:`Outcome.check`: the call either succeeded or raised the module's own error type.
Targets are ``"module:function"`` names importable in the child: trainlab's modules, or a
helper module in ``tests/`` (the folder is on the child's path), which can also check
invariants after the call (raising ``AssertionError`` if one fails).

How many examples each fuzz test draws: :func:`fuzz_settings`, from ``TRAINLAB_FUZZ_EXAMPLES``
(default :data:`DEFAULT_EXAMPLES`, sized so that the fuzz suite runs in CI in well under two
minutes; a nightly-style run sets e.g. ``TRAINLAB_FUZZ_EXAMPLES=5000``).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_EXAMPLES = 150           #: examples per fuzz test in CI
DEFAULT_MEMORY = 1536 << 20      #: the child's address-space limit (bytes)
DEFAULT_TIMEOUT = 20.0           #: seconds one call may take before it counts as a hang

_TESTS = str(Path(__file__).resolve().parent)  # so that a target may live in a tests helper module
_SRC = str(Path(__file__).resolve().parents[1] / "src")

_CHILD = textwrap.dedent(
    """
    import hashlib, importlib, json, resource, sys, traceback
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy  # noqa: F401  (imported once, under the limit, before the first call)
    out = sys.stdout
    sys.stdout = sys.stderr
    def summary(value):
        if isinstance(value, tuple):
            return "(" + ", ".join(summary(v) for v in value) + ")"
        shape = getattr(value, "shape", None)
        if shape is not None:
            return f"{type(value).__name__}{tuple(shape)}:{getattr(value, 'dtype', '')}"
        return type(value).__name__
    def feed(h, value):
        if isinstance(value, (tuple, list)):
            h.update(b"[%d" % len(value))
            for item in value:
                feed(h, item)
        elif isinstance(value, numpy.ndarray):
            h.update(f"{value.dtype.str}{value.shape}".encode())
            flat = value.reshape(-1)  # a view when contiguous: hashing copies nothing
            h.update(flat.view(numpy.uint8) if flat.dtype.kind != "O" else repr(flat.tolist()).encode())
        else:
            h.update(repr(value).encode())
    def memory(field):  # bytes from /proc/self/status (VmRSS, VmHWM), 0 where unavailable
        try:
            with open("/proc/self/status") as status:
                for row in status:
                    if row.startswith(field + ":"):
                        return int(row.split()[1]) * 1024
        except OSError:
            pass
        return 0
    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            return True
        except OSError:
            return False
    for line in sys.stdin:
        request = json.loads(line)
        module, _, name = request["target"].partition(":")
        peak_known = reset_peak()
        start = memory("VmRSS")
        try:
            fn = getattr(importlib.import_module(module), name)
            value = fn(*request["args"], **request["kwargs"])
            peak = memory("VmHWM") if peak_known else 0  # before the digest below
            h = hashlib.sha256()
            feed(h, value)
            reply = {"status": "ok", "summary": summary(value), "digest": h.hexdigest()}
        except BaseException as exc:  # the outcome is the point: report every exception
            reply = {"status": "error", "type": type(exc).__name__,
                     "mro": [c.__name__ for c in type(exc).__mro__], "message": str(exc)[:2000],
                     "traceback": traceback.format_exc()[-4000:]}
        value = None
        if reply["status"] == "error":
            peak = memory("VmHWM") if peak_known else 0
        reply.update(rss_start=start, rss_peak=peak)
        out.write(json.dumps(reply) + "\\n")
        out.flush()
    """
)


@dataclass
class Outcome:
    """What one sandboxed call did."""

    status: str                       #: "ok", "error", "hang" or "crash"
    type: str = ""                    #: the exception class name (status "error")
    mro: list[str] = field(default_factory=list)
    message: str = ""
    summary: str = ""                 #: what an "ok" call returned, e.g. "ndarray(12, 3):float32"
    digest: str = ""                  #: SHA-256 of an "ok" call's arrays (dtype, shape, bytes) and other values
    traceback: str = ""
    rss_start: int = 0                #: the child's resident bytes when the call began
    rss_peak: int = 0                 #: its resident high-water mark during the call (0: unknown)

    @property
    def rss_growth(self) -> int:
        """Bytes the call's peak resident memory rose above its start (0 when unknown)."""
        return max(0, self.rss_peak - self.rss_start) if self.rss_peak else 0

    def raised(self, error: type[BaseException] | str) -> bool:
        name = error if isinstance(error, str) else error.__name__
        return self.status == "error" and name in self.mro

    def check(self, *errors: type[BaseException] | str, context: Any = "") -> None:
        """Assert the call succeeded or raised one of ``errors`` (never MemoryError, a hang or a crash)."""
        allowed = [e if isinstance(e, str) else e.__name__ for e in errors]
        if self.status == "ok" or (any(self.raised(e) for e in errors) and not self.raised(MemoryError)):
            return
        raise AssertionError(f"{context}: expected success or one of {allowed}, got {self.describe()}")

    def describe(self) -> str:
        if self.status == "error":
            return f"{self.type}: {self.message}\n{self.traceback}"
        return self.status + (f" ({self.message})" if self.message else "")


class Sandbox:
    """A long-lived child Python process that runs calls under a memory limit and a deadline.

    Use as a context manager (or call :meth:`close`)::

        with Sandbox() as box:
            outcome = box.call("trainlab.checkpoint:read", str(path))
            outcome.check(CheckpointError, context=path)
    """

    def __init__(self, memory: int = DEFAULT_MEMORY, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.memory, self.timeout = int(memory), float(timeout)
        self._proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [_SRC, _TESTS, os.environ.get("PYTHONPATH")]))}
        return subprocess.Popen([sys.executable, "-c", _CHILD, str(self.memory)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)

    def call(self, target: str, *args: Any, **kwargs: Any) -> Outcome:
        """Call ``module:function`` with JSON-able ``args``/``kwargs`` in the child."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"target": target, "args": list(args), "kwargs": kwargs}) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            return self._lost("crash", "the child exited before the call")
        ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
        if not ready:
            return self._lost("hang", f"no answer within {self.timeout:g} s")
        line = proc.stdout.readline()
        if not line:
            return self._lost("crash", f"the child exited with status {proc.wait(5)}")
        return Outcome(**json.loads(line))

    def _lost(self, status: str, message: str) -> Outcome:
        self.close()
        return Outcome(status, message=message)

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(10)
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
            self._proc = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def fuzz_settings(examples: int | None = None, **kwargs: Any) -> Any:
    """Hypothesis settings for a fuzz test: ``TRAINLAB_FUZZ_EXAMPLES`` examples, no deadline."""
    from hypothesis import HealthCheck, settings

    n = examples if examples is not None else int(os.environ.get("TRAINLAB_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], **kwargs)


def flip_bit(data: bytes, bit: int) -> bytes:
    """``data`` with bit ``bit`` (0 .. 8*len-1) inverted."""
    buf = bytearray(data)
    buf[bit // 8] ^= 1 << (bit % 8)
    return bytes(buf)
