"""Sweep studies: the study kind's checks, the base configuration, a tiny sweep through Ray and MLflow, and its
report section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hypermask.registry import METHODS
from pipeline.errors import PipelineError
from pipeline.spec.params import load_params
from pipeline.spec.studies import load_checked_study, load_study, parse_study
from pipeline.stages.report import write_report
from pipeline.stages.sweep import base_configuration, point_arms, sweep_study
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import write_json
from pipeline_fixtures import TINY_STUDY, copy_project, only_studies, runs_by_parent, write_study

SWEEP = {"kind": "sweep", "description": "tiny sweep", "benchmark": "split_mnist", "method": "hypermask",
         "grid": {"p": [0, 60]},
         "budget": {"concurrency": 2, "tasks": 2, "iterations": 20, "train_subset": 500, "validation_size": 200},
         "final": {"seeds": [1, 2, 3]}}
BEST = {"beta": 5.0e-3, "lr": 2.0e-3, "p": 30}


@pytest.mark.parametrize("change, message", [
    ({"grid": {"p": [0, 100]}}, "'grid.p=100': setting 'p' must be a percentage in [0, 100)"),
    ({"grid": {"p": [0, 10], "beta": [1e-3], "lr": [1e-3]}}, "'grid' must sweep 1 to 2 settings"),
    ({"grid": {"p": [10, 10]}}, "'grid.p' must be a non-empty list of distinct values"),
    ({"grid": {"p": []}}, "'grid.p' must be a non-empty list of distinct values"),
    ({"grid": {"seed": [1, 2]}}, "'grid.seed' is not a known key"),
    ({"budget": {"concurrency": 2, "trials": 4}}, "'budget.trials' is not a known key"),
    ({"fixed": {"p": 20}}, "'grid.p' is also set in 'fixed' or 'budget'"),
    ({"kind": "grid"}, "'kind' must be one of search, sweep"),
    ({"search_space": {"beta": {"choice": [1e-3]}}}, "'search_space' is not a known key"),
    ({"grid": {"method": ["hypermask", "ewc"]}}, f"'grid.method' must list methods among {', '.join(sorted(METHODS))}, got 'ewc'"),
    ({"grid": {"method": ["hypermask", "hnet"], "chunk_size": [0, 10**7]}},
     "'grid.method=hypermask,chunk_size=10000000'"),
])
def test_bad_sweep_studies_give_one_line(change: dict, message: str) -> None:
    with pytest.raises(PipelineError) as err:
        parse_study("s", {**SWEEP, **change}, "studies/s.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_sweep_names_its_points_in_grid_order_and_counts_its_runs() -> None:
    study = parse_study("s", {**SWEEP, "grid": {"p": [0, 60], "embedding_size": [8, 16]}}, "studies/s.yaml")
    assert list(study.grid_points()) == ["p=0,embedding_size=8", "p=0,embedding_size=16",
                                         "p=60,embedding_size=8", "p=60,embedding_size=16"]
    assert study.trials == 4 * 3 and study.kind == "sweep" and not study.space


def test_a_sweep_over_methods_gives_each_point_its_method_and_the_base_only_to_the_base_method() -> None:
    study = parse_study("s", {**SWEEP, "grid": {"chunk_size": [0, 42000], "method": ["hypermask", "hnet"]}},
                        "studies/s.yaml")
    assert study.methods == ["hypermask", "hnet"]
    points = study.grid_points()
    assert study.config(points["chunk_size=42000,method=hnet"], 1).method == "hnet"
    assert study.config(points["chunk_size=0,method=hypermask"], 1).method == "hypermask"
    arms = point_arms(study, {"method": "hypermask", "settings": {"beta": 5.0e-3, "lr": 2.0e-3}})
    assert arms["chunk_size=0,method=hypermask"] == {"beta": 5.0e-3, "lr": 2.0e-3, "chunk_size": 0,
                                                     "method": "hypermask"}
    assert arms["chunk_size=0,method=hnet"] == {"chunk_size": 0, "method": "hnet"}  # HNET's published values
    hnet = study.config(arms["chunk_size=42000,method=hnet"], 1)
    assert (hnet.beta, hnet.embedding_size, hnet.chunk_embedding_size) == (1e-2, 96, 96)


def test_a_profile_may_narrow_a_sweeps_grid(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    params = load_params(root / "params.yaml", "ablations")
    study = load_checked_study(Layout.at(root), "ablation_chunking", params)
    assert study.grid == {"chunk_size": [0, 42000], "method": ["hypermask", "hnet"]}
    assert load_study(Layout.at(root), "ablation_chunking").grid["chunk_size"] == [0, 4000, 16000, 42000]


def test_a_stage_of_a_study_the_profile_does_not_run_is_skipped_before_ray_or_torch_are_imported(
        tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    code = ("import sys; from pipeline.__main__ import main; "
            f"status = main(['--root', {str(root)!r}, 'sweep', 'ablation_sparsity']); "
            "print(status, sorted(m for m in ('ray', 'torch', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "[]"]
    assert json.loads(Layout.at(root).metrics_file("ablation_sparsity").read_text())["status"] == "skipped"


@pytest.fixture
def project(tmp_path: Path, mirror: Path, monkeypatch) -> Layout:
    root = copy_project(tmp_path / "project", data={"root": str(mirror)}, ray={"storage": "ray_storage"})
    write_study(root, "tiny", TINY_STUDY)
    write_study(root, "tiny_sweep", SWEEP)
    only_studies(root, "tiny")
    data = yaml.safe_load((root / "params.yaml").read_text())
    data["sweeps"] = {"tiny_sweep": "tiny"}
    data["profiles"]["test"]["run"] = ["tiny", "tiny_sweep"]
    data["profiles"]["test"]["override"]["budget"] = {"concurrency": 2}  # sweeps take no 'trials'
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Layout.at(root)


def _search_summary(layout: Layout, profile: str) -> None:
    write_json(layout.tune_summary("tiny"), {"study": "tiny", "status": "done", "profile": profile,
                                              "best": {"config": BEST, "objective": 90.0}})


def test_the_base_is_the_search_best_of_the_same_profile_else_the_published_configuration(project: Layout) -> None:
    params = load_params(project.params_file)
    study = load_checked_study(project, "tiny_sweep", params)
    _search_summary(project, "test")
    base = base_configuration(project, params, study)
    assert base["source"] == "search" and base["settings"] == {"beta": 5.0e-3, "lr": 2.0e-3}  # p is swept
    _search_summary(project, "default")
    assert base_configuration(project, params, study) | {"text": ""} == {
        "study": "tiny", "method": "hypermask", "source": "published", "settings": {}, "text": ""}


def test_a_sweep_listed_as_a_search_or_on_another_benchmark_is_refused(project: Layout) -> None:
    data = yaml.safe_load(project.params_file.read_text())
    write_study(project.root, "tiny_sweep", {**SWEEP, "benchmark": "permuted_mnist"})
    with pytest.raises(PipelineError, match="base study 'tiny' trains hypermask on split_mnist"):
        load_checked_study(project, "tiny_sweep", load_params(project.params_file))
    data["studies"], data["sweeps"] = ["tiny", "tiny_sweep"], {}
    project.params_file.write_text(yaml.safe_dump(data, sort_keys=False))
    write_study(project.root, "tiny_sweep", SWEEP)
    with pytest.raises(PipelineError, match="is a sweep study but params.yaml lists it under 'studies'"):
        load_checked_study(project, "tiny_sweep", load_params(project.params_file))


def test_tiny_sweep_through_ray_and_mlflow_then_its_report_section(project: Layout, local_ray) -> None:
    _search_summary(project, "test")
    metrics = sweep_study(project, load_params(project.params_file), "tiny_sweep")
    assert [p["point"] for p in metrics["points"]] == ["p=0", "p=60"]
    assert all(p["seeds"] == 3 for p in metrics["points"])
    dense, sparse = metrics["points"]
    assert dense["mask_density"]["mean"] > 0.99 and abs(sparse["mask_density"]["mean"] - 0.4) < 0.01
    assert 0.0 < sparse["mask_overlap"]["mean"] < 1.0
    assert metrics["best_point"] in ("p=0", "p=60") and metrics["base"]["settings"] == {"beta": 5.0e-3, "lr": 2.0e-3}
    assert json.loads(project.metrics_file("tiny_sweep").read_text())["points"] == json.loads(json.dumps(
        metrics["points"]))
    runs = json.loads((project.sweep_dir("tiny_sweep") / "runs.json").read_text())
    assert {r["config"]["arm"] for r in runs["runs"]} == {"p=0", "p=60"} and len(runs["runs"]) == 6

    parent, children = runs_by_parent(f"sqlite:///{project.root / 'mlflow.db'}", "tiny_sweep")["sweep"]
    assert parent.data.tags["hypermask.stage"] == "sweep" and parent.data.params["base.beta"] == "0.005"
    assert len(children) == 6 and {c.data.params["beta"] for c in children} == {"0.005"}
    assert {c.data.tags["hypermask.arm"] for c in children} == {"p=0", "p=60"}

    params = load_params(project.params_file)
    for stage_output in (project.metrics_file("tiny"),):
        write_json(stage_output, {"status": "skipped", "reason": "not part of this test"})
    report = write_report(project, params).read_text()
    assert "## Sweep tiny_sweep" in report and "the best point on validation is" in report
    assert "| p=60 |" in report and "(plots/tiny_sweep_sweep.png)" in report
    assert (project.reports_dir / "plots" / "tiny_sweep_sweep.png").stat().st_size > 1000


FSCIL_SWEEP = {"kind": "sweep", "description": "tiny few-shot sweep", "benchmark": "fscil_mnist",
               "grid": {"method": ["hypermask", "finetune"]},
               "budget": {"concurrency": 2, "tasks": 3, "iterations": 15, "train_subset": 500,
                          "validation_size": 100},
               "objective": {"metric": "val_class_incremental_accuracy"}, "final": {"seeds": [1, 2, 3]}}


def test_a_few_shot_sweep_compares_methods_session_by_session(project: Layout, local_ray) -> None:
    search = {**TINY_STUDY, "benchmark": "fscil_mnist", "objective": {"metric": "val_class_incremental_accuracy"}}
    write_study(project.root, "tiny", search)
    write_study(project.root, "tiny_fscil", FSCIL_SWEEP)
    data = yaml.safe_load(project.params_file.read_text())
    data["sweeps"] = {"tiny_fscil": "tiny"}
    data["profiles"]["test"]["run"] = ["tiny", "tiny_fscil"]
    project.params_file.write_text(yaml.safe_dump(data, sort_keys=False))
    params = load_params(project.params_file)
    write_json(project.tune_summary("tiny"), {"status": "skipped", "reason": "not part of this test"})
    metrics = sweep_study(project, params, "tiny_fscil")
    assert metrics["methods"] == ["hypermask", "finetune"] and metrics["base"]["source"] == "published"
    hypermask, finetune = metrics["points"]
    for point in (hypermask, finetune):
        curve = point["sessions"]["session_accuracy"]
        assert len(curve["mean"]) == 3 and all(0.0 <= v <= 100.0 for v in curve["mean"])
        assert point["mean_session_accuracy"]["mean"] == pytest.approx(sum(curve["mean"]) / 3, abs=1e-6)
        assert point["session_accuracy_drop"]["mean"] == pytest.approx(curve["mean"][0] - curve["mean"][-1],
                                                                       abs=1e-6)
        assert {"base_class_accuracy", "novel_class_accuracy", "val_class_incremental_accuracy"} <= set(point)
    assert "hypernetwork_parameters" in hypermask and "hypernetwork_parameters" not in finetune
    assert metrics["best_point"] in ("method=hypermask", "method=finetune")

    write_json(project.metrics_file("tiny"), {"status": "skipped", "reason": "not part of this test"})
    report = write_report(project, params).read_text()
    assert "## Sweep tiny_fscil" in report and "Over its sessions" in report
    assert "| method=finetune |" in report and "(plots/tiny_fscil_sessions.png)" in report
    assert "## Few-shot class-incremental: tiny_fscil" in report and "| finetune | novel classes | – |" in report
