"""A tiny study end to end, in-process: Ray Tune + Optuna + ASHA + MLflow, then final runs and the report."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import ray

from pipeline import runner, trainable
from pipeline.final import final_study
from pipeline.layout import Layout
from pipeline.params import load_params
from pipeline.report import write_report
from pipeline.tune import tune_study
from pipeline_fixtures import TINY_STUDY, copy_project, metric_steps, only_studies, runs_by_parent, write_study

DIVERGING_LR, CRASHING_LR = 1.0e30, 3.0e-3
STUDY = {**TINY_STUDY, "initial_points": [
    {"beta": 5.0e-3, "lr": 1.0e-3},          # trains normally (beta differs from the published 1e-3)
    {"beta": 1.0e-3, "lr": DIVERGING_LR},    # loss becomes NaN: recorded as failed, the study goes on
    {"beta": 2.0e-3, "lr": CRASHING_LR},     # the trainable raises: retried, then recorded as failed
]}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for this module's stages (they use an initialised Ray and leave it running)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture
def project(tmp_path: Path, mirror: Path, monkeypatch) -> Layout:
    root = copy_project(tmp_path / "project", data={"root": str(mirror)},
                        ray={"storage": "ray_storage", "max_failures": 1})
    write_study(root, "tiny", STUDY)
    only_studies(root, "tiny", tasks=2)  # the tiny study's two tasks over the test profile's three
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def crashing_trial(config, **kwargs):  # defined here, so Ray ships it by value to the workers
        if config.get("lr") == CRASHING_LR:
            raise RuntimeError("injected crash")
        return trainable.run_trial(config, **kwargs)

    monkeypatch.setattr(runner, "run_trial", crashing_trial)
    return Layout.at(root)


def _optuna_states(layout: Layout) -> list[str]:
    state_file = max((layout.root / "ray_storage").glob("tune-tiny-*/searcher-state-*.pkl"),
                     key=lambda path: path.stat().st_mtime)  # a restore writes a newer snapshot
    with state_file.open("rb") as handle:
        searcher = pickle.load(handle)
    return sorted(t.state.name for t in searcher["_ot_study"].trials)


def test_tiny_study_through_ray_optuna_and_mlflow(project: Layout, local_ray) -> None:
    params = load_params(project.params_file)
    uri = f"sqlite:///{project.root / 'mlflow.db'}"

    summary = tune_study(project, params, "tiny")
    assert summary["counts"] == {"completed": 1, "pruned": 0, "diverged": 1, "failed": 1}
    assert summary["best"]["config"] == {"beta": 5.0e-3, "lr": 1.0e-3} and len(summary["trials"]) == 3
    assert summary["objective"] == {"metric": "val_average_accuracy", "mode": "max"}
    assert summary["best"]["objective"] == summary["best"]["metrics"]["val_average_accuracy"]
    assert _optuna_states(project) == ["COMPLETE", "FAIL", "FAIL"]

    stages = runs_by_parent(uri, "tiny")
    parent, children = stages["tune"]
    assert parent.info.status == "FINISHED" and parent.data.params["trials"] == "3"
    assert len(children) == 3
    by_outcome = {c.data.tags["hypermask.outcome"]: c for c in children}
    assert set(by_outcome) == {"completed", "diverged", "failed"}
    done = by_outcome["completed"]
    assert done.info.status == "FINISHED" and by_outcome["diverged"].info.status == "FAILED"
    assert by_outcome["failed"].info.status == "FAILED"
    assert float(done.data.params["lr"]) == 1.0e-3
    assert metric_steps(uri, done.info.run_id) == [0, 1]  # one value per task, step = task index
    assert metric_steps(uri, done.info.run_id, "accuracy_task_1") == [1]
    assert metric_steps(uri, done.info.run_id, "val_average_accuracy") == [0, 1]
    assert 50.0 < done.data.metrics["average_accuracy"] <= 100.0

    # The same stage again restores the finished study: no trial runs twice (failed ones included),
    # no run is duplicated.
    again = tune_study(project, params, "tiny")
    assert again["resumed"] and again["best"]["trial_id"] == summary["best"]["trial_id"]
    _, children_again = runs_by_parent(uri, "tiny")["tune"]
    ended = {c.info.run_id: (c.info.end_time, c.info.status) for c in children}
    assert {c.info.run_id: (c.info.end_time, c.info.status) for c in children_again} == ended
    assert metric_steps(uri, done.info.run_id) == [0, 1]
    assert _optuna_states(project) == ["COMPLETE", "FAIL", "FAIL"]

    # The final stage trains both arms on the same seeds: tuned (the best beta) and published (the
    # library's beta), everything else equal; every run is tagged with its arm and the profile.
    metrics = final_study(project, params, "tiny")
    assert metrics["arms"] == ["tuned", "published"] and metrics["seed_list"] == [1, 2, 3]
    for arm in ("tuned", "published"):
        assert metrics[arm]["seeds"] == 3 and metrics[arm]["average_accuracy"]["std"] >= 0.0
        assert 50.0 < metrics[arm]["average_accuracy"]["mean"] <= 100.0
    diff = metrics["difference"]["average_accuracy"]
    assert diff["pairs"] == 3 and diff["higher"] + diff["lower"] + diff["ties"] == 3
    assert diff["mean"] == pytest.approx(metrics["tuned"]["average_accuracy"]["mean"]
                                         - metrics["published"]["average_accuracy"]["mean"])
    assert isinstance(diff["exceeds_spread"], bool) and metrics["best"] == {"beta": 5.0e-3, "lr": 1.0e-3}
    final_parent, final_children = runs_by_parent(uri, "tiny")["final"]
    assert final_parent.data.metrics["tuned_average_accuracy_mean"] == \
        pytest.approx(metrics["tuned"]["average_accuracy"]["mean"])
    assert final_parent.data.metrics["difference_average_accuracy_mean"] == pytest.approx(diff["mean"])
    assert final_parent.data.tags["hypermask.profile"] == "test"
    assert sorted((c.data.tags["hypermask.arm"], c.data.params["seed"]) for c in final_children) == \
        [(arm, seed) for arm in ("published", "tuned") for seed in ("1", "2", "3")]
    assert {c.data.tags["hypermask.profile"] for c in final_children} == {"test"}
    for child in final_children:  # the tuned values only in the tuned arm
        tuned_arm = child.data.tags["hypermask.arm"] == "tuned"
        assert (child.data.params.get("beta") == "0.005") == tuned_arm
    runs = json.loads((project.final_dir("tiny") / "runs.json").read_text())
    assert runs["arms"]["published"]["settings"] == {} and runs["arms"]["tuned"]["seeds_finished"] == [1, 2, 3]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    logged = {m.source_run_id for m in client.search_logged_models([final_parent.info.experiment_id])}
    assert logged == {c.info.run_id for c in final_children}  # every final run, no search trial
    tuned_runs = {c.info.run_id for c in final_children if c.data.tags["hypermask.arm"] == "tuned"}
    assert client.get_model_version_by_alias("hypermask-tiny", "best").run_id in tuned_runs

    report = write_report(project, params).read_text()
    assert "| tiny | hypermask | split_mnist | 3 |" in report
    assert report.count("| not recorded |") == 1  # the tiny study has no paper figure
    for name in ("tiny_accuracy_matrix", "tiny_accuracy_over_time", "tiny_search", "tuned_vs_published"):
        assert (project.reports_dir / "plots" / f"{name}.png").stat().st_size > 1000
