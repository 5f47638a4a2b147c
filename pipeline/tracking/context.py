"""What a run was made from, as MLflow tags and inputs: the git commit and whether the tree was dirty, the DVC
experiment, the library versions, and the datasets with their checksums."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag

import hypermask
from hypermask.data import dataset_checksums, dataset_for
from pipeline.workspace.keys import digest

TAG_COMMIT, TAG_DIRTY = "mlflow.source.git.commit", "hypermask.git.dirty"
TAG_DVC_EXP = "hypermask.dvc.experiment"
DVC_EXP_ENV = "DVC_EXP_NAME"  # set by `dvc exp run`
VERSION_TAG = "hypermask.version."
LIBRARIES = ("torch", "ray", "optuna", "mlflow")


def _git(root: Path, *args: str) -> str | None:
    """The stripped output of ``git args`` in ``root``; None when git fails (no repository, no commit)."""
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def run_tags(root: Path) -> dict[str, str]:
    """The commit of ``root`` and whether tracked files differ from it, the DVC experiment's name when
    ``dvc exp run`` runs the stage, and the versions of Python, the library and the tools."""
    tags: dict[str, str] = {}
    commit = _git(root, "rev-parse", "--verify", "HEAD")
    if commit:
        changes = _git(root, "status", "--porcelain", "--untracked-files=no")
        tags.update({TAG_COMMIT: commit, TAG_DIRTY: "unknown" if changes is None else str(bool(changes)).lower()})
    if os.environ.get(DVC_EXP_ENV):
        tags[TAG_DVC_EXP] = os.environ[DVC_EXP_ENV]
    tags[f"{VERSION_TAG}python"] = platform.python_version()
    tags[f"{VERSION_TAG}hypermask"] = hypermask.__version__
    tags.update({f"{VERSION_TAG}{name}": _version(name) for name in LIBRARIES})
    return tags


def dataset_inputs(benchmark: str) -> list[DatasetInput]:
    """The raw dataset of ``benchmark`` as an MLflow dataset input: its files' checksums are its profile,
    and their hash its digest (the same data gives the same digest)."""
    name = dataset_for(benchmark)
    checksums = dataset_checksums(name)
    dataset = Dataset(name=name, digest=digest(checksums), source_type="hypermask",
                      source=json.dumps({"dataset": name, "benchmark": benchmark}),
                      profile=json.dumps({"files": checksums}))
    return [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])]
