"""What a trial reports to Ray Tune after every task, and how a finished trial is classified."""

from __future__ import annotations

from typing import Any, Mapping

SCORES = ("average_accuracy", "backward_transfer", "forgetting", "current_task_accuracy",
          "task_inference_accuracy", "class_incremental_accuracy")
# After every task: test scores (reported only) and validation scores (``val_``: what selection sees).
TASK_METRICS = SCORES + tuple(f"val_{k}" for k in SCORES)
SUMMARY_METRICS = ("mask_density", "mask_overlap")  # the last task's report only (methods with masks)
TIME_ATTR = "task"  # number of finished tasks: the ASHA rungs are task boundaries
COMPLETED, PRUNED, DIVERGED, FAILED = "completed", "pruned", "diverged", "failed"


def task_result(report: Any) -> dict[str, Any]:
    """A Tune result from a :class:`hypermask.train.TaskReport`."""
    done = report.task + 1
    return {TIME_ATTR: done, "num_tasks": report.num_tasks,
            **{k: float(report.metrics[k]) for k in TASK_METRICS + SUMMARY_METRICS if k in report.metrics},
            "accuracy_matrix": [list(map(float, row)) for row in report.accuracy_matrix],
            "val_accuracy_matrix": [list(map(float, row)) for row in report.val_accuracy_matrix],
            "completed": done == report.num_tasks, "diverged": False, "elapsed_s": float(report.elapsed_s)}


def final_result(run: Any) -> dict[str, Any]:
    """The closing Tune result of a run whose model files were saved (from a ``RunResult``)."""
    tasks = len(run.accuracy_matrix)
    return {TIME_ATTR: tasks, "num_tasks": tasks,
            **{k: float(v) for k, v in run.metrics.items() if isinstance(v, (int, float))},
            "accuracy_matrix": [list(map(float, row)) for row in run.accuracy_matrix],
            "val_accuracy_matrix": [list(map(float, row)) for row in run.val_accuracy_matrix],
            "completed": True, "diverged": False, "models_saved": True}


def diverged_result(last: Mapping[str, Any] | None, message: str) -> dict[str, Any]:
    """The result that ends a trial whose loss became NaN/inf (the scores of its last finished task)."""
    base = dict(last) if last else {TIME_ATTR: 0, "accuracy_matrix": [], "val_accuracy_matrix": [],
                                        **{k: 0.0 for k in TASK_METRICS}}
    return {**base, "completed": False, "diverged": True, "error_message": message}


def outcome(result: Mapping[str, Any] | None, error: bool = False) -> str:
    """completed (reached the last task), pruned (stopped early by ASHA), diverged, or failed (crashed)."""
    if error:
        return FAILED
    if not result:
        return PRUNED
    if result.get("diverged"):
        return DIVERGED
    return COMPLETED if result.get("completed") else PRUNED
