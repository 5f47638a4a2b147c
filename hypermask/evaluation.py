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
    if stream.class_incremental:
        return evaluate_sessions(method, stream, last, cfg, device)
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


EVAL_BATCH = 500  # test images per batch in few-shot class-incremental evaluation (any size gives the same labels)


def joint_predictions(predict, stream: TaskStream, last: int, split: str, device: torch.device,
                      batch_size: int) -> list[tuple[Tensor, Tensor]]:
    """(predicted, true) labels of every seen session's ``split`` images, the session unknown: the images of
    all seen sessions are pooled and cut into batches of ``batch_size``, each mixing every seen class."""
    parts = [split_data(stream.tasks[j], split) for j in range(last + 1)]
    sizes = [len(part[1]) for part in parts]
    x, y = torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    guessed = torch.empty_like(y)
    for start in range(0, len(y), batch_size):
        index = order[start: start + batch_size]
        guessed[index] = predict(stream.eval_input(0, x[index].to(device))).cpu().to(y.dtype)
    return list(zip(guessed.split(sizes), y.split(sizes)))


def _percent(pairs: list[tuple[Tensor, Tensor]]) -> float | None:
    total = sum(len(y) for _, y in pairs)
    return None if total == 0 else 100.0 * sum(int((g == y).sum()) for g, y in pairs) / total


@torch.no_grad()
def evaluate_sessions(method: ContinualMethod, stream: TaskStream, last: int, cfg: Config,
                      device: torch.device) -> Evaluation:
    """A few-shot class-incremental stream after session ``last``: the method labels every test image of the
    classes seen so far, the session unknown (:meth:`ContinualMethod.class_predictor`); joint accuracy over all
    of them (``class_incremental_accuracy``), over the base classes' (``base_class_accuracy``) and over the
    novel classes' (``novel_class_accuracy``, from the first incremental session on). ``test_row`` holds each
    session's classes' accuracy under those joint labels. The same joint accuracy on the validation images
    the stream holds (base classes only; in the ``pseudo`` protocol also pseudo-novel ones) is
    ``val_class_incremental_accuracy``. Batch norm uses base-session statistics and batches mix all seen
    classes, so a label does not depend on its batch."""
    method.eval()
    predict = method.class_predictor(stream, last + 1, device)
    batch = cfg.eval_batch_size or EVAL_BATCH
    test = joint_predictions(predict, stream, last, "test", device, batch)
    val = joint_predictions(predict, stream, last, "val", device, batch)
    scores = {"class_incremental_accuracy": _percent(test), "base_class_accuracy": _percent(test[:1]),
              "novel_class_accuracy": _percent(test[1:]) if last > 0 else None,
              VAL_PREFIX + "class_incremental_accuracy": _percent(val)}
    inference = {key: value for key, value in scores.items() if value is not None}  # no images, no score
    method.train()
    return Evaluation([_percent([pair]) or 0.0 for pair in test], [], inference)


def task_metrics(matrix: list[list[float]], val_matrix: list[list[float]],
                 inference: dict[str, float]) -> dict[str, float]:
    """The scores after a task: test summary, the same on validation (``val_``), task inference."""
    metrics = summarize(matrix)
    if val_matrix:
        metrics.update({VAL_PREFIX + k: v for k, v in summarize(val_matrix).items()})
    metrics.update(inference)
    return metrics


# Per-session lists of few-shot class-incremental streams: list name <- the score after each session.
SESSION_LISTS = {"session_accuracy": "class_incremental_accuracy", "base_session_accuracy": "base_class_accuracy",
                 "novel_session_accuracy": "novel_class_accuracy",
                 "val_session_accuracy": "val_class_incremental_accuracy"}


def session_metrics(previous: dict, current: dict) -> dict:
    """The few-shot class-incremental history: joint accuracy after every session so far
    (``session_accuracy``, a list: ``previous`` holds the earlier sessions'), the base classes' and the novel
    classes' (``novel_session_accuracy`` from the first incremental session on), the joint validation accuracy,
    and the mean over sessions and the drop from the first session to the last (PD) of the joint accuracy
    (``mean_session_accuracy``, ``session_accuracy_drop``; the same of validation with ``val_``)."""
    found: dict[str, Any] = {}
    for name, key in SESSION_LISTS.items():
        if key in current:
            found[name] = [*previous.get(name, []), current[key]]
    for prefix in ("", VAL_PREFIX):
        if prefix + "session_accuracy" in found:
            found.update({prefix + k: v for k, v in session_summary(found[prefix + "session_accuracy"]).items()})
    return found
