"""A saved run loads back as a model: same weights, labels of raw images, the final evaluation repeated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import small_config
from hypermask.model import ModelError, load_model
from hypermask.train import train_continual
from pipeline_fixtures import REPO, tool_env

SMALL_NETS = {"target_hidden": [50], "hnet_hidden": [20], "validation_size": 200, "threads": 1}


def _task_images(mnist, benchmark: str, task: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Test images of ``task`` as the dataset gives them, scaled to [0, 1], and the task's labels."""
    x, y = mnist.test_x.float().div(255.0), mnist.test_y
    if benchmark == "split_mnist":
        keep = (y >= 2 * task) & (y < 2 * task + 2)
        return x[keep], y[keep] - 2 * task
    return x, y


@pytest.mark.parametrize("benchmark, method, extra", [
    ("permuted_mnist", "hypermask", {"eval_batch_size": 3000}),
    ("permuted_mnist", "hnet", {"chunk_size": 2000}),
    ("split_mnist", "finetune", {}),
    ("split_mnist", "wsn", {}),
    ("permuted_mnist", "wsn", {"c": 0.3}),
])
def test_a_saved_run_predicts_and_evaluates_as_it_trained(tmp_path, mnist, benchmark, method, extra) -> None:
    cfg = small_config(benchmark, method=method, iterations=30, seed=5, **SMALL_NETS, **extra)
    result = train_continual(cfg)
    result.save(tmp_path / "run")
    model = load_model(tmp_path / "run")

    saved, loaded = result.method.state_dict(), model.method.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k].cpu()) for k in saved)
    assert model.config.seed == 5 and model.image_shape == (28, 28)
    for task, expected in enumerate(result.accuracy_matrix[-1]):  # each task with its own preprocessing
        x, y = _task_images(mnist, benchmark, task)
        labels = model.predict(x, task=task).labels
        assert 100.0 * int((labels == y).sum()) / len(y) == expected

    x, _ = _task_images(mnist, benchmark, 1)
    inferred = model.predict(x[:300])  # no task: the lowest-entropy task, each seeing the image its own way
    assert set(inferred.tasks.tolist()) <= {0, 1} and len(inferred.labels) == 300
    for task in (0, 1):
        chosen = inferred.tasks == task
        assert torch.equal(inferred.labels[chosen], model.predict(x[:300][chosen], task=task).labels)

    again = model.evaluate()
    assert again["accuracy_matrix"] == [result.accuracy_matrix[-1]] and again["reproduced"] is True
    assert again["task_inference_accuracy"] == result.metrics["task_inference_accuracy"]
    assert again["config"]["seed"] == 5


def test_predict_refuses_wrong_shapes_and_tasks(tmp_path, mnist) -> None:
    result = train_continual(small_config(iterations=5, **SMALL_NETS))
    result.save(tmp_path / "run")
    model = load_model(tmp_path / "run")
    with pytest.raises(ModelError, match=r"must have shape \(n, 28, 28\), got \(2, 32, 32, 3\)"):
        model.predict(torch.zeros(2, 32, 32, 3))
    with pytest.raises(ModelError, match="task must be between 0 and 1, got 2"):
        model.predict(torch.zeros(2, 28, 28), task=2)


@pytest.mark.parametrize("prepare, fragment", [
    (lambda d: d, "holds no trained model"),
    (lambda d: d / "absent", "does not exist"),
    (lambda d: (d / "metrics.json").write_text('{"config": {"benchmark": "cifar10"}}') and d,
     "unknown benchmark 'cifar10'"),
    (lambda d: (d / "metrics.json").write_text('{"config": {"benchmark": "split_mnist"}}') and d,
     "inputs.pt is missing"),
])
def test_a_folder_without_a_model_is_one_line_exit_2(tmp_path, capsys, prepare, fragment) -> None:
    from hypermask.cli import main

    folder = prepare(tmp_path)
    assert main(["evaluate", "--model", str(folder), "--out", str(tmp_path / "eval")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "eval").exists()


def test_hypermask_evaluate_reproduces_a_trained_folder_from_elsewhere(tmp_path, mirror) -> None:
    env = tool_env(PYTHONPATH=str(REPO))
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    train = ["train", "--benchmark", "permuted_mnist", "--seed", "3", "--out", str(out),
             *[f"--set={k}={v}" for k, v in {"tasks": 2, "iterations": 20, "train_subset": 300, "progress": "false",
                                             "target_hidden": "50", "hnet_hidden": "20", "threads": 1,
                                             "validation_size": 100, "data_root": tmp_path / "data"}.items()]]
    done = subprocess.run([sys.executable, "-m", "hypermask.cli", *train], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "hypermask.cli", "evaluate", "--model", str(out), "--out", "eval"],
                          capture_output=True, text=True, env=env, cwd=elsewhere, timeout=600)
    assert done.returncode == 0, done.stderr
    trained = json.loads((out / "metrics.json").read_text())
    evaluated = json.loads((elsewhere / "eval" / "metrics.json").read_text())
    assert evaluated["accuracy_matrix"][-1] == trained["accuracy_matrix"][-1] and evaluated["reproduced"]
    assert "equal to the end of training" in done.stdout
    assert Path(out / "inputs.pt").is_file()


def test_the_library_imports_no_pipeline_tools() -> None:
    import ast

    tools = {"mlflow", "ray", "optuna", "dvc", "pipeline"}
    for path in sorted((REPO / "hypermask").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & tools, f"{path} imports {names}"
