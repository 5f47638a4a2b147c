"""Throughput of several Split MNIST trials sharing one machine through fractional Ray resources.

For each concurrency k (default 1, 2, 4, 8) the script starts k identical training runs at once as
Ray tasks, each asking for 1/k of the GPU (or of the CPUs where there is no GPU), and measures the
wall time until all are done. The table gives the total training steps per second for every k and
its gain over k = 1: the packing with the highest throughput is the one to give the pipeline
(``resources.gpus_per_trial`` in ``params.yaml``). Run ``python bench/packing.py --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(ROOT))

import ray  # noqa: E402  (after the path set-up above)
import torch  # noqa: E402

from bench.whole_run import whole_split_mnist_run  # noqa: E402
from hypermask.config import ConfigError, resolve_config  # noqa: E402
from hypermask.data import pin_mirror  # noqa: E402
from pipeline.cluster.session import local_ray  # noqa: E402

DEFAULT_JSON = ROOT / "bench" / "results" / "packing.json"


def measure_packing(concurrency: int, overrides: dict[str, object], use_gpu: bool,
                    cpus: float) -> dict[str, float]:
    """Run ``concurrency`` copies of the same training at once, each on 1/concurrency of the device."""
    share = 1.0 / concurrency
    resources = {"num_gpus": share, "num_cpus": 0} if use_gpu else {"num_cpus": cpus * share}
    threads = max(1, int(cpus // concurrency))
    remote = ray.remote(**resources)(whole_split_mnist_run)
    started = time.perf_counter()
    runs = ray.get([remote.remote(device="cuda" if use_gpu else "cpu", threads=threads,
                                  overrides=overrides) for _ in range(concurrency)])
    wall = time.perf_counter() - started
    steps = sum(run["steps"] for run in runs)
    return {"concurrency": concurrency, "share": share, "wall_s": wall,
            "steps_per_s": steps / wall,
            "seconds_per_step_per_trial": sum(r["wall_s"] / r["steps"] for r in runs) / len(runs),
            "average_accuracy": sum(r["average_accuracy"] for r in runs) / len(runs)}


def format_table(rows: list[dict], device: str) -> str:
    """Throughput per concurrency and its gain over one trial alone."""
    base = rows[0]["steps_per_s"] if rows else 0.0
    lines = [f"{'trials':>6} {'share of ' + device:>14} {'wall s':>8} {'steps/s':>9} "
             f"{'s/step/trial':>12} {'vs 1':>6} {'accuracy %':>10}"]
    for row in rows:
        lines.append(f"{row['concurrency']:>6} {row['share']:>14.3f} {row['wall_s']:>8.1f} "
                     f"{row['steps_per_s']:>9.1f} {row['seconds_per_step_per_trial']:>12.4f} "
                     f"{row['steps_per_s'] / base if base else 0.0:>6.2f} {row['average_accuracy']:>10.2f}")
    best = max(rows, key=lambda r: r["steps_per_s"]) if rows else None
    if best is not None:
        lines.append(f"highest throughput: {best['concurrency']} concurrent trials, "
                     f"{best['share']:.3f} of the {device} each")
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=_positive, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--tasks", type=_positive, default=2,
                        help="Split MNIST tasks per trial (at most 5)")
    parser.add_argument("--iterations", type=_positive, default=500, help="iterations per task")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    use_gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.cuda.get_device_name(0) if use_gpu else "CPU"
    overrides = {"tasks": args.tasks, "iterations": args.iterations}
    try:  # bad settings stop here, before Ray starts
        resolve_config("split_mnist", overrides=overrides)
    except ConfigError as error:
        raise SystemExit(f"packing.py: error: {error}") from None
    # Workers import this module by name: give them the project root on their path.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    pin_mirror()  # Ray workers start in other folders: a relative mirror path is resolved once, here
    with local_ray(runtime_env={"env_vars": {"PYTHONPATH": path}}):
        cpus = float(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
        rows = []
        for k in args.concurrency:
            rows.append(measure_packing(k, overrides, use_gpu, cpus))
            print(f"  {k} trials: {rows[-1]['steps_per_s']:.1f} steps/s", flush=True)
    print(format_table(rows, "GPU" if use_gpu else "CPU"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": device, "torch": torch.__version__, "rows": rows},
                                    indent=2) + "\n")
    print(f"written {args.json}")
    return rows


if __name__ == "__main__":
    main()
