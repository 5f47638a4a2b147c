"""The DVC graph and the node image: structure and lint, no compute."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from import_closure import import_closure
from pipeline.spec.params import load_params
from pipeline.spec.studies import load_study
from pipeline.stages.prepare import plan
from pipeline.workspace.graph import STAGES, code_files
from pipeline.workspace.keys import code_digest
from pipeline.workspace.layout import Layout
from pipeline_fixtures import REPO, copy_project


def _stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_dvc_graph_declares_stages_per_study_metrics_and_plots() -> None:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stages = dvc["stages"]
    assert list(stages) == ["prepare", "tune", "final", "sweep", "report"]
    assert stages["sweep"]["foreach"] == "${sweeps}"  # sweep study -> the search giving its base
    assert "results/tune/${item}/summary.json" in stages["sweep"]["do"]["deps"]
    assert stages["sweep"]["do"]["metrics"] == [{"metrics/${key}.json": {"cache": False}}]
    for name in ("tune", "final"):
        assert stages[name]["foreach"] == "${studies}"  # one stage per study listed in params.yaml
        deps = stages[name]["do"]["deps"]
        assert "results/plan/${item}.json" in deps  # the study's own settings, not the whole profile
        assert not any(str(p).startswith("profiles") for p in stages[name]["do"]["params"])
    assert "results/tune/${item}" in stages["final"]["do"]["deps"]
    assert stages["final"]["do"]["metrics"] == [{"metrics/${item}.json": {"cache": False}}]
    assert {"results/plan": {"cache": False}} in stages["prepare"]["outs"]
    assert {"${data.root}": {"cache": False, "persist": True}} in stages["prepare"]["outs"]
    for read in ("results/plan", "results/tune", "results/final", "metrics", "studies"):
        assert read in stages["report"]["deps"]


def test_every_plot_is_declared_once() -> None:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    declared = list(dvc.get("plots", []))
    for stage in dvc["stages"].values():
        body = stage.get("do", stage)
        declared += [next(iter(p)) if isinstance(p, dict) else p for p in body.get("plots", [])]
    assert declared == ["reports/plots"]


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_depends_on_its_code_in_the_stage_table_and_that_covers_what_it_imports(stage: str) -> None:
    body = _stages()[stage]
    deps = body.get("do", body)["deps"]
    code = STAGES[stage].code
    assert [d for d in deps if str(d).startswith(("pipeline", "hypermask"))] == list(code)  # dvc.yaml = the table
    closure, uses_library = import_closure(REPO, ["pipeline.__main__", STAGES[stage].module])
    assert uses_library and "hypermask" in code
    assert set(closure) <= set(code_files(REPO, stage)), set(closure) - set(code_files(REPO, stage))


def test_figures_and_report_text_are_the_report_stage_code_only(tmp_path: Path) -> None:
    """Editing pipeline/analysis changes the key of no stage but the report (a plot's colour re-runs no search)."""
    root = copy_project(tmp_path / "project")
    before = {stage: code_digest(root, stage) for stage in STAGES}
    plots = root / "pipeline" / "analysis" / "plots.py"
    plots.write_text(plots.read_text() + "\n# another colour\n")
    after = {stage: code_digest(root, stage) for stage in STAGES}
    assert [s for s in STAGES if after[s] != before[s]] == ["report"]
    assert all("pipeline/analysis/" not in f for s in STAGES if s != "report" for f in code_files(root, s))


def test_a_study_override_changes_that_study_plan_only(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    layout = Layout.at(root)
    before = {n: plan(load_study(layout, n, load_params(layout.params_file).profile),
                      load_params(layout.params_file)) for n in ("split_mnist", "permuted_mnist")}
    data = yaml.safe_load(layout.params_file.read_text())
    data["profiles"]["default"]["study_override"]["permuted_mnist"]["budget"]["validation_size"] = 400
    layout.params_file.write_text(yaml.safe_dump(data, sort_keys=False))
    params = load_params(layout.params_file)
    after = {n: plan(load_study(layout, n, params.profile), params) for n in before}
    assert after["split_mnist"] == before["split_mnist"]
    assert after["permuted_mnist"] != before["permuted_mnist"]


def test_dockerfile_passes_hadolint_and_keeps_data_out_of_the_context() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (REPO / "Dockerfile").read_text()
    assert "ARG TORCH_VARIANT=cpu" in text and "ray[default,tune]==2.60.0" in text
    ignore = [line for line in (REPO / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert ignore[0] == "*"  # an allow-list: data, stores, results and environments never enter the context
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "hypermask", "pipeline", "studies", "params.yaml", "dvc.yaml",
                       ".dvcignore"}
    # the image's project folder is a DVC project that ignores byte code as the repository does (without the
    # ignore list, sources imported once look modified to `dvc status` and every stage would run again)
    assert "dvc init --no-scm" in text and re.search(r"COPY [^\n]*\.dvcignore", text)
    assert "__pycache__/" in (REPO / ".dvcignore").read_text().split()
