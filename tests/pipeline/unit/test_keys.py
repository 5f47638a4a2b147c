"""A stage's key covers everything that defines its results: a re-run after a change of library code,
settings, data or profile starts a fresh search instead of restoring the old one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.spec.params import load_params
from pipeline.spec.studies import load_study
from pipeline.workspace.keys import stage_key, study_identity
from pipeline.workspace.layout import Layout
from pipeline_fixtures import copy_project, only_studies, tool_env, write_study

RUNTIME = {"threads": 1, "device": "cpu", "data_root": "/data", "progress": False}


def _key(root: Path, name: str = "split_mnist", profile: str | None = None, runtime: dict = RUNTIME) -> str:
    layout = Layout.at(root)
    params = load_params(layout.params_file, profile)
    study = load_study(layout, name, params.profile, params.trial_seed)
    return stage_key(study_identity(layout.root, "tune", study, params), runtime)


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project")


def test_the_same_inputs_give_the_same_key(root: Path) -> None:
    assert _key(root) == _key(root)
    # where the data live and whether progress is shown change no number
    assert _key(root, runtime={**RUNTIME, "data_root": "/elsewhere", "progress": True}) == _key(root)


def test_a_changed_library_default_changes_the_key(root: Path) -> None:
    before = _key(root)
    _replace(root / "hypermask" / "config.py", "eval_every: int = 100", "eval_every: int = 50")
    assert _key(root) != before


def test_an_edited_mask_module_changes_the_key(root: Path) -> None:
    before = _key(root)
    with (root / "hypermask" / "masks.py").open("a") as handle:
        handle.write("\n# edited\n")
    assert _key(root) != before


def test_an_edited_pipeline_module_of_the_stage_changes_the_key(root: Path) -> None:
    before = _key(root)
    with (root / "pipeline" / "tuning" / "trainable.py").open("a") as handle:
        handle.write("\n# edited\n")
    assert _key(root) != before


def test_result_affecting_settings_profile_and_runtime_change_the_key(root: Path) -> None:
    before = _key(root)
    assert _key(root, profile="test") != before
    assert _key(root, runtime={**RUNTIME, "threads": 2}) != before
    text = (root / "studies" / "split_mnist.yaml").read_text()
    (root / "studies" / "split_mnist.yaml").write_text(text.replace("fixed: {}", "fixed: {eval_batch_size: 64}"))
    assert _key(root) != before


def test_a_tune_stage_after_a_library_change_searches_afresh(tmp_path: Path, mirror: Path) -> None:
    root = copy_project(tmp_path / "project", data={"root": str(mirror)})
    write_study(root, "tiny", {"benchmark": "split_mnist", "search_space": {"beta": {"choice": [1e-3, 1e-2]}},
                               "budget": {"trials": 1, "concurrency": 1, "tasks": 1, "iterations": 5,
                                          "train_subset": 200, "validation_size": 100},
                               "final": {"seeds": [1, 2, 3]}})
    only_studies(root, "tiny")
    env = tool_env(HYPERMASK_DATA_MIRROR=str(mirror))

    def tune() -> tuple[str, dict]:
        done = subprocess.run([sys.executable, "-m", "pipeline", "tune", "tiny"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout + done.stderr, json.loads((root / "results/tune/tiny/summary.json").read_text())

    _, first = tune()
    output, again = tune()
    assert "resuming" in output and again["key"] == first["key"]  # unchanged inputs: restored
    _replace(root / "hypermask" / "config.py", "eval_every: int = 100", "eval_every: int = 50")
    output, fresh = tune()
    assert "resuming" not in output and fresh["key"] != first["key"]
    kept = f"tune-tiny-{fresh['key']}"  # the old experiment and its Optuna journal removed
    assert sorted(p.name for p in (root / "ray_storage").iterdir()) == [kept, f"{kept}.optuna.log"]
