"""Continual-learning metrics as pure functions of the accuracy matrix R[i][j] (percent).

Row i holds the accuracies of tasks 0..i measured right after training task i.
"""

from __future__ import annotations

import torch
from torch import Tensor


def average_accuracy(matrix: list[list[float]]) -> float:
    """Mean accuracy over all tasks seen so far, after the last trained task."""
    return sum(matrix[-1]) / len(matrix[-1])


def backward_transfer(matrix: list[list[float]]) -> float:
    """BWT = mean over j < T-1 of R[T-1][j] - R[j][j] (0 for a single task)."""
    last = len(matrix) - 1
    if last < 1:
        return 0.0
    return sum(matrix[last][j] - matrix[j][j] for j in range(last)) / last


def forgetting(matrix: list[list[float]]) -> float:
    """Chaudhry's forgetting: mean over j < T-1 of max_{k<T-1} R[k][j] - R[T-1][j]."""
    last = len(matrix) - 1
    if last < 1:
        return 0.0
    drops = [max(matrix[k][j] for k in range(j, last)) - matrix[last][j] for j in range(last)]
    return sum(drops) / last


def summarize(matrix: list[list[float]]) -> dict[str, float]:
    """Average accuracy, backward transfer, forgetting and the newest task's accuracy."""
    return {
        "average_accuracy": average_accuracy(matrix),
        "backward_transfer": backward_transfer(matrix),
        "forgetting": forgetting(matrix),
        "current_task_accuracy": matrix[-1][-1],
    }


def entropy(logits: Tensor) -> Tensor:
    """Entropy of the softmax of each row of ``logits``."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def infer_task(logits_per_task: Tensor) -> tuple[Tensor, Tensor]:
    """Task and class guessed from logits of shape (tasks, batch, classes): lowest entropy wins."""
    task = entropy(logits_per_task).argmin(0)
    chosen = logits_per_task[task, torch.arange(logits_per_task.shape[1])]
    return task, chosen.argmax(-1)


def infer_max_probability(logits_per_task: Tensor) -> tuple[Tensor, Tensor]:
    """Task and class of the highest softmax probability over every task's classes."""
    return _argmax_over_tasks(torch.softmax(logits_per_task, dim=-1))


def infer_max_logit(logits_per_task: Tensor) -> tuple[Tensor, Tensor]:
    """Task and class of the highest logit over every task's classes."""
    return _argmax_over_tasks(logits_per_task)


def _argmax_over_tasks(scores: Tensor) -> tuple[Tensor, Tensor]:
    tasks, batch, classes = scores.shape
    best = scores.permute(1, 0, 2).reshape(batch, tasks * classes).argmax(-1)
    return best // classes, best % classes


# Rules that guess task and class when the task id is unknown, by the prefix of their metrics:
# lowest entropy (the paper's, unprefixed), highest probability, highest logit.
INFERENCE_RULES = {"": infer_task, "maxprob_": infer_max_probability, "maxlogit_": infer_max_logit}


def session_summary(accuracies: list[float]) -> dict[str, float]:
    """Mean of the accuracies after every session and the drop from the first to the last."""
    return {"mean_session_accuracy": sum(accuracies) / len(accuracies),
            "session_accuracy_drop": accuracies[0] - accuracies[-1]}
