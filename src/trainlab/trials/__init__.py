"""One trial engine under every study and ``trainlab sweep``: local processes or a Dask cluster.

A *trial* is a pure function of a JSON-able spec that returns a JSON-able result::

    from trainlab import trials

    def my_trial(params, ctx):                 # module level, importable by workers
        ...                                     # ctx.report(epoch=1, val_loss=...) as it goes
        return {"val_accuracy": 0.93}

    specs = [trials.make_spec(my_trial, {"lr": lr, "repeat": r}) for lr in (0.01, 0.1) for r in range(3)]
    plan = trials.Plan("sweep", "my-sweep", {"lr": [0.01, 0.1], "repeats": 3}, specs)
    results = trials.run(plan, "out/my-sweep", executor=trials.LocalExecutor(2), progress=True)

Pieces (one module each):

=============== ==================================================================
``spec``        specs, stable ids (hash of spec + version), seeds from the spec alone
``worker``      :func:`execute`: one trial under thread limits -> record; the worker process
``executors``   :class:`SerialExecutor`, :class:`LocalExecutor`, :class:`DaskExecutor`
``store``       :class:`Plan`, :class:`ResultStore` (``plan.json`` + ``results.jsonl``)
``engine``      :func:`run`: the driver loop; :class:`Results`
``progress``    the bar over trials and the error lines
``grid``        ``[grid]`` / ``[random]`` / seeds / repeats expansion
``sweep``       the ``trainlab sweep FILE.toml`` driver, tables and summary
=============== ==================================================================
"""

from trainlab.trials.engine import EngineError, Results, TrialsFailed, run
from trainlab.trials.executors import DaskExecutor, Executor, LocalExecutor, SerialExecutor, default_workers
from trainlab.trials.spec import TrialError, make_spec, spec_seed, trial_id
from trainlab.trials.store import Plan, PlanChanged, ResultStore, StoreError
from trainlab.trials.worker import Diverged, TrialContext, execute, thread_limits

__all__ = ["run", "Results", "TrialsFailed", "EngineError", "Plan", "PlanChanged", "ResultStore", "StoreError",
           "Executor", "SerialExecutor", "LocalExecutor", "DaskExecutor", "default_workers", "make_executor",
           "make_spec", "trial_id", "spec_seed", "TrialError", "Diverged", "TrialContext", "execute", "thread_limits"]


def make_executor(*, workers: int | None = None, dask_local: int | None = None, scheduler: str | None = None,
                  threads: int = 1, retries: int = 2, log_path=None, log_root=None) -> Executor:
    """The executor the command-line options name.

    Args:
        workers: local worker processes (0: serially in this process; None: one per core).
        dask_local: start a Dask ``LocalCluster`` of this many worker processes.
        scheduler: connect to the Dask scheduler at this address.
        threads: threads per worker (and for serial trials).
        retries: how often a trial whose worker died is run again before it is ``killed``.
        log_path: where local workers' stderr goes.
        log_root: each trial's ``ctx.log_dir`` is ``log_root/<trial id>`` (None: no log folders).
    """
    chosen = [name for name, v in (("--workers", workers), ("--dask-local", dask_local),
                                   ("--scheduler", scheduler)) if v is not None]
    if len(chosen) > 1:
        raise ValueError(f"choose one of {', '.join(chosen)}: they name different executors")
    if scheduler is not None or dask_local is not None:
        return DaskExecutor(scheduler=scheduler, local_workers=dask_local, threads=threads, retries=retries,
                            log_root=log_root)
    n = default_workers() if workers is None else int(workers)
    if n < 0:
        raise ValueError(f"--workers: expected 0 (serial, in this process) or more, got {n}")
    if n == 0:
        return SerialExecutor(threads=threads, log_root=log_root)
    return LocalExecutor(n, threads=threads, retries=retries, log_path=log_path, log_root=log_root)
