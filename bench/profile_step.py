"""Where the time of one training step goes: torch.profiler's top operators for one variant.

``python bench/profile_step.py --benchmark permuted_mnist --task 9 --variant fast``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch.profiler import ProfilerActivity, profile

from bench.variants import VARIANTS, build_step, prepare_runtime
from bench.workloads import WORKLOADS, make_batches, make_method, step_sparsity, workload_config


def profile_step(benchmark: str, task: int, variant: str, steps: int, device_name: str,
                 rows: int) -> str:
    """Profile ``steps`` steps after two warm-up steps; the operator table sorted by self time."""
    cfg = workload_config(benchmark, device_name)
    batches = make_batches(cfg, task, 2 + steps, torch.device("cpu"))
    device = prepare_runtime(variant, cfg.device, cfg.threads)
    batches.xs = [x.to(device) for x in batches.xs]
    batches.ys = [y.to(device) for y in batches.ys]
    method = make_method(cfg, batches, device)
    step = build_step(variant, method, task, step_sparsity(cfg, task), device)
    for i in range(2):
        step(*batches[i])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(steps):
            step(*batches[2 + i])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", default="permuted_mnist", choices=list(WORKLOADS))
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--variant", default="fast", choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args(argv)
    print(profile_step(args.benchmark, args.task, args.variant, args.steps, args.device, args.rows))


if __name__ == "__main__":
    main()
