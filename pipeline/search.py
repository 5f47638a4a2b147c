"""Optuna (seeded TPE) as the Ray Tune searcher and ASHA with task-boundary rungs as the scheduler."""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from pipeline.params import Params
from pipeline.results import COMPLETED, PRUNED, TIME_ATTR, outcome
from pipeline.studies import Study


class ContinualOptunaSearch(OptunaSearch):
    """OptunaSearch that keeps the continual-learning ranking honest.

    Average accuracy over the tasks seen so far falls as tasks are added, so the score of a trial that
    ASHA stopped after a few tasks is not comparable with a finished trial's. Such trials are told to
    Optuna as PRUNED (no value); diverged or crashed ones as FAIL. Only trials that reached the last
    task give TPE a value.
    """

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        state = outcome(result, error)
        if state == COMPLETED:
            super().on_trial_complete(trial_id, result, error=False)
        else:
            super().on_trial_complete(trial_id, None, error=state != PRUNED)


def build_searcher(study: Study, params: Params) -> ContinualOptunaSearch:
    """Seeded TPE over the study's space; the study's initial points are evaluated first."""
    sampler = optuna.samplers.TPESampler(seed=params.search_seed, n_startup_trials=params.startup_trials)
    return ContinualOptunaSearch(space={k: d.distribution() for k, d in study.space.items()},
                                 metric=study.metric, mode=study.mode, sampler=sampler,
                                 points_to_evaluate=study.initial_points or None)


def rung_task(study: Study, params: Params) -> int:
    """The number of finished tasks at ASHA's first rung (by default 2: after task 1 the regularisers
    have had nothing to act on, so β and λ cannot show yet)."""
    return min(params.grace_tasks, study.tasks)


def build_scheduler(study: Study, params: Params) -> ASHAScheduler | None:
    """ASHA on the study's validation objective whose time unit is the number of finished tasks: trials
    are compared only at equal task counts, where their scores are comparable. None when
    ``asha.enabled`` is false (every trial runs to the last task)."""
    if not params.asha_enabled:
        return None
    return ASHAScheduler(time_attr=TIME_ATTR, metric=study.metric, mode=study.mode, max_t=study.tasks,
                         grace_period=rung_task(study, params), reduction_factor=params.reduction_factor)
