"""TensorBoard event files from a training run: the :class:`TensorBoard` callback.

Point ``tensorboard --logdir LOG_DIR`` at the folder and it shows, for every run under it:

========================== ============================================ ==========================
tag                        what                                         step
========================== ============================================ ==========================
``loss/train``,            the epoch's mean training loss and accuracy,   the epoch's last step
``accuracy/train``         as in ``metrics.jsonl``
``loss/val``,              validation loss and accuracy                   the epoch's last step
``accuracy/val``
``lr``                     the learning rate the epoch ran with           the epoch's last step
``loss/batch``             the mini-batch loss                            every monitor sample
``activation/<layer>``     histogram of the layer's output                every monitor sample
``gradient/<layer>``       histogram of dL/d(output)                      every monitor sample
``weight/<layer>``,        histograms of the layer's parameters (after    every monitor sample
``bias/<layer>``           the step)
``update_ratio/<param>``   ||w_after - w_before|| / ||w_before||          every monitor sample
``diagnosis``              :meth:`Monitor.diagnose`'s findings (text)     the epoch's last step
HParams                    the run's config, with the last ``loss/val``,  start and end of training
                           ``accuracy/val``, ``loss/train``,
                           ``accuracy/train`` as its metrics
========================== ============================================ ==========================

``<layer>`` is the monitor's layer name and type, zero-padded so that TensorBoard's
alphabetical order is the network's order (``03.ReLU``); ``<param>`` adds the parameter
(``03.Linear.weight``).

**Histograms are the Monitor's.** With ``Monitor(model, every=N, histograms=True)`` each
sampled step keeps :class:`~trainlab.monitor.Histogram` s (``edges``, ``counts``, ``min``,
``max``, ``num``, ``sum``, ``sum_squares``: TensorBoard's ``HistogramProto`` fields). They are
written as TensorBoard ``HistogramProto`` s (tensorboardX's protobufs), ``bucket_limit = edges[1:]`` and
``bucket = counts``, so TensorBoard shows exactly the buckets the Monitor counted; nothing
is re-binned. A monitor without histograms still gives the update ratios and the batch
loss; no monitor at all gives the epoch scalars and the hparams.

**Steps.** Everything is on the trainer's global step (the epoch scalars at the epoch's last
step), so one x axis serves every tag. A resumed run (``Trainer.resume``) writes a new event
file that starts with ``purge_step = global_step``: TensorBoard drops what the interrupted
run had written past its last checkpoint, so the curves continue without a fold.

**Sweeps.** ``TensorBoard(log_dir, run_name)`` writes into ``log_dir/run_name``: give every
trial of a sweep the same ``log_dir`` and its own ``run_name`` (its trial id), and
TensorBoard lists them side by side; the HParams view tabulates their configs against their
final metrics.

**Cost.** At each sampled step the callback takes the new
:class:`~trainlab.monitor.StepRecord` (already computed by the Monitor), builds one event of
it (all its histograms and ratios in one ``Summary``, filled in place), frames it (TFRecord
length and CRC32C, tensorboardX's ``EventsWriter``) and appends it to the event file, flushed
at most ``flush_secs`` apart: about 0.4 ms on the benchmark MLP, once every ``every`` steps.
This runs in the training thread. ``background=True`` moves it to a thread of its own, which
costs *more* on the clock when BLAS already uses every core: the thread's Python work takes the
interpreter lock the training thread needs between its matrix products. tensorboardX's
``SummaryWriter`` is not used: it passes every event through a ``multiprocessing.Queue`` to a
thread of its own (pickled, unpickled and serialized again, in two more threads), which cost
more on the clock than building the events.

Needs tensorboardX (``pip install "trainlab[tensorboard]"``), which also brings ``crc32c``:
without it tensorboardX checksums every record in pure Python (about 0.4 ms a kilobyte).

References:
    TensorBoard's event file format and ``HistogramProto``:
    https://github.com/tensorflow/tensorboard (``tensorboard/compat/proto/summary.proto``).
    The HParams dashboard: https://www.tensorflow.org/tensorboard/hyperparameter_tuning_with_hparams
"""

from __future__ import annotations

import atexit
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trainlab.train import Callback

__all__ = ["TensorBoard", "flatten_hparams", "METRICS", "WHAT_TAGS"]

#: epoch-log key -> scalar tag (and the metrics of the HParams view)
METRICS = {"val_loss": "loss/val", "val_accuracy": "accuracy/val", "train_loss": "loss/train",
           "train_accuracy": "accuracy/train"}
#: Monitor histogram kinds -> tag group (parameters keep their own name: "weight", "bias", ...)
WHAT_TAGS = {"act": "activation", "grad": "gradient"}
CLOSE_TIMEOUT = 60.0   #: seconds close() waits for the background thread to write what is queued


def _import_tensorboardx() -> Any:
    try:
        import tensorboardX
    except ImportError:
        raise ImportError("TensorBoard logging needs tensorboardX: pip install \"trainlab[tensorboard]\"") from None
    return tensorboardX


def flatten_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}``: the values the HParams view takes.

    Booleans, integers, floats and strings stay as they are; lists and tuples become their
    text (``"[256, 256]"``); ``None`` is left out; anything else is written as ``str(value)``.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"TensorBoard: hparams must be a dict (a config), got {type(config).__name__}")
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_hparams(value, f"{name}."))
        elif value is None:
            continue
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif isinstance(value, (list, tuple)):
            out[name] = "[" + ", ".join(str(v) for v in value) + "]"
        else:
            out[name] = str(value)
    return out


def _layer_tags(monitor: Any) -> dict[str, str]:
    """Layer name -> ``"03.ReLU"`` (digits zero-padded so that alphabetical order is network order)."""
    names = monitor.layer_names
    width = max((len(n) for n in names if n.isdigit()), default=1)
    return {n: f"{n.zfill(width) if n.isdigit() else n}.{monitor._type(n)}" for n in names}


class _EventFile:
    """One TensorBoard event file (``events.out.tfevents.<time>.<host><suffix>`` in ``folder``),
    written by one thread: tensorboardX's ``EventsWriter`` frames every event (length, CRC32C)."""

    def __init__(self, folder: Path, suffix: str, purge_step: int | None) -> None:
        from tensorboardX.event_file_writer import EventsWriter  # writes the file_version event

        self._events = EventsWriter(str(folder / "events"), suffix)
        if purge_step is not None:
            # what SummaryWriter(purge_step=...) writes: TensorBoard drops the events of earlier
            # files at or past this step (a resumed run replaces what followed its checkpoint)
            from tensorboardX.proto.event_pb2 import Event, SessionLog

            self._events.write_event(Event(step=purge_step, wall_time=time.time(), file_version="brain.Event:2"))
            self._events.write_event(Event(step=purge_step, wall_time=time.time(),
                                           session_log=SessionLog(status=SessionLog.START)))

        self.unflushed_since: float | None = None    # monotonic time of the first event not yet flushed

    def add_summary(self, summary: Any, step: int | None = None) -> None:
        from tensorboardX.proto.event_pb2 import Event

        event = Event(wall_time=time.time(), summary=summary)
        if step is not None:
            event.step = int(step)
        self.add_event(event)

    def add_event(self, event: Any) -> None:
        self._events.write_event(event)
        if self.unflushed_since is None:
            self.unflushed_since = time.monotonic()

    def flush(self) -> None:
        self._events.flush()
        self.unflushed_since = None

    def close(self) -> None:
        self._events.close()


class _Worker:
    """Runs submitted calls in order, in one background thread (or at once when not ``background``),
    and flushes ``file`` at most ``flush_secs`` after a call wrote to it.

    The first exception a call raises is kept and raised again by the next :meth:`submit`
    or by :meth:`close`, so a failing write is never silent. ``busy`` adds up the CPU time
    (of the thread that ran them) the calls took, in seconds.
    """

    def __init__(self, file: _EventFile, background: bool, flush_secs: float) -> None:
        self.file = file
        self.background = background
        self.flush_secs = flush_secs
        self.busy = 0.0
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="trainlab-tensorboard", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                since = self.file.unflushed_since
                wait = None if since is None else max(since + self.flush_secs - time.monotonic(), 0.0)
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                self._flush_if_due()
                continue
            if item is None:
                return
            self._call(*item)

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        start = time.thread_time()
        try:
            fn(*args)
            self._flush_if_due()
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            if self._error is None:    # the first failure is the one to report
                self._error = exc
        finally:
            self.busy += time.thread_time() - start

    def _flush_if_due(self, now: bool = False) -> None:
        since = self.file.unflushed_since
        if since is not None and (now or time.monotonic() >= since + self.flush_secs):
            self.file.flush()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"TensorBoard: writing events failed: {error!r}") from error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        if self._thread is None:
            self._call(fn, args)
            self._raise()
        else:
            self._queue.put((fn, args))

    def wait(self, timeout: float = CLOSE_TIMEOUT, flush: bool = False) -> None:
        """Block until every call submitted so far has run (and, with ``flush``, is on disk)."""
        if flush:
            self.submit(self._flush_if_due, True)
        if self._thread is not None:
            done = threading.Event()
            self._queue.put((done.set, ()))
            if not done.wait(timeout):
                raise RuntimeError(f"TensorBoard: the event writer did not catch up within {timeout:.0f} s")
        self._raise()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Run what is queued, then flush and close the file (the file is closed even if a call failed)."""
        try:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout)
                if self._thread.is_alive():
                    raise RuntimeError(f"TensorBoard: the event writer did not finish within {timeout:.0f} s")
                self._thread = None
        finally:
            if self._thread is None:
                self.file.close()
        self._raise()


class TensorBoard(Callback):
    """Write a run's scalars, the Monitor's histograms and update ratios, the diagnosis and the
    config as TensorBoard event files (tensorboardX); see the module docstring for the tags.

    Args:
        log_dir: the folder to point ``tensorboard --logdir`` at (created if missing).
        run_name: a subfolder of ``log_dir`` for this run (default: none, the events go into
            ``log_dir``). A sweep gives each trial its own ``run_name`` under one ``log_dir``.
        hparams: the run's config (nested tables are flattened to ``"table.key"``, see
            :func:`flatten_hparams`), shown in the HParams view; None for none.
        monitor: the :class:`~trainlab.monitor.Monitor` whose records are written (default: the
            trainer's ``monitor``). Create it with ``histograms=True`` to get histograms.
        histograms: write the monitor's histograms (default True; they are written only when
            the monitor records them).
        background: build and write the events in a background thread (default False: in the
            training thread, which costs less on the clock; see **Cost** above).
        flush_secs: how long written events may wait before the event file is flushed (default
            10). Without ``background`` a flush that fell due is done with the next event (each
            sampled step writes one, and the epoch's end); with it, on time. :meth:`flush`,
            :meth:`close` and the end of training flush at once.

    Training calls :meth:`close` at its end; after an exception, call it yourself (or use the
    callback as a context manager) to flush what was written. Interpreter exit closes it too.
    """

    def __init__(self, log_dir: str | Path, run_name: str | None = None, *, hparams: Mapping[str, Any] | None = None,
                 monitor: Any = None, histograms: bool = True, background: bool = False,
                 flush_secs: float = 10.0) -> None:
        if run_name is not None and (not isinstance(run_name, str) or not run_name.strip()
                                     or run_name in (".", "..") or Path(run_name).is_absolute()):
            raise ValueError(f"TensorBoard: run_name must be a non-empty relative folder name, got {run_name!r}")
        if not (isinstance(flush_secs, (int, float)) and flush_secs > 0):
            raise ValueError(f"TensorBoard: flush_secs must be a number > 0, got {flush_secs!r}")
        self.log_dir = Path(log_dir)
        self.run_name = run_name
        self.hparams = flatten_hparams(hparams) if hparams is not None else None
        self.monitor = monitor
        self.histograms = bool(histograms)
        self.background = bool(background)
        self.flush_secs = float(flush_secs)
        self.writer: _EventFile | None = None    # the open event file (between open() and close())
        self._worker: _Worker | None = None
        self._last: Any = None           # the last monitor record written
        self._tags: dict[str, str] = {}
        self._session_open = False
        _import_tensorboardx()           # fail at construction, not after the first epoch

    @property
    def run_dir(self) -> Path:
        """The folder the event files go into: ``log_dir / run_name`` (or ``log_dir``)."""
        return self.log_dir / self.run_name if self.run_name else self.log_dir

    # ------------------------------------------------------------------ writer
    def open(self, purge_step: int | None = None) -> TensorBoard:
        """Open the event writer (training does this); ``purge_step`` hides older events at or past it."""
        if self.writer is None:
            _import_tensorboardx()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # the file name holds the second it was opened in: a suffix in nanoseconds keeps a resume
            # within the same second from overwriting the first file, and sorts after it (TensorBoard
            # reads a folder's files in name order, so the purge applies to the earlier one)
            self.writer = _EventFile(self.run_dir, f".{time.time_ns()}", purge_step or None)
            self._worker = _Worker(self.writer, self.background, self.flush_secs)
            atexit.register(self._close_at_exit)
        return self

    def close(self, status: str = "success") -> None:
        """Write what is queued, end the HParams session (``status`` "success" or "failure"), close the file."""
        if self.writer is None:
            return
        try:
            if self._session_open:
                self._submit(self._write_session_end, status)
        finally:
            assert self._worker is not None
            try:
                self._worker.close()
            finally:
                self.writer, self._worker = None, None
                atexit.unregister(self._close_at_exit)

    def _close_at_exit(self) -> None:   # pragma: no cover - runs at interpreter exit
        try:
            self.close("failure")
        except Exception:  # noqa: BLE001 - exiting anyway
            pass

    def flush(self) -> None:
        """Write everything logged so far to the event file now (TensorBoard sees it on its next poll)."""
        if self._worker is not None:
            self._worker.wait(flush=True)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Log a scalar of your own (``tag``, e.g. ``"custom/grad_norm"``) at ``step``, in order with
        the callback's events (open the writer first: training does, or call :meth:`open`)."""
        if self._worker is None:
            raise RuntimeError("TensorBoard.add_scalar: the writer is not open (training opens it; or call open())")
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"TensorBoard.add_scalar: tag must be a non-empty string, got {tag!r}")
        self._submit(self._write_epoch, {tag: float(value)}, None, int(step))

    def __enter__(self) -> TensorBoard:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close("failure" if exc_type is not None else "success")

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._worker is not None
        self._worker.submit(fn, *args)

    # ------------------------------------------------------------------ callback hooks
    def on_train_begin(self, trainer: Any) -> None:
        if self.monitor is None:
            self.monitor = getattr(trainer, "monitor", None)
        step = int(getattr(trainer, "global_step", 0))
        self.open(purge_step=step if step > 0 else None)
        if self.monitor is not None:
            self._tags = _layer_tags(self.monitor)
        if self.hparams is not None and not self._session_open:
            self._session_open = True
            self._submit(self._write_session_start, dict(self.hparams), step)

    def on_step_end(self, trainer: Any, step: int, loss: float) -> None:
        monitor = self.monitor
        if monitor is None or not monitor.steps or monitor.steps[-1] is self._last:
            return
        for record in self._new_records(monitor.steps):
            self._submit(self._write_record, record, float(loss) if record.step == step else None)
        self._last = monitor.steps[-1]

    def _new_records(self, steps: list[Any]) -> list[Any]:
        """The records after the last one written (the monitor only appends, and may drop the oldest)."""
        for i in range(len(steps) - 1, -1, -1):
            if steps[i] is self._last:
                return steps[i + 1:]
        return list(steps)      # the last one written was dropped (max_records): every record kept is newer

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        step = max(int(trainer.global_step) - 1, 0)
        scalars = {tag: float(logs[key]) for key, tag in METRICS.items() if key in logs}
        if "lr" in logs:
            scalars["lr"] = float(logs["lr"])
        text = None
        if self.monitor is not None:
            text = _findings_markdown(self.monitor.diagnose(), epoch + 1)
        self._submit(self._write_epoch, scalars, text, step)

    def on_train_end(self, trainer: Any) -> None:
        self.close("success")

    # ------------------------------------------------------------------ event building (worker thread)
    def _write_record(self, record: Any, batch_loss: float | None) -> None:
        """One event for a monitor record, its values added in place (no Summary built and copied
        per histogram: tensorboardX's ``histogram_raw`` would build one and the event copy it)."""
        from tensorboardX.proto.event_pb2 import Event

        event = Event(wall_time=time.time(), step=record.step)
        values = event.summary.value
        if batch_loss is not None and math.isfinite(batch_loss):
            values.add(tag="loss/batch", simple_value=batch_loss)
        for layer, stats in record.layers.items():
            label = self._tags.get(layer, layer)
            for stat, v in stats.items():
                if stat.endswith(".update_ratio") and math.isfinite(v):
                    values.add(tag=f"update_ratio/{label}.{stat[:-len('.update_ratio')]}", simple_value=v)
        if self.histograms and record.histograms:
            for layer, hists in record.histograms.items():
                label = self._tags.get(layer, layer)
                for what, h in hists.items():
                    if h.num == 0:
                        continue
                    histo = values.add(tag=f"{WHAT_TAGS.get(what, what)}/{label}").histo
                    histo.min, histo.max, histo.num, histo.sum, histo.sum_squares = (
                        h.min, h.max, h.num, h.sum, h.sum_squares)
                    histo.bucket_limit.extend(h.edges[1:].tolist())
                    histo.bucket.extend(h.counts.tolist())
        if values:
            self._file().add_event(event)

    def _file(self) -> _EventFile:
        assert self.writer is not None, "events are written between open() and close()"
        return self.writer

    def _write_epoch(self, scalars: dict[str, float], text: str | None, step: int) -> None:
        from tensorboardX import summary as tbs
        from tensorboardX.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
        if values:
            self._file().add_summary(Summary(value=values), step)
        if text is not None:
            self._file().add_summary(tbs.text("diagnosis", text), step)

    def _write_session_start(self, hparams: dict[str, Any], step: int) -> None:
        from tensorboardX.summary import hparams as hparams_summaries

        experiment, start, _ = hparams_summaries(hparams, {tag: 0.0 for tag in METRICS.values()})
        for summary in (experiment, start):
            self._file().add_summary(summary, step)

    def _write_session_end(self, status: str) -> None:
        from tensorboardX.proto.api_pb2 import Status
        from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
        from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

        end = SessionEndInfo(status=Status.Value("STATUS_SUCCESS" if status == "success" else "STATUS_FAILURE"),
                             end_time_secs=time.time())
        content = HParamsPluginData(session_end_info=end, version=0).SerializeToString()
        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=content))
        self._file().add_summary(Summary(value=[Summary.Value(tag="_hparams_/session_end_info",
                                                                         metadata=metadata)]))
        self._session_open = False


def _findings_markdown(findings: list[Any], epoch: int) -> str:
    """The diagnosis as Markdown (TensorBoard's text dashboard renders it)."""
    if not findings:
        return f"epoch {epoch}: no findings (activations, gradients and update ratios in their healthy ranges)"
    lines = [f"epoch {epoch}: {len(findings)} finding{'s' if len(findings) > 1 else ''}", ""]
    for f in findings:
        evidence = ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}" for k, v in f.evidence.items())
        lines.append(f"* **{f.kind}** (layer {f.layer}): {f.message}"
                     + (f". *Suggestion:* {f.suggestion}" if f.suggestion else "")
                     + (f" ({evidence})" if evidence else ""))
    return "\n".join(lines)
