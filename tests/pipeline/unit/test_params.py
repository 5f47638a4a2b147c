"""params.yaml and study files: one-line errors naming the key before any compute; search pieces."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import yaml

from pipeline.__main__ import main as pipeline_main
from pipeline.errors import PipelineError
from pipeline.spec.params import ResourceRequest, load_params, parse_params
from pipeline.spec.studies import load_study, parse_study
from pipeline.stages.tune import tune_study
from pipeline.tuning.continual import ContinualOptunaSearch
from pipeline.tuning.search import build_scheduler, distribution
from pipeline.workspace.layout import Layout
from pipeline.workspace.results import COMPLETED, DIVERGED, FAILED, PRUNED, outcome
from pipeline_fixtures import REPO, TINY_STUDY, copy_project

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _with(path: str, value):
    data = copy.deepcopy(PARAMS)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def test_shipped_params_and_studies_are_valid_in_every_profile() -> None:
    layout = Layout.at(REPO)
    for profile in PARAMS["profiles"]:
        params = load_params(layout.params_file, profile)
        for name in params.studies:
            study = load_study(layout, name, params.profile)
            assert study.trials >= 1 and len(study.seeds) >= 3  # tuned and published compared per seed
    default = load_params(layout.params_file)
    assert default.profile.name == "default"
    assert {"split_mnist", "permuted_mnist"} <= set(default.profile.run)
    assert not any(s.startswith("cifar") for s in default.profile.run)
    assert {*PARAMS["studies"], *PARAMS["sweeps"]} == set(load_params(layout.params_file, "paper").profile.run)
    ablations = load_params(layout.params_file, "ablations").profile
    assert set(ablations.run) == {"split_mnist", "ablation_sparsity", "ablation_embedding", "ablation_chunking",
                                  "ablation_no_mask", "fscil_mnist"}
    for name in PARAMS["sweeps"]:  # sweeps compare at least two points, each on at least 3 seeds
        for profile in (None, ablations):
            study = load_study(layout, name, profile)
            assert study.kind == "sweep" and len(study.grid_points()) >= 2 and len(study.seeds) >= 3
    sparsity = load_study(layout, "ablation_sparsity", ablations).grid["p"]
    assert min(sparsity) == 0 and max(sparsity) == 90 and len(sparsity) >= 5  # the whole range, fewer points
    # the default profile keeps at least 8 trials and three final seeds per MNIST study
    for name in ("split_mnist", "permuted_mnist"):
        study = load_study(layout, name, default.profile)
        assert study.trials >= 8 and study.seeds == [1, 2, 3]
    assert default.profile.search and load_params(layout.params_file, "paper").profile.search


def test_reproduce_profile_trains_the_published_split_mnist_runs_without_search() -> None:
    from pipeline.analysis.compare import reductions

    layout = Layout.at(REPO)
    params = load_params(layout.params_file, "reproduce")
    assert params.profile.run == ["split_mnist", "hnet_split_mnist", "wsn_split_mnist"] and not params.profile.search
    for name, method in (("split_mnist", "hypermask"), ("hnet_split_mnist", "hnet"), ("wsn_split_mnist", "wsn")):
        study = load_study(layout, name, params.profile, params.trial_seed)
        assert study.method == method and study.seeds == [1, 2, 3, 4, 5]
        assert not reductions(study.config({}, 1))  # the published length: the paper's figure is shown
        if method == "wsn":  # WSN's published figures come from other networks: none is set beside the runs
            assert study.paper["average_accuracy"] is None and "other networks" in study.paper["note"]
        else:
            assert study.paper["average_accuracy"] is not None
    hnet = load_study(layout, "hnet_split_mnist", params.profile).config({}, 1)
    assert hnet.validation_size == 0 and hnet.hnet_init == "xavier"  # the authors' configuration, no search
    assert load_study(layout, "hnet_split_mnist").config({}, 1).validation_size >= 1  # the search ranks on it


@pytest.mark.parametrize("path, value, fragment", [
    ("profile", "huge", "'profile' must name one of the profiles (default, paper, reproduce, ablations, test), got 'huge'"),
    ("colour", "red", "'colour' is not a known key"),
    ("profiles.default.override.budget.trials", 0, "'profiles.default.override.budget.trials' must be an integer >= 1, got 0"),
    ("profiles.default.override.fixed.gamma", 1, "'profiles.default.override.fixed.gamma' is not a known key"),
    ("profiles.test.run", ["split_mnist", "nope"], "'profiles.test.run' names unknown 'nope'"),
    ("profiles.default.override.final.seeds", [1, 1], "'profiles.default.override.final.seeds' must be a non-empty list of distinct integers"),
    ("profiles.default.override.final.seeds", [1, 2], "'profiles.default.override.final.seeds' must list at least 3 seeds"),
    ("profiles.reproduce.search", "no", "'profiles.reproduce.search' must be true or false, got 'no'"),
    ("resources.gpus_per_trial", -0.5, "'resources.gpus_per_trial' must be auto or a number in [0, 1] (a trial uses at most one GPU), got -0.5"),
    ("resources.gpus_per_trial", 2, "'resources.gpus_per_trial' must be auto or a number in [0, 1] (a trial uses at most one GPU), got 2"),
    ("resources.cpus_per_trial", "many", "'resources.cpus_per_trial' must be auto or a number > 0, got 'many'"),
    ("resources.cpus_per_trial", 0, "'resources.cpus_per_trial' must be auto or a number > 0, got 0"),
    ("resources.accelerator_type", "A 100", "'resources.accelerator_type' must be empty or a Ray accelerator type name such as A100, got 'A 100'"),
    ("resources.accelerator_type", 100, "'resources.accelerator_type' must be a string, got 100"),
    ("resources.wait_for_nodes", "yes", "'resources.wait_for_nodes' must be true or false, got 'yes'"),
    ("resources.threads_per_trial", 0, "'resources.threads_per_trial' must be an integer in [1, 256], got 0"),
    ("resources.threads_per_trial", 257, "'resources.threads_per_trial' must be an integer in [1, 256], got 257"),
    ("resources.threads_per_trial", "auto", "'resources.threads_per_trial' must be an integer in [1, 256], got 'auto'"),
    ("resources.threads_per_trial", 1.5, "'resources.threads_per_trial' must be an integer in [1, 256], got 1.5"),
    ("resources.threads_per_trial", True, "'resources.threads_per_trial' must be an integer in [1, 256], got True"),
    ("resources.gpus", 1, "'resources.gpus' is not a known key"),
    ("profiles.default.override.budget.fixed_concurrency", 1, "'profiles.default.override.budget.fixed_concurrency' must be true or false, got 1"),
    ("asha.reduction_factor", 1, "'asha.reduction_factor' must be a number > 1, got 1"),
    ("ray.max_failures", -1, "'ray.max_failures' must be an integer >= 0, got -1"),
    ("tracking.uri", 5, "'tracking.uri' must be a string, got 5"),
])
def test_bad_params_give_one_line_naming_key_and_value(path: str, value, fragment: str) -> None:
    with pytest.raises(PipelineError) as err:
        parse_params(_with(path, value))
    message = str(err.value)
    assert fragment in message and message.startswith("params.yaml: ")
    assert "\n" not in message


def test_resources_are_parsed_into_the_trial_request() -> None:
    assert parse_params(PARAMS).resources == ResourceRequest()  # the shipped default: planned from the nodes
    data = _with("resources", {"cpus_per_trial": 4, "gpus_per_trial": 0.25, "accelerator_type": " A100 ",
                               "wait_for_nodes": True})
    assert parse_params(data).resources == ResourceRequest(4.0, 0.25, "A100", True)
    assert parse_params(PARAMS).resources.threads == 1  # the shipped default: one torch thread per trial
    assert parse_params(_with("resources", {"threads_per_trial": 3})).resources == ResourceRequest(threads=3)
    with pytest.raises(PipelineError, match=r"^params.yaml: 'resources.accelerator_type' asks for an accelerator "
                                            r"but resources.gpus_per_trial is 0, got 'A100'$"):
        parse_params(_with("resources", {"gpus_per_trial": 0, "accelerator_type": "A100"}))


def test_profile_override_is_validated_against_the_library(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    params = parse_params(_with("profiles.test.override.budget.tasks", 9), "test")
    with pytest.raises(PipelineError, match=r"studies/split_mnist.yaml \(with profile 'test' of params.yaml\): "
                                            r"'fixed': setting 'tasks' must be between 1 and 5"):
        load_study(Layout.at(root), "split_mnist", params.profile)


@pytest.mark.parametrize("change, fragment", [
    ({"benchmark": "cifar10"}, "'benchmark' must be one of"),
    ({"search_space": {"p": {"choice": [10, 150]}}}, "'search_space.p': setting 'p' must be a percentage in [0, 100)"),
    ({"search_space": {"embedding_size": {"loguniform": [8, 128]}}}, "'search_space.embedding_size': setting 'embedding_size' must be an integer"),
    ({"search_space": {"beta": {"loguniform": [0, 1]}}}, "'search_space.beta.loguniform' must be a number > 0, got 0"),
    ({"search_space": {"beta": {"uniform": [1, 0.5]}}}, "'search_space.beta.uniform' must have low < high"),
    ({"search_space": {"beta": {"normal": [0, 1]}}}, "'search_space.beta.normal' is not a known key"),
    ({"search_space": {"seed": {"choice": [1, 2]}}}, "'search_space.seed' is not a known key"),
    ({"fixed": {"lr": 0.1}, "search_space": {"lr": {"choice": [0.1, 0.01]}}}, "'search_space.lr' is also set"),
    ({"budget": {"concurrency": 2}}, "'budget.trials' is missing"),
    ({"objective": {"metric": "loss"}}, "'objective.metric' must be one of"),
    ({"final": {"seeds": [1, 2]}}, "'final.seeds' must list at least 3 seeds"),
    ({"initial_points": [{"beta": 5.0, "lr": 1e-3}]}, "'initial_points[0].beta' must lie in the search space"),
])
def test_bad_study_files_give_one_line_naming_key(change: dict, fragment: str) -> None:
    data = {**TINY_STUDY, **change}
    with pytest.raises(PipelineError) as err:
        parse_study("tiny", data, "studies/tiny.yaml")
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("studies/tiny.yaml: ")


def test_cli_reports_bad_input_in_one_line_with_exit_2(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    (root / "studies" / "permuted_mnist.yaml").write_text("benchmark: [permuted\n")
    done = subprocess.run([sys.executable, "-m", "pipeline", "--root", str(root), "check"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[0].startswith("pipeline: error: permuted_mnist.yaml: not valid YAML")


def test_a_stage_refuses_a_broken_study_file_before_importing_its_tools(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project", profile="test")
    study = root / "studies" / "split_mnist.yaml"
    study.write_text(study.read_text().replace("trials: 40", 'trials: "many"'))
    code = ("import sys; from pipeline.__main__ import main; "
            f"status = main(['--root', {str(root)!r}, 'tune', 'split_mnist']); "
            "print(status, sorted(m for m in ('ray', 'torch', 'mlflow', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["2", "[]"], done.stdout + done.stderr
    assert done.stderr.startswith("pipeline: error: studies/split_mnist.yaml") and "budget.trials" in done.stderr


def test_unreachable_mlflow_server_fails_before_any_trial(tmp_path: Path, monkeypatch, mirror) -> None:
    import ray

    root = copy_project(tmp_path / "project", profile="test", data={"root": str(mirror)})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    layout = Layout.at(root)
    with pytest.raises(PipelineError, match=r"MLflow tracking server http://127.0.0.1:9 is unreachable"):
        tune_study(layout, load_params(layout.params_file), "split_mnist")
    assert not ray.is_initialized() and not (root / "ray_storage").exists()


def test_study_outside_the_profile_is_skipped_without_compute(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project", profile="test")
    layout = Layout.at(root)
    summary = tune_study(layout, load_params(layout.params_file), "permuted_mnist")
    assert summary["status"] == "skipped" and "profile 'test'" in summary["reason"]
    assert (layout.tune_dir("permuted_mnist") / "summary.json").is_file()
    with pytest.raises(PipelineError, match="study 'unknown' is not listed"):
        tune_study(layout, load_params(layout.params_file), "unknown")


def test_asha_rungs_are_task_boundaries_and_optuna_never_ranks_unfinished_trials() -> None:
    study = parse_study("tiny", TINY_STUDY, "studies/tiny.yaml")
    params = parse_params(PARAMS, "test")
    assert build_scheduler(study, params).rungs == []  # rounds: no rung before the last of 2 tasks
    scheduler = build_scheduler(study, replace(params, search_mode="async"))
    assert scheduler._time_attr == "task" and scheduler._max_t == study.tasks == 2
    searcher = ContinualOptunaSearch(space={k: distribution(d) for k, d in study.space.items()},
                                     metric="average_accuracy", mode="max",
                                     sampler=optuna.samplers.TPESampler(seed=0))
    results = {
        "done": {"task": 2, "average_accuracy": 90.0, "completed": True, "diverged": False},
        "stopped": {"task": 1, "average_accuracy": 99.0, "completed": False, "diverged": False},
        "nan": {"task": 0, "average_accuracy": 0.0, "completed": False, "diverged": True},
    }
    for trial_id, result in results.items():
        searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, result)
    searcher.suggest("crashed")
    searcher.on_trial_complete("crashed", {"task": 1, "average_accuracy": 98.0}, error=True)
    states = [t.state.name for t in searcher._ot_study.trials]
    assert states == ["COMPLETE", "PRUNED", "FAIL", "FAIL"]
    assert searcher._ot_study.best_value == 90.0  # the stopped trial's 99 % after one task is not ranked
    assert [outcome(r) for r in results.values()] == [COMPLETED, PRUNED, DIVERGED]
    assert outcome(results["done"], error=True) == FAILED


@pytest.mark.parametrize("change, fragment", [
    ({"search_space": {"p": {"choice": [30, "30"]}}}, "'search_space.p.choice' must hold values of one type"),
    ({"search_space": {"masked_l1": {"choice": [True, 1]}}}, "'search_space.masked_l1.choice' must hold values of one type"),
    ({"search_space": {"beta": {"choice": [float("inf"), 1e-3]}}}, "'search_space.beta.choice' must hold finite numbers"),
    ({"search_space": {"beta": {"choice": [float("nan"), 1e-3]}}}, "'search_space.beta.choice' must hold finite numbers"),
    ({"search_space": {"p": {"choice": [30, 30.0]}}}, "'search_space.p.choice' must be a list of distinct"),
    ({"search_space": {"beta": {"uniform": [0, float("inf")]}}}, "'search_space.beta.uniform' must be a number"),
    ({"search_space": {"eval_every": {"int": [1, 2**63]}}}, "setting 'eval_every' must be <="),
    ({"final": {"seeds": [1.5]}}, "'final.seeds' must be an integer"),
    ({"final": {"seeds": [2**40]}}, "'final.seeds' must be an integer in [0, 4294967295]"),
    ({"final": {"seeds": [-1]}}, "'final.seeds' must be an integer in [0, 4294967295]"),
])
def test_mixed_non_finite_and_out_of_range_study_values_are_refused(change: dict, fragment: str) -> None:
    data = {**TINY_STUDY, **change}
    with pytest.raises(PipelineError) as err:
        parse_study("tiny", data, "studies/tiny.yaml")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_duplicate_yaml_keys_are_refused_naming_file_key_and_line(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    path = root / "studies" / "split_mnist.yaml"
    path.write_text(path.read_text() + "benchmark: split_mnist\n")
    line = len(path.read_text().splitlines())
    with pytest.raises(PipelineError, match=f"split_mnist.yaml: key 'benchmark' appears twice \\(line {line}\\)"):
        load_study(Layout.at(root), "split_mnist")


@pytest.mark.parametrize("change, fragment", [
    ({"budget": {"trials": "many", "concurrency": 2}}, "'budget.trials' must be an integer >= 1, got 'many'"),
    ({"final": {"seeds": [1.5]}}, "'final.seeds' must be an integer"),
])
def test_check_validates_every_study_under_every_profile(tmp_path: Path, capsys, change: dict,
                                                         fragment: str) -> None:
    """A study value the default profile overrides, but the ``paper`` profile does not, fails ``check``
    although the active profile is ``default``."""
    root = copy_project(tmp_path / "project")
    path = root / "studies" / "split_mnist.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **change}))
    assert pipeline_main(["--root", str(root), "check"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
    assert "split_mnist.yaml" in lines[0]


def test_a_study_trained_without_search_may_hold_out_no_validation_data() -> None:
    data = copy.deepcopy(TINY_STUDY)
    data["budget"]["validation_size"] = 0
    with pytest.raises(PipelineError, match="'budget.validation_size' must be >= 1: trials are selected"):
        parse_study("tiny", data, "studies/tiny.yaml")
    assert parse_study("tiny", data, "studies/tiny.yaml", searched=False).config({}, 1).validation_size == 0


def test_fscil_searches_score_the_pseudo_protocol_and_the_sweeps_run_the_standard_one() -> None:
    """No novel class reaches a search: the FSCIL searches train and score the pseudo protocol (base classes
    only), and the sweeps that take their best configuration run the standard protocol with every method."""
    layout = Layout.at(REPO)
    ablations = load_params(layout.params_file, "ablations").profile
    for search, sweep in (("fscil_mnist_search", "fscil_mnist"), ("fscil_cifar100_search", "fscil_cifar100")):
        assert PARAMS["sweeps"][sweep] == search
        config = load_study(layout, search).config({}, 1)
        assert config.fscil_protocol == "pseudo" and load_study(layout, search).metric.startswith("val_")
        for profile in (None, ablations) if sweep == "fscil_mnist" else (None,):
            study = load_study(layout, sweep, profile)
            assert study.fixed["fscil_protocol"] == "standard"
            assert set(study.grid["method"]) == {"hypermask", "hypermask_sessions", "decoupled", "hnet", "finetune"}
            assert len(study.seeds) >= 3 and study.config({}, 1).tasks == (4 if sweep == "fscil_mnist" else 9)
