"""The durable results store: ``plan.json`` and ``results.jsonl`` in the output folder.

* ``results.jsonl`` gets one JSON line per finished trial, appended with a single
  ``write`` and ``fsync``'ed before the driver moves on, so a crash (Ctrl-C, SIGKILL of the
  driver, a power cut) loses at most the trials in flight. A line torn by a crash is cut
  off when the store is next opened; a trial is never recorded twice.
* ``plan.json`` (written atomically) holds what was asked for: a *definition* (the sweep
  file's content, or a study's name, size and seeds) and the ids of its trials in order.
  Opening the store with a different plan is refused with a message that names every
  changed key, unless ``extend=True``: then the finished trials that still belong to the
  new plan are kept and only the new ones run (results of trials no longer in the plan
  stay in ``results.jsonl`` but are left out of the analysis).
* A lock file stops two drivers from writing into one folder at once (POSIX ``flock``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.checkpoint import atomic_write_bytes
from trainlab.trials.spec import trial_id

__all__ = ["Plan", "ResultStore", "StoreError", "PlanChanged", "plan_changes", "peek", "RESULTS_NAME", "PLAN_NAME"]

RESULTS_NAME = "results.jsonl"
PLAN_NAME = "plan.json"
STATUSES = ("ok", "diverged", "failed", "killed")


class StoreError(ValueError):
    """A results folder is unreadable, locked by another driver, or holds a corrupt line."""


class PlanChanged(StoreError):
    """The folder holds results of a different plan (and ``extend`` was not given)."""


@dataclass
class Plan:
    """The trials to run and what they were made from.

    Attributes:
        kind: ``"sweep"`` or ``"study"`` (any short word).
        name: a human name (the sweep's or study's).
        definition: JSON-able description of what was asked for; a rerun compares it key by key.
        specs: the trial specs, in the order they are submitted (longest first balances best).
    """

    kind: str
    name: str
    definition: dict[str, Any]
    specs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ids = [trial_id(s) for s in self.specs]
        seen: dict[str, int] = {}
        for i, tid in enumerate(self.ids):
            if tid in seen:
                raise StoreError(f"plan {self.name!r}: trials {seen[tid]} and {i} have the same spec "
                                 f"(id {tid}); a plan holds no duplicates")
            seen[tid] = i

    def to_json(self) -> dict[str, Any]:
        from trainlab import __version__

        return {"kind": self.kind, "name": self.name, "version": __version__, "definition": self.definition,
                "trials": self.ids}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "(value)": value}


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plan_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Lines naming what differs between two ``plan.json`` contents (empty when they agree)."""
    lines = []
    if old.get("kind") != new.get("kind") or old.get("name") != new.get("name"):
        lines.append(f"plan: {old.get('kind')} {old.get('name')!r} -> {new.get('kind')} {new.get('name')!r}")
    a, b = _flatten(old.get("definition", {})), _flatten(new.get("definition", {}))
    for key in list(a) + [k for k in b if k not in a]:
        if key not in b:
            lines.append(f"{key}: {_short(a[key])} -> (removed)")
        elif key not in a:
            lines.append(f"{key}: (not set) -> {_short(b[key])}")
        elif a[key] != b[key]:
            lines.append(f"{key}: {_short(a[key])} -> {_short(b[key])}")
    old_ids, new_ids = old.get("trials", []), new.get("trials", [])
    if not lines and old_ids != new_ids:
        gone, added = set(old_ids) - set(new_ids), set(new_ids) - set(old_ids)
        why = ""
        if old.get("version") != new.get("version"):
            why = f" (trainlab {old.get('version')} -> {new.get('version')}: trial ids include the version)"
        lines.append(f"trials: {len(added)} new and {len(gone)} no longer planned, of {len(new_ids)}{why}")
    return lines


class ResultStore:
    """Append-only trial records in ``folder/results.jsonl``, checked against ``folder/plan.json``.

    Use as a context manager (it holds the folder's lock while open)::

        with ResultStore(folder) as store:
            store.check_plan(plan, extend=False)
            for record in ...:
                store.append(record)
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / RESULTS_NAME
        self.records: dict[str, dict[str, Any]] = {}
        self._fd: int | None = None
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ open / close
    def __enter__(self) -> ResultStore:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock()
        self.records = self._read()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _lock(self) -> None:
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            self._lock_fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(f"{self.folder}: another sweep or study is writing into this folder "
                             "(wait for it to finish, or choose another output folder)") from None
        self._lock_fd = fd

    def _read(self, repair: bool = True) -> dict[str, dict[str, Any]]:
        """Records by id; a torn last line (a crash mid-append) is cut off the file when ``repair``."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        records: dict[str, dict[str, Any]] = {}
        good_end = 0
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, start=1):
            last = number == len(lines)
            if not raw.strip():
                if not last:
                    good_end += len(raw) + 1
                continue
            try:
                record = json.loads(raw)
                if not isinstance(record, dict) or "id" not in record or "status" not in record:
                    raise ValueError("not a trial record")
            except ValueError as exc:
                if last or all(not rest.strip() for rest in lines[number:]):
                    break  # the torn tail of an interrupted append
                raise StoreError(f"{self.path}, line {number}: not a trial record ({exc}); "
                                 "fix or remove that line to continue") from None
            if last:
                break  # complete JSON but no newline yet: an interrupted append, rerun it
            records[record["id"]] = record
            good_end += len(raw) + 1
        if repair and good_end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        return records

    # ------------------------------------------------------------------ plans
    def check_plan(self, plan: Plan, *, extend: bool = False) -> list[str]:
        """Compare ``plan`` with the folder's ``plan.json``; write it when accepted.

        Returns the list of changes (empty when the plan is unchanged or new).

        Raises:
            PlanChanged: the plan changed and ``extend`` is False; the message names the changes.
        """
        path = self.folder / PLAN_NAME
        new = plan.to_json()
        changes: list[str] = []
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError as exc:
                raise StoreError(f"{path}: unreadable ({exc})") from None
            changes = plan_changes(old, new)
            if changes and not extend:
                planned = set(plan.ids)
                keep = sum(1 for tid in self.records if tid in planned)
                raise PlanChanged(
                    f"{self.folder} holds the results of a different {old.get('kind', 'plan')}, changed: "
                    + "; ".join(changes)
                    + f"; rerun with --extend to keep the {keep} finished trials that belong to the new plan "
                      f"and run the other {len(plan.ids) - keep}, or choose another output folder")
        if changes or not path.exists():
            atomic_write_bytes(path, (json.dumps(new, indent=1) + "\n").encode())
        return changes

    # ------------------------------------------------------------------ records
    def __contains__(self, tid: str) -> bool:
        return tid in self.records

    def append(self, record: dict[str, Any]) -> None:
        """Append one record durably (one ``write``, then ``fsync``); an id is recorded once."""
        if self._fd is None:
            raise StoreError(f"{self.path}: the store is not open")
        tid = record.get("id")
        if tid in self.records:
            raise StoreError(f"{self.path}: trial {tid} is already recorded")
        if record.get("status") not in STATUSES:
            raise StoreError(f"trial {tid}: status must be one of {', '.join(STATUSES)}, got {record.get('status')!r}")
        line = (json.dumps(record) + "\n").encode()
        written = os.write(self._fd, line)
        while written < len(line):  # pragma: no cover - a short write on a full disk
            written += os.write(self._fd, line[written:])
        os.fsync(self._fd)
        self.records[tid] = record

    def results(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The records of ``ids`` that are recorded, in the order given."""
        return {tid: self.records[tid] for tid in ids if tid in self.records}


def peek(folder: str | Path) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """The folder's ``plan.json`` (None if absent) and records, read without locking or changing anything."""
    folder = Path(folder)
    plan_path = folder / PLAN_NAME
    try:
        plan = json.loads(plan_path.read_text()) if plan_path.exists() else None
    except ValueError:
        plan = None
    return plan, ResultStore(folder)._read(repair=False)
