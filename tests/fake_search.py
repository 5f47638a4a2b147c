"""A search study of the pipeline (its searcher, scheduler and Optuna journal) over a fake training whose scores
are a fixed function of the configuration and whose task times are chosen by the test, so trials report in an
order the test decides. Run as a script, it runs (or restores) one such study in its own process:

    python tests/fake_search.py STORAGE NAME CPUS_PER_TRIAL ORDER [KILL_MARKER]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune

from pipeline.spec.params import parse_params
from pipeline.spec.studies import parse_study
from pipeline.tuning import journal
from pipeline.tuning.search import build_scheduler, build_searcher, pending_trials
from pipeline.workspace.results import COMPLETED_KEY, TIME_ATTR

TASKS = 3
STUDY = {
    "benchmark": "split_mnist", "method": "hypermask",
    "search_space": {"beta": {"loguniform": [1.0e-4, 1.0e-1]}, "lr": {"choice": [1.0e-3, 3.0e-3]}},
    "budget": {"trials": 6, "concurrency": 2, "tasks": TASKS, "iterations": 10, "train_subset": 100},
    "final": {"seeds": [1, 2, 3]},
}
if __name__ != "__main__":  # Ray's workers cannot import this module: its trainable travels by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

PARAMS = {"profile": "test", "studies": ["fake"], "profiles": {"test": {"run": ["fake"]}},
          "search": {"seed": 7, "startup_trials": 2, "round_size": 3}, "asha": {"grace_tasks": 2}}


def study_and_params(**search: Any) -> tuple[Any, Any]:
    """The fake study and its params (``search`` replaces keys of params.yaml's ``search``)."""
    params = parse_params({**PARAMS, "search": {**PARAMS["search"], **search}})
    return parse_study("fake", dict(STUDY), "fake.yaml"), params


def score(config: dict[str, Any], task: int) -> float:
    """The fake validation score after ``task`` tasks: larger beta and lr 3e-3 score higher, later tasks lower."""
    return round(50 + 10 * (3 + float(config["beta"]) ** 0.25) - 4 * task + (5 if config["lr"] > 2e-3 else 0), 6)


def delay(config: dict[str, Any], task: int, order: str) -> float:
    """Seconds the fake task takes: order ``a`` and ``b`` reverse which trials are slow."""
    rank = int(float(config["beta"]) * 1e6) % 4
    return 0.05 * (rank if order == "a" else 3 - rank) + 0.01 * task


def fake_trial(config: dict[str, Any], metric: str, order: str, marker: str = "") -> None:
    """Train nothing: report the score of each task, resuming after the last task recorded in the trial's
    folder (and reporting it again, as the real trainable does)."""
    state = Path(tune.get_context().get_trial_dir()) / "fake_state.json"
    done = json.loads(state.read_text())["done"] if state.exists() else 0

    def send(task: int) -> None:
        tune.report({TIME_ATTR: task, "num_tasks": TASKS, metric: score(config, task),
                     COMPLETED_KEY: task == TASKS})

    if done:
        send(done)
    for task in range(done + 1, TASKS + 1):
        time.sleep(delay(config, task, order))
        state.write_text(json.dumps({"done": task}))
        if marker and task == 2 and Path(marker).parent.exists():
            with open(marker, "a") as out:  # the test kills the study once two trials have reached the rung
                out.write(f"{config['beta']}\n")
        send(task)


def run(storage: Path, name: str, cpus: float, order: str, marker: str = "", **search: Any) -> list[dict]:
    """Run (or restore) the fake study ``name`` under ``storage`` with ``cpus`` per trial; returns
    its Optuna trials as the journal holds them (the user attributes included)."""
    study, params = study_and_params(**search)
    path = journal.journal_path(str(storage), name, storage)
    trainable = tune.with_resources(tune.with_parameters(fake_trial, metric=study.metric, order=order,
                                                         marker=marker), {"cpu": cpus})
    location = str(storage / name)
    slots = max(1, int(ray.cluster_resources()["CPU"] // cpus))
    if tune.Tuner.can_restore(location):
        journal.release_stale_lock(path)
        tuner = tune.Tuner.restore(location, trainable, resume_unfinished=True, resume_errored=False)
    else:
        searcher = build_searcher(study, params, name, journal.open_storage(path, fresh=True))
        limit = None if not params.timing_dependent else slots
        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
            num_samples=study.trials, search_alg=searcher, scheduler=build_scheduler(study, params),
            max_concurrent_trials=limit, reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0))
    with pending_trials(slots):  # as the pipeline's runner starts a search
        tuner.fit()
    return trials_of(path, name)


def trials_of(path: Path, name: str) -> list[dict]:
    """Number, state, value, parameters, intermediate values and user attributes (but the Tune trial id) of
    every trial of the study in the journal at ``path``."""
    found = optuna.load_study(study_name=name, storage=journal.open_storage(path))
    return [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "intermediate": dict(t.intermediate_values),
             "attrs": {k: v for k, v in t.user_attrs.items() if k != "tune_trial_id"}} for t in found.trials]


if __name__ == "__main__":
    storage_arg, name_arg, cpus_arg, order_arg = sys.argv[1:5]
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if os.environ.get("RAY_ADDRESS"):  # a running Ray (the test tier's)
        ray.init(logging_level="ERROR")
    else:
        ray.init(num_cpus=3, include_dashboard=False, logging_level="ERROR")
    result = run(Path(storage_arg), name_arg, float(cpus_arg), order_arg, *(sys.argv[5:6]))
    print(json.dumps(result))
