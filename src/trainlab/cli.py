"""The ``trainlab`` command line: demo, train, evaluate, depth, and the lab's experiment, report, sweep, bench."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser", "DEMO_CONFIG"]

#: the demo: a BatchNorm MLP trained with Adam on scikit-learn's 8x8 digits
DEMO_CONFIG = {
    "run": {"name": "demo", "seed": 0},
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "hidden": [256, 256], "activation": "relu", "batchnorm": True,
              "dropout": 0.2, "init": "auto"},
    "optimizer": {"name": "adam", "lr": 3e-3},
    "schedule": {"name": "cosine", "T_max": 40},
    "train": {"epochs": 40, "batch_size": 64},
}

RAW = argparse.RawDescriptionHelpFormatter


def _fail(message: str) -> int:
    print(f"trainlab: error: {message}", file=sys.stderr)
    return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from trainlab.config import validate
    from trainlab.run import run

    config = validate({**DEMO_CONFIG, "run": {**DEMO_CONFIG["run"], "seed": args.seed, "out": args.out}})
    print("trainlab demo: a 64-256-256-10 MLP with BatchNorm + ReLU (he init), Adam, on the 8x8 digits")
    folder, result = run(config, quiet=args.quiet)
    print(f"test accuracy: {result['test_accuracy']:.4f}  (test loss {result['test_loss']:.4f}, "
          f"{result['epochs_run']} epochs in {result['train_seconds']:.1f}s)")
    print(f"run folder: {folder}  (config.toml, metrics.jsonl, curves.png, checkpoints)")
    print("next: trainlab depth  |  trainlab train --config examples/mlp.toml")
    return 0


def _cmd_depth(args: argparse.Namespace) -> int:
    from trainlab.experiments.depth_stats import depth_table

    print(depth_table(rng=np.random.default_rng(args.seed), depth=args.layers, width=args.width))
    print("\nSmall random weights vanish with depth; xavier holds tanh; he holds ReLU.")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from trainlab.config import ConfigError, load_config
    from trainlab.run import RunError, resume, run

    try:
        if args.resume:
            if args.config or args.set or args.tensorboard:
                return _fail("--resume continues a run with its own config.toml; "
                             "use --epochs to extend it, not --config/--set/--tensorboard")
            folder, result = resume(args.resume, epochs=args.epochs, quiet=args.quiet)
        else:
            overrides = list(args.set or [])
            if args.epochs is not None:
                overrides.append(f"train.epochs={args.epochs}")
            if args.name:
                overrides.append(f'run.name="{args.name}"')
            if args.tensorboard:
                overrides.append("train.tensorboard=true")
            config = load_config(args.config, overrides)
            folder, result = run(config, quiet=args.quiet)
    except (ConfigError, RunError, ImportError) as exc:
        return _fail(str(exc))
    print(f"test accuracy: {result['test_accuracy']:.4f}  (test loss {result['test_loss']:.4f})")
    print(f"run folder: {folder}")
    if (folder / "tb").is_dir():
        print(f"tensorboard --logdir {folder / 'tb'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from trainlab.checkpoint import CheckpointError
    from trainlab.config import ConfigError
    from trainlab.run import RunError, evaluate_run

    try:
        result = evaluate_run(args.run, which=args.weights)
    except (ConfigError, RunError, CheckpointError) as exc:
        return _fail(str(exc))
    print(json.dumps(result, indent=2))
    return 0


def _executor(args: argparse.Namespace, log_path: Path | None = None):
    """The executor that --workers / --dask-local / --scheduler (and --threads, --retries) name."""
    from trainlab.trials import make_executor

    return make_executor(workers=args.workers, dask_local=args.dask_local, scheduler=args.scheduler,
                         threads=getattr(args, "threads", 1), retries=args.retries, log_path=log_path)


def _interrupted(folder: Path, rerun: str) -> int:
    print(f"\ninterrupted: every finished trial is recorded in {folder / 'results.jsonl'}; "
          f"run the same command again to continue:\n  {rerun}", file=sys.stderr)
    return 130


def _cmd_experiment(args: argparse.Namespace) -> int:
    from trainlab import experiments
    from trainlab.experiments.common import trials_folder
    from trainlab.trials import StoreError, TrialsFailed

    try:
        experiments.get(args.name)
        folder = trials_folder(args.out, args.name, args.quick)
        executor = _executor(args, folder / "workers.log")
    except (ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    try:
        result = experiments.run(args.name, quick=args.quick, out=args.out,
                                 seeds=tuple(args.seeds) if args.seeds else None, executor=executor,
                                 extend=args.extend, progress=not args.quiet)
    except KeyboardInterrupt:
        return _interrupted(folder, " ".join(["trainlab", *sys.argv[1:]]) if sys.argv[1:] else "trainlab experiment")
    except (StoreError, TrialsFailed, RuntimeError) as exc:
        return _fail(str(exc))
    print(f"{result.title} ({result.seconds:.1f}s)")
    for v in result.verdicts:
        print(f"  {v}")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0 if result.passed else 1


def _cmd_sweep(args: argparse.Namespace) -> int:
    from trainlab import trials
    from trainlab.sweep_report import write_sweep_html
    from trainlab.trials import sweep as sw

    try:
        sweep = sw.load_sweep(args.file)
    except sw.SweepError as exc:
        return _fail(str(exc))
    folder = Path(args.out) if args.out else Path("sweeps") / sweep.name
    plan = sweep.plan()
    if args.dry_run:
        print(sw.dry_run(sweep, folder))
        return 0
    try:
        executor = _executor(args, folder / "workers.log")
    except (ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    rerun = " ".join(["trainlab", *sys.argv[1:]]) if sys.argv[1:] else f"trainlab sweep {args.file}"
    try:
        results = trials.run(plan, folder, executor=executor, extend=args.extend, progress=not args.quiet,
                             labels=[t.label() for t in sweep.trials])
    except KeyboardInterrupt:
        return _interrupted(folder, rerun)
    except (trials.StoreError, RuntimeError) as exc:
        return _fail(str(exc))
    table = sw.rows(sweep, dict(results))
    csv_path = sw.write_csv(sweep, table, folder / sw.CSV_NAME)
    html_path = write_sweep_html(sweep, table, folder, command=rerun)
    print(sw.summary(sweep, table))
    print(f"results: {folder / 'results.jsonl'}, {csv_path}, {html_path}")
    bad = sum(r["status"] in ("failed", "killed") for r in table)
    return 1 if bad else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from trainlab.report import main as report_main

    return report_main([*map(str, args.dirs), *(["--out", str(args.out)] if args.out else [])])


def _cmd_playground(args: argparse.Namespace) -> int:
    try:
        from trainlab.playground import serve
        serve(args.host, args.port, open_browser=args.open)
    except ImportError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from trainlab.bench import main as bench_main

    rest = list(args.bench_args)
    return bench_main(rest[1:] if rest[:1] == ["--"] else rest)


def _executor_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="local worker processes (default: one per core; 0: serially in this process)")
    where.add_argument("--dask-local", type=int, metavar="N",
                       help="start a Dask LocalCluster of N worker processes (needs trainlab[dask])")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the Dask cluster at ADDRESS, e.g. tcp://10.0.0.5:8786 (needs trainlab[dask])")
    p.add_argument("--retries", type=int, default=2,
                   help="runs again a trial whose worker died this many times, then records it as killed "
                        "(default 2)")
    p.add_argument("--extend", action="store_true",
                   help="accept a changed grid/seeds: keep the finished trials that still belong, run the new ones")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainlab", formatter_class=RAW,
        description="Initialization, batch normalization and update rules: exact, fast and visible.",
        epilog="examples:\n  trainlab demo\n  trainlab train --config examples/mlp.toml --set optimizer.lr=0.01\n"
               "  trainlab evaluate runs/demo\n  trainlab depth\n  trainlab experiment init-depth --quick\n"
               "  trainlab report lab\n  trainlab sweep examples/lr_batchnorm_sweep.toml\n  trainlab bench\n\n"
               "run 'trainlab COMMAND --help' for each command's options")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="train a BatchNorm MLP on the embedded digits (< 1 minute)",
                       formatter_class=RAW,
                       description="Train a 64-256-256-10 MLP (BatchNorm, ReLU, Adam) on scikit-learn's 8x8 "
                                   "digits and write a run folder.",
                       epilog="examples:\n  trainlab demo\n  trainlab demo --seed 1 --out /tmp/runs --quiet")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="runs", help="parent folder of the run folder (default runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train from a TOML config, or resume a run", formatter_class=RAW,
                       description="Train from a TOML config (every key has a default) into runs/<name>/.",
                       epilog="examples:\n  trainlab train --config examples/mlp.toml\n"
                              "  trainlab train --config examples/cnn.toml --set optimizer.name=\"sgd\" "
                              "--set optimizer.lr=0.05 --set optimizer.momentum=0.9\n"
                              "  trainlab train --resume runs/digits-mlp --epochs 40")
    p.add_argument("--config", type=Path, help="TOML file (see examples/)")
    p.add_argument("--set", action="append", metavar="TABLE.KEY=VALUE",
                   help="override one config value (repeatable), e.g. optimizer.lr=0.01")
    p.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N (with --resume: new total)")
    p.add_argument("--name", help="shortcut for --set run.name=NAME")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue the run in folder RUN")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard event files into the run folder's tb/ (shortcut for "
                        "--set train.tensorboard=true; needs trainlab[tensorboard])")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run's weights on its val and test splits",
                       formatter_class=RAW, description="Load a run's weights and report loss and accuracy.",
                       epilog="examples:\n  trainlab evaluate runs/demo\n  trainlab evaluate runs/demo --weights best")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("--weights", choices=("model", "best", "last"), default="model",
                   help="which saved weights (default: the final model)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("depth", help="per-layer activation std through a 10-layer net (the seed's claim)",
                       formatter_class=RAW,
                       description="Print the activation std of each layer of a freshly initialized deep MLP "
                                   "for small_random, xavier and he with tanh and ReLU.",
                       epilog="examples:\n  trainlab depth\n  trainlab depth --layers 20 --width 256")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--layers", type=int, default=10, help="depth (default 10)")
    p.add_argument("--width", type=int, default=500, help="units per layer (default 500)")
    p.set_defaults(func=_cmd_depth)

    p = sub.add_parser("experiment", help="run a study of the seed's claims (figures + verdicts + report)",
                       formatter_class=RAW,
                       description="Run one study; writes figures, <name>.json and report.html into --out.\n"
                                   "studies: init-depth, init-train, depth-30, batchnorm, optimizers",
                       epilog="examples:\n  trainlab experiment init-depth\n"
                              "  trainlab experiment batchnorm --quick --out /tmp/lab\n"
                              "  trainlab experiment optimizers --seeds 0 1 2\n"
                              "  trainlab experiment batchnorm --workers 2\n"
                              "  trainlab experiment init-train --seeds 0 1 2 3 4 --extend")
    p.add_argument("name", help="init-depth | init-train | depth-30 | batchnorm | optimizers")
    p.add_argument("--quick", action="store_true", help="the small size used in CI")
    p.add_argument("--out", type=Path, default=Path("lab"), help="output folder (default lab)")
    p.add_argument("--seeds", type=int, nargs="+", help="override the study's fixed seeds")
    _executor_options(p)
    p.set_defaults(func=_cmd_experiment)

    p = sub.add_parser("sweep", help="run a grid / random search of train configs (local processes or Dask)",
                       formatter_class=RAW,
                       description="Run every trial of a sweep file: a base config (as for trainlab train) with "
                                   "[grid] and [random] keys\nand seeds/repeats. Results are appended to "
                                   "results.jsonl as each trial finishes; rerunning\nskips finished trials. "
                                   "Writes results.csv and sweep.html, and prints the best configurations.",
                       epilog="examples:\n  trainlab sweep examples/lr_batchnorm_sweep.toml --dry-run\n"
                              "  trainlab sweep examples/lr_batchnorm_sweep.toml --workers 2\n"
                              "  trainlab sweep examples/init_activation_depth_sweep.toml --dask-local 2\n"
                              "  trainlab sweep my.toml --scheduler tcp://10.0.0.5:8786 --out sweeps/my")
    p.add_argument("file", type=Path, help="the sweep file (TOML; see examples/*sweep*.toml)")
    p.add_argument("--out", type=Path, help="output folder (default sweeps/<name>)")
    p.add_argument("--dry-run", action="store_true", help="list the trials (and which are done) and exit")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/OpenMP/Numba threads per trial (default 1; workers x threads <= cores)")
    _executor_options(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("report", help="build report.html from study results", formatter_class=RAW,
                       description="Collect the <study>.json results of one or more folders into a "
                                   "self-contained report.html.",
                       epilog="examples:\n  trainlab report lab\n  trainlab report lab other --out combined")
    p.add_argument("dirs", type=Path, nargs="+", help="folders holding study results")
    p.add_argument("--out", type=Path, help="where report.html goes (default: the first folder)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("playground", help="a live browser app: init, BatchNorm and the update rule, training",
                       formatter_class=RAW,
                       description="Serve the playground (a web page and its websocket) and print its address.\n"
                                   "Needs the playground extra: pip install \"trainlab[playground]\".",
                       epilog="examples:\n  trainlab playground --open\n  trainlab playground --port 9000\n"
                              "  trainlab playground --host 0.0.0.0 --port 8765   (reachable from other machines)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(func=_cmd_playground)

    p = sub.add_parser("bench", help="time trainlab against PyTorch, side by side", formatter_class=RAW,
                       description="Run benchmarks/compare_torch.py's workloads (needs torch installed).",
                       epilog="examples:\n  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE trainlab bench\n"
                              "  trainlab bench --quick\n  trainlab bench -- --help    (the benchmark's own options)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="options passed to the benchmark")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
