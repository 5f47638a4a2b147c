"""A tiny study end to end, in-process: Ray Tune + Optuna + ASHA + MLflow, then final runs and the report; and the
models a user can load from MLflow: every final run logs a pyfunc model, the tuned arm's best final run is
registered as ``hypermask-<study>@best``, and a fresh process elsewhere predicts and evaluates with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.tune.execution.tune_controller import TuneController

from hypermask.numerics import pin
from pipeline.__main__ import main
from pipeline.spec.params import load_params
from pipeline.stages.final import best_final_run, final_study
from pipeline.stages.report import write_report
from pipeline.stages.tune import tune_study
from pipeline.tuning import runner, trainable
from pipeline.tuning.storage import END_FILE, CheckpointCleaner
from pipeline.workspace.layout import Layout
from pipeline.workspace.results import COMPLETED, FAILED, REPLAYED, TrialRecord
from pipeline_fixtures import (
    REPO,
    TINY_STUDY,
    commit,
    copy_project,
    metric_steps,
    only_studies,
    runs_by_parent,
    tool_env,
    write_study,
)

DIVERGING_LR, CRASHING_LR = 1.0e30, 3.0e-3
STUDY = {**TINY_STUDY, "initial_points": [
    {"beta": 5.0e-3, "lr": 1.0e-3},          # trains normally (beta differs from the published 1e-3)
    {"beta": 1.0e-3, "lr": DIVERGING_LR},    # loss becomes NaN: recorded as failed, the study goes on
    {"beta": 2.0e-3, "lr": CRASHING_LR},     # the trainable raises: retried, then recorded as failed
]}

# Run in a fresh process from another folder: labels of every task's test images through the pyfunc model
# (raw [0, 1] MNIST images; the model normalises them), and the tasks it infers without being told.
PREDICT = """
import json, sys
import mlflow, numpy as np
from hypermask.data import load_arrays
model = mlflow.pyfunc.load_model(sys.argv[1])
arrays = load_arrays("mnist", "unused-root")
images, labels = arrays.test_x.float().div(255.0).numpy(), arrays.test_y.numpy()
row, hits, total = [], 0, 0
for task in range(int(sys.argv[2])):
    keep = (labels >= 2 * task) & (labels < 2 * task + 2)
    found = model.predict(images[keep], params={"task": task})
    row.append(100.0 * int((found == labels[keep] - 2 * task).sum()) / int(keep.sum()))
    inferred = model.predict(images[keep])
    hits, total = hits + int((inferred["task"].to_numpy() == task).sum()), total + int(keep.sum())
print(json.dumps({"row": row, "columns": list(inferred.columns), "task_inference": 100.0 * hits / total}))
"""


@pytest.fixture
def project(tmp_path: Path, mirror: Path, monkeypatch) -> Layout:
    root = copy_project(tmp_path / "project", data={"root": str(mirror)},  # storage by URI, as s3:// would be
                        ray={"storage": f"file://{tmp_path / 'project' / 'ray_storage'}", "max_failures": 1})
    write_study(root, "tiny", STUDY)
    only_studies(root, "tiny", tasks=2)  # the tiny study's two tasks over the test profile's three
    commit(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-exp")

    def crashing_trial(config, **kwargs):  # defined here, so Ray ships it by value to the workers
        if config.get("lr") == CRASHING_LR:
            raise RuntimeError("injected crash")
        return trainable.run_trial(config, **kwargs)

    monkeypatch.setattr(runner, "run_trial", crashing_trial)
    return Layout.at(root)


def _optuna_states(summary: dict) -> list[str]:
    """The trial states of the search's Optuna study, read from its journal as the summary names it."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(summary["optuna"]["storage"]))
    study = optuna.load_study(study_name=summary["optuna"]["study_name"], storage=storage)
    return sorted(t.state.name for t in study.trials)


def _checkpoints(storage: Path) -> list[Path]:
    """Task checkpoints and Tune checkpoints anywhere under ``storage``."""
    return [p for p in storage.rglob("*") if p.is_dir() and (p.name == "state" or p.name.startswith("checkpoint_"))]


def test_tiny_study_through_ray_optuna_and_mlflow_and_its_registered_model(project: Layout, local_ray,
                                                                          tmp_path: Path, capsys,
                                                                          monkeypatch) -> None:
    params = load_params(project.params_file)
    uri = f"sqlite:///{project.root / 'mlflow.db'}"
    storage = project.root / "ray_storage"
    earlier = ["tune-tiny-0123456789ab", "final-tiny-0123456789ab", "tune-other-0123456789ab"]
    for name in earlier:  # experiments of keys that this run supersedes (or of another study), with journals
        (storage / name / "run_trial_1" / "state").mkdir(parents=True)
        (storage / f"{name}.optuna.log").write_text("")

    summary = tune_study(project, params, "tiny")
    assert summary["counts"] == {"completed": 1, "pruned": 0, "diverged": 1, "failed": 1}
    assert summary["best"]["config"] == {"beta": 5.0e-3, "lr": 1.0e-3} and len(summary["trials"]) == 3
    assert summary["objective"] == {"metric": "val_average_accuracy", "mode": "max"}
    assert summary["best"]["objective"] == summary["best"]["metrics"]["val_average_accuracy"]
    assert _optuna_states(summary) == ["COMPLETE", "FAIL", "FAIL"]
    journal = Path(summary["optuna"]["storage"])  # beside the Tune experiment, named after the stage key
    assert journal.parent == project.root / "ray_storage" and summary["key"] in summary["optuna"]["study_name"]
    assert (project.root / "ray_storage" / summary["optuna"]["study_name"]).is_dir()
    copied = json.loads(project.optuna_trials("tiny").read_text())
    assert sorted(t["state"] for t in copied["trials"]) == ["COMPLETE", "FAIL", "FAIL"]

    stages = runs_by_parent(uri, "tiny")
    parent, children = stages["tune"]
    assert parent.info.status == "FINISHED" and parent.data.params["trials"] == "3"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project.root, capture_output=True, text=True).stdout
    for run in (parent, *children):  # what every run was made from
        assert run.data.tags["mlflow.source.git.commit"] == head.strip()
        assert run.data.tags["hypermask.git.dirty"] == "false"
        assert run.data.tags["hypermask.dvc.experiment"] == "tiny-exp"
        assert run.data.tags["hypermask.version.ray"] == ray.__version__
    assert parent.data.params["config.benchmark"] == "split_mnist"
    assert (parent.data.params["config.numerics"], parent.data.params["config.threads"]) == ("portable", "1")
    inputs = MlflowClient(uri).get_run(parent.info.run_id).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["mnist"] and "t10k-images-idx3-ubyte" in inputs[0].dataset.profile
    assert len(children) == 3
    by_outcome = {c.data.tags["hypermask.outcome"]: c for c in children}
    assert set(by_outcome) == {"completed", "diverged", "failed"}
    done = by_outcome["completed"]
    assert done.info.status == "FINISHED" and by_outcome["diverged"].info.status == "FAILED"
    assert by_outcome["failed"].info.status == "FAILED"
    assert float(done.data.params["lr"]) == 1.0e-3
    assert done.data.params["numeric_path"] == pin("portable").describe()  # the path the trial ran
    assert metric_steps(uri, done.info.run_id) == [0, 1]  # one value per task, step = task index
    assert metric_steps(uri, done.info.run_id, "accuracy_task_1") == [1]
    assert metric_steps(uri, done.info.run_id, "task_val_average_accuracy") == [0, 1]
    assert metric_steps(uri, done.info.run_id, "val_average_accuracy") == [1]  # the objective: last task only
    assert 50.0 < done.data.metrics["average_accuracy"] <= 100.0
    # Ended trials keep no checkpoint; the search's superseded experiment is gone, the others stay.
    tune_dir = storage / f"tune-tiny-{summary['key']}"
    kept = [tune_dir.name, *earlier[1:]]  # the superseded search's journal goes with its experiment
    assert sorted(p.name for p in storage.iterdir()) == sorted(kept + [f"{n}.optuna.log" for n in kept])
    assert len([p for p in tune_dir.iterdir() if p.is_dir()]) == 3  # the trials' folders
    assert _checkpoints(tune_dir) == []
    assert "val_average_accuracy" not in by_outcome["diverged"].data.metrics
    ranked = MlflowClient(uri).search_runs([parent.info.experiment_id], order_by=["metrics.val_average_accuracy DESC"],
                                           filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert ranked[0].data.tags["hypermask.trial_id"] == summary["best"]["trial_id"]

    # The same stage again restores the finished study: no trial runs twice (failed ones included),
    # no run is duplicated.
    again = tune_study(project, params, "tiny")
    assert again["resumed"] and again["best"]["trial_id"] == summary["best"]["trial_id"]
    _, children_again = runs_by_parent(uri, "tiny")["tune"]
    ended = {c.info.run_id: (c.info.end_time, c.info.status) for c in children}
    assert {c.info.run_id: (c.info.end_time, c.info.status) for c in children_again} == ended
    assert metric_steps(uri, done.info.run_id) == [0, 1]
    assert _optuna_states(again) == ["COMPLETE", "FAIL", "FAIL"]  # the restored search goes on in its journal
    assert again["optuna"] == summary["optuna"]

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
    for child in final_children:  # every end-of-run metric, beside the running per-task ones
        assert {"mask_density", "task_inference_accuracy", "class_incremental_accuracy", "average_accuracy",
                "task_average_accuracy"} <= set(child.data.metrics)
    for child in final_children:  # the tuned values only in the tuned arm
        tuned_arm = child.data.tags["hypermask.arm"] == "tuned"
        assert (child.data.params.get("beta") == "0.005") == tuned_arm
    runs = json.loads((project.final_dir("tiny") / "runs.json").read_text())
    assert runs["arms"]["published"]["settings"] == {} and runs["arms"]["tuned"]["seeds_finished"] == [1, 2, 3]
    client = MlflowClient(uri)
    logged = {m.source_run_id for m in client.search_logged_models([final_parent.info.experiment_id])}
    assert logged == {c.info.run_id for c in final_children}  # every final run, no search trial
    tuned_runs = {c.info.run_id for c in final_children if c.data.tags["hypermask.arm"] == "tuned"}
    assert client.get_model_version_by_alias("hypermask-tiny", "best").run_id in tuned_runs
    left = sorted(p.name for p in storage.iterdir())
    final_dirs = [name for name in left if name.startswith("final-tiny-")]
    assert len(final_dirs) == 1 and left == sorted([tune_dir.name, final_dirs[0], earlier[2]] +
                                                   [f"{n}.optuna.log" for n in (tune_dir.name, earlier[2])])
    assert final_dirs[0] != earlier[1] and _checkpoints(storage / final_dirs[0]) + _checkpoints(tune_dir) == []

    report = write_report(project, params).read_text()
    assert "| tiny | hypermask | split_mnist | 3 |" in report
    assert report.count("| not recorded |") == 1  # the tiny study has no paper figure
    for name in ("tiny_accuracy_matrix", "tiny_accuracy_over_time", "tiny_search", "tuned_vs_published"):
        assert (project.reports_dir / "plots" / f"{name}.png").stat().st_size > 1000

    _check_the_registered_model(project, params, uri, tmp_path, capsys, monkeypatch)


def _evaluate(args: list[str], cwd: Path, uri: str) -> subprocess.Popen:
    """A fresh Python process in ``cwd`` with ``args``, started (its output is read by :func:`_ended`)."""
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=tool_env(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(REPO)))


def _ended(process: subprocess.Popen) -> str:
    """The standard output of ``process`` once it has ended successfully."""
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return out


def _check_the_registered_model(project: Layout, params, uri: str, tmp_path: Path, capsys, monkeypatch) -> None:
    """The final stage's models, once it has run: the registered best, loaded and used by a fresh process."""
    client = MlflowClient(uri)
    finals = runs_by_parent(uri, "tiny")["final"][1]

    # The registered best: the tuned arm's final run with the best validation objective.
    tuned = [r for r in finals if r.data.tags["hypermask.arm"] == "tuned"]
    best = max(sorted(tuned, key=lambda r: int(r.data.params["seed"])),
               key=lambda r: r.data.metrics["val_average_accuracy"])
    version = client.get_model_version_by_alias("hypermask-tiny", "best")
    assert version.run_id == best.info.run_id and int(version.version) == 1
    runs = json.loads((project.final_dir("tiny") / "runs.json").read_text())
    assert runs["model"]["run_id"] == best.info.run_id and runs["model"]["version"] == 1
    assert runs["model"]["seed"] == int(best.data.params["seed"])

    import mlflow.models

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    info = mlflow.models.get_model_info("models:/hypermask-tiny@best")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert info.signature.params.to_dict()[0]["name"] == "task" and info.saved_input_example_info is not None
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 28, 28]

    # A fresh process in another folder evaluates the registered model on the same test data; another
    # predicts through the pyfunc interface (both run at once).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    evaluation = _evaluate(["-m", "pipeline", "evaluate", "--model", "models:/hypermask-tiny@best", "--out", "eval"],
                           elsewhere, uri)
    prediction = _evaluate(["-c", PREDICT, f"runs:/{best.info.run_id}/model", "2"], elsewhere, uri)
    _ended(evaluation)
    logged = json.loads(Path(client.download_artifacts(best.info.run_id, "accuracy_matrix.json",
                                                       str(tmp_path))).read_text())["accuracy_matrix"]
    evaluated = json.loads((elsewhere / "eval" / "metrics.json").read_text())
    assert evaluated["accuracy_matrix"][-1] == logged[-1] and evaluated["reproduced"] is True
    assert evaluated["config"]["seed"] == int(best.data.params["seed"])

    # The prediction: the same accuracies, the same task inference.
    predicted = json.loads(_ended(prediction).strip().splitlines()[-1])
    assert predicted["row"] == logged[-1] and predicted["columns"] == ["label", "task"]
    assert predicted["task_inference"] == best.data.metrics["task_inference_accuracy"]

    # The stage again: a new version of the same model, the alias follows it.
    final_study(project, params, "tiny")
    again = client.get_model_version_by_alias("hypermask-tiny", "best")
    assert int(again.version) == 2 and again.run_id == best.info.run_id

    # Unknown models and folders without one: one line, exit 2.
    capsys.readouterr()
    for model in ("models:/hypermask-nope@best", "runs:/0123456789abcdef/model", str(tmp_path)):
        assert main(["--root", str(project.root), "evaluate", "--model", model, "--out", str(tmp_path / "x")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pipeline: error: no model at"), lines
    assert not (tmp_path / "x").exists()


def _record(arm: str, seed: int, val: float, outcome: str = COMPLETED) -> TrialRecord:
    return TrialRecord(f"{arm}{seed}", {"arm": arm, "seed": seed}, outcome, 2,
                       {"val_average_accuracy": val, "val_forgetting": -val}, [], f"run-{arm}{seed}")


def test_the_registered_run_is_the_tuned_arms_best_on_validation() -> None:
    records = [_record("published", 1, 99.0), _record("tuned", 1, 80.0), _record("tuned", 2, 90.0),
               _record("tuned", 3, 90.0), _record("tuned", 4, 95.0, outcome=FAILED)]
    assert best_final_run(records, "val_average_accuracy", "max").trial_id == "tuned2"  # tie: lower seed
    assert best_final_run(records, "val_forgetting", "min").trial_id == "tuned2"
    assert best_final_run(records[:1], "val_average_accuracy", "max") is None  # no search: nothing registered


def _replayed_trials(tune_dir: Path) -> list[str]:
    """The trial folders whose Tune results include one reported again from its kept end."""
    return sorted(p.parent.name for p in tune_dir.glob("*/result.json")
                  if any(json.loads(line).get(REPLAYED) for line in p.read_text().splitlines() if line.strip()))


def test_a_study_killed_before_tune_saved_its_state_resumes_without_running_ended_trials(
        project: Layout, local_ray, monkeypatch) -> None:
    """Tune saves which trials have ended only every few seconds, so a stage killed just after a trial's
    end leaves a saved state in which that trial, already recorded, still runs. Simulated here: from the
    first trial's end on, nothing is saved and the stage stops there. The restored study starts that trial
    again; it reports its kept end without training, and its record stays as it was."""
    params = load_params(project.params_file)
    uri = f"sqlite:///{project.root / 'mlflow.db'}"
    ended: list[str] = []
    clean, save, finished = CheckpointCleaner.on_trial_complete, TuneController.checkpoint, TuneController.is_finished

    def note_the_end(self, iteration, trials, trial, **info):
        ended.append(trial.trial_id)
        clean(self, iteration, trials, trial, **info)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(CheckpointCleaner, "on_trial_complete", note_the_end)
    monkeypatch.setattr(TuneController, "checkpoint", lambda self, *a, **k: None if ended else save(self, *a, **k))
    monkeypatch.setattr(TuneController, "is_finished", lambda self: bool(ended) or finished(self))
    closing = runner.tracking.close_open_runs
    monkeypatch.setattr(runner.tracking, "close_open_runs", killed)  # the first thing after Tune's loop
    with pytest.raises(KeyboardInterrupt):
        tune_study(project, params, "tiny")
    for owner, name, kept in ((CheckpointCleaner, "on_trial_complete", clean), (TuneController, "checkpoint", save),
                              (TuneController, "is_finished", finished), (runner.tracking, "close_open_runs", closing)):
        monkeypatch.setattr(owner, name, kept)

    def record(trial_id: str) -> tuple:
        _, children = runs_by_parent(uri, "tiny")["tune"]
        run = next(c for c in children if c.data.tags["hypermask.trial_id"] == trial_id)
        return (run.info.status, run.info.end_time, run.data.tags["hypermask.outcome"],
                metric_steps(uri, run.info.run_id))

    assert len(ended) == 1
    before = record(ended[0])
    summary = tune_study(project, params, "tiny")
    assert summary["resumed"] and summary["counts"] == {"completed": 1, "pruned": 0, "diverged": 1, "failed": 1}
    assert summary["best"]["config"] == {"beta": 5.0e-3, "lr": 1.0e-3}
    assert _optuna_states(summary) == ["COMPLETE", "FAIL", "FAIL"]
    assert record(ended[0]) == before  # not run again: its record untouched
    tune_dir = project.root / "ray_storage" / f"tune-tiny-{summary['key']}"
    assert [name for name in _replayed_trials(tune_dir) if ended[0] in name]  # the saved state did start it again
    assert list(tune_dir.rglob(END_FILE)) == [] and _checkpoints(tune_dir) == []
