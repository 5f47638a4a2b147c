"""What a trial reports to Ray Tune after every task, and how a finished trial is classified."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from hypermask.metrics import INFERENCE_RULES

INFERENCE_PREFIXES = tuple(INFERENCE_RULES)  # rules of task inference: "" (lowest entropy), maxprob_, maxlogit_
SESSION_SCORES = ("mean_session_accuracy", "session_accuracy_drop")  # few-shot class-incremental streams
SCORES = ("average_accuracy", "backward_transfer", "forgetting", "current_task_accuracy",
          *(rule + key for rule in INFERENCE_PREFIXES
            for key in ("task_inference_accuracy", "class_incremental_accuracy", *SESSION_SCORES)))
# After every task: test scores (reported only) and validation scores (``val_``: what selection sees).
TASK_METRICS = SCORES + tuple(f"val_{k}" for k in SCORES)
# Class-incremental accuracy after every session so far, per inference rule, on test and validation data.
SESSION_LISTS = tuple(f"{split}{rule}session_accuracy" for split in ("", "val_") for rule in INFERENCE_PREFIXES)
SUMMARY_METRICS = ("mask_density", "mask_overlap", "hypernetwork_parameters")  # the last task's report only
TIME_ATTR = "task"  # number of finished tasks: the ASHA rungs are task boundaries
NODE = "node_id"  # the Ray node that reported the result (a retried trial may go on elsewhere)
TASK_PREFIX = "task_"  # MLflow: the running value after each task (step = task index) is ``task_<score>``
REPLAYED = "replayed"  # a restored trial's kept last result, reported again: nothing new to record
END_METRICS = "end_metrics"  # the closing result's list of the run's end-of-run metric names
COMPLETED, PRUNED, DIVERGED, FAILED = "completed", "pruned", "diverged", "failed"


def task_result(report: Any) -> dict[str, Any]:
    """A Tune result from a :class:`hypermask.train.TaskReport`."""
    done = report.task + 1
    return {TIME_ATTR: done, "num_tasks": report.num_tasks,
            **{k: float(report.metrics[k]) for k in TASK_METRICS + SUMMARY_METRICS if k in report.metrics},
            **session_lists(report.metrics),
            "accuracy_matrix": [list(map(float, row)) for row in report.accuracy_matrix],
            "val_accuracy_matrix": [list(map(float, row)) for row in report.val_accuracy_matrix],
            "completed": done == report.num_tasks, "diverged": False, "elapsed_s": float(report.elapsed_s)}


def final_result(run: Any) -> dict[str, Any]:
    """The closing Tune result of a run whose model files were saved (from a ``RunResult``)."""
    tasks = len(run.accuracy_matrix)
    return {TIME_ATTR: tasks, "num_tasks": tasks,
            **{k: float(v) for k, v in run.metrics.items() if isinstance(v, (int, float))},
            **session_lists(run.metrics),
            "accuracy_matrix": [list(map(float, row)) for row in run.accuracy_matrix],
            "val_accuracy_matrix": [list(map(float, row)) for row in run.val_accuracy_matrix],
            "completed": True, "diverged": False, "models_saved": True,
            END_METRICS: sorted(k for k, v in run.metrics.items() if _number(v))}


def session_lists(metrics: Mapping[str, Any]) -> dict[str, list[float]]:
    """The per-session accuracy lists among a run's metrics (few-shot class-incremental streams)."""
    return {k: [float(v) for v in metrics[k]] for k in SESSION_LISTS if isinstance(metrics.get(k), list)}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def task_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The running scores of a task result under their ``task_`` names (every task, step = task index)."""
    return {f"{TASK_PREFIX}{k}": float(result[k]) for k in TASK_METRICS if k in result}


def end_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The scores of a run that reached its last task under their own names (the objective among them):
    after the last task the task scores; in the closing result every end-of-run metric (mask density,
    time). Empty for a trial that has not reached its last task, so a stopped trial never carries the
    objective's key."""
    if not result.get("completed") or result.get("diverged"):
        return {}
    names = result.get(END_METRICS) or [k for k in TASK_METRICS if k in result]
    return {k: float(result[k]) for k in names if _number(result.get(k))}


def diverged_result(last: Mapping[str, Any] | None, message: str) -> dict[str, Any]:
    """The result that ends a trial whose loss became NaN/inf (the scores of its last finished task)."""
    base = dict(last) if last else {TIME_ATTR: 0, "accuracy_matrix": [], "val_accuracy_matrix": [],
                                        **{k: 0.0 for k in TASK_METRICS}}
    return {**base, "completed": False, "diverged": True, "error_message": message}


def last_line(error: Any) -> str:
    """The last line of an error's text (where Python puts the exception itself), at most 300 characters;
    "" for none."""
    return (str(error or "").strip().splitlines() or [""])[-1][:300]


def outcome(result: Mapping[str, Any] | None, error: bool = False) -> str:
    """completed (reached the last task), pruned (stopped early by ASHA), diverged, or failed (crashed)."""
    if error:
        return FAILED
    if not result:
        return PRUNED
    if result.get("diverged"):
        return DIVERGED
    return COMPLETED if result.get("completed") else PRUNED


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial as the stage outputs see it."""

    trial_id: str
    config: dict[str, Any]
    outcome: str
    tasks_done: int
    metrics: dict[str, float]
    accuracy_matrix: list[list[float]]
    run_id: str
    error: str = ""
    val_accuracy_matrix: list[list[float]] = field(default_factory=list)
    history: dict[int, float] = field(default_factory=dict)  # finished tasks -> objective (validation)
    sessions: dict[str, list[float]] = field(default_factory=dict)  # per-session accuracy lists (FSCIL)
    nodes: list[list] = field(default_factory=list)  # [finished tasks, Ray node id] of every result, in order

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
