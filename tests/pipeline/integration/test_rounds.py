"""A search in rounds selects the same whatever the timing: trials reporting in other orders, other numbers of
trials at a time, a study killed between two rung reports and restored (fake training, real Tune + Optuna)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray import tune

import fake_search
from pipeline.cluster.session import local_ray
from pipeline.tuning import journal

SCRIPT = Path(fake_search.__file__)


@pytest.fixture(scope="module")
def ray_of_three():
    """One local Ray with 3 CPUs: 1, 1.5 or 3 CPUs per trial run 3, 2 or 1 trials at a time."""
    with local_ray(num_cpus=3):
        yield


@pytest.fixture(scope="module")
def one_at_a_time(ray_of_three, tmp_path_factory) -> list[dict]:
    """The fake study with one trial at a time, trials in order ``a``: the reference run."""
    return fake_search.run(tmp_path_factory.mktemp("reference"), "reference", 3.0, "a")


def test_rounds_select_the_same_at_any_concurrency_and_report_order(one_at_a_time, tmp_path: Path) -> None:
    reference = one_at_a_time
    assert [t["state"] for t in reference].count("PRUNED") >= 2  # the rungs did stop trials
    assert all(t["intermediate"] and min(t["intermediate"]) == 1 for t in reference)  # keyed by task
    assert all("rung_2" in t["attrs"] for t in reference)  # every trial's rung value is in the journal
    for cpus, order in ((1.5, "b"), (1.0, "a")):
        assert fake_search.run(tmp_path / f"{cpus}{order}", "again", cpus, order) == reference


def test_the_async_search_depends_on_timing_and_says_so() -> None:
    study, params = fake_search.study_and_params(mode="async")
    assert params.timing_dependent and "round_size" not in params.search_settings()
    rounds = fake_search.study_and_params()[1]
    assert not rounds.timing_dependent and rounds.search_settings()["round_size"] == 4


def test_a_study_killed_between_rung_reports_and_restored_selects_the_same(one_at_a_time, tmp_path: Path) -> None:
    storage, marker = tmp_path / "storage", tmp_path / "marks" / "rung.txt"
    marker.parent.mkdir()
    storage.mkdir()
    killed = subprocess.Popen([sys.executable, str(SCRIPT), str(storage), "killed", "1.0", "b", str(marker)],
                              cwd=SCRIPT.parent, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0.5"})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and killed.poll() is None:
            if marker.exists() and marker.read_text().count("\n") >= 1:  # one trial has reported the rung
                break
            time.sleep(0.05)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    assert marker.exists(), "the study never reached its first rung"
    before = fake_search.trials_of(journal.journal_path(str(storage), "killed", storage), "killed")
    assert len(before) < 8 or any(t["state"] == "RUNNING" for t in before)  # killed mid-study
    assert tune.Tuner.can_restore(str(storage / "killed"))  # Tune had saved its state: this is a restore
    assert fake_search.run(storage, "killed", 1.0, "b") == one_at_a_time
