"""The layer rules, read from the sources: the library imports no pipeline tool, settings and analysis no Ray;
and the code passes the linter configured in pyproject.toml."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from import_closure import import_closure
from pipeline_fixtures import REPO


def _external_imports(files: list[Path]) -> set[str]:
    """Top-level names of every module imported anywhere in ``files`` (lazy imports included)."""
    found: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def _modules(folder: str) -> list[str]:
    return [".".join(p.relative_to(REPO).with_suffix("").parts) for p in sorted((REPO / folder).rglob("*.py"))]


def test_the_library_imports_no_pipeline_and_no_pipeline_tool() -> None:
    imported = _external_imports(sorted((REPO / "hypermask").rglob("*.py")))
    assert not imported & {"pipeline", "ray", "mlflow", "optuna", "dvc"}, imported


@pytest.mark.parametrize("folder, forbidden", [
    ("pipeline/spec", {"ray", "mlflow", "optuna", "torch"}),
    ("pipeline/analysis", {"ray"}),
    ("pipeline/workspace", {"ray", "mlflow", "optuna"}),
])
def test_settings_analysis_and_workspace_do_not_reach_the_tools_they_must_not(folder: str, forbidden: set[str]) -> None:
    """Every module of ``folder`` with everything of the project it imports (the library's own imports are
    checked above)."""
    closure, _ = import_closure(REPO, _modules(folder))
    imported = _external_imports([REPO / f for f in closure])
    assert not imported & forbidden, (folder, imported & forbidden)


def test_a_trial_worker_loads_neither_mlflow_nor_optuna() -> None:
    """Every trial starts a Ray worker that imports the trainable: tracking and search stay in the driver."""
    closure, library = import_closure(REPO, ["pipeline.tuning.trainable"])
    imported = _external_imports([REPO / f for f in closure])
    assert library and not imported & {"mlflow", "optuna"}, imported & {"mlflow", "optuna"}


def test_the_code_passes_the_linter() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    done = subprocess.run([str(ruff), "check", "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_library_passes_the_type_checker() -> None:
    mypy = Path(sys.executable).parent / "mypy"
    done = subprocess.run([str(mypy)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
