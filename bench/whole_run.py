"""The full published Split MNIST training, timed end to end."""

from __future__ import annotations

import time

import torch

from hypermask.config import resolve_config
from hypermask.train import train_continual


def whole_split_mnist_run(seed: int = 1, device: str = "auto", threads: int = 0,
                          overrides: dict[str, object] | None = None) -> dict:
    """Train the published Split MNIST run (5 tasks x 2000 iterations, or as ``overrides`` say)
    through ``train_continual``; wall time, steps and accuracy."""
    cfg = resolve_config("split_mnist", seed=seed, overrides={
        **(overrides or {}), "device": device, "threads": threads, "progress": False})
    start = time.perf_counter()
    result = train_continual(cfg)
    wall = time.perf_counter() - start
    per_task = result.seconds_per_step
    return {
        "benchmark": "split_mnist", "seed": seed, "tasks": cfg.tasks, "iterations": cfg.iterations,
        "steps": cfg.tasks * cfg.iterations,
        "wall_s": wall, "training_s": result.metrics["elapsed_s"],
        "seconds_per_step_per_task": per_task,
        "seconds_per_step": sum(per_task) / max(1, len(per_task)),
        "average_accuracy": result.metrics["average_accuracy"], "threads": torch.get_num_threads(),
    }
