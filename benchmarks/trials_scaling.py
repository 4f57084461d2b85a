"""Scaling of the trial engine: 16 small trials on 1 and 2 workers, local processes and Dask (not a test).

The trials are ``trainlab sweep`` trials (:func:`trainlab.trials.config_trial.train`): a
digits MLP 64-128-128-10 (ReLU, BatchNorm) trained for ``--epochs`` epochs with SGD at 8
learning rates x 2 seeds, single-threaded as every trial is. For each executor (the local
process pool and a Dask LocalCluster) and each worker count (1, 2), the executor is
started and warmed up first (its start-up is printed apart), then the 16 trials run into
a fresh results folder (each result appended and fsync'ed, as in a real sweep).

Printed per configuration (median over ``--rounds`` rounds, range in brackets; the
configurations are interleaved within each round, the order reversed every other round,
so machine drift touches all alike):

* ``wall``: from the first submission to the last stored result;
* ``sum trial``: the trials' own clocks added up (the compute);
* ``overhead/trial``: ``(wall x workers - sum trial) / trials``: what a worker slot spends
  per trial outside the trial function (dispatch, transfer, storing, and waiting at the
  end for the last trial);
* ``speed-up``: wall on 1 worker / wall on 2 workers, within the same round.

Target (issue 11): a speed-up of at least 1.8x on 2 cores for both executors. Every run's
results are checked to be bit-identical to the in-process serial run.

Run (unset the OpenBLAS core overrides for timings only)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/trials_scaling.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from trainlab import trials
from trainlab.trials import sweep as sw

N_TRIALS = 16


def make_plan(epochs: int) -> trials.Plan:
    sweep = sw.parse_sweep({
        "sweep": {"name": "scaling", "seeds": [0, 1]},
        "model": {"hidden": [128, 128], "batchnorm": True},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": epochs, "batch_size": 64, "monitor_every": 0},
        "grid": {"optimizer.lr": [0.003, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3]},
    })
    assert len(sweep.trials) == N_TRIALS
    return sweep.plan()


def executor(kind: str, workers: int) -> trials.Executor:
    if kind == "local":
        return trials.LocalExecutor(workers)
    return trials.DaskExecutor(local_workers=workers)


def strip(records: dict) -> list:
    return [(r["status"], r["metrics"], [{k: v for k, v in c.items() if k != "seconds"} for c in r["curves"]])
            for r in records.values()]


def measure(kind: str, workers: int, plan: trials.Plan, folder: Path) -> dict:
    ex = executor(kind, workers)
    t0 = time.perf_counter()
    ex.start()
    ex.wait_ready()
    startup = time.perf_counter() - t0
    last = []
    t1 = time.perf_counter()
    results = trials.run(plan, folder, executor=ex, on_result=lambda record: last.append(time.perf_counter()))
    wall = last[-1] - t1  # to the last stored result (the executor's shutdown comes after)
    busy = sum(r["seconds"] for r in results.values())
    return {"startup": startup, "wall": wall, "busy": busy, "overhead": (wall * workers - busy) / len(plan.ids),
            "records": strip(results)}


def fmt(values: list[float], unit: str = "s", digits: int = 2) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f} {unit}"
    return f"{med:.{digits}f} {unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--epochs", type=int, default=30,
                        help="epochs per trial (default 30: about 0.55 s a trial on an idle core)")
    parser.add_argument("--executors", nargs="+", default=["local", "dask"], choices=["local", "dask"])
    args = parser.parse_args(argv)
    plan = make_plan(args.epochs)
    configs = [(kind, w) for kind in args.executors for w in (1, 2)]
    with tempfile.TemporaryDirectory(prefix="trials_scaling_") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        serial = trials.run(plan, tmp_path / "serial")
        serial_wall = time.perf_counter() - t0
        reference = strip(serial)
        serial_busy = sum(r["seconds"] for r in serial.values())
        print(f"trials_scaling: {N_TRIALS} trials (digits MLP 64-128-128-10 + BN, {args.epochs} epochs, SGD, "
              f"1 thread each), {args.rounds} rounds, {len(os.sched_getaffinity(0))} cores")
        print(f"serial, in this process: wall {serial_wall:.2f} s, sum of trial clocks {serial_busy:.2f} s "
              f"({serial_busy / N_TRIALS:.3f} s a trial; the first trial includes loading the digits)")
        runs: dict[tuple[str, int], list[dict]] = {c: [] for c in configs}
        speedups: dict[str, list[float]] = {kind: [] for kind in args.executors}
        identical = True
        for r in range(args.rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            this_round = {}
            for kind, workers in order:
                m = measure(kind, workers, plan, tmp_path / f"{kind}-{workers}-{r}")
                identical &= m["records"] == reference
                runs[kind, workers].append(m)
                this_round[kind, workers] = m
            for kind in args.executors:
                speedups[kind].append(this_round[kind, 1]["wall"] / this_round[kind, 2]["wall"])
        print(f"{'executor':<9}{'workers':>8}  {'start-up':<22}{'wall':<22}{'sum trial':<22}"
              f"{'overhead/trial':<24}speed-up (1 -> 2 workers)")
        for kind, workers in configs:
            ms = runs[kind, workers]
            line = (f"{kind:<9}{workers:>8}  {fmt([m['startup'] for m in ms]):<22}{fmt([m['wall'] for m in ms]):<22}"
                    f"{fmt([m['busy'] for m in ms]):<22}{fmt([m['overhead'] * 1000 for m in ms], 'ms', 1):<24}")
            if workers == 2:
                line += fmt(speedups[kind], "x")
            print(line)
        print(f"results bit-identical to the serial run in every configuration: {'yes' if identical else 'NO'}")
        for kind in args.executors:
            best = statistics.median(speedups[kind])
            print(f"target speed-up >= 1.8x on 2 workers, {kind}: {'met' if best >= 1.8 else 'NOT met'} "
                  f"(median {best:.2f}x)")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
