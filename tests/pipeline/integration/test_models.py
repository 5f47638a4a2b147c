"""Models a user can load from MLflow: every final run logs a pyfunc model, the tuned arm's best final run is
registered as ``hypermask-<study>@best``, and a fresh process elsewhere predicts and evaluates with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.spec.params import load_params
from pipeline.stages.final import best_final_run, final_study
from pipeline.stages.tune import tune_study
from pipeline.workspace.layout import Layout
from pipeline.workspace.results import COMPLETED, FAILED, TrialRecord
from pipeline_fixtures import REPO, TINY_STUDY, copy_project, only_studies, runs_by_parent, tool_env, write_study

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


@pytest.fixture(scope="module")
def local_ray():
    from pipeline.cluster.session import local_ray as started

    with started(num_cpus=2):  # its temporary folder is removed with it
        yield


@pytest.fixture
def project(tmp_path: Path, mirror: Path, monkeypatch) -> Layout:
    root = copy_project(tmp_path / "project", data={"root": str(mirror)}, ray={"storage": "ray_storage"})
    write_study(root, "tiny", {**TINY_STUDY, "search_space": {"beta": {"loguniform": [1.0e-4, 1.0e-1]}}})
    only_studies(root, "tiny", tasks=2, trials=2)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Layout.at(root)


def _run(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env=tool_env(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(REPO)))


def test_final_registers_the_tuned_best_and_a_fresh_process_reproduces_it(project: Layout, local_ray,
                                                                          tmp_path: Path, capsys,
                                                                          monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    params = load_params(project.params_file)
    uri = f"sqlite:///{project.root / 'mlflow.db'}"
    tune_study(project, params, "tiny")
    final_study(project, params, "tiny")
    client = MlflowClient(uri)

    # Every final run logged a model, no search trial did.
    stages = runs_by_parent(uri, "tiny")
    finals, trials = stages["final"][1], stages["tune"][1]
    experiment = client.get_experiment_by_name("tiny").experiment_id
    sources = sorted(m.source_run_id for m in client.search_logged_models([experiment]))
    assert sources == sorted(r.info.run_id for r in finals) and len(trials) == 2

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

    # A fresh process in another folder evaluates the registered model on the same test data.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _run(["-m", "pipeline", "evaluate", "--model", "models:/hypermask-tiny@best", "--out", "eval"],
                elsewhere, uri)
    assert done.returncode == 0, done.stderr
    logged = json.loads(Path(client.download_artifacts(best.info.run_id, "accuracy_matrix.json",
                                                       str(tmp_path))).read_text())["accuracy_matrix"]
    evaluated = json.loads((elsewhere / "eval" / "metrics.json").read_text())
    assert evaluated["accuracy_matrix"][-1] == logged[-1] and evaluated["reproduced"] is True
    assert evaluated["config"]["seed"] == int(best.data.params["seed"])

    # ... and predicts through the pyfunc interface: the same accuracies, the same task inference.
    done = _run(["-c", PREDICT, f"runs:/{best.info.run_id}/model", "2"], elsewhere, uri)
    assert done.returncode == 0, done.stderr
    predicted = json.loads(done.stdout.strip().splitlines()[-1])
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
