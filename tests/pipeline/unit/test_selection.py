"""Selection never sees the test set: validation objectives only, a trial seed apart from the final
seeds, ASHA's first rung where the regularisers act, and the rung's rank correlation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pipeline.__main__ import main
from pipeline.analysis.rungs import rung_correlation
from pipeline.errors import PipelineError
from pipeline.spec.params import load_params
from pipeline.spec.studies import OBJECTIVES, load_study, parse_study
from pipeline.stages.tune import best_trial
from pipeline.tuning.search import build_scheduler
from pipeline.workspace.layout import Layout
from pipeline.workspace.results import COMPLETED, PRUNED, TrialRecord
from pipeline_fixtures import TINY_STUDY, copy_project, set_params


def _study(**changes):
    return parse_study("tiny", {**TINY_STUDY, **changes}, "tiny.yaml")


@pytest.mark.parametrize("objective", [
    {"metric": "average_accuracy", "mode": "max"},          # a test-set score
    {"metric": "forgetting", "mode": "min"},
    {"metric": "val_forgetting", "mode": "max"},            # the wrong direction
    {"metric": "val_average_accuracy", "mode": "min"},
    {"metric": "val_accuracy", "mode": "max"},              # unknown
])
def test_objectives_other_than_validation_scores_are_refused(objective) -> None:
    with pytest.raises(PipelineError, match="objective") as err:
        _study(objective=objective)
    assert "\n" not in str(err.value)


def test_validation_objectives_are_accepted_with_their_direction() -> None:
    for metric, mode in OBJECTIVES.items():
        study = _study(objective={"metric": metric})
        assert (study.metric, study.mode) == (metric, mode)
    assert _study().metric == "val_average_accuracy"


def test_a_study_without_validation_data_is_refused() -> None:
    with pytest.raises(PipelineError, match="validation_size"):
        _study(budget={**TINY_STUDY["budget"], "validation_size": 0})


def _record(trial: str, test: float, val: float) -> TrialRecord:
    return TrialRecord(trial, {}, COMPLETED, 2, {"average_accuracy": test, "val_average_accuracy": val},
                       [], "")


def test_the_best_trial_is_chosen_on_validation_not_test_scores() -> None:
    records = [_record("a", test=99.0, val=90.0), _record("b", test=95.0, val=97.0),
               TrialRecord("c", {}, PRUNED, 1, {"average_accuracy": 100.0, "val_average_accuracy": 100.0}, [], "")]
    assert best_trial(records, _study()).trial_id == "b"


def test_final_seeds_overlapping_the_trial_seed_are_refused(tmp_path: Path, capsys) -> None:
    root = copy_project(tmp_path / "project")
    data = yaml.safe_load((root / "params.yaml").read_text())
    set_params(root, search={**data["search"], "trial_seed": 2})  # the default profile's final seeds: 1, 2
    assert main(["--root", str(root), "check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "final.seeds" in err and "trial_seed" in err
    params = load_params(root / "params.yaml")
    with pytest.raises(PipelineError):
        load_study(Layout.at(root), "split_mnist", params.profile, params.trial_seed)


def test_asha_first_rung_is_after_the_second_task(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    params = load_params(root / "params.yaml")
    study = load_study(Layout.at(root), "split_mnist", params.profile)
    scheduler = build_scheduler(study, params)
    assert scheduler.rungs[0] == 2 and scheduler._metric == "val_average_accuracy"
    asha = build_scheduler(study, replace(params, search_mode="async"))
    assert sorted(milestone for milestone, _ in asha._brackets[0]._rungs)[0] == 2
    test_profile = load_params(root / "params.yaml", "test").profile
    assert load_study(Layout.at(root), "split_mnist", test_profile).tasks >= 3  # a rung before the end
    data = yaml.safe_load((root / "params.yaml").read_text())
    set_params(root, asha={**data["asha"], "enabled": False})
    assert build_scheduler(study, load_params(root / "params.yaml")) is None


def test_rung_correlation_ranks_final_scores() -> None:
    trials = [{"history": {"2": 90.0 + i, "5": 80.0 + i}} for i in range(4)]
    assert rung_correlation(trials, 2, 5)["rho"] == pytest.approx(1.0)
    reversed_ = [{"history": {2: 90.0 + i, 5: 80.0 - i}} for i in range(4)]
    assert rung_correlation(reversed_, 2, 5)["rho"] == pytest.approx(-1.0)
    assert rung_correlation(trials[:2], 2, 5) is None          # too few trials
    assert rung_correlation([{"history": {"2": 1.0}}] * 4, 2, 5) is None  # none reached the end


def test_a_study_too_big_for_the_largest_node_is_refused_before_any_trial(monkeypatch) -> None:
    from pipeline.cluster import session as cluster

    study = _study(search_space={"embedding_size": {"choice": [8, 200_000_000]}})
    monkeypatch.setattr(cluster, "largest_node_memory", lambda: 8 * 2**30)
    with pytest.raises(PipelineError, match="largest Ray node") as err:
        cluster.check_trials_fit(study, 0)
    assert "GiB" in str(err.value) and "\n" not in str(err.value)
    cluster.check_trials_fit(_study(), 0)  # the tiny study fits
