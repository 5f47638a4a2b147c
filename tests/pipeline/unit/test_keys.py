"""A stage's key covers everything that defines its results: a re-run after a change of library code,
settings, data or profile starts a fresh search instead of restoring the old one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.spec.params import load_params
from pipeline.spec.studies import load_study
from pipeline.workspace.keys import stage_key, study_identity
from pipeline.workspace.layout import Layout
from pipeline_fixtures import copy_project

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
