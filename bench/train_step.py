"""Time the HyperMask training step: the library's fast step against slower variants.

For each published configuration, at the first and the last task, four variants run side by side,
each in a fresh subprocess so that its peak memory is its own: ``fast`` (the library's
``training_step``), ``gradient_then_adam`` (the same step with the output weight's gradient written
in full and Adam run afterwards), ``per_task_regulariser`` (that, with one hypernetwork call per
earlier task) and ``reference`` (:mod:`bench.reference_step`). ``--whole-run`` adds the full published
Split MNIST training. Run ``python bench/train_step.py --help``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.measure import (
    add_run_options,
    answer_worker,
    in_subprocess,
    load_average,
    machine_report,
    time_steps,
)
from bench.report import format_table, summarize_rows
from bench.variants import VARIANTS, build_step, prepare_runtime
from bench.whole_run import whole_split_mnist_run
from bench.workloads import WORKLOADS, Batches, make_batches, make_method, step_sparsity, workload_config

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "train_step.json"


def run_variant(spec: dict) -> dict:
    """Worker: build one variant, time its steps, return the measurement (runs in a subprocess; ``numerics``
    in ``spec``: its numeric path, portable when absent)."""
    cfg = workload_config(spec["workload"], spec["device"], spec["threads"], spec.get("numerics", "portable"))
    device = prepare_runtime(spec["variant"], cfg.device, cfg.threads, cfg.numerics)
    saved = torch.load(spec["batches"])
    batches = Batches([x.to(device) for x in saved["xs"]], [y.to(device) for y in saved["ys"]],
                      tuple(saved["input_shape"]), saved["classes"])
    method = make_method(cfg, batches, device)
    task = spec["task"]
    step = build_step(spec["variant"], method, task, step_sparsity(cfg, task), device)
    timing = time_steps(lambda i: step(*batches[i]), device, spec["warmup"], spec["repeats"])
    return {**timing.to_dict(), "threads": torch.get_num_threads(), "device": str(device)}


def measure_workload(name: str, args: argparse.Namespace, scratch: Path) -> list[dict]:
    """All variants at the first and the last task of one workload."""
    cfg = workload_config(name, args.device, args.threads)
    repeats = args.repeats or WORKLOADS[name][2]
    rows = []
    for task in sorted({0, cfg.tasks - 1}):
        batches = make_batches(cfg, task, args.warmup + repeats, torch.device("cpu"))
        path = scratch / f"{name}_task{task}.pt"
        torch.save(vars(batches), path)
        for variant in VARIANTS:
            spec = {"workload": name, "task": task, "variant": variant, "batches": str(path),
                    "device": args.device, "threads": args.threads, "warmup": args.warmup,
                    "repeats": repeats}
            result = in_subprocess(__file__, spec, f"variant {variant} of {name}")
            rows.append({"benchmark": name, "task": task, "variant": variant, **result})
            print(f"  {name} task {task} {variant}: {result['median_s']:.4f} s/step, "
                  f"peak {result['peak_mb']:.0f} MB, loss {result['first_loss']:.6f}", flush=True)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", nargs="*", default=["split_mnist", "permuted_mnist"],
                        choices=list(WORKLOADS), help="workloads to time (none: only --whole-run)")
    parser.add_argument("--repeats", type=int, default=0,
                        help="timed steps per variant (0: the workload's default)")
    parser.add_argument("--whole-run", action="store_true",
                        help="also train the full published Split MNIST run (about 5 minutes or more)")
    add_run_options(parser, DEFAULT_JSON)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if answer_worker(args, run_variant):
        return
    report: dict = {**machine_report(), "steps": [], "summary": []}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.benchmarks:
            print(f"{name}:", flush=True)
            report["steps"] += measure_workload(name, args, Path(scratch))
    report["summary"] = summarize_rows(report["steps"])
    if report["summary"]:
        print("\n" + format_table(report["summary"]))
    if args.whole_run:
        print("\nwhole Split MNIST run (5 tasks x 2000 iterations, seed 1)...", flush=True)
        report["whole_run"] = whole_split_mnist_run(device=args.device, threads=args.threads)
        run = report["whole_run"]
        print(f"wall {run['wall_s']:.1f} s, {run['seconds_per_step']:.4f} s/step, "
              f"average accuracy {run['average_accuracy']:.2f} %")
    report["load_average_end"] = load_average()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
