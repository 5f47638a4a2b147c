"""Numbers the final and sweep stages write: the arms of a final stage, mean and spread over seeds, the
paired per-seed comparison of the two arms, and the scores of finished runs by arm and seed."""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping

from pipeline.workspace.results import COMPLETED, TrialRecord

TUNED, PUBLISHED = "tuned", "published"
ARMS = (TUNED, PUBLISHED)


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def paired(tuned: Mapping[int, float], published: Mapping[int, float]) -> dict[str, Any]:
    """Tuned minus published over the seeds both arms finished.

    ``mean``/``std``: of the per-seed differences; ``higher``/``lower``/``ties``: sign counts; ``t`` and
    ``p_value``: the paired t-test (None with fewer than 2 pairs or identical differences);
    ``seed_spread``: the larger standard deviation over seeds of the two arms; ``exceeds_spread``: whether
    the mean difference is larger than that spread."""
    seeds = sorted(set(tuned) & set(published))
    diffs = [tuned[s] - published[s] for s in seeds]
    if not diffs:
        return {"pairs": 0}
    spread = max(mean_std(list(tuned.values()))["std"], mean_std(list(published.values()))["std"])
    t = p = None
    if len(diffs) >= 2 and len(set(diffs)) > 1:
        from scipy import stats

        test = stats.ttest_rel([tuned[s] for s in seeds], [published[s] for s in seeds])
        t, p = _number(test.statistic), _number(test.pvalue)
    summary = mean_std(diffs)
    return {**summary, "pairs": len(diffs), "higher": sum(d > 0 for d in diffs),
            "lower": sum(d < 0 for d in diffs), "ties": sum(d == 0 for d in diffs), "t": t, "p_value": p,
            "seed_spread": spread, "exceeds_spread": abs(summary["mean"]) > spread}


def per_seed(records: list[TrialRecord], keys: tuple[str, ...]) -> dict[str, dict[int, dict[str, float]]]:
    """Arm -> seed -> the scores ``keys`` of the finished runs (final and sweep stages)."""
    found: dict[str, dict[int, dict[str, float]]] = {}
    for r in sorted(records, key=lambda r: (str(r.config.get("arm", TUNED)), r.config["seed"])):
        if r.outcome == COMPLETED:
            found.setdefault(r.config.get("arm", TUNED), {})[int(r.config["seed"])] = {
                k: r.metrics[k] for k in keys if k in r.metrics}
    return found
