"""The Optuna searcher of a continual-learning study: unfinished trials are never ranked, and the journal
records each trial's objective per finished task."""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

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
