"""Seconds per training step on the portable numeric path (AVX2 everywhere) against the native one.

For the published Split MNIST and Permuted MNIST configurations, at the first and the last task, the
library's step (``fast`` in :mod:`bench.train_step`) is timed once per numeric path in a fresh subprocess
(a process runs one path), the two paths alternating for ``--rounds`` rounds on the same batches; the
table gives each path's median over the rounds and the ratio portable / native. Run
``python bench/numerics.py --help``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.measure import add_run_options, answer_worker, in_subprocess, load_average, machine_report
from bench.train_step import run_variant
from bench.workloads import WORKLOADS, make_batches, workload_config
from hypermask.config import NUMERICS

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "numerics.json"


def run_path(spec: dict) -> dict:
    """Worker: the library's step on one numeric path (pinned before anything runs), with that path."""
    result = run_variant(spec)
    from hypermask.numerics import pin

    return {**result, "numeric_path": pin(spec["numerics"]).describe()}


def measure_workload(name: str, args: argparse.Namespace, scratch: Path) -> list[dict]:
    """Both paths at the first and the last task of one workload, alternating, ``args.rounds`` times."""
    cfg = workload_config(name, args.device, args.threads)
    repeats = args.repeats or WORKLOADS[name][2]
    rows = []
    for task in sorted({0, cfg.tasks - 1}):
        path = scratch / f"{name}_task{task}.pt"
        torch.save(vars(make_batches(cfg, task, args.warmup + repeats, torch.device("cpu"))), path)
        for round_ in range(args.rounds):
            for numerics in NUMERICS:
                spec = {"workload": name, "task": task, "variant": "fast", "numerics": numerics, "batches": str(path),
                        "device": args.device, "threads": args.threads, "warmup": args.warmup, "repeats": repeats}
                result = in_subprocess(__file__, spec, f"{numerics} step of {name}")
                rows.append({"benchmark": name, "task": task, "numerics": numerics, "round": round_, **result})
                print(f"  {name} task {task} {numerics} ({result['numeric_path']}): {result['median_s']:.4f} s/step, "
                      f"loss {result['first_loss']:.6f}", flush=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per (benchmark, task): each path's median seconds per step over its rounds, and portable / native."""
    keys = sorted({(r["benchmark"], r["task"]) for r in rows}, key=lambda k: (list(WORKLOADS).index(k[0]), k[1]))
    summary = []
    for benchmark, task in keys:
        entry: dict = {"benchmark": benchmark, "task": task}
        for numerics in NUMERICS:
            times = [t for r in rows if (r["benchmark"], r["task"], r["numerics"]) == (benchmark, task, numerics)
                     for t in r["times_s"]]
            entry[f"{numerics}_s"] = statistics.median(times)
        entry["portable_over_native"] = entry["portable_s"] / entry["native_s"]
        summary.append(entry)
    return summary


def format_table(summary: list[dict]) -> str:
    """The summary as a Markdown table."""
    lines = ["| benchmark | task | portable s/step | native s/step | portable / native |", "|---|---|---|---|---|"]
    lines += [f"| {s['benchmark']} | {s['task']} | {s['portable_s']:.4f} | {s['native_s']:.4f} | "
              f"{s['portable_over_native']:.2f} |" for s in summary]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", nargs="+", default=["split_mnist", "permuted_mnist"],
                        choices=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=0, help="timed steps per process (0: the workload's default)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per path, alternating with the other")
    add_run_options(parser, DEFAULT_JSON)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if answer_worker(args, run_path):
        return
    report: dict = machine_report()
    with tempfile.TemporaryDirectory() as scratch:
        report["steps"] = [row for name in args.benchmarks for row in measure_workload(name, args, Path(scratch))]
    report["summary"] = summarize(report["steps"])
    report["load_average_end"] = load_average()
    print("\n" + format_table(report["summary"]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
