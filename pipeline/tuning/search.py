"""Optuna (seeded TPE) as the Ray Tune searcher and ASHA with task-boundary rungs as the scheduler."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
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
        if state == PRUNED and result:
            self._report_task(trial_id, result)  # the value ASHA stopped it at (Tune gives it no result call)
        if state == COMPLETED:
            super().on_trial_complete(trial_id, result, error=False)
        else:
            super().on_trial_complete(trial_id, None, error=state != PRUNED)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Tell Optuna the running score, unless the journal already holds the trial as ended: the journal
        can be ahead of Tune's restored state (a study killed after a trial ended, before Tune saved its
        state), and Tune then starts that trial again (it reports its kept last result)."""
        if not self._ended_in_journal(trial_id):
            self._report_task(trial_id, result)

    def _report_task(self, trial_id: str, result: dict[str, Any]) -> None:
        """Record the objective as Optuna's intermediate value at step = finished tasks (a retried, restored
        or resumed trial counts its steps afresh in Tune, never in tasks); a task already recorded keeps
        its first value."""
        ot_trial = self._ot_trials.get(trial_id)
        tasks, value = int(result.get(TIME_ATTR, 0) or 0), result.get(self.metric)
        if ot_trial is None or tasks < 1 or value is None:
            return
        if tasks not in self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values:
            ot_trial.report(float(value), tasks)

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
    None); the study's initial points are evaluated first. In rounds (the default) each round's
    configurations are proposed together from finished rounds only (:class:`pipeline.tuning.rounds.RoundSearch`);
    the asynchronous search proposes a trial whenever a slot frees, TPE's constant liar counting the running
    ones as bad results (concurrent suggestions spread out)."""
    from pipeline.tuning.rounds import RoundSearch

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
    from pipeline.tuning.rounds import RoundScheduler, rung_tasks

    if not params.asha_enabled:
        return None
    if not params.timing_dependent:
        return RoundScheduler(study.metric, study.mode, rung_tasks(rung_task(study, params), params.reduction_factor,
                                                                   study.tasks), params.reduction_factor)
    return ASHAScheduler(time_attr=TIME_ATTR, metric=study.metric, mode=study.mode, max_t=study.tasks,
                         grace_period=rung_task(study, params), reduction_factor=params.reduction_factor)
