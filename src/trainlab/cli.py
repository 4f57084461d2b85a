"""The ``trainlab`` command line."""

from __future__ import annotations

import argparse
import sys

import numpy as np

__all__ = ["main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from trainlab.experiments.depth_stats import depth_table

    print(depth_table(rng=np.random.default_rng(args.seed)))
    print("\nSmall random weights vanish with depth; xavier holds tanh; he holds ReLU.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainlab",
        description="Initialization, batch normalization and update rules, exact and visible.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="show the seed's depth table",
                          description="Print per-layer activation std through a 10-layer net.",
                          epilog="example:\n  trainlab demo --seed 1",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(func=_cmd_demo)
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
