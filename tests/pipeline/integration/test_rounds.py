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
import ray
from ray import tune

import fake_search
from pipeline.tuning import journal
from pipeline_fixtures import SHARED_RAY, SHARED_RAY_CPUS

SCRIPT = Path(fake_search.__file__)



def per_trial(at_a_time: int) -> float:
    """CPUs per trial that let ``at_a_time`` trials run at once on the tier's Ray."""
    return round(SHARED_RAY_CPUS / at_a_time - 0.005, 2)


@pytest.fixture(scope="module")
def one_at_a_time(shared_ray, tmp_path_factory) -> list[dict]:
    """The fake study with one trial at a time, trials in order ``a``: the reference run."""
    SHARED_RAY.wait_until_idle()
    return fake_search.run(tmp_path_factory.mktemp("reference"), "reference", per_trial(1), "a")


def test_rounds_select_the_same_at_any_concurrency_and_report_order(one_at_a_time, local_ray, tmp_path: Path) -> None:
    reference = one_at_a_time
    assert [t["state"] for t in reference].count("PRUNED") >= 2  # the rungs did stop trials
    assert all(t["intermediate"] and min(t["intermediate"]) == 1 for t in reference)  # keyed by task
    assert all("rung_2" in t["attrs"] for t in reference)  # every trial's rung value is in the journal
    for at_a_time, order in ((2, "b"), (3, "a")):
        assert fake_search.run(tmp_path / f"{at_a_time}{order}", "again", per_trial(at_a_time), order) == reference


def test_the_async_search_depends_on_timing_and_says_so() -> None:
    study, params = fake_search.study_and_params(mode="async")
    assert params.timing_dependent and "round_size" not in params.search_settings()
    rounds = fake_search.study_and_params()[1]
    assert not rounds.timing_dependent and rounds.search_settings()["round_size"] == 3


def test_a_study_killed_between_rung_reports_and_restored_selects_the_same(one_at_a_time, local_ray,
                                                                          tmp_path: Path) -> None:
    storage, marker = tmp_path / "storage", tmp_path / "marks" / "rung.txt"
    marker.parent.mkdir()
    storage.mkdir()
    cpus = per_trial(2)  # the study's driver is a process of its own on the tier's Ray: killing it ends its trials
    environment = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0.5", "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    killed = subprocess.Popen([sys.executable, str(SCRIPT), str(storage), "killed", str(cpus), "b", str(marker)],
                              cwd=SCRIPT.parent, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=environment)
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
    assert len(before) < 6 or any(t["state"] == "RUNNING" for t in before)  # killed mid-study
    assert tune.Tuner.can_restore(str(storage / "killed"))  # Tune had saved its state: this is a restore
    SHARED_RAY.wait_until_idle()  # the killed driver's trials are gone
    assert fake_search.run(storage, "killed", cpus, "b") == one_at_a_time
