"""The searcher and scheduler of a study: seeded TPE in rounds (or asynchronous TPE + ASHA), rungs at task boundaries."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from pipeline.spec.params import Params
from pipeline.spec.studies import Dimension, Study
from pipeline.tuning.continual import ContinualOptunaSearch
from pipeline.tuning.rounds import RoundScheduler, RoundSearch, rung_tasks
from pipeline.workspace.results import TIME_ATTR


def distribution(dimension: Dimension) -> BaseDistribution:
    """The Optuna distribution of one searched setting."""
    if dimension.kind == "choice":
        return CategoricalDistribution(list(dimension.args))
    if dimension.kind == "int":
        return IntDistribution(int(dimension.args[0]), int(dimension.args[1]))
    return FloatDistribution(dimension.args[0], dimension.args[1], log=dimension.kind == "loguniform")


def build_searcher(study: Study, params: Params, study_name: str | None = None,
                   storage: BaseStorage | None = None) -> ContinualOptunaSearch:
    """Seeded TPE over the study's space, as Optuna study ``study_name`` in ``storage`` (in memory when
    None); the study's initial points are evaluated first. In rounds (the default) each round's
    configurations are proposed together from finished rounds only (:class:`pipeline.tuning.rounds.RoundSearch`);
    the asynchronous search proposes a trial whenever a slot frees, TPE's constant liar counting the running
    ones as bad results (concurrent suggestions spread out)."""
    sampler = optuna.samplers.TPESampler(seed=params.search_seed, n_startup_trials=params.startup_trials,
                                         constant_liar=True)
    options: dict[str, Any] = dict(space={k: distribution(d) for k, d in study.space.items()},
                                   metric=study.metric, mode=study.mode, sampler=sampler,
                                   points_to_evaluate=study.initial_points or None, study_name=study_name,
                                   storage=storage)
    if params.timing_dependent:
        return ContinualOptunaSearch(**options)
    return RoundSearch(**options, round_size=params.round_size, total_trials=study.trials,
                       search_seed=params.search_seed, startup_trials=params.startup_trials)


def rung_task(study: Study, params: Params) -> int:
    """The number of finished tasks at ASHA's first rung (by default 2: after task 1 the regularisers
    have had nothing to act on, so β and λ cannot show yet)."""
    return min(params.grace_tasks, study.tasks)


def build_scheduler(study: Study, params: Params) -> TrialScheduler | None:
    """Early stopping on the study's validation objective whose time unit is the number of finished tasks:
    trials are compared only at equal task counts, where their scores are comparable. In rounds, synchronous
    successive halving per round at ASHA's rungs (:class:`pipeline.tuning.rounds.RoundScheduler`); in the
    asynchronous search, ASHA. None when ``asha.enabled`` is false (every trial runs to the last task)."""
    if not params.asha_enabled:
        return None
    if not params.timing_dependent:
        return RoundScheduler(study.metric, study.mode, rung_tasks(rung_task(study, params), params.reduction_factor,
                                                                   study.tasks), params.reduction_factor)
    return ASHAScheduler(time_attr=TIME_ATTR, metric=study.metric, mode=study.mode, max_t=study.tasks,
                         grace_period=rung_task(study, params), reduction_factor=params.reduction_factor)


PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"


@contextmanager
def pending_trials(count: int | None) -> Iterator[None]:
    """Let a search start up to ``count`` trials at once, as many as run at a time (None, or
    ``TUNE_MAX_PENDING_TRIALS_PG`` already set: Tune's own choice). Tune's default for a searcher without a
    concurrency limiter, as a search in rounds is, is one pending trial: the trials' processes would start
    one after the other. What a trial is asked does not change (a round's configurations are asked together)."""
    if count is None or PENDING_TRIALS_ENV in os.environ:
        yield
        return
    os.environ[PENDING_TRIALS_ENV] = str(max(1, count))
    try:
        yield
    finally:
        os.environ.pop(PENDING_TRIALS_ENV, None)
