"""The driver: run a plan's missing trials on an executor, recording each result durably as it lands.

::

    plan = Plan("sweep", "lr", definition, specs)
    results = run(plan, "sweeps/lr", executor=LocalExecutor(2))

1. The folder's store is opened (and locked); the plan is checked against ``plan.json``
   (a changed plan is refused, naming the change, unless ``extend``).
2. Trials already recorded are skipped; the others are submitted in plan order, keeping
   ``executor.capacity`` in flight (about one queued per worker slot).
3. Each result is appended to ``results.jsonl`` and fsync'ed the moment it arrives;
   errors are printed as they happen and the run goes on with the rest.
4. Ctrl-C or a crash loses only the trials in flight: the same call resumes.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from trainlab.trials.executors import Executor, SerialExecutor
from trainlab.trials.progress import Progress
from trainlab.trials.spec import trial_id
from trainlab.trials.store import Plan, ResultStore

__all__ = ["run", "Results", "TrialsFailed", "EngineError"]


class EngineError(RuntimeError):
    """A failure at run time of the engine: workers that cannot start, trials a study needed that failed."""


class TrialsFailed(EngineError):
    """An analysis needed trials that failed, were killed, or have not run."""


class Results(Mapping[str, dict[str, Any]]):
    """The records of a plan's trials, by id, in plan order (a trial not yet recorded is absent)."""

    def __init__(self, plan: Plan, records: dict[str, dict[str, Any]], folder: Path | None = None) -> None:
        self.plan, self.folder = plan, folder
        self._records = {tid: records[tid] for tid in plan.ids if tid in records}

    def __getitem__(self, tid: str) -> dict[str, Any]:
        return self._records[tid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def record(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The record of the trial ``spec`` (KeyError when it has not run)."""
        return self._records[trial_id(spec)]

    def metrics(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The metrics of ``spec``'s trial, which must have finished ``ok`` or ``diverged``."""
        self.require_complete()
        return self.record(spec)["metrics"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for record in self._records.values():
            out[record["status"]] = out.get(record["status"], 0) + 1
        missing = len(self.plan.ids) - len(self._records)
        if missing:
            out["missing"] = missing
        return out

    def require_complete(self) -> None:
        """Raise :class:`TrialsFailed` unless every trial ended ``ok`` or ``diverged``."""
        bad = [r for r in self._records.values() if r["status"] not in ("ok", "diverged")]
        missing = len(self.plan.ids) - len(self._records)
        if bad or missing:
            where = f" (records in {self.folder})" if self.folder else ""
            lines = [f"  trial {r['id']} {r['status']}: {r.get('error')}" for r in bad[:5]]
            more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise TrialsFailed(f"{self.plan.name}: {len(bad)} trials failed or were killed and {missing} have "
                               f"not run{where}:\n" + "\n".join(lines) + more)


def _label(spec: dict[str, Any]) -> str:
    text = json.dumps(spec["params"], separators=(",", "="))
    return text if len(text) <= 100 else text[:97] + "..."


def run(plan: Plan, folder: str | Path, *, executor: Executor | None = None, extend: bool = False,
        progress: bool = False, labels: list[str] | None = None, echo: Callable[[str], None] | None = None,
        on_report: Callable[[str, dict[str, Any]], None] | None = None,
        on_result: Callable[[dict[str, Any]], None] | None = None) -> Results:
    """Run ``plan``'s unrecorded trials and return all its records.

    Args:
        plan: the trials (and what they were made from).
        folder: the output folder (``results.jsonl``, ``plan.json``, ``workers.log``).
        executor: where trials run (default: :class:`SerialExecutor`, in this process).
        extend: accept a plan that differs from the folder's (run what is new).
        progress: show the progress bar and print errors as they happen.
        labels: a short description per trial for messages (default: its params).
        echo: where the run's announcements go when ``progress`` (default: the progress stream).
        on_report: called with ``(trial id, metrics)`` for every per-epoch report, as it arrives.
        on_result: called with every record right after it is stored.

    Raises:
        PlanChanged: the folder holds a different plan and ``extend`` is False.
    """
    folder = Path(folder)
    executor = executor if executor is not None else SerialExecutor()
    label_of = dict(zip(plan.ids, labels if labels is not None else [_label(s) for s in plan.specs], strict=True))
    with ResultStore(folder) as store:
        store.check_plan(plan, extend=extend)
        todo = deque((tid, spec) for tid, spec in zip(plan.ids, plan.specs, strict=True) if tid not in store)
        bar = Progress(len(todo), desc=plan.name, enabled=progress)
        say = echo if echo is not None else bar.write
        done_before = len(plan.ids) - len(todo)
        if progress:
            say(f"{plan.name}: {len(plan.ids)} trials, {done_before} already recorded in {folder}"
                + (f", {len(todo)} to run" if todo else ", nothing to run"))
        if not todo:
            bar.close()
            return Results(plan, store.records, folder)
        in_flight: dict[str, dict[str, Any]] = {}
        try:
            with executor:
                if progress:
                    say(f"running on {executor.describe()}")
                    dashboard = getattr(executor, "dashboard", None)
                    if dashboard:
                        say(f"Dask dashboard: {dashboard}")
                while todo or in_flight:
                    while todo and len(in_flight) < executor.capacity:
                        tid, spec = todo.popleft()
                        in_flight[tid] = spec
                        executor.submit(tid, spec)
                    for event in executor.events(timeout=0.5):
                        if event.id not in in_flight:
                            continue  # a late start/report of a trial already recorded
                        if event.kind == "start":
                            bar.started(event.id)
                        elif event.kind == "report":
                            if on_report is not None:
                                on_report(event.id, event.data)
                        elif event.kind == "result":
                            record = _checked(event.id, in_flight.pop(event.id), event.data)
                            store.append(record)
                            bar.finished(record, label_of[event.id])
                            if on_result is not None:
                                on_result(record)
        finally:
            bar.close()
            if progress:
                say(bar.summary())
        return Results(plan, store.records, folder)


def _checked(tid: str, spec: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The record to store for trial ``tid``: a worker on another trainlab version makes it ``failed``."""
    if record.get("id") != tid:
        from trainlab import __version__

        record = {**record, "id": tid, "status": "failed", "metrics": {}, "curves": [], "spec": spec,
                  "error": f"the worker runs trainlab {record.get('version')}, the driver {__version__}: "
                           "the trial id differs (install the same version on every worker)"}
    return record
