"""The search's Optuna study on disk: where its journal lives, a fresh start, and Tune's restore of the
searcher continuing the same study (no Ray needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import yaml
from ray.tune.search import Searcher

from pipeline.spec.params import parse_params
from pipeline.spec.studies import parse_study
from pipeline.tuning.journal import journal_path, load_rows, open_storage, release_stale_lock
from pipeline.tuning.search import build_scheduler, build_searcher
from pipeline_fixtures import REPO, TINY_STUDY

RESULT = {"task": 2, "val_average_accuracy": 90.0, "completed": True, "diverged": False}


def test_the_journal_lies_beside_the_tune_experiment_or_locally_for_a_uri(tmp_path: Path) -> None:
    local = tmp_path / "local"
    assert journal_path(str(tmp_path / "rs"), "tune-s-k", local) == tmp_path / "rs" / "tune-s-k.optuna.log"
    assert journal_path("s3://bucket/rs", "tune-s-k", local) == local / "tune-s-k.optuna.log"


def test_a_restored_asynchronous_searcher_continues_its_study_in_the_journal(tmp_path: Path) -> None:
    study = parse_study("tiny", TINY_STUDY, "studies/tiny.yaml")
    params = replace(parse_params(yaml.safe_load((REPO / "params.yaml").read_text()), "test"), search_mode="async")
    path = tmp_path / "rs" / "tune-tiny-k.optuna.log"
    searcher = build_searcher(study, params, "tune-tiny-k", open_storage(path, fresh=True))
    assert searcher._sampler._constant_liar
    for trial_id in ("a", "b"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("a", RESULT)
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("c")  # asked after the last snapshot: Tune will never hear of it again

    restored = build_searcher(study, params)  # as Tune re-creates it, then restores its pickled state
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("b", {**RESULT, "val_average_accuracy": 80.0})
    rows = load_rows(path, "tune-tiny-k")
    assert [(r["number"], r["state"], r["value"]) for r in rows] == [(0, "COMPLETE", 90.0), (1, "COMPLETE", 80.0),
                                                                     (2, "FAIL", None)]
    assert optuna.load_study(study_name="tune-tiny-k", storage=open_storage(path)).best_value == 90.0

    build_searcher(study, params, "tune-tiny-k", open_storage(path, fresh=True))  # a fresh search: a new study
    assert load_rows(path, "tune-tiny-k") == []


def test_a_restored_round_search_hands_out_again_what_tune_never_received(tmp_path: Path) -> None:
    study = parse_study("tiny", TINY_STUDY, "studies/tiny.yaml")  # 3 trials: one round
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()), "test")
    path = tmp_path / "tune-tiny-k.optuna.log"
    searcher = build_searcher(study, params, "tune-tiny-k", open_storage(path, fresh=True))
    first = [searcher.suggest(trial_id) for trial_id in ("a", "b")]
    searcher.save(str(tmp_path / "searcher.pkl"))
    lost = searcher.suggest("c")  # handed out after Tune's last snapshot
    restored = build_searcher(study, params)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("d") == lost and restored.number("d") == 2  # the same trial of the same round
    assert restored.suggest("e") == Searcher.FINISHED  # every trial is asked and out: nothing more to come
    for trial_id in ("a", "b", "d"):
        restored.on_trial_complete(trial_id, {**RESULT, "val_average_accuracy": 70.0})
    assert [r["state"] for r in load_rows(path, "tune-tiny-k")] == ["COMPLETE"] * 3 and len(first) == 2


def test_a_restored_round_search_whose_lost_trial_had_ended_is_finished(tmp_path: Path) -> None:
    """A trial handed out and ended after Tune's last snapshot: the restored search has nothing to hand out
    and says so (``FINISHED``), instead of leaving Tune waiting for a trial that never comes."""
    study = parse_study("tiny", TINY_STUDY, "studies/tiny.yaml")  # 3 trials: one round
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()), "test")
    searcher = build_searcher(study, params, "tune-tiny-k", open_storage(tmp_path / "j.optuna.log", fresh=True))
    for trial_id in ("a", "b"):
        searcher.suggest(trial_id)
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("c")
    searcher.on_trial_complete("c", RESULT)
    restored = build_searcher(study, params)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("d") == Searcher.FINISHED


class _Controller:
    """What the round scheduler sees of Tune's controller: its trials, and its experiment checkpoint."""

    def __init__(self, search_alg: object) -> None:
        self.search_alg = search_alg
        self.saved: list[tuple[bool, bool]] = []

    def get_trials(self) -> list:
        return []

    def checkpoint(self, force: bool = False, wait: bool = False) -> None:
        self.saved.append((force, wait))


def test_a_trial_is_saved_with_the_experiment_before_it_can_start() -> None:
    study = parse_study("tiny", TINY_STUDY, "studies/tiny.yaml")
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()), "test")
    scheduler, controller = build_scheduler(study, params), _Controller(build_searcher(study, params))
    scheduler.choose_trial_to_run(controller)
    assert controller.saved == []  # nothing added: nothing to save
    scheduler.on_trial_add(controller, object())
    scheduler.on_trial_add(controller, object())
    scheduler.choose_trial_to_run(controller)
    scheduler.choose_trial_to_run(controller)
    assert controller.saved == [(True, True)]  # once, forced, before Tune starts either trial


def test_a_lock_left_by_a_killed_stage_does_not_hold_up_the_next(tmp_path: Path) -> None:
    path = tmp_path / "tune-s-k.optuna.log"
    optuna.create_study(study_name="s", storage=open_storage(path))
    lock = tmp_path / "tune-s-k.optuna.log.lock"
    lock.symlink_to(path)  # how Optuna's file lock looks while a write is under way
    release_stale_lock(path)
    assert not lock.is_symlink() and load_rows(path, "s") == []


def test_a_trial_the_journal_holds_as_ended_keeps_its_record_after_a_restore(tmp_path: Path, caplog) -> None:
    study = parse_study("tiny", TINY_STUDY, "studies/tiny.yaml")
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()), "test")
    path = tmp_path / "tune-tiny-k.optuna.log"
    searcher = build_searcher(study, params, "tune-tiny-k", open_storage(path, fresh=True))
    searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's last snapshot: trial a running
    stopped = {"task": 1, "val_average_accuracy": 99.0, "completed": False, "diverged": False}
    searcher.on_trial_complete("a", stopped)  # ASHA stopped it; the study is killed here
    restored = build_searcher(study, params)
    restored.restore(str(tmp_path / "searcher.pkl"))
    # Tune starts trial a again: it reports its kept last result and ends.
    restored.on_trial_result("a", {**stopped, "replayed": True, "training_iteration": 1})
    restored.on_trial_complete("a", {**stopped, "replayed": True})
    assert load_rows(path, "tune-tiny-k")[0]["intermediate"] == {"1": 99.0}  # the stopped trial's value, by task
    assert [(r["number"], r["state"]) for r in load_rows(path, "tune-tiny-k")][:1] == [(0, "PRUNED")]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # nothing told twice
    restored.on_trial_complete("a", RESULT)  # Tune's own second completion is ignored as before
    assert [(r["number"], r["state"]) for r in load_rows(path, "tune-tiny-k")][:1] == [(0, "PRUNED")]
