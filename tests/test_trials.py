"""The trial engine: specs and ids, the durable store, executors (serial, local processes, Dask), faults.

Trial functions used by the workers live at the top of this module (workers import it by
name: ``test_trials:...``). Every process a test starts ends by itself: workers exit at the
end of their input or when the driver is gone, Dask clusters are closed in ``finally``, and
every wait is bounded.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from trainlab import __version__, trials
from trainlab.trials import spec as spec_mod
from trainlab.trials.store import ResultStore

# ---------------------------------------------------------------------- trial functions (run in workers)


def square(params, ctx):
    """Reports two epochs, then returns x^2 and a draw from the spec's own generator."""
    for epoch in (1, 2):
        ctx.report(epoch=epoch, loss=params["x"] / epoch)
    time.sleep(params.get("sleep", 0.0))
    if params.get("fail"):
        raise ValueError(f"bad x {params['x']}")
    if params.get("diverge"):
        raise trials.Diverged("loss is nan", {"epochs_run": 1})
    return {"y": params["x"] ** 2, "draw": float(ctx.rng().random()), "threads": _blas_threads()}


def _blas_threads():
    from threadpoolctl import threadpool_info

    return max(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas")


def kill_self(params, ctx):
    """Kills its own worker process, every time."""
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


def wait_to_be_killed(params, ctx):
    """On its first run, writes its pid to ``marker`` and waits (at most 30 s) to be killed from outside."""
    marker = Path(params["marker"])
    if params.get("victim") and not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(30)
        raise RuntimeError("the test did not kill this worker within 30 s")
    time.sleep(0.05)
    return {"x": params["x"]}


def _specs(n, fn=square, **extra):
    return [trials.make_spec(fn, {"x": i, **extra}) for i in range(n)]


def _strip(record):
    return {k: record[k] for k in ("id", "status", "metrics", "error")} | {
        "curves": [{k: v for k, v in row.items() if k != "seconds"} for row in record["curves"]]}


# ---------------------------------------------------------------------- specs


def test_ids_are_stable_and_include_the_version():
    spec = trials.make_spec(square, {"x": 1, "lr": np.float64(0.1), "hidden": (3, 4)})
    assert spec == {"trial": "test_trials:square", "params": {"x": 1, "lr": 0.1, "hidden": [3, 4]}}
    assert trials.trial_id(spec) == trials.trial_id(json.loads(json.dumps(spec)))
    assert len(trials.trial_id(spec)) == 16
    assert trials.trial_id(spec) != trials.trial_id(spec, version=__version__ + "x")
    assert trials.trial_id(spec) != trials.trial_id(trials.make_spec(square, {"x": 2, "lr": 0.1, "hidden": [3, 4]}))
    # the seed depends on the spec alone, not on the version
    assert trials.spec_seed(spec) == trials.spec_seed(json.loads(json.dumps(spec)))


def test_bad_specs_are_refused_with_the_key():
    with pytest.raises(trials.TrialError, match=r"params\.lr"):
        trials.make_spec(square, {"lr": float("nan")})
    with pytest.raises(trials.TrialError, match="module-level"):
        trials.make_spec(lambda p, c: {}, {})
    with pytest.raises(trials.TrialError, match=r"params\.bad: object"):
        trials.make_spec(square, {"bad": object()})
    with pytest.raises(trials.TrialError, match="no function 'nope'"):
        spec_mod.resolve("test_trials:nope")


# ---------------------------------------------------------------------- the store


def _record(tid, status="ok"):
    return {"id": tid, "status": status, "metrics": {"v": 1.0}, "curves": []}


def test_store_appends_durably_and_cuts_a_torn_line(tmp_path):
    with ResultStore(tmp_path) as store:
        store.append(_record("a"))
        store.append(_record("b", "diverged"))
        with pytest.raises(trials.StoreError, match="already recorded"):
            store.append(_record("a"))
        with pytest.raises(trials.StoreError, match="another sweep"):
            ResultStore(tmp_path).open()  # the folder is locked while a driver writes
    path = tmp_path / "results.jsonl"
    good = path.read_bytes()
    path.write_bytes(good + b'{"id": "c", "status": "o')  # a crash in the middle of an append
    with ResultStore(tmp_path) as store:
        assert set(store.records) == {"a", "b"}
        assert path.read_bytes() == good
        store.append(_record("c"))
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_store_refuses_a_corrupt_line_in_the_middle(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_record("a")) + "\nnot json\n" + json.dumps(_record("b")) + "\n")
    with pytest.raises(trials.StoreError, match=r"line 2: not a trial record"):
        ResultStore(tmp_path).open()


def test_changed_plan_is_refused_naming_the_change(tmp_path):
    plan = trials.Plan("sweep", "s", {"grid": {"x": [0, 1]}}, _specs(2))
    trials.run(plan, tmp_path)
    bigger = trials.Plan("sweep", "s", {"grid": {"x": [0, 1, 2]}}, _specs(3))
    with pytest.raises(trials.PlanChanged, match=r"grid\.x: \[0, 1\] -> \[0, 1, 2\]") as info:
        trials.run(bigger, tmp_path)
    assert "--extend to keep the 2 finished trials" in str(info.value)
    ran = []
    results = trials.run(bigger, tmp_path, extend=True, on_result=ran.append)
    assert [r["metrics"]["y"] for r in ran] == [4]  # only the new trial ran
    assert len(results) == 3
    assert json.loads((tmp_path / "plan.json").read_text())["definition"]["grid"]["x"] == [0, 1, 2]


# ---------------------------------------------------------------------- statuses, serially


def test_serial_records_ok_failed_and_diverged(tmp_path):
    specs = [trials.make_spec(square, {"x": 2}), trials.make_spec(square, {"x": 3, "fail": True}),
             trials.make_spec(square, {"x": 4, "diverge": True})]
    reports = []
    results = trials.run(trials.Plan("sweep", "s", {}, specs), tmp_path, on_report=lambda tid, m: reports.append(m))
    ok, failed, diverged = (results.record(s) for s in specs)
    assert ok["status"] == "ok" and ok["metrics"]["y"] == 4 and ok["attempts"] == 1
    assert ok["curves"] == [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}]
    assert ok["metrics"]["threads"] == 1, "a serial trial runs under the workers' thread limit"
    assert ok["metrics"]["draw"] == np.random.default_rng(np.random.SeedSequence(trials.spec_seed(specs[0]))).random()
    assert failed["status"] == "failed" and failed["error"] == "ValueError: bad x 3"
    assert "raise ValueError" in failed["traceback"]
    assert diverged["status"] == "diverged" and diverged["metrics"] == {"epochs_run": 1}
    assert len(reports) == 6
    with pytest.raises(trials.TrialsFailed, match="ValueError: bad x 3"):
        results.require_complete()
    # a rerun runs nothing: failed trials are results too
    ran = []
    trials.run(trials.Plan("sweep", "s", {}, specs), tmp_path, on_result=ran.append)
    assert ran == []


# ---------------------------------------------------------------------- executors


@pytest.fixture(scope="module")
def dask_scheduler():
    """A 2-worker Dask LocalCluster (127.0.0.1) as an external cluster would be set up, closed at the end."""
    pytest.importorskip("distributed")
    executor = trials.DaskExecutor(local_workers=2, retries=1)
    executor.start()
    try:
        yield executor.cluster.scheduler_address
    finally:
        executor.close()


def _executors(kind, scheduler=None, retries=1):
    if kind == "local":
        return trials.LocalExecutor(2, retries=retries)
    return trials.DaskExecutor(scheduler=scheduler, retries=retries)


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_same_numbers_on_every_executor(kind, tmp_path, request):
    scheduler = request.getfixturevalue("dask_scheduler") if kind == "dask" else None
    plan = trials.Plan("sweep", "s", {}, _specs(8) + [trials.make_spec(square, {"x": 9, "fail": True})])
    serial = trials.run(plan, tmp_path / "serial")
    other = trials.run(plan, tmp_path / kind, executor=_executors(kind, scheduler))
    assert [_strip(r) for r in other.values()] == [_strip(r) for r in serial.values()]
    assert all(r["metrics"]["threads"] == 1 for r in other.values() if r["status"] == "ok")
    assert other.record(plan.specs[-1])["traceback"].count("ValueError") >= 1


def _kill_when_marked(marker: Path, stop: threading.Event, killed: list[int]) -> None:
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        if marker.exists() and marker.read_text():
            pid = int(marker.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.02)


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_a_killed_worker_loses_no_trial(kind, tmp_path, request):
    scheduler = request.getfixturevalue("dask_scheduler") if kind == "dask" else None
    marker = tmp_path / "victim.pid"
    specs = [trials.make_spec(wait_to_be_killed, {"x": i, "marker": str(marker), "victim": i == 2}) for i in range(6)]
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_when_marked, args=(marker, stop, killed), daemon=True)
    killer.start()
    try:
        results = trials.run(trials.Plan("sweep", "s", {}, specs), tmp_path / "out",
                             executor=_executors(kind, scheduler, retries=2))
    finally:
        stop.set()
        killer.join(timeout=5)
    assert len(killed) == 1 and killed[0] != os.getpid()
    assert [r["status"] for r in results.values()] == ["ok"] * 6
    assert [r["metrics"]["x"] for r in results.values()] == list(range(6))
    ids = [json.loads(line)["id"] for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(results.plan.ids), "every trial recorded exactly once"
    if kind == "local":
        assert results.record(specs[2])["attempts"] == 2
        assert [results.record(s)["attempts"] for s in specs if s is not specs[2]] == [1] * 5


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_a_trial_that_always_kills_its_worker_ends_killed(kind, tmp_path, request):
    scheduler = request.getfixturevalue("dask_scheduler") if kind == "dask" else None
    specs = [trials.make_spec(kill_self, {})] + _specs(5)
    results = trials.run(trials.Plan("sweep", "s", {}, specs), tmp_path, executor=_executors(kind, scheduler))
    killed = results.record(specs[0])
    assert killed["status"] == "killed" and "died" in killed["error"]
    if kind == "local":
        assert killed["attempts"] == 2 and "SIGKILL" in killed["error"]
    assert [r["status"] for r in results.values()][1:] == ["ok"] * 5
    assert sorted(r["metrics"]["y"] for r in results.values() if r["status"] == "ok") == [0, 1, 4, 9, 16]


def test_make_executor_names_the_options():
    with pytest.raises(ValueError, match="--workers, --dask-local"):
        trials.make_executor(workers=2, dask_local=2)
    assert isinstance(trials.make_executor(workers=0), trials.SerialExecutor)
    assert trials.make_executor(workers=None).workers == trials.default_workers()
    with pytest.raises(ValueError, match="--workers"):
        trials.make_executor(workers=-1)


def test_local_workers_get_the_thread_limit_in_their_environment(tmp_path):
    plan = trials.Plan("sweep", "s", {}, _specs(2))
    results = trials.run(plan, tmp_path, executor=trials.LocalExecutor(1, threads=1))
    assert [r["metrics"]["threads"] for r in results.values()] == [1, 1]
    assert all(not math.isnan(r["seconds"]) for r in results.values())


# ---------------------------------------------------------------------- the same numbers everywhere


def _study_numbers(result):
    """A study's verdicts and numbers without wall times and paths."""
    numbers = {k: v for k, v in result.numbers.items() if k != "trials"}
    for run in numbers.get("runs", {}).values():
        for r in run:
            r.pop("seconds", None)
    tables = [[row[:-1] for row in t.rows] for t in result.tables]  # init-train's last column is seconds/run
    return [(v.claim, v.measured, v.passed, v.detail) for v in result.verdicts], numbers, tables


def test_a_quick_study_gives_the_same_verdict_numbers_on_every_executor(tmp_path, dask_scheduler):
    from trainlab import experiments

    serial = experiments.run("init-train", quick=True, out=tmp_path / "serial", report=False)
    local = experiments.run("init-train", quick=True, out=tmp_path / "local", report=False,
                            executor=trials.LocalExecutor(2))
    dask = experiments.run("init-train", quick=True, out=tmp_path / "dask", report=False,
                           executor=trials.DaskExecutor(scheduler=dask_scheduler))
    assert serial.passed
    assert _study_numbers(local) == _study_numbers(serial)
    assert _study_numbers(dask) == _study_numbers(serial)
    assert serial.verdicts[1].measured == local.verdicts[1].measured == dask.verdicts[1].measured

    # a rerun runs no trial and judges the same; other seeds are refused, naming them
    before = (tmp_path / "serial" / "trials" / "init-train-quick" / "results.jsonl").read_bytes()
    again = experiments.run("init-train", quick=True, out=tmp_path / "serial", report=False)
    assert _study_numbers(again) == _study_numbers(serial)
    assert (tmp_path / "serial" / "trials" / "init-train-quick" / "results.jsonl").read_bytes() == before
    with pytest.raises(trials.PlanChanged, match=r"seeds: \[0\] -> \[1\]"):
        experiments.run("init-train", quick=True, out=tmp_path / "serial", seeds=(1,), report=False)


def test_a_sweep_gives_the_same_numbers_on_every_executor(tmp_path, dask_scheduler):
    from trainlab.trials import sweep as sw

    path = tmp_path / "s.toml"
    path.write_text('[sweep]\nseeds = [0, 1]\n[model]\nhidden = [16]\n[optimizer]\nname = "sgd"\nlr = 0.1\n'
                    '[train]\nepochs = 2\nmonitor_every = 0\n'
                    '[grid]\n"optimizer.lr" = [0.05, 0.5]\n"model.batchnorm" = [false, true]\n')
    plan = sw.load_sweep(path).plan()
    runs = {}
    for name, executor in (("serial", trials.SerialExecutor()), ("local", trials.LocalExecutor(2)),
                           ("dask", trials.DaskExecutor(scheduler=dask_scheduler))):
        runs[name] = [_strip(r) for r in trials.run(plan, tmp_path / name, executor=executor).values()]
    assert len(runs["serial"]) == 8 and all(r["status"] == "ok" for r in runs["serial"])
    assert runs["local"] == runs["serial"] and runs["dask"] == runs["serial"]


def test_a_worker_on_another_version_records_the_trial_as_failed():
    from trainlab.trials.engine import _checked

    spec = trials.make_spec(square, {"x": 1})
    record = trials.execute(spec)
    assert _checked(trials.trial_id(spec), spec, record) is record
    other = {**record, "id": trials.trial_id(spec, version="9.9"), "version": "9.9"}
    checked = _checked(trials.trial_id(spec), spec, other)
    assert checked["status"] == "failed" and checked["id"] == trials.trial_id(spec)
    assert f"the worker runs trainlab 9.9, the driver {__version__}" in checked["error"]
