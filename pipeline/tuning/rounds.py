"""Searches in rounds: what a search selects depends on the study, its seed and settings only.

Round k proposes its ``round_size`` configurations together, from the trials of finished rounds only, with a
TPE sampler seeded from the search seed and k (:class:`RoundSearch`). Early stopping is synchronous
successive halving at ASHA's rung positions and with ASHA's cutoff rule (:class:`RoundScheduler`): a trial
that reaches a rung waits (paused) until every live trial of its round has reported that rung; the round's
trials are then judged in trial-number order against the values of every earlier trial at that rung, as
ASHA judges trials in the order they report. Concurrency, report order and the number of nodes therefore
change when things happen, never what is proposed, stopped or selected.

Everything the rounds decide lives in the search's Optuna journal: each trial's value at a rung and the
decision taken there are user attributes of its Optuna trial (:class:`RungBook`), so a restored study
continues the same rounds and rungs, whatever Tune had saved when it was killed.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, Trial, TrialState
from ray.tune.experiment import Trial as TuneTrial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.utils.util import unflatten_dict

from pipeline.tuning.continual import ContinualOptunaSearch
from pipeline.workspace.results import TIME_ATTR, TrialResult

TUNE_TRIAL_ATTR = "tune_trial_id"  # the Tune trial an Optuna trial was handed to (the latest, after a restore)
ASKED = tuple(state for state in TrialState if state != TrialState.WAITING)  # WAITING: an initial point not yet asked
LIVE = (TuneTrial.PENDING, TuneTrial.RUNNING, TuneTrial.PAUSED)


def rung_value_attr(rung: int) -> str:
    """The Optuna user attribute holding a trial's objective at ``rung`` finished tasks."""
    return f"rung_{rung}"


def rung_decision_attr(rung: int) -> str:
    """The Optuna user attribute holding whether the trial went on past ``rung`` (true) or stopped there."""
    return f"rung_{rung}_continue"


def round_seed(search_seed: int, round_index: int) -> int:
    """The sampler seed of round ``round_index``: a stable hash of the search seed and the round."""
    text = f"{search_seed}:{round_index}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def rung_tasks(grace_tasks: int, reduction_factor: float, max_tasks: int) -> list[int]:
    """ASHA's rung positions (``grace * rf**k`` finished tasks, ASHA's count of rungs) below the last task,
    each at the first whole task count that reaches it (a rung at the last task decides nothing)."""
    count = int(np.log(max_tasks / grace_tasks) / np.log(reduction_factor) + 1)
    milestones = {math.ceil(grace_tasks * reduction_factor ** k - 1e-9) for k in range(count)}
    return sorted(m for m in milestones if m < max_tasks)


def asha_continues(earlier: Sequence[float], candidates: Sequence[float], reduction_factor: float,
                   sign: float) -> list[bool]:
    """ASHA's rule applied to ``candidates`` in order: each goes on unless its value (times ``sign``: +1 when
    larger is better) is below the ``1 - 1/rf`` percentile of the values recorded before it (``earlier``, then
    the candidates before it); the first value at an empty rung goes on. NaN values are never below."""
    recorded = [sign * v for v in earlier]
    decisions = []
    for value in candidates:
        score = sign * value
        cutoff = np.nanpercentile(recorded, (1 - 1 / reduction_factor) * 100) if recorded else None
        decisions.append(cutoff is None or not bool(score < cutoff))
        recorded.append(score)
    return decisions


class RungBook:
    """The rung values and decisions of a search, kept as user attributes of its Optuna trials."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study

    def _trial(self, number: int) -> FrozenTrial:
        storage = self.study._storage
        return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number))

    def value(self, number: int, rung: int) -> float | None:
        """Trial ``number``'s objective at ``rung``, None if it has not reported it."""
        found = self._trial(number).user_attrs.get(rung_value_attr(rung))
        return None if found is None else float(found)

    def decision(self, number: int, rung: int) -> bool | None:
        """Whether trial ``number`` went on past ``rung``; None while undecided."""
        found = self._trial(number).user_attrs.get(rung_decision_attr(rung))
        return None if found is None else bool(found)

    def _set(self, number: int, key: str, value: Any) -> None:
        trial = self._trial(number)
        if key not in trial.user_attrs and not trial.state.is_finished():
            self.study._storage.set_trial_user_attr(trial._trial_id, key, value)

    def record_value(self, number: int, rung: int, value: float) -> None:
        """Keep trial ``number``'s objective at ``rung`` (the first report counts; a repeat is ignored)."""
        self._set(number, rung_value_attr(rung), float(value))

    def decide(self, numbers: Sequence[int], rung: int, reduction_factor: float, sign: float) -> dict[int, bool]:
        """Decide ``rung`` for those of ``numbers`` (one round's trials) that have its value and no decision
        yet, in trial-number order against every trial numbered before each; record and return every
        decision of ``numbers`` at ``rung``."""
        trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        value_key, decision_key = rung_value_attr(rung), rung_decision_attr(rung)
        reported = sorted(n for n, t in trials.items() if value_key in t.user_attrs)
        members = set(numbers)
        decisions: dict[int, bool] = {}
        for position, number in enumerate(reported):
            if number not in members:
                continue
            known = trials[number].user_attrs.get(decision_key)
            if known is None:
                earlier = [float(trials[n].user_attrs[value_key]) for n in reported[:position]]
                known = asha_continues(earlier, [float(trials[number].user_attrs[value_key])],
                                       reduction_factor, sign)[0]
                self._set(number, decision_key, known)
            decisions[number] = bool(known)
        return decisions


class RoundSearch(ContinualOptunaSearch):
    """Seeded TPE proposing ``round_size`` configurations per round, each round from finished rounds only.

    The Optuna journal is the state: round k holds the trials numbered ``k*B`` to ``k*B + B - 1``, asked
    together when round k starts; a round starts once every trial of the previous round has ended in the
    journal. Tune asks for one trial at a time: it gets the round's next asked trial, or nothing while the
    round's trials are all out and some still run."""

    def __init__(self, *args: Any, round_size: int, total_trials: int, search_seed: int,
                 startup_trials: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.round_size = round_size
        self.total_trials = total_trials
        self.search_seed = search_seed
        self.startup_trials = startup_trials

    @property
    def book(self) -> RungBook:
        """The rung bookkeeping in this search's journal."""
        return RungBook(self._ot_study)

    def number(self, trial_id: str) -> int | None:
        """The Optuna trial number of Tune trial ``trial_id`` (None if this search did not propose it)."""
        trial = self._ot_trials.get(trial_id)
        return None if trial is None else trial.number

    def round_of(self, number: int) -> list[int]:
        """The trial numbers of the round that trial ``number`` belongs to."""
        start = number - number % self.round_size
        return list(range(start, min(start + self.round_size, self.total_trials)))

    def _start_round(self, asked: int) -> None:
        """Ask the next round's trials, with the round's own seeded sampler."""
        index = asked // self.round_size
        self._ot_study.sampler = optuna.samplers.TPESampler(
            seed=round_seed(self.search_seed, index), n_startup_trials=self.startup_trials, constant_liar=True)
        for _ in range(min(self.round_size, self.total_trials - asked)):
            self._ot_study.ask(fixed_distributions=self._space)

    def _asked(self) -> list[FrozenTrial]:
        """The trials asked so far, in number order."""
        return self._ot_study.get_trials(deepcopy=False, states=ASKED)

    def _waiting(self) -> list[FrozenTrial]:
        """Asked trials of the current round that no Tune trial of this search holds, in number order; asks
        the next round when the current one has ended."""
        asked = self._asked()
        handed = {t.number for t in self._ot_trials.values()}
        waiting = [t for t in asked if t.state == TrialState.RUNNING and t.number not in handed]
        if waiting or len(asked) >= self.total_trials or any(not t.state.is_finished() for t in asked):
            return waiting
        self._start_round(len(asked))
        return self._waiting()

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The next configuration of the current round, None while the round has none left to hand out, or
        Tune's ``FINISHED`` once every trial is asked and none is left to hand out."""
        if trial_id not in self._ot_trials:
            waiting = self._waiting()
            if not waiting:
                return Searcher.FINISHED if len(self._asked()) >= self.total_trials else None
            frozen = waiting[0]
            self._ot_trials[trial_id] = Trial(self._ot_study, frozen._trial_id)
            self._ot_study._storage.set_trial_user_attr(frozen._trial_id, TUNE_TRIAL_ATTR, trial_id)
        return unflatten_dict(self._ot_trials[trial_id].params)

    def restore(self, checkpoint_path: str) -> None:
        """Tune's restore: the journal is the state; asked trials the restored Tune state never received are
        handed out again (not failed, as an unrounded search does), so the rounds go on as they were."""
        super(ContinualOptunaSearch, self).restore(checkpoint_path)


def round_search_of(controller: Any) -> RoundSearch:
    """The :class:`RoundSearch` behind the Tune controller's search algorithm (through its wrappers)."""
    found = getattr(controller, "search_alg", None)
    while found is not None and not isinstance(found, RoundSearch):
        found = getattr(found, "searcher", None)
    if found is None:
        raise RuntimeError("the round scheduler needs the study's RoundSearch as its searcher")
    return found


class RoundScheduler(FIFOScheduler):
    """Synchronous successive halving per round at ASHA's rungs (see the module's docstring)."""

    def __init__(self, metric: str, mode: str, rungs: Sequence[int], reduction_factor: float) -> None:
        super().__init__()
        self._metric, self._mode = metric, mode
        self.rungs = list(rungs)
        self.reduction_factor = reduction_factor
        self._settling = False
        self._unsaved = False

    @property
    def _sign(self) -> float:
        return 1.0 if self._mode == "max" else -1.0

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Keep the study's objective (set at construction)."""
        return True

    def on_trial_result(self, tune_controller: Any, trial: TuneTrial, result: dict[str, Any]) -> str:
        """At a rung: go on or stop if the round's decision there is taken, else wait for the round."""
        tasks = int(result.get(TIME_ATTR, 0) or 0)
        search = round_search_of(tune_controller)
        number = search.number(trial.trial_id)
        if tasks not in self.rungs or number is None or TrialResult.read(result).diverged:
            return TrialScheduler.CONTINUE
        book = search.book
        known = book.decision(number, tasks)
        if known is None:
            value = result.get(self._metric)
            book.record_value(number, tasks, float("nan") if value is None else float(value))
            known = self._settle(tune_controller, search, number, tasks, current=trial)
        if known is None:
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE if known else TrialScheduler.STOP

    def _live_peers(self, tune_controller: Any, search: RoundSearch, number: int,
                    leaving: TuneTrial | None = None) -> list[tuple[TuneTrial, int]]:
        members = set(search.round_of(number))
        peers = []
        for trial in tune_controller.get_trials():
            found = search.number(trial.trial_id)
            if found in members and trial.status in LIVE and trial is not leaving:
                peers.append((trial, found))
        return peers

    def _settle(self, tune_controller: Any, search: RoundSearch, number: int, rung: int,
                current: TuneTrial | None = None, leaving: TuneTrial | None = None) -> bool | None:
        """Decide ``rung`` for the round of trial ``number`` once each of its live trials has reported it;
        stop the paused ones that lose (promoted ones are resumed by :meth:`choose_trial_to_run`). Returns the
        decision of ``number`` (None while the round still runs towards the rung)."""
        book = search.book
        peers = self._live_peers(tune_controller, search, number, leaving)
        if any(book.value(n, rung) is None for _, n in peers):
            return None
        decisions = book.decide(search.round_of(number), rung, self.reduction_factor, self._sign)
        self._settling = True
        try:
            for trial, found in peers:
                if trial is not current and not decisions.get(found, True) \
                        and (trial.status == TuneTrial.PAUSED or trial.is_saving):
                    tune_controller.stop_trial(trial)
        finally:
            self._settling = False
        return decisions.get(number)

    def _trial_left(self, tune_controller: Any, trial: TuneTrial) -> None:
        """A trial of a round ended (finished, failed, stopped): its round's open rungs may be decidable now."""
        if self._settling:
            return
        search = round_search_of(tune_controller)
        number = search.number(trial.trial_id)
        if number is None:
            return
        book, members = search.book, search.round_of(number)
        for rung in self.rungs:
            if any(book.value(n, rung) is not None and book.decision(n, rung) is None for n in members):
                self._settle(tune_controller, search, number, rung, leaving=trial)

    def on_trial_complete(self, tune_controller: Any, trial: TuneTrial, result: dict[str, Any]) -> None:
        self._trial_left(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: TuneTrial) -> None:
        self._trial_left(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: TuneTrial) -> None:
        self._trial_left(tune_controller, trial)

    def on_trial_add(self, tune_controller: Any, trial: TuneTrial) -> None:
        """A trial Tune has just added is saved with the experiment before it starts (:meth:`choose_trial_to_run`)."""
        self._unsaved = True

    def choose_trial_to_run(self, tune_controller: Any) -> TuneTrial | None:
        """A pending trial first, else a paused one whose round has decided that it goes on.

        Tune calls this before it starts any trial in a step; trials added since the last call are first
        saved in the experiment's state. A study killed later restores every trial that may have run, so
        a trial cannot end in the journal while the restored Tune state lacks it (it would wait for it)."""
        if self._unsaved:
            controller = getattr(tune_controller, "_tune_controller", tune_controller)  # past Tune's wrapper
            controller.checkpoint(force=True, wait=True)
            self._unsaved = False
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == TuneTrial.PENDING:
                return trial
        search = round_search_of(tune_controller)
        for trial in trials:
            if trial.status == TuneTrial.PAUSED and self._promoted(search, trial):
                return trial
        return None

    def _promoted(self, search: RoundSearch, trial: TuneTrial) -> bool:
        number = search.number(trial.trial_id)
        tasks = int((trial.last_result or {}).get(TIME_ATTR, 0) or 0)
        return number is not None and bool(search.book.decision(number, tasks))

    def debug_string(self) -> str:
        return f"Rounds: synchronous successive halving at tasks {self.rungs}."
