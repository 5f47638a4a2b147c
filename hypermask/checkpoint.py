"""Checkpoints written after every task, so an interrupted run resumes from the last finished task."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hypermask.config import NON_RESULT_SETTINGS, Config, result_settings
from hypermask.messages import first_line

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
    metrics: dict[str, Any] = field(default_factory=dict)  # the scores after the last finished task


def _differences(saved: dict[str, Any], cfg: Config) -> str:
    """``key: saved -> now`` for every result-affecting setting that differs (empty when none)."""
    now = result_settings(cfg)
    then = {k: v for k, v in saved.items() if k not in NON_RESULT_SETTINGS}
    keys = [k for k in sorted(set(now) | set(then)) if then.get(k) != now.get(k)]
    return ", ".join(f"{k}={saved.get(k)!r} there, {now.get(k)!r} now" for k in keys)


def save_checkpoint(directory: Path, cfg: Config, state: TrainingState) -> Path:
    """Write ``state`` atomically to ``directory/checkpoint.pt``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    tmp = path.with_suffix(".tmp")
    torch.save({"config": cfg.to_dict(), **vars(state)}, tmp)
    os.replace(tmp, path)
    return path


def _read(path: Path, lazy: bool) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=lazy)
    except Exception as err:
        reason = first_line(err)
        raise CheckpointError(f"checkpoint {path} is unreadable: {reason}") from None


def mismatch(directory: Path, cfg: Config) -> str:
    """Why the checkpoint in ``directory`` cannot resume ``cfg`` ('' when it can or there is none).

    Reads only the recorded configuration (the weights are memory-mapped, not loaded).
    """
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        return ""
    return _refusal(path, _read(path, lazy=True).get("config", {}), cfg)


def _refusal(path: Path, saved: dict[str, Any], cfg: Config) -> str:
    differences = _differences(saved, cfg)
    return f"checkpoint {path} was written by a different configuration ({differences})" if differences else ""


def load_checkpoint(directory: Path | None, cfg: Config) -> TrainingState | None:
    """The state saved in ``directory`` for this configuration, or None when there is none."""
    if directory is None or not (directory / CHECKPOINT_FILE).is_file():
        return None
    path = directory / CHECKPOINT_FILE
    data = _read(path, lazy=False)
    refusal = _refusal(path, data["config"], cfg)
    if refusal:
        raise CheckpointError(f"{refusal}; resume with the same settings, or use another output folder")
    return TrainingState(data["model_state"], data["accuracy_matrix"], data["seconds_per_step"],
                         data["elapsed_s"], data.get("val_accuracy_matrix", []), data.get("metrics", {}))


def saved_tasks(directory: Path) -> int:
    """How many finished tasks the checkpoint in ``directory`` holds (0 when none or unreadable)."""
    try:
        return len(_read(directory / CHECKPOINT_FILE, lazy=True)["accuracy_matrix"])
    except (CheckpointError, KeyError, TypeError):
        return 0
