"""Checkpoints written after every task, so an interrupted run resumes from the last finished task."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hypermask.config import NON_RESULT_SETTINGS, Config

CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used for this run (one line)."""


@dataclass
class TrainingState:
    """What a finished task leaves behind: model state, accuracy matrix, time spent."""

    model_state: dict[str, Any]
    accuracy_matrix: list[list[float]]
    seconds_per_step: list[float]
    elapsed_s: float
    val_accuracy_matrix: list[list[float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # the scores after the last finished task


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in NON_RESULT_SETTINGS}


def save_checkpoint(directory: Path, cfg: Config, state: TrainingState) -> Path:
    """Write ``state`` atomically to ``directory/checkpoint.pt``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    tmp = path.with_suffix(".tmp")
    torch.save({"config": cfg.to_dict(), **vars(state)}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: Path | None, cfg: Config) -> TrainingState | None:
    """The state saved in ``directory`` for this configuration, or None when there is none."""
    if directory is None or not (directory / CHECKPOINT_FILE).is_file():
        return None
    path = directory / CHECKPOINT_FILE
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} is unreadable: {err}") from None
    if _comparable(data["config"]) != _comparable(cfg.to_dict()):
        raise CheckpointError(f"checkpoint {path} belongs to a different configuration; "
                              "use another output folder or delete it")
    return TrainingState(data["model_state"], data["accuracy_matrix"], data["seconds_per_step"],
                         data["elapsed_s"], data.get("val_accuracy_matrix", []), data.get("metrics", {}))
