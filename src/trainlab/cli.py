"""The ``trainlab`` command line: demo, train, evaluate, depth, and the lab's experiment, sweep, report, bench.

Every error ends in one line on stderr, ``trainlab: error: ...`` (with a hint where one
exists), and an exit status: :data:`EXIT_USAGE` (2) for a wrong command line or bad input
(a config, a data file, a checkpoint, a run folder), :data:`EXIT_FAILURE` (1) for a failure
at run time (the NaN guard stopped training, a download failed, the disk is full, an
internal error), and :data:`EXIT_INTERRUPTED` (130, the shell's 128 + SIGINT) for Ctrl-C.
One place, :func:`main`, turns exceptions into those lines; ``--debug`` (before or after the
command) prints the traceback as well. Warnings are one line each: ``trainlab: warning: ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser", "DEMO_CONFIG", "EXIT_USAGE", "EXIT_FAILURE", "EXIT_INTERRUPTED"]

EXIT_FAILURE = 1       #: a failure at run time (divergence, download, disk, internal error)
EXIT_USAGE = 2         #: a wrong command line, or bad input (config, data file, checkpoint, run folder)
EXIT_INTERRUPTED = 130  #: Ctrl-C (128 + SIGINT, as a shell reports it)

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


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (``trainlab: error: ...``) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"trainlab: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, or a one-line usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


class UsageError(Exception):
    """A combination of options that does not make sense (exit status 2)."""


def _cmd_demo(args: argparse.Namespace) -> int:
    from trainlab.config import validate
    from trainlab.run import run

    config = validate({**DEMO_CONFIG, "run": {**DEMO_CONFIG["run"], "seed": args.seed, "out": args.out}})
    print("trainlab demo: a 64-256-256-10 MLP with BatchNorm + ReLU (he init), Adam, on the 8x8 digits")
    folder, result = run(config, if_exists="new", quiet=args.quiet)
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
    from trainlab.config import load_config
    from trainlab.run import resume, run

    if args.resume:
        if args.config or args.set or args.name or args.tensorboard:
            raise UsageError("--resume continues a run with its own config.toml; use --epochs to extend it, "
                             "not --config/--set/--name/--tensorboard")
        if args.overwrite:
            raise UsageError("--resume continues a run; --overwrite would replace it: give one of them")
        folder, result = resume(args.resume, epochs=args.epochs, quiet=args.quiet)
    else:
        overrides = list(args.set or [])
        if args.epochs is not None:
            overrides.append(f"train.epochs={args.epochs}")
        if args.name:
            overrides.append(f"run.name={json.dumps(args.name)}")
        if args.tensorboard:
            overrides.append("train.tensorboard=true")
        config = load_config(args.config, overrides)
        folder, result = run(config, if_exists="replace" if args.overwrite else "fail", quiet=args.quiet)
    print(f"test accuracy: {result['test_accuracy']:.4f}  (test loss {result['test_loss']:.4f})")
    print(f"run folder: {folder}")
    if (folder / "tb").is_dir():
        print(f"tensorboard --logdir {folder / 'tb'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from trainlab.run import evaluate_run

    print(json.dumps(evaluate_run(args.run, which=args.weights), indent=2))
    return 0


def _executor(args: argparse.Namespace, log_path: Path | None = None, log_root: Path | None = None):
    """The executor that --workers / --dask-local / --scheduler (and --threads, --retries) name."""
    from trainlab.trials import make_executor

    return make_executor(workers=args.workers, dask_local=args.dask_local, scheduler=args.scheduler,
                         threads=getattr(args, "threads", 1), retries=args.retries, log_path=log_path,
                         log_root=log_root)


def _rerun_command() -> str:
    return " ".join(["trainlab", *sys.argv[1:]])


def _interrupted(folder: Path) -> KeyboardInterrupt:
    return KeyboardInterrupt(f"interrupted; every finished trial is recorded in {folder / 'results.jsonl'}: "
                             f"run the same command again to continue ({_rerun_command()})")


def _cmd_experiment(args: argparse.Namespace) -> int:
    from trainlab import experiments
    from trainlab.experiments.common import trials_folder

    experiments.get(args.name)          # an unknown name fails here, before any work
    folder = trials_folder(args.out, args.name, args.quick)
    executor = _executor(args, folder / "workers.log")
    try:
        result = experiments.run(args.name, quick=args.quick, out=args.out,
                                 seeds=tuple(args.seeds) if args.seeds else None, executor=executor,
                                 extend=args.extend, progress=not args.quiet)
    except KeyboardInterrupt:
        raise _interrupted(folder) from None
    print(f"{result.title} ({result.seconds:.1f}s)")
    for v in result.verdicts:
        print(f"  {v}")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0 if result.passed else 1


def _cmd_sweep(args: argparse.Namespace) -> int:
    from trainlab import trials
    from trainlab.sweep_report import write_sweep_html
    from trainlab.trials import sweep as sw

    sweep = sw.load_sweep(args.file)
    folder = Path(args.out) if args.out else Path("sweeps") / sweep.name
    if args.dry_run:
        print(sw.dry_run(sweep, folder))
        return 0
    if sweep.tensorboard:
        from trainlab.tensorboard import _import_tensorboardx

        _import_tensorboardx()    # without the extra: the ImportError that says how to install it, before any trial
    executor = _executor(args, folder / "workers.log", log_root=folder / "tb" if sweep.tensorboard else None)
    try:
        results = trials.run(sweep.plan(), folder, executor=executor, extend=args.extend, progress=not args.quiet,
                             labels=[t.label() for t in sweep.trials])
    except KeyboardInterrupt:
        raise _interrupted(folder) from None
    table = sw.rows(sweep, dict(results))
    csv_path = sw.write_csv(sweep, table, folder / sw.CSV_NAME)
    html_path = write_sweep_html(sweep, table, folder, command=_rerun_command())
    print(sw.summary(sweep, table))
    print(f"results: {folder / 'results.jsonl'}, {csv_path}, {html_path}")
    if sweep.tensorboard:
        print(f"tensorboard --logdir {folder / 'tb'}")
    bad = sum(r["status"] in ("failed", "killed") for r in table)
    return EXIT_FAILURE if bad else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from trainlab.report import main as report_main

    return report_main([*map(str, args.dirs), *(["--out", str(args.out)] if args.out else [])])


def _cmd_playground(args: argparse.Namespace) -> int:
    from trainlab.playground import serve  # without the extra: an ImportError saying how to install it

    try:
        serve(args.host, args.port, open_browser=args.open, workers=args.workers)
    except KeyboardInterrupt:                 # Ctrl-C is how a server is stopped
        pass
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from trainlab.bench import main as bench_main

    rest = list(args.bench_args)
    return bench_main(rest[1:] if rest[:1] == ["--"] else rest)


def _executor_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_count(0), metavar="N",
                       help="local worker processes (default: one per core; 0: serially in this process)")
    where.add_argument("--dask-local", type=_count(1), metavar="N",
                       help="start a Dask LocalCluster of N worker processes (needs trainlab[dask])")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the Dask cluster at ADDRESS, e.g. tcp://10.0.0.5:8786 (needs trainlab[dask])")
    p.add_argument("--retries", type=_count(0), default=2,
                   help="runs again a trial whose worker died this many times, then records it as killed "
                        "(default 2)")
    p.add_argument("--extend", action="store_true",
                   help="accept a changed grid/seeds: keep the finished trials that still belong, run the new ones")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trainlab", formatter_class=RAW,
        description="Initialization, batch normalization and update rules: exact, fast and visible.",
        epilog="examples:\n  trainlab demo\n  trainlab train --config examples/mlp.toml --set optimizer.lr=0.01\n"
               "  trainlab evaluate runs/demo\n  trainlab depth\n  trainlab experiment init-depth --quick\n"
               "  trainlab report lab\n  trainlab sweep examples/lr_batchnorm_sweep.toml\n  trainlab bench\n\n"
               "run 'trainlab COMMAND --help' for each command's options\n"
               "exit status: 0 ok, 1 failure at run time, 2 usage or input error, 130 Ctrl-C")
    parser.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="train a BatchNorm MLP on the embedded digits (< 1 minute)",
                       formatter_class=RAW,
                       description="Train a 64-256-256-10 MLP (BatchNorm, ReLU, Adam) on scikit-learn's 8x8 "
                                   "digits and write a run folder.",
                       epilog="examples:\n  trainlab demo\n  trainlab demo --seed 1 --out /tmp/runs --quiet")
    p.add_argument("--seed", type=_count(0), default=0, help="random seed (default 0)")
    p.add_argument("--out", default="runs",
                   help="parent folder of the run folder (default runs; runs/demo, then runs/demo-2, ...)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train from a TOML config, or resume a run", formatter_class=RAW,
                       description="Train from a TOML config (every key has a default) into runs/<name>/.",
                       epilog="examples:\n  trainlab train --config examples/mlp.toml\n"
                              "  trainlab train --config examples/cnn.toml --set optimizer.name=\"sgd\" "
                              "--set optimizer.lr=0.05 --set optimizer.momentum=0.9\n"
                              "  trainlab train --resume runs/digits-mlp --epochs 40\n\n"
                              "An existing run folder is never replaced unless --overwrite is given.")
    p.add_argument("--config", type=Path, help="TOML file (see examples/)")
    p.add_argument("--set", action="append", metavar="TABLE.KEY=VALUE",
                   help="override one config value (repeatable), e.g. optimizer.lr=0.01")
    p.add_argument("--epochs", type=_count(1), help="shortcut for --set train.epochs=N (with --resume: new total)")
    p.add_argument("--name", help="shortcut for --set run.name=NAME")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder of the same name")
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
    p.add_argument("--seed", type=_count(0), default=0, help="random seed (default 0)")
    p.add_argument("--layers", type=_count(1), default=10, help="depth (default 10)")
    p.add_argument("--width", type=_count(1), default=500, help="units per layer (default 500)")
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
    p.add_argument("--seeds", type=_count(0), nargs="+", help="override the study's fixed seeds")
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
    p.add_argument("--threads", type=_count(1), default=1,
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
    p.add_argument("--workers", type=_count(1), metavar="N",
                   help="worker processes the sessions train in (default: one per core)")
    p.set_defaults(func=_cmd_playground)

    p = sub.add_parser("bench", help="time trainlab against PyTorch, side by side", formatter_class=RAW,
                       description="Run benchmarks/compare_torch.py's workloads (needs torch installed).",
                       epilog="examples:\n  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE trainlab bench\n"
                              "  trainlab bench --quick\n  trainlab bench -- --help    (the benchmark's own options)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="options passed to the benchmark")
    p.set_defaults(func=_cmd_bench)
    for command in sub.choices.values():     # every command, also those added above this loop later
        if "--debug" not in command._option_string_actions:
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="on an error, print the traceback too")
    return parser


def _one_line(text: str) -> str:
    """A message on one line: its lines joined by '; ' (a leading '- ' of list items dropped)."""
    lines = [line.strip().removeprefix("- ") for line in str(text).splitlines()]
    return "; ".join(line for line in lines if line)


def _describe(exc: BaseException) -> tuple[int, str]:
    """The exit status and the one-line message for an exception that ended a command."""
    from trainlab.data import DownloadError
    from trainlab.train import TrainingDiverged
    from trainlab.trials.engine import EngineError

    notes = [str(n) for n in getattr(exc, "__notes__", ())]
    message = "; ".join(filter(None, [_one_line(str(exc)), *map(_one_line, notes)]))
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, message or "interrupted (Ctrl-C)"
    if isinstance(exc, UsageError):
        return EXIT_USAGE, message
    if isinstance(exc, TrainingDiverged):
        return EXIT_FAILURE, message
    if isinstance(exc, MemoryError):
        return EXIT_FAILURE, "out of memory" + (f" ({message})" if message else "") + \
            "; try a smaller model.hidden / model.channels or train.batch_size"
    if isinstance(exc, DownloadError):               # a DataError and an OSError: a failure at run time
        return EXIT_FAILURE, message
    if isinstance(exc, EngineError):                 # trials that failed or were killed, workers that cannot start
        return EXIT_FAILURE, message
    if isinstance(exc, (ValueError, TypeError)):    # ConfigError, RunError, CheckpointError, the data errors
        return EXIT_USAGE, message or type(exc).__name__
    if isinstance(exc, ImportError):                # an optional extra that is not installed (its message says which)
        return EXIT_USAGE, message or type(exc).__name__
    if isinstance(exc, OSError):                    # a download that failed, a full disk, a permission
        return EXIT_FAILURE, message or type(exc).__name__
    return EXIT_FAILURE, (f"internal error: {type(exc).__name__}: {message}; "
                          "rerun with --debug for the traceback and report it")


def _warning_line(message: warnings.WarningMessage | Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: object = None, line: str | None = None) -> None:
    print(f"trainlab: warning: {_one_line(str(message))}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run ``trainlab ARGS``; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        # `trainlab bench --profile 3`: argparse's REMAINDER does not take options that come first,
        # so the bench command gets the options its parser does not know itself
        args, extra = parser.parse_known_args(argv)
        if extra and getattr(args, "func", None) is _cmd_bench:
            args.bench_args = [*extra, *args.bench_args]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:       # --help exits 0 as argparse does; a usage error returns its status
        if exc.code in (0, None):
            raise
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    with warnings.catch_warnings():
        warnings.showwarning = _warning_line
        # the NaN guard reports divergence itself: NumPy's floating-point warnings on the way there are noise
        warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero|underflow) encountered",
                                RuntimeWarning)
        try:
            return args.func(args)
        except Exception as exc:
            return _report(exc, getattr(args, "debug", False))
        except KeyboardInterrupt as exc:
            return _report(exc, getattr(args, "debug", False))


def _report(exc: BaseException, debug: bool) -> int:
    code, message = _describe(exc)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"trainlab: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
