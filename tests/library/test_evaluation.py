"""Evaluation after every task: validation scores beside test scores, task inference on full splits."""

from __future__ import annotations

from conftest import small_config
from hypermask.data import build_stream
from hypermask.evaluation import task_inference
from hypermask.train import train_continual


def test_every_task_reports_validation_and_test_scores(mnist) -> None:
    cfg = small_config(tasks=3, iterations=30, validation_size=300, target_hidden="100,100")
    reports = []
    result = train_continual(cfg, stream=build_stream(cfg, mnist), on_task_end=reports.append)
    for report in reports:
        seen = report.task + 1
        assert [len(row) for row in report.val_accuracy_matrix] == list(range(1, seen + 1))
        for key in ("average_accuracy", "backward_transfer", "forgetting", "class_incremental_accuracy",
                    "task_inference_accuracy"):
            assert key in report.metrics and f"val_{key}" in report.metrics
        assert report.metrics["val_average_accuracy"] == sum(report.val_accuracy_matrix[-1]) / seen
    # validation and test scores are measured on different samples
    assert result.val_accuracy_matrix != result.accuracy_matrix
    assert result.metrics["val_average_accuracy"] == reports[-1].metrics["val_average_accuracy"]
    assert result.to_dict()["val_accuracy_matrix"] == result.val_accuracy_matrix


def test_no_validation_split_means_no_validation_scores(mnist) -> None:
    cfg = small_config(iterations=10, validation_size=0)
    result = train_continual(cfg, stream=build_stream(cfg, mnist))
    assert result.val_accuracy_matrix == [] and not any(k.startswith("val_") for k in result.metrics)


def test_task_inference_uses_every_sample_unless_told(mnist) -> None:
    cfg = small_config(iterations=10)
    stream = build_stream(cfg, mnist)
    result = train_continual(cfg, stream=stream)
    method = result.method.eval()
    weights = method.all_task_weights(len(stream))
    shown: list[int] = []
    original = method.forward

    def counting(x, w):
        shown.append(len(x))
        return original(x, w)

    method.forward = counting
    task_inference(method, stream, weights, "test", "cpu")
    every = sum(len(t.test_y) for t in stream.tasks)
    assert sum(shown) == every * len(stream) and every > 1000
    shown.clear()
    task_inference(method, stream, weights, "test", "cpu", samples_per_task=100)
    assert sum(shown) == 100 * len(stream) * len(stream)
