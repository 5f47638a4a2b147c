"""The ``hypermask`` command: ``hypermask train``, ``hypermask evaluate`` and ``hypermask prepare``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hypermask.config import BENCHMARKS, METHODS, ConfigError, parse_assignments, resolve_config
from hypermask.messages import first_line
from hypermask.registry import DATASETS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hypermask", description="HyperMask continual learning")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one method on one benchmark, task after task")
    train.add_argument("--benchmark", required=True, help=f"one of {', '.join(BENCHMARKS)}")
    train.add_argument("--method", default="hypermask", help=f"one of {', '.join(METHODS)}")
    train.add_argument("--seed", default="1", help="random seed (integer)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting of the published configuration (repeatable)")
    train.add_argument("--out", required=True, type=Path,
                       help="output folder (resumes if it holds a checkpoint of the same configuration)")
    train.add_argument("--overwrite", action="store_true",
                       help="write into a non-empty --out that holds something else (a checkpoint of another "
                            "configuration there is discarded)")
    evaluate = commands.add_parser("evaluate", help="evaluate a trained run's model again on its test data")
    evaluate.add_argument("--model", required=True, type=Path, help="a run's output folder (hypermask train --out)")
    evaluate.add_argument("--out", required=True, type=Path, help="folder for metrics.json")
    evaluate.add_argument("--data-root", help="where to look for the dataset (default: the run's data_root)")
    prepare = commands.add_parser("prepare", help="download or copy a dataset and verify it")
    prepare.add_argument("dataset", choices=list(DATASETS))
    prepare.add_argument("--root", type=Path, default=Path("data"))
    return parser



def _fail(message: str, status: int) -> int:
    print(f"hypermask: error: {message}", file=sys.stderr)
    return status


def _report_task(report) -> None:
    print(f"task {report.task + 1}/{report.num_tasks}: accuracies "
          + " ".join(f"{a:.2f}" for a in report.accuracy_matrix[-1])
          + f" | average {report.metrics['average_accuracy']:.2f}" + _session_text(report.metrics), flush=True)


def _session_text(metrics: dict) -> str:
    """Class-incremental accuracy after every session so far (class-incremental streams only)."""
    if "session_accuracy" not in metrics:
        return ""
    return " | sessions " + " ".join(f"{a:.2f}" for a in metrics["session_accuracy"])


def _train(args: argparse.Namespace) -> int:
    from hypermask.checkpoint import CheckpointError, saved_tasks
    from hypermask.data import DataError
    from hypermask.outdir import OutputError, claim_output
    from hypermask.runtime import preflight
    from hypermask.train import DivergedError, train_continual

    try:
        cfg = resolve_config(args.benchmark, args.method, args.seed, parse_assignments(args.overrides))
        cfg = preflight(cfg)
        with claim_output(args.out, cfg, args.overwrite) as out:
            try:
                result = train_continual(cfg, checkpoint_dir=out / "checkpoint",
                                         on_task_end=_report_task)
                result.save(out)
            except KeyboardInterrupt:
                done = saved_tasks(out / "checkpoint")
                where = (f"after task {done}/{cfg.tasks} (saved in {out / 'checkpoint'})" if done
                         else "before the first task finished (nothing saved yet)")
                return _fail(f"interrupted {where}; run the same command again to resume", 130)
    except (ConfigError, OutputError) as err:
        return _fail(str(err), 2)
    except (DataError, CheckpointError, DivergedError) as err:
        return _fail(str(err), 1)
    except (OSError, MemoryError) as err:
        return _fail(f"{type(err).__name__}: {first_line(err, 'out of memory')}", 1)
    print(f"average accuracy {result.metrics['average_accuracy']:.2f} %, "
          f"backward transfer {result.metrics['backward_transfer']:.2f}, "
          f"forgetting {result.metrics['forgetting']:.2f}; written to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from hypermask.data import DataError
    from hypermask.model import ModelError, evaluation_line, load_model, save_evaluation

    try:
        model = load_model(args.model)
        metrics = model.evaluate(args.data_root)
        written = save_evaluation(metrics, args.out)
    except ModelError as err:
        return _fail(str(err), 2)
    except (DataError, OSError) as err:
        return _fail(first_line(err), 1)
    print(f"{evaluation_line(metrics)}; written to {written}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from hypermask.data import DataError, prepare_dataset

    try:
        folder = prepare_dataset(args.dataset, args.root)
    except DataError as err:
        return _fail(str(err), 1)
    except OSError as err:
        return _fail(f"{args.root}: {err.strerror or err}", 1)
    print(f"{args.dataset} verified under {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hypermask`` console script."""
    args = _parser().parse_args(argv)
    try:
        return {"train": _train, "evaluate": _evaluate, "prepare": _prepare}[args.command](args)
    except KeyboardInterrupt:
        return _fail("interrupted before training started; nothing was written", 130)


if __name__ == "__main__":
    sys.exit(main())
