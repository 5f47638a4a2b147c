"""Evaluation after every task: each seen task on its test and validation splits with its own weights
(one row of each accuracy matrix), and class-incremental accuracy with the task id unknown on both splits
(task inferred by lowest entropy, or by the highest probability or logit over every task's classes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from hypermask.config import Config
from hypermask.data import Task, TaskStream
from hypermask.methods import ContinualMethod
from hypermask.metrics import INFERENCE_RULES, session_summary, summarize

SPLITS = ("test", "val")
VAL_PREFIX = "val_"


def split_data(task: Task, split: str) -> tuple[Tensor, Tensor]:
    """Images and labels of ``task``'s ``test`` or ``val`` split."""
    return (task.test_x, task.test_y) if split == "test" else (task.val_x, task.val_y)


@torch.no_grad()
def accuracy(method: ContinualMethod, weights, x: Tensor, y: Tensor, view: Callable, preprocess: Callable,
             device: torch.device, batch_size: int) -> float:
    """Accuracy in percent of ``weights`` on (x, y); ``batch_size`` 0 means one batch."""
    batch_size = batch_size or len(x)
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = view(preprocess(x[start: start + batch_size].to(device)))
        correct += int((method(xb, weights).argmax(-1).cpu() == y[start: start + batch_size]).sum())
    return 100.0 * correct / max(1, len(x))


@torch.no_grad()
def task_inference(method: ContinualMethod, stream: TaskStream, all_weights: list, split: str,
                   device: torch.device, samples_per_task: int = 0, batch_size: int = 0) -> dict[str, float]:
    """Task-id inference over the tasks of ``all_weights`` by every rule of :data:`INFERENCE_RULES`: share
    of samples whose task is guessed right, and of those whose class is (class-incremental accuracy).

    In a task-incremental stream a class is right when its task and its class within the task are; in a
    class-incremental stream labels are shared by all tasks and the guessed task's best class must be the
    label. ``samples_per_task`` 0 uses every sample of the split; ``batch_size`` 0 means one batch per task
    (batch-statistics normalisation sees the same batches as in :func:`accuracy`)."""
    seen = len(all_weights)
    offset = 0 if stream.class_incremental else stream.classes_per_task
    task_hits = dict.fromkeys(INFERENCE_RULES, 0)
    class_hits = dict.fromkeys(INFERENCE_RULES, 0)
    total = 0
    for j, task in enumerate(stream.tasks[:seen]):
        x, y = split_data(task, split)
        if samples_per_task:
            x, y = x[:samples_per_task], y[:samples_per_task]
        step = batch_size or max(1, len(x))
        for start in range(0, len(x), step):
            xb = task.view(stream.eval_preprocess(x[start: start + step].to(device)))
            logits = torch.stack([method(xb, all_weights[k]) for k in range(seen)])
            truth = j * offset + y[start: start + step]
            for prefix, rule in INFERENCE_RULES.items():
                guessed_task, guessed_class = (guess.cpu() for guess in rule(logits))
                task_hits[prefix] += int((guessed_task == j).sum())
                class_hits[prefix] += int((guessed_task * offset + guessed_class == truth).sum())
        total += len(y)
    scores: dict[str, float] = {}
    for prefix in INFERENCE_RULES:
        scores[prefix + "task_inference_accuracy"] = 100.0 * task_hits[prefix] / max(1, total)
        scores[prefix + "class_incremental_accuracy"] = 100.0 * class_hits[prefix] / max(1, total)
    return scores


def has_validation(stream: TaskStream) -> bool:
    """Whether every task holds validation samples (``validation_size`` > 0)."""
    return all(len(task.val_y) > 0 for task in stream.tasks)


@dataclass
class Evaluation:
    """Rows of the test and validation accuracy matrices after one task, and task inference on both."""

    test_row: list[float]
    val_row: list[float]
    inference: dict[str, float]  # test-split keys plain, validation-split keys with ``val_``


@torch.no_grad()
def evaluate_after_task(method: ContinualMethod, stream: TaskStream, last: int, cfg: Config,
                        device: torch.device) -> Evaluation:
    """Every task 0..last on its test and validation splits with its own weights, and task inference
    over the seen tasks (``cfg.inference_samples`` per task, 0 = all). Validation is skipped when the
    stream holds none."""
    method.eval()
    all_weights = method.all_task_weights(last + 1)
    splits = SPLITS if has_validation(stream) else ("test",)
    rows: dict[str, list[float]] = {}
    inference: dict[str, float] = {}
    for split in splits:
        rows[split] = [accuracy(method, all_weights[j], *split_data(stream.tasks[j], split), stream.tasks[j].view,
                                stream.eval_preprocess, device, cfg.eval_batch_size) for j in range(last + 1)]
        prefix = VAL_PREFIX if split == "val" else ""
        found = task_inference(method, stream, all_weights, split, device, cfg.inference_samples,
                               cfg.eval_batch_size)
        inference.update({prefix + k: v for k, v in found.items()})
    method.train()
    return Evaluation(rows["test"], rows.get("val", []), inference)


def task_metrics(matrix: list[list[float]], val_matrix: list[list[float]],
                 inference: dict[str, float]) -> dict[str, float]:
    """The scores after a task: test summary, the same on validation (``val_``), task inference."""
    metrics = summarize(matrix)
    if val_matrix:
        metrics.update({VAL_PREFIX + k: v for k, v in summarize(val_matrix).items()})
    metrics.update(inference)
    return metrics


def session_metrics(previous: dict, current: dict) -> dict:
    """Class-incremental accuracy after every session so far (``session_accuracy``, a list: ``previous``
    holds the earlier sessions'), its mean and its drop from the first session to the last, for every
    inference rule (prefixed as in :data:`INFERENCE_RULES`) on test and validation data (``val_``)."""
    found: dict[str, Any] = {}
    for split in ("", VAL_PREFIX):
        for rule in INFERENCE_RULES:
            prefix = split + rule
            if prefix + "class_incremental_accuracy" not in current:
                continue
            history = [*previous.get(prefix + "session_accuracy", []), current[prefix + "class_incremental_accuracy"]]
            found[prefix + "session_accuracy"] = history
            found.update({prefix + k: v for k, v in session_summary(history).items()})
    return found
