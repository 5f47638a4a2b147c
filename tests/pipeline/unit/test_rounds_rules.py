"""The rules of searches in rounds: ASHA's rung positions and cutoff, the settings, and what enters the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.spec.params import parse_params
from pipeline.spec.studies import parse_study
from pipeline.stages.tune import selection
from pipeline.tuning.rounds import asha_continues, round_seed, rung_tasks
from pipeline.workspace.keys import stage_key, study_identity
from pipeline_fixtures import REPO, TINY_STUDY

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def test_rungs_sit_where_asha_puts_them_below_the_last_task() -> None:
    assert rung_tasks(2, 2, 5) == [2, 4]
    assert rung_tasks(2, 2, 4) == [2]  # a rung at the last task decides nothing
    assert rung_tasks(1, 3, 10) == [1, 3, 9]
    assert rung_tasks(2, 1.5, 5) == [2, 3]  # 2, 3 and 4.5, which is reached only at the last task
    assert rung_tasks(2, 2, 2) == []


def test_the_cutoff_is_ashas_in_trial_number_order() -> None:
    # The first value at an empty rung goes on; each later one must reach the median (rf 2) of those before it.
    assert asha_continues([], [81.7, 78.5, 76.9, 80.4], 2, 1.0) == [True, False, False, True]
    assert asha_continues([81.7, 78.5], [80.0], 2, 1.0) == [False]
    assert asha_continues([81.7, 78.5], [80.1], 2, 1.0) == [True]  # equal to the cutoff goes on
    assert asha_continues([1.0, 3.0], [1.5], 2, -1.0) == [True]  # smaller is better
    assert asha_continues([1.0, float("nan")], [0.5], 2, 1.0) == [False]  # NaN values are left out
    assert round_seed(7, 0) != round_seed(7, 1) and round_seed(7, 1) == round_seed(7, 1)


@pytest.mark.parametrize("search, fragment", [
    ({"mode": "sometimes"}, "'search.mode' must be one of rounds, async"),
    ({"round_size": 0}, "'search.round_size' must be an integer >= 1"),
    ({"round_size": "4"}, "'search.round_size' must be an integer >= 1"),
])
def test_bad_search_settings_are_refused_in_one_line(search: dict, fragment: str) -> None:
    data = copy.deepcopy(PARAMS)
    data["search"].update(search)
    with pytest.raises(PipelineError, match=fragment.replace("(", r"\(")) as err:
        parse_params(data)
    assert "\n" not in str(err.value)


def test_rounds_keep_concurrency_out_of_the_key_and_round_size_in(tmp_path: Path) -> None:
    def key(concurrency: int, **search: object) -> str:
        data = copy.deepcopy(PARAMS)
        data["search"].update(search)
        params = parse_params(data, "test")
        study = parse_study("tiny", {**TINY_STUDY, "budget": {**TINY_STUDY["budget"], "concurrency": concurrency}},
                            "studies/tiny.yaml")
        identity = study_identity(REPO, "tune", study, params, search=params.search_settings())
        planned = concurrency if params.timing_dependent else None  # as the runner keys a search
        return stage_key(identity, {"threads": 1, "device": "cpu"}, planned)

    assert key(1) == key(2) == key(3)
    assert key(2, round_size=8) != key(2)
    assert key(1, mode="async") != key(2, mode="async")


def test_the_summary_says_whether_the_selection_depends_on_timing() -> None:
    rounds = parse_params(copy.deepcopy(PARAMS), "test")
    data = copy.deepcopy(PARAMS)
    data["search"]["mode"] = "async"
    timed = parse_params(data, "test")
    assert selection(rounds)["depends_on_timing"] is False and "not on timing" in selection(rounds)["note"]
    assert selection(timed)["depends_on_timing"] is True and "depends on timing" in selection(timed)["note"]
