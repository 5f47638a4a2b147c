"""The MLflow run list of a search, from the tracker's callbacks alone (hand-made trials, no training):
sorting by the objective puts the best finished trial first, and the four outcomes read apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from pipeline.errors import PipelineError
from pipeline.tracking.runs import TrialTracker, close_open_runs
from pipeline.workspace.results import COMPLETED, DIVERGED, FAILED, PRUNED, REPLAYED

OBJECTIVE = "val_average_accuracy"


@dataclass
class FakeTrial:
    trial_id: str
    config: dict[str, Any]
    last_result: dict[str, Any] = field(default_factory=dict)
    checkpoint: Any = None


def _result(task: int, score: float, tasks: int = 3, **flags: Any) -> dict[str, Any]:
    """A trial's result after ``task`` finished tasks with validation average accuracy ``score``."""
    return {"task": task, "num_tasks": tasks, OBJECTIVE: score, "average_accuracy": score - 1.0,
            "accuracy_matrix": [[score] * (i + 1) for i in range(task)], "completed": task == tasks,
            "diverged": False, **flags}


def _play(tracker: TrialTracker, trial: FakeTrial, scores: list[float], end: str = "complete") -> None:
    for task, score in enumerate(scores, start=1):
        trial.last_result = _result(task, score)
        tracker.on_trial_result(0, [], trial, trial.last_result)
    if end == "diverge":
        trial.last_result = {**trial.last_result, "diverged": True, "error_message": "loss is nan"}
        tracker.on_trial_result(0, [], trial, trial.last_result)
    if end == "error":
        tracker.on_trial_error(0, [], trial)
    else:
        tracker.on_trial_complete(0, [], trial)


def test_sorting_by_the_objective_ranks_finished_trials_only(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = TrialTracker(uri, "study", "tune", "key1", log_models=False)
    tracker.setup()
    trials = {  # an easy first task makes a stopped trial look better than any finished one
        COMPLETED: (FakeTrial("best", {"beta": 1e-3}), [99.0, 97.0, 95.0], "complete"),
        "second": (FakeTrial("second", {"beta": 1e-2}), [98.0, 93.0, 90.0], "complete"),
        PRUNED: (FakeTrial("stopped", {"beta": 1e-1}), [99.9, 98.5], "complete"),
        DIVERGED: (FakeTrial("nan", {"beta": 1e-4}), [99.8], "diverge"),
        FAILED: (FakeTrial("crash", {"beta": 1e-5}), [99.7, 99.6], "error"),
    }
    for trial, scores, end in trials.values():
        tracker.on_trial_start(0, [], trial)
        _play(tracker, trial, scores, end)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("study").experiment_id
    ranked = client.search_runs([experiment], filter_string="tags.`hypermask.stage` = 'tune' and "
                                "tags.`mlflow.parentRunId` != ''", order_by=[f"metrics.{OBJECTIVE} DESC"])
    assert [r.data.tags["hypermask.trial_id"] for r in ranked[:2]] == ["best", "second"]
    by_id = {r.data.tags["hypermask.trial_id"]: r for r in ranked}
    assert {k: (r.data.tags["hypermask.outcome"], r.info.status) for k, r in by_id.items()} == {
        "best": ("completed", "FINISHED"), "second": ("completed", "FINISHED"), "stopped": ("pruned", "FINISHED"),
        "nan": ("diverged", "FAILED"), "crash": ("failed", "FAILED")}
    for name in ("stopped", "nan", "crash"):  # only a trial that reached the last task carries the objective
        assert OBJECTIVE not in by_id[name].data.metrics and f"task_{OBJECTIVE}" in by_id[name].data.metrics
    assert "Stopped early by ASHA after task 2 of 3" in by_id["stopped"].data.tags["mlflow.note.content"]
    assert by_id["stopped"].data.tags["hypermask.tasks_done"] == "2"
    history = client.get_metric_history(by_id["best"].info.run_id, f"task_{OBJECTIVE}")
    assert [(m.step, m.value) for m in history] == [(0, 99.0), (1, 97.0), (2, 95.0)]
    assert [(m.step, m.value) for m in client.get_metric_history(by_id["best"].info.run_id, OBJECTIVE)] == [(2, 95.0)]


def _final_run(uri: str) -> tuple[TrialTracker, FakeTrial, Any]:
    """A final run's trial played through its three tasks and its closing result; the tracker, the trial
    and its MLflow run."""
    tracker = TrialTracker(uri, "study", "final", "key1", log_models=False)
    tracker.setup()
    trial = FakeTrial("seed1", {"arm": "tuned", "seed": 1})
    _play(tracker, trial, [99.0, 97.0, 95.0], end="none")
    trial.last_result = {**_result(3, 95.0), "mask_density": 0.4, "elapsed_s": 12.0, "models_saved": True,
                         "end_metrics": ["average_accuracy", "elapsed_s", "mask_density", OBJECTIVE]}
    tracker.on_trial_result(0, [], trial, trial.last_result)
    run = MlflowClient(uri).search_runs([tracker._experiment_id],
                                        filter_string="tags.`hypermask.trial_id` = 'seed1'")[0]
    return tracker, trial, run


def test_a_final_run_carries_every_end_of_run_metric(tmp_path: Path) -> None:
    _, _, run = _final_run(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.data.metrics["mask_density"] == 0.4 and run.data.metrics["elapsed_s"] == 12.0
    assert run.data.metrics[OBJECTIVE] == 95.0


def test_a_trial_that_ended_before_a_restore_keeps_its_record_when_it_reports_its_end_again(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker, trial, run = _final_run(uri)
    tracker.on_trial_complete(0, [], trial)
    client = MlflowClient(uri)
    before = client.get_run(run.info.run_id)
    history = {k: client.get_metric_history(run.info.run_id, k) for k in before.data.metrics}

    restored = TrialTracker(uri, "study", "final", "key1", log_models=False)  # the study restored, trial rerun
    restored.setup()
    restored.on_trial_start(0, [], trial)
    trial.last_result = {**trial.last_result, REPLAYED: True}
    restored.on_trial_result(0, [], trial, trial.last_result)
    restored.on_trial_complete(0, [], trial)
    after = client.get_run(run.info.run_id)
    assert (after.info.status, after.info.end_time) == (before.info.status, before.info.end_time)
    assert {k: client.get_metric_history(run.info.run_id, k) for k in after.data.metrics} == history


@dataclass
class FakeResult:
    metrics: dict[str, Any]
    config: dict[str, Any]
    checkpoint: Any = None
    error: Any = None


def test_runs_left_open_by_a_stopped_study_are_recorded_from_rays_results(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = TrialTracker(uri, "study", "tune", "key1", log_models=False)
    tracker.setup()
    done, open_ = FakeTrial("done", {"beta": 1e-3}), FakeTrial("open", {"beta": 1e-2})
    _play(tracker, done, [99.0, 97.0, 95.0])
    tracker.on_trial_result(0, [], open_, _result(1, 98.0))  # the study stopped before its later records
    ended = {**_result(3, 94.0), "trial_id": "open"}
    results = [FakeResult({**done.last_result, "trial_id": "done"}, done.config), FakeResult(ended, open_.config)]
    closed = close_open_runs(TrialTracker(uri, "study", "tune", "key1", log_models=False), results)
    assert closed == ["open"]
    client = MlflowClient(uri)
    runs = {r.data.tags["hypermask.trial_id"]: r for r in client.search_runs(
        [tracker._experiment_id], filter_string="tags.`hypermask.trial_id` != ''")}
    assert len(runs) == 2 and runs["open"].info.status == "FINISHED"
    assert runs["open"].data.tags["hypermask.outcome"] == "completed" and runs["open"].data.metrics[OBJECTIVE] == 94.0
    assert [m.step for m in client.get_metric_history(runs["open"].info.run_id, f"task_{OBJECTIVE}")] == [0, 2]


def test_a_tracking_server_that_went_away_is_named_in_one_line(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = TrialTracker("http://127.0.0.1:9", "study", "tune", "key1", log_models=False)
    with pytest.raises(PipelineError) as err:
        tracker.setup()
    message = str(err.value)
    assert message.startswith("MLflow tracking server http://127.0.0.1:9 stopped answering during the stage")
    assert "\n" not in message and "run the stage again" in message
