"""How well ASHA's first rung predicts the end: rank correlation of the trials' validation objective at
the rung with their final one (measured on a study run with ASHA off, so no trial is cut at the rung)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from scipy.stats import spearmanr


def rung_correlation(trials: Sequence[Mapping[str, Any]], rung: int, last: int) -> dict[str, float] | None:
    """Spearman's ρ between the objective after ``rung`` tasks and after ``last`` tasks, over the trials
    that reported both (each trial's ``history``: finished tasks -> objective). None for fewer than 3
    such trials, or when the rung is the last task."""
    pairs = []
    for trial in trials:
        history = {int(k): v for k, v in (trial.get("history") or {}).items()}
        if rung in history and last in history:
            pairs.append((history[rung], history[last]))
    if rung >= last or len(pairs) < 3:
        return None
    at_rung, at_end = zip(*pairs)
    rho = spearmanr(at_rung, at_end).statistic
    return {"rho": float(rho), "trials": len(pairs), "rung": rung, "last": last}
