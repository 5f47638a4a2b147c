"""Optuna (seeded TPE) as the Ray Tune searcher and ASHA with task-boundary rungs as the scheduler."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from pipeline.spec.params import Params
from pipeline.spec.studies import Dimension, Study
from pipeline.workspace.results import COMPLETED, PRUNED, TIME_ATTR, outcome


class ContinualOptunaSearch(OptunaSearch):
    """OptunaSearch that keeps the continual-learning ranking honest.

    Average accuracy over the tasks seen so far falls as tasks are added, so the score of a trial that
    ASHA stopped after a few tasks is not comparable with a finished trial's. Such trials are told to
    Optuna as PRUNED (no value); diverged or crashed ones as FAIL. Only trials that reached the last
    task give TPE a value.
    """

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        """Tell Optuna how the trial ended, unless the journal already holds it as ended (see
        :meth:`on_trial_result`)."""
        if self._ended_in_journal(trial_id):
            self._completed_trials.add(trial_id)
            return
        state = outcome(result, error)
        if state == COMPLETED:
            super().on_trial_complete(trial_id, result, error=False)
        else:
            super().on_trial_complete(trial_id, None, error=state != PRUNED)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Tell Optuna the running score, unless the journal already holds the trial as ended: the journal
        can be ahead of Tune's restored state (a study killed after a trial ended, before Tune saved its
        state), and Tune then starts that trial again (it reports its kept last result)."""
        if not self._ended_in_journal(trial_id):
            super().on_trial_result(trial_id, result)

    def _ended_in_journal(self, trial_id: str) -> bool:
        ot_trial = self._ot_trials.get(trial_id)
        return ot_trial is not None and self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished()

    def restore(self, checkpoint_path: str) -> None:
        """Tune's restore: the pickled state names the same journal, so the study goes on in it; trials the
        journal holds as running but the restored state never handed to Tune (asked after its last
        snapshot) are closed as failed, so TPE's constant liar does not count them as running forever."""
        super().restore(checkpoint_path)
        known = {t.number for t in self._ot_trials.values()}
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if orphan.number not in known:
                self._ot_study.tell(orphan.number, state=TrialState.FAIL)


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
    None); the study's initial points are evaluated first. Trials run concurrently, so TPE's constant
    liar counts the running ones as bad results (concurrent suggestions spread out)."""
    sampler = optuna.samplers.TPESampler(seed=params.search_seed, n_startup_trials=params.startup_trials,
                                         constant_liar=True)
    return ContinualOptunaSearch(space={k: distribution(d) for k, d in study.space.items()},
                                 metric=study.metric, mode=study.mode, sampler=sampler,
                                 points_to_evaluate=study.initial_points or None, study_name=study_name,
                                 storage=storage)


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
