"""The three step variants the benchmark compares, behind one small interface."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from bench.reference_step import ReferenceStep, per_task_regulariser, task_output
from hypermask.methods import HyperMask
from hypermask.numerics import PORTABLE, pin
from hypermask.optim import make_optimizer
from hypermask.runtime import configure_runtime
from hypermask.train import training_step

VARIANTS = ("fast", "gradient_then_adam", "per_task_regulariser", "reference")

StepFn = Callable[[Tensor, Tensor], Tensor]


def use_per_task_regulariser(method: HyperMask, task: int) -> None:
    """Make the library's loss form the output regulariser from one hypernetwork call per task.

    Replaces ``hnet_outputs`` on this instance only; the targets H*_j are recorded here the same
    way (one call each), so everything else in the library step stays as it is.
    """
    with torch.no_grad():
        targets = [task_output(method, j).clone() for j in range(task)]

    def hnet_outputs(current: int) -> tuple[Tensor, Tensor | None]:
        regulariser = per_task_regulariser(method, current, targets) if targets else None
        return task_output(method, current), regulariser

    method.hnet_outputs = hnet_outputs  # type: ignore[method-assign]


def prepare_runtime(variant: str, device_name: str, threads: int, numerics: str = PORTABLE) -> torch.device:
    """Every variant runs on the numeric path ``numerics`` (pinned here, before the worker's first operation:
    the library's default unless asked); library variants get the library's runtime set-up, the reference
    plain defaults."""
    pin(numerics)
    return configure_runtime(device_name, threads, tune_allocator=variant != "reference")


def build_step(variant: str, method: HyperMask, task: int, sparsity: float,
               device: torch.device) -> StepFn:
    """A callable ``(x, y) -> loss`` doing one training step of ``task`` in the given variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant '{variant}' (choose from {', '.join(VARIANTS)})")
    lr = method.cfg.lr
    if variant == "reference":
        reference = ReferenceStep(method, lr)
        reference.start_task(task)
        return lambda x, y: reference.step(task, x, y, sparsity)
    method.start_task(task)
    if variant == "per_task_regulariser" and method.cfg.beta > 0:
        use_per_task_regulariser(method, task)
    optimizer = make_optimizer(method.parameters(), lr, device)
    in_backward = variant == "fast"
    return lambda x, y: training_step(method, optimizer, task, x, y, sparsity, in_backward)
