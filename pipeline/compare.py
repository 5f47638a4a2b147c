"""Tuned against published: the per-seed comparison of the final stage's two arms, and whether a run's
budget and sizes are those of the published configuration (only then is the paper's figure beside it)."""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping

from hypermask.config import Config, resolve_config

TUNED, PUBLISHED = "tuned", "published"
ARMS = (TUNED, PUBLISHED)
# The settings that make a run longer, bigger or see more data: a run is comparable with the published
# figure only when every one of them equals the published configuration of its benchmark and method.
SIZE_SETTINGS = ("tasks", "iterations", "epochs", "train_subset", "shots", "validation_size", "target",
                 "target_hidden", "hnet_hidden", "chunk_size")
NOT_COMPARABLE = "not comparable (reduced budget)"


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _size(key: str, value: Any) -> str:
    if key in ("train_subset", "shots") and value == 0:
        return "all"
    if isinstance(value, list):
        return "-".join(map(str, value)) or "none"
    return str(value)


def reductions(config: Config) -> list[str]:
    """How ``config`` differs in budget or size from the published configuration of its benchmark and
    method (empty: the published budget), as ``"setting published → used"``."""
    published = resolve_config(config.benchmark, config.method).to_dict()
    used = config.to_dict()
    return [f"{k} {_size(k, published[k])} → {_size(k, used[k])}" for k in SIZE_SETTINGS
            if published[k] != used[k]]


def comparable(config: Config) -> bool:
    """Whether a run of ``config`` may stand beside the published figure."""
    return not reductions(config)


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


def verdict(difference: Mapping[str, Any]) -> str:
    """One phrase: which arm is ahead, and whether by more than the seed spread."""
    if not difference.get("pairs"):
        return "no shared seeds"
    if not difference["exceeds_spread"]:
        return "within the seed spread"
    ahead = TUNED if difference["mean"] > 0 else PUBLISHED
    return f"{ahead} ahead by more than the seed spread"
