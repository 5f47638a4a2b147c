"""Timing and peak-memory measurement of a repeated step, on CPU and CUDA."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

_MB = 1024.0 ** 2


@dataclass
class StepTiming:
    """Seconds of every timed step and the memory the process (or GPU) needed."""

    times_s: list[float]
    peak_mb: float
    step_mb: float
    memory_kind: str
    first_loss: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    def to_dict(self) -> dict:
        return {**asdict(self), "median_s": self.median_s}


def peak_rss_mb() -> float:
    """High-water resident set size of this process image.

    Linux: ``VmHWM`` from /proc (``ru_maxrss`` would carry the parent's peak over fork and exec).
    Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / _MB if sys.platform == "darwin" else peak / 1024.0


def current_rss_mb() -> float:
    """Resident set size now (psutil or /proc when available, else the high-water mark)."""
    try:
        import psutil
        return psutil.Process().memory_info().rss / _MB
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / _MB
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[int], torch.Tensor], device: torch.device, warmup: int,
               repeats: int) -> StepTiming:
    """Run ``warmup`` (at least one) untimed then ``repeats`` timed calls of ``step(i)``.

    Memory is the CUDA allocator's peak on GPU, the process's peak RSS on CPU (call this in a fresh
    process so earlier work does not hide the peak). ``step_mb`` is the peak minus what was in use
    before the first step: optimiser state, gradients and activations.
    """
    warmup = max(1, warmup)
    cuda = device.type == "cuda"
    if cuda:
        _synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / _MB
    else:
        before = current_rss_mb()
    first_loss = float(step(0))
    for i in range(1, warmup):
        step(i)
    _synchronize(device)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        step(warmup + i)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / _MB if cuda else peak_rss_mb()
    kind = "cuda_max_allocated" if cuda else "peak_rss"
    return StepTiming(times, peak, peak - before, kind, first_loss)


WORKER_FLAG, RESULT_MARKER = "--worker", "BENCH-RESULT "


def in_subprocess(script: str, spec: dict, what: str) -> dict:
    """Run ``script --worker SPEC`` in a fresh Python process (so its peak memory is its own) and return the
    result its worker printed with :func:`print_result`; ``what`` names the measurement in errors."""
    command = [sys.executable, str(Path(script).resolve()), WORKER_FLAG, json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed:\n{done.stderr}")
    return json.loads(lines[-1][len(RESULT_MARKER):])


def print_result(result: dict) -> None:
    """A worker's answer to :func:`in_subprocess`."""
    print(RESULT_MARKER + json.dumps(result), flush=True)


def answer_worker(args: argparse.Namespace, run: Callable[[dict], dict]) -> bool:
    """In a worker subprocess (``--worker SPEC``, see :func:`in_subprocess`): run the spec, print the answer and
    return True; False in the parent process."""
    if not args.worker:
        return False
    print_result(run(json.loads(args.worker)))
    return True


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (timings under load mostly measure contention)."""
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def machine_report() -> dict:
    """What a benchmark's JSON records of the machine it ran on: torch, Python, architecture, CPUs, load."""
    import platform

    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_average_start": load_average()}


def add_run_options(parser: argparse.ArgumentParser, default_json: Path) -> None:
    """The options every step benchmark takes: warm-up steps, device, threads, where results go, and the
    hidden worker flag of :func:`in_subprocess`."""
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=default_json, help="where to write results")
    parser.add_argument(WORKER_FLAG, help=argparse.SUPPRESS)
