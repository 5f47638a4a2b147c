"""The ``hypermask`` command-line contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _hypermask(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hypermask.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.mark.parametrize("args, fragment", [
    (["--benchmark", "cifar10"], "unknown benchmark 'cifar10'"),
    (["--benchmark", "split_mnist", "--method", "ewc"], "unknown method 'ewc'"),
    (["--benchmark", "split_mnist", "--set", "gamma=1"], "unknown setting 'gamma'"),
    (["--benchmark", "split_mnist", "--set", "p=100"], "setting 'p' must be a percentage in [0, 100)"),
    (["--benchmark", "split_mnist", "--set", "p=-1"], "setting 'p'"),
    (["--benchmark", "split_mnist", "--set", "beta=-0.1"], "setting 'beta' must be >= 0"),
    (["--benchmark", "split_mnist", "--set", "lambda=-1"], "setting 'lambda' must be >= 0"),
    (["--benchmark", "split_mnist", "--set", "lr=fast"], "setting 'lr' must be a number"),
    (["--benchmark", "split_mnist", "--set", "iterations=1.5"], "setting 'iterations' must be an integer"),
    (["--benchmark", "split_mnist", "--seed", "abc"], "setting 'seed' must be an integer"),
    (["--benchmark", "split_mnist", "--set", "p"], "--set expects KEY=VALUE"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, fragment) -> None:
    out = tmp_path / "out"
    done = _hypermask("train", *args, "--out", str(out))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert not out.exists()


def test_train_writes_metrics_and_models(tmp_path, mirror) -> None:
    out = tmp_path / "run"
    done = _hypermask("train", "--benchmark", "split_mnist", "--seed", "2", "--set", "tasks=2",
                      "--set", "iterations=20", "--set", "train_subset=500", "--set", "p=40",
                      "--set", "progress=false", "--out", str(out))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("average_accuracy", "backward_transfer", "forgetting", "accuracy_matrix", "config"):
        assert key in metrics
    assert metrics["config"]["p"] == 40.0 and metrics["config"]["seed"] == 2
    assert len(metrics["accuracy_matrix"]) == 2
    assert metrics["average_accuracy"] == pytest.approx(sum(metrics["accuracy_matrix"][-1]) / 2)
    for name in ("hypernetwork.pt", "embeddings.pt", "target.pt"):
        assert (out / name).is_file()
