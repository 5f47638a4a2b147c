"""The DVC graph and the node image: structure and lint, no compute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from pipeline_fixtures import REPO


def test_dvc_graph_declares_stages_per_study_metrics_and_plots() -> None:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stages = dvc["stages"]
    assert list(stages) == ["prepare", "tune", "final", "report"]
    for name in ("tune", "final"):
        assert stages[name]["foreach"] == "${studies}"  # one stage per study listed in params.yaml
        assert "profiles.${profile}" in stages[name]["do"]["params"]
    assert "results/tune/${item}" in stages["final"]["do"]["deps"]
    assert stages["final"]["do"]["metrics"] == [{"metrics/${item}.json": {"cache": False}}]
    assert {"reports/plots": {"cache": False}} in stages["report"]["plots"]
    assert stages["prepare"]["outs"] == [{"${data.root}": {"cache": False, "persist": True}}]
    assert dvc["plots"] == ["reports/plots"]


def test_dockerfile_passes_hadolint_and_keeps_data_out_of_the_context() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (REPO / "Dockerfile").read_text()
    assert "ARG TORCH_VARIANT=cpu" in text and "ray[default,tune]==2.60.0" in text
    ignore = [line for line in (REPO / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert ignore[0] == "*"  # an allow-list: data, stores, results and environments never enter the context
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "hypermask", "pipeline", "studies", "params.yaml", "dvc.yaml"}
