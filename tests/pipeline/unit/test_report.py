"""Tuned against published and the paper only beside comparable numbers: the comparison logic, and reports
written from hand-made stage outputs in a temporary project (no training)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from hypermask.config import resolve_config
from pipeline.analysis.compare import NOT_COMPARABLE, reductions, verdict
from pipeline.analysis.importance import analyse
from pipeline.spec.params import load_params
from pipeline.spec.studies import load_study, parse_study
from pipeline.stages.final import metrics_and_runs
from pipeline.stages.report import run as report_stage
from pipeline.stages.report import write_report
from pipeline.tracking.publish import EXPERIMENT
from pipeline.tuning.journal import trial_rows
from pipeline.tuning.search import distribution
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import no_search, write_json
from pipeline.workspace.results import COMPLETED, TrialRecord
from pipeline.workspace.summaries import paired
from pipeline_fixtures import copy_project, write_study

SPACE = {"beta": {"loguniform": [1.0e-4, 1.0e-1]}, "lr": {"choice": [1.0e-3, 3.0e-3]}}
PAPER = {"average_accuracy": 99.6, "std": None, "source": "HyperMask paper"}
REDUCED = {"benchmark": "split_mnist", "search_space": SPACE, "final": {"seeds": [1, 2, 3]}, "paper": PAPER,
           "budget": {"trials": 3, "concurrency": 2, "tasks": 3, "iterations": 150, "train_subset": 2000}}
FULL = {**REDUCED, "budget": {"trials": 3, "concurrency": 2}}  # the published length and data
BEST = {"beta": 2.0e-3, "lr": 3.0e-3}


def test_paired_difference_counts_signs_tests_and_compares_with_the_seed_spread() -> None:
    tuned, published = {1: 99.0, 2: 98.0, 3: 99.5}, {1: 97.0, 2: 97.5, 3: 98.0}
    diff = paired(tuned, published)
    assert diff["pairs"] == 3 and (diff["higher"], diff["lower"], diff["ties"]) == (3, 0, 0)
    assert diff["mean"] == pytest.approx(4.0 / 3) and diff["std"] == pytest.approx(0.763762, abs=1e-5)
    assert diff["seed_spread"] == pytest.approx(0.763762, abs=1e-5)  # tuned's std, the larger of the two
    assert diff["exceeds_spread"] and 0.0 < diff["p_value"] < 0.2
    assert verdict(diff) == "tuned ahead by more than the seed spread"

    close = paired({1: 98.0, 2: 99.0, 3: 98.5}, {1: 98.2, 2: 98.6, 3: 98.6})
    assert not close["exceeds_spread"] and verdict(close) == "within the seed spread"
    assert verdict(paired({1: 90.0, 2: 91.0, 3: 90.5}, {1: 95.0, 2: 96.0, 3: 95.5})) == \
        "published ahead by more than the seed spread"
    same = paired({1: 98.0, 2: 99.0, 3: 97.0}, {1: 98.0, 2: 99.0, 3: 97.0})
    assert same["ties"] == 3 and same["p_value"] is None and not same["exceeds_spread"]
    only_shared = paired({1: 98.0, 2: 99.0, 3: 97.0}, {2: 98.0, 3: 97.0})
    assert only_shared["pairs"] == 2 and only_shared["mean"] == pytest.approx(0.5)


def test_only_runs_with_the_published_budget_and_sizes_are_comparable() -> None:
    assert not reductions(resolve_config("split_mnist", "hypermask"))
    assert not reductions(resolve_config("split_mnist", "hypermask", overrides={"beta": 0.05, "lr": 3e-3}))
    cut = resolve_config("permuted_mnist", "hypermask", overrides={"tasks": 3, "iterations": 150,
                                                                  "train_subset": 2000, "target_hidden": [100, 100]})
    assert reductions(cut) == ["tasks 10 → 3", "iterations 5000 → 150", "train_subset all → 2000",
                               "target_hidden 1000-1000 → 100-100"]
    for change in ({"validation_size": 500}, {"hnet_hidden": [50, 50]}, {"epochs": 3}):
        assert reductions(resolve_config("split_mnist", "hypermask", overrides=change)), change


def _record(arm: str, seed: int, accuracy: float) -> TrialRecord:
    return TrialRecord(trial_id=f"{arm}{seed}", config={"arm": arm, "seed": seed}, outcome=COMPLETED, tasks_done=2,
                       metrics={"average_accuracy": accuracy, "backward_transfer": -0.1, "forgetting": 0.2,
                                "task_inference_accuracy": 90.0}, accuracy_matrix=[[99.0], [98.0, accuracy]],
                       run_id="")


def _optuna_table(study, finished: int) -> dict:
    """An Optuna trial table as the tune stage copies it: ``finished`` complete trials whose objective
    follows beta alone (lr changes nothing), one pruned trial."""
    made = optuna.create_study(direction="maximize")
    distributions = {k: distribution(study.space[k]) for k in ("beta", "lr")}
    for i in range(finished):
        beta, lr = 1.0e-4 * 10 ** (3 * i / max(finished - 1, 1)), [1.0e-3, 3.0e-3][i % 2]
        made.add_trial(optuna.trial.create_trial(params={"beta": beta, "lr": lr}, distributions=distributions,
                                                 value=90.0 + 2.0 * math.log10(beta / 1.0e-4)))
    made.add_trial(optuna.trial.create_trial(params={"beta": 0.05, "lr": 1.0e-3}, distributions=distributions,
                                             state=optuna.trial.TrialState.PRUNED))
    return {"study_name": "tune-x-k", "direction": "maximize", "trials": trial_rows(made.trials)}


def _write_outputs(layout: Layout, name: str, scores: dict[str, dict[int, float]], searched: bool,
                   finished: int = 4) -> dict:
    """The tune and final outputs of ``name`` as the stages write them, from per-arm per-seed accuracies
    (with a search: an Optuna trial table of ``finished`` finished trials)."""
    params = load_params(layout.params_file)
    study = load_study(layout, name, params.profile, params.trial_seed)
    if searched:
        tuned = {"study": name, "status": "done", "key": "k", "trials": [], "wall_s": 10.0, "rung_task": 2,
                 "counts": {"completed": 3, "pruned": 0, "diverged": 0, "failed": 0}, "asha": {"enabled": True},
                 "best": {"config": BEST, "objective": 98.0}, "space": study.space_spec(),
                 "optuna": {"storage": "/s/tune-x-k.optuna.log", "study_name": "tune-x-k",
                            "dashboard": "optuna-dashboard /s/tune-x-k.optuna.log"}}
        write_json(layout.optuna_trials(name), _optuna_table(study, finished))
        arms = {"tuned": BEST, "published": {}}
    else:
        tuned, arms = no_search(name, params.profile.name), {"published": {}}
    records = [_record(arm, seed, acc) for arm, by_seed in scores.items() for seed, acc in by_seed.items()]
    metrics, runs = metrics_and_runs(name, params, tuned, arms, records, 20.0, False)
    write_json(layout.tune_summary(name), tuned)
    write_json(layout.final_dir(name) / "runs.json", runs)
    write_json(layout.metrics_file(name), metrics)
    return metrics


def _project(tmp_path: Path, studies: dict[str, dict], search: bool = True) -> Layout:
    root = copy_project(tmp_path / "project")
    for name, study in studies.items():
        write_study(root, name, study)
    data = yaml.safe_load((root / "params.yaml").read_text())
    data["studies"], data["profile"], data["sweeps"] = list(studies), "study", {}
    data["profiles"] = {"study": {"run": list(studies), "search": search}}
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return Layout.at(root)


def test_report_puts_tuned_beside_published_and_the_paper_only_beside_a_full_budget(tmp_path: Path) -> None:
    layout = _project(tmp_path, {"reduced": REDUCED, "full": FULL})
    metrics = _write_outputs(layout, "reduced", {"tuned": {1: 98.0, 2: 98.2, 3: 98.4},
                                                 "published": {1: 97.0, 2: 97.1, 3: 97.2}}, searched=True)
    assert metrics["arms"] == ["tuned", "published"] and metrics["tuned"]["seeds"] == 3
    assert metrics["difference"]["average_accuracy"]["mean"] == pytest.approx(1.1)
    assert metrics["difference"]["average_accuracy"]["exceeds_spread"]
    assert metrics["tuned"]["average_accuracy"]["mean"] == pytest.approx(98.2)
    _write_outputs(layout, "full", {"tuned": {1: 99.5, 2: 99.7, 3: 99.6},
                                    "published": {1: 99.61, 2: 99.55, 3: 99.44}}, searched=True, finished=12)

    report = write_report(layout, load_params(layout.params_file)).read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in report.splitlines() if line.startswith("| ")}
    reduced, full = rows["reduced"], rows["full"]
    assert "| 98.20 ± 0.20 | 97.10 ± 0.10 | +1.10 ± 0.10 | 3 seeds: 3 higher, 0 lower; paired t-test p = " in reduced
    assert "yes (tuned ahead by more than the seed spread; spread 0.20)" in reduced
    assert reduced.endswith(f"| {NOT_COMPARABLE} |") and "99.60" not in reduced
    assert "| 99.60 ± 0.10 | 99.53 ± 0.09 | +0.07 ± 0.15 |" in full and "no (within the seed spread" in full
    assert full.endswith("| 99.60 |")
    assert "Reduced from the published configuration (both arms): tasks 5 → 3, iterations 2000 → 150, " \
           "train_subset all → 2000" in report
    assert "Full published budget: the published arm is comparable with the paper (99.60)." in report
    assert "| beta | 0.002 | 0.001 |" in report  # the tuned value beside the published one
    for name in ("tuned_vs_published", "reduced_accuracy_matrix", "full_search", "reduced_optuna_history",
                 "full_optuna_history", "full_optuna_importances"):
        assert (layout.reports_dir / "plots" / f"{name}.png").stat().st_size > 1000
    # Importances only from ten finished trials on, and then beta (which alone moves the objective) first.
    assert "rests on 4 trials that reached the last task: too few (fewer than 10) to say which parameters " \
           "matter, so no importance is claimed." in report
    assert not (layout.reports_dir / "plots" / "reduced_optuna_importances.png").exists()
    claim = next(line for line in report.splitlines() if "rests on 12 trials" in line)
    assert "beta mattered most for val_average_accuracy" in claim
    assert "`optuna-dashboard /s/tune-x-k.optuna.log`" in claim


def test_the_report_stage_logs_the_report_and_its_plots_as_a_run_of_its_own(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "bushy-exp")
    layout = _project(tmp_path, {"reduced": REDUCED})
    _write_outputs(layout, "reduced", {"tuned": {1: 98.0, 2: 98.2, 3: 98.4}, "published": {1: 97.0, 2: 97.1, 3: 97.2}},
                   searched=True)
    params = load_params(layout.params_file)
    report_stage(layout, params)
    report_stage(layout, params)  # the same report again: no second run
    client = MlflowClient(f"sqlite:///{layout.root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    tags = runs[0].data.tags
    assert tags["hypermask.stage"] == "report" and tags["hypermask.dvc.experiment"] == "bushy-exp"
    assert {"hypermask.version.torch", "hypermask.version.optuna", "hypermask.version.python"} <= set(tags)
    logged = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    plots = {a.path for a in client.list_artifacts(runs[0].info.run_id, "plots")}
    assert logged == {"report.md", "plots"}
    assert plots == {f"plots/{p.name}" for p in (layout.reports_dir / "plots").glob("*.png")} and plots


def test_importances_need_ten_finished_trials_and_a_varied_parameter() -> None:
    study = parse_study("reduced", REDUCED, "studies/reduced.yaml")
    rows = _optuna_table(study, 12)["trials"]
    found = analyse(rows, "max")
    assert found.finished == 12 and list(found.importances)[0] == "beta" and found.varied == ["beta", "lr"]
    assert [b for _, _, b in found.history] == sorted(b for _, _, b in found.history)  # best so far only rises
    assert analyse(rows[:9], "max").importances == {}
    same = [{**r, "params": {**r["params"], "lr": 1.0e-3}} for r in rows]
    assert analyse(same, "max").varied == ["beta"]


def test_a_profile_without_search_reports_the_published_runs_beside_the_paper(tmp_path: Path) -> None:
    layout = _project(tmp_path, {"full": {**FULL, "final": {"seeds": [1, 2, 3, 4, 5]}}}, search=False)
    metrics = _write_outputs(layout, "full", {"published": {1: 99.61, 2: 99.55, 3: 99.44, 4: 99.5, 5: 99.6}},
                             searched=False)
    assert metrics["arms"] == ["published"] and "tuned" not in metrics and "difference" not in metrics
    report = write_report(layout, load_params(layout.params_file)).read_text()
    row = next(line for line in report.splitlines() if line.startswith("| full |"))
    assert "| no search | – (no search) | 99.54 ± 0.07 | – | – | – | 99.60 |" in row
    assert "No search in this profile: the published configuration alone, 5 seeds." in report
    assert not (layout.reports_dir / "plots" / "full_search.png").exists()
    assert (layout.reports_dir / "plots" / "tuned_vs_published.png").stat().st_size > 1000


def test_final_arms_follow_the_tune_summary() -> None:
    from pipeline.stages.final import arms_of

    assert arms_of({"status": "done", "best": {"config": BEST, "objective": 97.5}}) == {"tuned": BEST, "published": {}}
    assert arms_of(no_search("s", "reproduce")) == {"published": {}}


def test_a_search_that_picks_the_published_configuration_trains_it_once_and_both_arms_share_the_runs(
        tmp_path: Path) -> None:
    from pipeline.stages.final import trained_arms

    layout = _project(tmp_path, {"reduced": REDUCED})
    params = load_params(layout.params_file)
    study = load_study(layout, "reduced", params.profile, params.trial_seed)
    published = resolve_config("split_mnist", "hypermask")
    same = {"beta": published.beta, "lr": published.lr}
    assert trained_arms(study, {"tuned": BEST, "published": {}}) == {"tuned": BEST, "published": {}}
    assert trained_arms(study, {"tuned": same, "published": {}}) == {"tuned": same}
    assert trained_arms(study, {"published": {}}) == {"published": {}}

    tuned = {"status": "done", "trials": [], "counts": {"completed": 3}, "best": {"config": same, "objective": 98.0}}
    records = [_record("tuned", seed, acc) for seed, acc in {1: 98.0, 2: 98.4, 3: 97.9}.items()]
    metrics, runs = metrics_and_runs("reduced", params, tuned, {"tuned": same, "published": {}}, records, 20.0, False,
                                  trained=["tuned"])
    assert metrics["published"]["average_accuracy"] == metrics["tuned"]["average_accuracy"]
    assert metrics["difference"]["average_accuracy"]["ties"] == 3 and metrics["shared_runs"] == {"published": "tuned"}
    assert runs["arms"]["published"]["runs_of"] == "tuned" and runs["arms"]["published"]["seeds_finished"] == [1, 2, 3]
    with pytest.raises(Exception, match="no final run of arm published"):
        metrics_and_runs("reduced", params, tuned, {"tuned": same, "published": {}}, records, 20.0, False)


def test_a_baseline_whose_figures_come_from_other_networks_is_set_beside_in_project_runs_only(tmp_path: Path) -> None:
    wsn = {**FULL, "method": "wsn", "search_space": {"c": {"uniform": [0.1, 1.0]}}, "initial_points": [],
           "final": {"seeds": [1, 2, 3]},
           "paper": {"average_accuracy": None, "std": None, "source": "Kang et al., ICML 2022",
                     "note": "WSN's published numbers come from other networks; only in-project runs stand side by side."}}
    full = {**FULL, "final": {"seeds": [1, 2, 3]}}
    layout = _project(tmp_path, {"full": full, "wsn": wsn}, search=False)
    _write_outputs(layout, "full", {"published": {1: 99.6, 2: 99.5, 3: 99.4}}, searched=False)
    _write_outputs(layout, "wsn", {"published": {1: 99.7, 2: 99.6, 3: 99.5}}, searched=False)
    report = write_report(layout, load_params(layout.params_file)).read_text()
    row = next(line for line in report.splitlines() if line.startswith("| wsn |"))
    assert "| wsn | split_mnist |" in row and row.endswith("| not comparable (other networks) |")
    assert "99.60 ± 0.10" in row
    assert "Published figures: WSN's published numbers come from other networks" in report
    full_row = next(line for line in report.splitlines() if line.startswith("| full |"))
    assert full_row.endswith("| 99.60 |")
