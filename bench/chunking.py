"""Full against chunked hypernetworks: hypernetwork size, seconds per training step and peak memory.

For HyperMask and HNET at their published Split MNIST configurations, each chunk size (0: the full
hypernetwork) is measured at the first task and at the last (where the output regulariser calls the
hypernetwork for every earlier task), one variant at a time, each in a fresh subprocess so that its peak
memory is its own. Ratios are against the same method's full hypernetwork in the same run. The
``ablation_chunking`` study gives the accuracy and forgetting of the same variants. Run
``python bench/chunking.py --help``.
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
from bench.workloads import Batches, real_batches
from hypermask.config import Config, resolve_config
from hypermask.masks import ramped_sparsity
from hypermask.methods import build_method
from hypermask.nets import build_target
from hypermask.numerics import pin
from hypermask.optim import make_optimizer
from hypermask.runtime import configure_runtime
from hypermask.train import training_step

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "chunking.json"
METHODS = ("hypermask", "hnet")
CHUNK_SIZES = (0, 4000, 16000, 42000)


def variant_config(method: str, chunk_size: int, device: str = "auto", threads: int = 0) -> Config:
    """The method's published Split MNIST configuration with the given chunk size (0: full)."""
    return resolve_config("split_mnist", method, overrides={"chunk_size": chunk_size, "device": device,
                                                            "threads": threads, "progress": False})


def run_variant(spec: dict) -> dict:
    """Worker: build one method with one chunk size, time its training steps (runs in a subprocess)."""
    cfg = variant_config(spec["method"], spec["chunk_size"], spec["device"], spec["threads"])
    pin(cfg.numerics)  # the library's default numeric path, before the worker's first operation
    device = configure_runtime(cfg.device, cfg.threads)
    saved = torch.load(spec["batches"])
    batches = Batches([x.to(device) for x in saved["xs"]], [y.to(device) for y in saved["ys"]],
                      tuple(saved["input_shape"]), saved["classes"])
    torch.manual_seed(cfg.seed)
    target = build_target(cfg.target, batches.input_shape, batches.classes, cfg.target_hidden)
    method = build_method(cfg, target, cfg.tasks).to(device)
    task = spec["task"]
    method.start_task(task)
    optimizer = make_optimizer(method.parameters(), cfg.lr, device)
    sparsity = ramped_sparsity(cfg.p, task, 1, 2) if cfg.method == "hypermask" else 0.0
    timing = time_steps(lambda i: training_step(method, optimizer, task, *batches[i], sparsity), device,
                        spec["warmup"], spec["repeats"])
    size = sum(p.numel() for p in method.hnet.parameters())
    return {**timing.to_dict(), "hypernetwork_parameters": size, "threads": torch.get_num_threads(),
            "device": str(device)}


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each row with its seconds per step and added memory as ratios to the same method's full
    hypernetwork at the same task (absent when that was not measured)."""
    full = {(r["method"], r["task"]): r for r in rows if r["chunk_size"] == 0}
    out = []
    for row in rows:
        ref = full.get((row["method"], row["task"]))
        ratios = {} if ref is None else {
            "time_vs_full": row["median_s"] / ref["median_s"],
            "memory_vs_full": row["step_mb"] / ref["step_mb"] if ref["step_mb"] > 0 else None,
            "parameters_vs_full": row["hypernetwork_parameters"] / ref["hypernetwork_parameters"]}
        out.append({**row, **ratios})
    return out


def format_table(rows: list[dict]) -> str:
    """The measurements as a Markdown table."""
    lines = ["| method | chunk size | task | hypernetwork parameters | s/step | vs full | peak MB | added MB | vs full |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        time_ratio = f"{r['time_vs_full']:.2f}" if "time_vs_full" in r else "–"
        memory_ratio = f"{r['memory_vs_full']:.2f}" if r.get("memory_vs_full") is not None else "–"
        lines.append(f"| {r['method']} | {r['chunk_size'] or 'full'} | {r['task']} | "
                     f"{r['hypernetwork_parameters']:,} | {r['median_s']:.4f} | {time_ratio} | {r['peak_mb']:.0f} | "
                     f"{r['step_mb']:.0f} | {memory_ratio} |")
    return "\n".join(lines)


def measure(args: argparse.Namespace, scratch: Path) -> list[dict]:
    """Every method and chunk size at the first and the last task, one subprocess at a time."""
    rows = []
    for task in sorted({0, variant_config("hypermask", 0).tasks - 1}):
        batches = real_batches(variant_config("hypermask", 0), task, args.warmup + args.repeats, torch.device("cpu"))
        path = scratch / f"task{task}.pt"
        torch.save(vars(batches), path)
        for method in args.methods:
            for chunk_size in args.chunk_sizes:
                spec = {"method": method, "chunk_size": chunk_size, "task": task, "batches": str(path),
                        "device": args.device, "threads": args.threads, "warmup": args.warmup,
                        "repeats": args.repeats}
                result = in_subprocess(__file__, spec, f"{method} with chunk size {chunk_size}")
                rows.append({"method": method, "chunk_size": chunk_size, "task": task, **result})
                print(f"  {method} chunk {chunk_size or 'full'} task {task}: {result['median_s']:.4f} s/step, "
                      f"{result['hypernetwork_parameters']:,} parameters, peak {result['peak_mb']:.0f} MB", flush=True)
    return with_ratios(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--chunk-sizes", nargs="+", type=int, default=list(CHUNK_SIZES),
                        help="0 is the full hypernetwork (the reference of the ratios)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per variant")
    add_run_options(parser, DEFAULT_JSON)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if answer_worker(args, run_variant):
        return
    report: dict = machine_report()
    with tempfile.TemporaryDirectory() as scratch:
        report["rows"] = measure(args, Path(scratch))
    report["load_average_end"] = load_average()
    print("\n" + format_table(report["rows"]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
