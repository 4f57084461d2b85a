"""One progress bar over the trials of a run (done / failed / running, ETA), and the error lines.

On a terminal, a tqdm bar counts finished trials (its rate gives the ETA) with
``ok``/``diverged``/``failed``/``killed``/``running`` counts beside it; errors are printed
above it as they happen (``tqdm.write``). Elsewhere (a log file, CI) there is no bar: the
errors and a closing count are printed as plain lines.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """Progress of one run of ``total`` trials.

    Args:
        total: trials to run now (those already recorded are not counted).
        desc: the bar's label (the sweep's or study's name).
        enabled: show output at all (False: silent, for tests and the Python API).
        bar: a tqdm bar; None: only when ``stream`` is a terminal.
        stream: where everything goes (default stderr).
    """

    def __init__(self, total: int, *, desc: str = "trials", enabled: bool = True, bar: bool | None = None,
                 stream: TextIO | None = None) -> None:
        self.total, self.enabled = int(total), bool(enabled)
        self.stream = stream if stream is not None else sys.stderr
        self.counts: Counter[str] = Counter()
        self.running: set[str] = set()
        self._bar: Any = None
        show_bar = self.stream.isatty() if bar is None else bar
        if self.enabled and show_bar and self.total:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit="trial", dynamic_ncols=True, file=self.stream,
                             smoothing=0.1)

    def write(self, line: str) -> None:
        """Print a line above the bar (or plainly when there is none)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _postfix(self) -> None:
        if self._bar is not None:
            parts = {k: self.counts[k] for k in ("ok", "diverged", "failed", "killed") if self.counts[k]}
            parts["running"] = len(self.running)
            self._bar.set_postfix(parts, refresh=True)

    def started(self, tid: str) -> None:
        self.running.add(tid)
        self._postfix()

    def finished(self, record: dict[str, Any], label: str = "") -> None:
        """Count a finished trial; print its error at once if it failed or was killed."""
        self.running.discard(record["id"])
        status = record["status"]
        self.counts[status] += 1
        if status in ("failed", "killed"):
            where = f" [{label}]" if label else ""
            self.write(f"trial {record['id']}{where} {status}: {record.get('error')}")
        if self._bar is not None:
            self._bar.update(1)
        self._postfix()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def summary(self) -> str:
        done = sum(self.counts.values())
        parts = ", ".join(f"{self.counts[k]} {k}" for k in ("ok", "diverged", "failed", "killed") if self.counts[k])
        return f"{done} of {self.total} trials run" + (f" ({parts})" if parts else "")
