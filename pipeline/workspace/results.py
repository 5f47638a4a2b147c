"""The records that cross the pipeline's layers: what a trial reports to Ray Tune after every task (written
here, read back through :class:`TrialResult`), how a finished trial is classified (:class:`Outcome`), and a
finished trial as the stage outputs see it (:class:`TrialRecord`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping

from hypermask.metrics import INFERENCE_RULES

INFERENCE_PREFIXES = tuple(INFERENCE_RULES)  # rules of task inference: "" (lowest entropy), maxprob_, maxlogit_
SESSION_SCORES = ("mean_session_accuracy", "session_accuracy_drop")  # few-shot class-incremental streams
SCORES = ("average_accuracy", "backward_transfer", "forgetting", "current_task_accuracy",
          *(rule + key for rule in INFERENCE_PREFIXES
            for key in ("task_inference_accuracy", "class_incremental_accuracy", *SESSION_SCORES)),
          "base_class_accuracy", "novel_class_accuracy")  # the last two: few-shot class-incremental streams
# After every task: test scores (reported only) and validation scores (``val_``: what selection sees).
TASK_METRICS = SCORES + tuple(f"val_{k}" for k in SCORES)
# Class-incremental accuracy after every session so far, per inference rule, on test and validation data.
# Few-shot class-incremental streams also list the base and novel classes' accuracy after every session.
SESSION_LISTS = (*(f"{split}{rule}session_accuracy" for split in ("", "val_") for rule in INFERENCE_PREFIXES),
                 "base_session_accuracy", "novel_session_accuracy")
SUMMARY_METRICS = ("mask_density", "mask_overlap", "hypernetwork_parameters")  # the last task's report only
TIME_ATTR = "task"  # number of finished tasks: the ASHA rungs are task boundaries
NODE = "node_id"  # the Ray node that reported the result (a retried trial may go on elsewhere)
NUMERIC_PATH = "numeric_path"  # the CPU code paths the trial's numbers come from (hypermask.numerics)
TASK_PREFIX = "task_"  # MLflow: the running value after each task (step = task index) is ``task_<score>``
END_METRICS = "end_metrics"  # the closing result's list of the run's end-of-run metric names
MODEL_DIR = "model"  # the folder of a final run's saved model in the checkpoint it reports


class Outcome(StrEnum):
    """How a trial ended: reached its last task, stopped early by ASHA, its loss diverged, or it crashed."""

    COMPLETED = "completed"
    PRUNED = "pruned"
    DIVERGED = "diverged"
    FAILED = "failed"


COMPLETED, PRUNED, DIVERGED, FAILED = Outcome.COMPLETED, Outcome.PRUNED, Outcome.DIVERGED, Outcome.FAILED
# Keys of a trial's result besides its scores (what :class:`TrialResult` reads back).
REPLAYED = "replayed"  # a restored trial's kept last result, reported again: nothing new to record
COMPLETED_KEY, DIVERGED_KEY, MODELS_SAVED, ERROR_MESSAGE = "completed", "diverged", "models_saved", "error_message"


@dataclass(frozen=True)
class TrialResult:
    """One result a trial reported, as the pipeline reads it back (the tracker, the runner, the storage)."""

    tasks_done: int = 0
    num_tasks: int = 0
    completed: bool = False
    diverged: bool = False
    models_saved: bool = False  # the closing result of a run whose model files were saved
    replayed: bool = False
    error_message: str = ""

    @classmethod
    def read(cls, result: Mapping[str, Any] | None) -> "TrialResult":
        """The record of a Tune result (an empty one for None)."""
        result = result or {}
        return cls(tasks_done=int(result.get(TIME_ATTR, 0)), num_tasks=int(result.get("num_tasks", 0) or 0),
                   completed=bool(result.get(COMPLETED_KEY)), diverged=bool(result.get(DIVERGED_KEY)),
                   models_saved=bool(result.get(MODELS_SAVED)), replayed=bool(result.get(REPLAYED)),
                   error_message=str(result.get(ERROR_MESSAGE) or ""))


@dataclass(frozen=True)
class SearchBest:
    """The best trial of a finished search, as ``tune``'s summary records it (``summary["best"]``)."""

    config: dict[str, Any]
    objective: float

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> "SearchBest":
        """Read from a tune summary with status done."""
        best = summary["best"]
        return cls(dict(best["config"]), float(best["objective"]))


def task_result(report: Any) -> dict[str, Any]:
    """A Tune result from a :class:`hypermask.train.TaskReport`."""
    done = report.task + 1
    return {TIME_ATTR: done, "num_tasks": report.num_tasks,
            **{k: float(report.metrics[k]) for k in TASK_METRICS + SUMMARY_METRICS if k in report.metrics},
            **session_lists(report.metrics),
            "accuracy_matrix": [list(map(float, row)) for row in report.accuracy_matrix],
            "val_accuracy_matrix": [list(map(float, row)) for row in report.val_accuracy_matrix],
            COMPLETED_KEY: done == report.num_tasks, DIVERGED_KEY: False, "elapsed_s": float(report.elapsed_s)}


def final_result(run: Any) -> dict[str, Any]:
    """The closing Tune result of a run whose model files were saved (from a ``RunResult``)."""
    tasks = len(run.accuracy_matrix)
    return {TIME_ATTR: tasks, "num_tasks": tasks,
            **{k: float(v) for k, v in run.metrics.items() if isinstance(v, (int, float))},
            **session_lists(run.metrics),
            "accuracy_matrix": [list(map(float, row)) for row in run.accuracy_matrix],
            "val_accuracy_matrix": [list(map(float, row)) for row in run.val_accuracy_matrix],
            COMPLETED_KEY: True, DIVERGED_KEY: False, MODELS_SAVED: True,
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
    record = TrialResult.read(result)
    if not record.completed or record.diverged:
        return {}
    names = result.get(END_METRICS) or [k for k in TASK_METRICS if k in result]
    return {k: float(result[k]) for k in names if _number(result.get(k))}


def diverged_result(last: Mapping[str, Any] | None, message: str) -> dict[str, Any]:
    """The result that ends a trial whose loss became NaN/inf (the scores of its last finished task)."""
    base = dict(last) if last else {TIME_ATTR: 0, "accuracy_matrix": [], "val_accuracy_matrix": [],
                                        **{k: 0.0 for k in TASK_METRICS}}
    return {**base, COMPLETED_KEY: False, DIVERGED_KEY: True, ERROR_MESSAGE: message}


def outcome(result: Mapping[str, Any] | None, error: bool = False) -> Outcome:
    """completed (reached the last task), pruned (stopped early by ASHA), diverged, or failed (crashed)."""
    if error:
        return FAILED
    record = TrialResult.read(result)
    if record.diverged:
        return DIVERGED
    return COMPLETED if record.completed else PRUNED


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
