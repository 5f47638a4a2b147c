"""What a search learned, from its Optuna trial table: the optimisation history (objective and best so far
per finished trial) and which searched parameters mattered (Optuna's parameter importances), with the
number of finished trials behind them. No importance is claimed from fewer than ten finished trials."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import optuna
from optuna.distributions import json_to_distribution
from optuna.trial import TrialState

from pipeline.spec.studies import DIRECTIONS

MIN_TRIALS = 10  # below this, importances are noise: the report says so instead of ranking parameters


@dataclass(frozen=True)
class SearchAnalysis:
    """Finished trials in order (number, objective, best so far) and the parameter importances (empty when
    fewer than :data:`MIN_TRIALS` finished, or no parameter varied)."""

    finished: int
    history: list[tuple[int, float, float]]
    importances: dict[str, float] = field(default_factory=dict)
    varied: list[str] = field(default_factory=list)


def analyse(rows: Sequence[Mapping[str, Any]], mode: str) -> SearchAnalysis:
    """The history and importances of the trial ``rows`` (:func:`pipeline.tuning.journal.trial_rows`)."""
    study = study_from_rows(rows, mode)
    trials = sorted(study.trials, key=lambda t: t.number)
    pick = max if mode == "max" else min
    history, best = [], None
    for trial in trials:
        best = trial.value if best is None else pick(best, trial.value)
        history.append((trial.number, float(trial.value), float(best)))
    varied = sorted(k for k in {p for t in trials for p in t.params}
                    if len({repr(t.params.get(k)) for t in trials}) > 1)
    importances: dict[str, float] = {}
    if len(trials) >= MIN_TRIALS and varied:
        importances = optuna.importance.get_param_importances(study, params=varied)
    return SearchAnalysis(len(trials), history, dict(importances), varied)


def sentence(analysis: SearchAnalysis, metric: str) -> str:
    """One sentence on what the history and importances rest on and, with enough trials, what mattered."""
    base = f"Optuna's analysis rests on {analysis.finished} trials that reached the last task"
    if analysis.finished < MIN_TRIALS:
        return (f"{base}: too few (fewer than {MIN_TRIALS}) to say which parameters matter, so no importance "
                "is claimed.")
    if not analysis.importances:
        return f"{base}: no searched parameter varied among them, so no importance is claimed."
    ranked = ", ".join(f"{k} {v:.2f}" for k, v in analysis.importances.items())
    top = next(iter(analysis.importances))
    return (f"{base}: {top} mattered most for {metric} (importance, PED-ANOVA, summing to 1: {ranked}).")


def study_from_rows(rows: Iterable[Mapping[str, Any]], mode: str) -> optuna.Study:
    """An in-memory study holding the finished trials of ``rows`` (for Optuna's analysis functions)."""
    study = optuna.create_study(direction=DIRECTIONS[mode])
    study.add_trials([optuna.trial.create_trial(
        state=TrialState.COMPLETE, value=row["value"], params=row["params"],
        distributions={k: json_to_distribution(d) for k, d in row["distributions"].items()})
        for row in rows if row["state"] == TrialState.COMPLETE.name])
    return study
