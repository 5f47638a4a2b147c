"""Accuracy-matrix metrics and task inference."""

from __future__ import annotations

import pytest
import torch

from hypermask.metrics import backward_transfer, forgetting, infer_task, summarize

MATRIX = [[90.0], [80.0, 95.0], [70.0, 85.0, 99.0]]


def test_metrics_of_a_known_matrix() -> None:
    summary = summarize(MATRIX)
    assert summary["average_accuracy"] == pytest.approx((70 + 85 + 99) / 3)
    assert backward_transfer(MATRIX) == pytest.approx(((70 - 90) + (85 - 95)) / 2)
    assert forgetting(MATRIX) == pytest.approx(((90 - 70) + (95 - 85)) / 2)
    assert summary["current_task_accuracy"] == 99.0


def test_single_task_has_no_transfer() -> None:
    assert backward_transfer([[50.0]]) == 0.0 and forgetting([[50.0]]) == 0.0


def test_forgetting_uses_best_earlier_accuracy() -> None:
    matrix = [[60.0], [90.0, 80.0], [70.0, 80.0, 90.0]]
    assert forgetting(matrix) == pytest.approx(((90 - 70) + (80 - 80)) / 2)


def test_lowest_entropy_task_is_chosen() -> None:
    confident = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    unsure = torch.zeros(2, 2)
    logits = torch.stack([unsure, confident])  # (tasks, batch, classes)
    task, cls = infer_task(logits)
    assert task.tolist() == [1, 1] and cls.tolist() == [0, 1]
