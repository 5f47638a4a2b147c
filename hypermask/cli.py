"""The ``hypermask`` command: ``hypermask train`` and ``hypermask prepare``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hypermask.config import BENCHMARKS, METHODS, ConfigError, parse_assignments, resolve_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hypermask", description="HyperMask continual learning")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one method on one benchmark, task after task")
    train.add_argument("--benchmark", required=True, help=f"one of {', '.join(BENCHMARKS)}")
    train.add_argument("--method", default="hypermask", help=f"one of {', '.join(METHODS)}")
    train.add_argument("--seed", default="1", help="random seed (integer)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting of the published configuration (repeatable)")
    train.add_argument("--out", required=True, type=Path, help="output folder (resumes if it holds a checkpoint)")
    prepare = commands.add_parser("prepare", help="download or copy a dataset and verify it")
    prepare.add_argument("dataset", choices=["mnist", "cifar100"])
    prepare.add_argument("--root", type=Path, default=Path("data"))
    return parser



def _fail(message: str, status: int) -> int:
    print(f"hypermask: error: {message}", file=sys.stderr)
    return status


def _train(args: argparse.Namespace) -> int:
    from hypermask.checkpoint import CheckpointError
    from hypermask.data import DataError
    from hypermask.train import DivergedError, train_continual

    try:
        cfg = resolve_config(args.benchmark, args.method, args.seed, parse_assignments(args.overrides))
    except ConfigError as err:
        return _fail(str(err), 2)
    try:
        result = train_continual(cfg, checkpoint_dir=args.out / "checkpoint",
                                 on_task_end=lambda r: print(
                                     f"task {r.task + 1}/{r.num_tasks}: accuracies "
                                     + " ".join(f"{a:.2f}" for a in r.accuracy_matrix[-1])
                                     + f" | average {r.metrics['average_accuracy']:.2f}", flush=True))
    except (DataError, CheckpointError, DivergedError) as err:
        return _fail(str(err), 1)
    result.save(args.out)
    print(f"average accuracy {result.metrics['average_accuracy']:.2f} %, "
          f"backward transfer {result.metrics['backward_transfer']:.2f}, "
          f"forgetting {result.metrics['forgetting']:.2f}; written to {args.out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from hypermask.data import DataError, prepare_dataset

    try:
        folder = prepare_dataset(args.dataset, args.root)
    except DataError as err:
        return _fail(str(err), 1)
    print(f"{args.dataset} verified under {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hypermask`` console script."""
    args = _parser().parse_args(argv)
    return _train(args) if args.command == "train" else _prepare(args)


if __name__ == "__main__":
    sys.exit(main())
