"""Tuned against published as the report reads it: whether a run's budget and sizes are those of the
published configuration (only then is the paper's figure beside it), and the comparison in a phrase."""

from __future__ import annotations

from typing import Any, Mapping

from hypermask.config import Config, resolve_config
from pipeline.workspace.summaries import PUBLISHED, TUNED

# The settings that make a run longer, bigger or see more data: a run is comparable with the published
# figure only when every one of them equals the published configuration of its benchmark and method.
SIZE_SETTINGS = ("tasks", "iterations", "epochs", "train_subset", "shots", "validation_size", "target",
                 "target_hidden", "hnet_hidden", "chunk_size")
NOT_COMPARABLE = "not comparable (reduced budget)"


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


def verdict(difference: Mapping[str, Any]) -> str:
    """One phrase: which arm is ahead, and whether by more than the seed spread."""
    if not difference.get("pairs"):
        return "no shared seeds"
    if not difference["exceeds_spread"]:
        return "within the seed spread"
    ahead = TUNED if difference["mean"] > 0 else PUBLISHED
    return f"{ahead} ahead by more than the seed spread"
