"""The run's output folder: checked before any compute, then held under a lock while the run writes.

A folder is accepted when it is absent, empty, or holds a run of the same configuration (its
checkpoint is resumed); anything else is refused unless the user allows ``overwrite``.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hypermask.checkpoint import CHECKPOINT_FILE, CheckpointError, mismatch
from hypermask.config import NON_RESULT_SETTINGS, Config, result_settings
from hypermask.paths import PathProblem, check_folder, expand, make_folder, remove_folders

CHECKPOINT_DIR = "checkpoint"
LOCK_FILE = ".hypermask.lock"
METRICS_FILE = "metrics.json"
RUN_FILES = frozenset({METRICS_FILE, "hypernetwork.pt", "embeddings.pt", "target.pt", "inputs.pt", CHECKPOINT_DIR,
                       LOCK_FILE})


class OutputError(ValueError):
    """The output folder cannot be used for this run (one line naming it)."""


def _metrics_mismatch(path: Path, cfg: Config) -> str:
    """Why ``metrics.json`` at ``path`` is not a result of ``cfg`` ('' when it is)."""
    try:
        saved = json.loads(path.read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        saved = None
    if not isinstance(saved, dict):
        return f"{path} is not a metrics file of a hypermask run"
    then = {k: v for k, v in saved.items() if k not in NON_RESULT_SETTINGS}
    return "" if then == result_settings(cfg) else f"{path} holds the results of a different configuration"


def _check_contents(out: Path, cfg: Config, overwrite: bool) -> None:
    """Refuse what would be overwritten or cannot be written, reading only."""
    check_folder(out, "--out")
    checkpoint_dir = out / CHECKPOINT_DIR
    if checkpoint_dir.exists() and not checkpoint_dir.is_dir():
        raise OutputError(f"--out {out}: {checkpoint_dir} is a file; the run keeps its checkpoint in that folder")
    if (checkpoint_dir / CHECKPOINT_FILE).exists() and not (checkpoint_dir / CHECKPOINT_FILE).is_file():
        raise OutputError(f"--out {out}: {checkpoint_dir / CHECKPOINT_FILE} is not a file; remove it or "
                          "choose another output folder")
    if overwrite or not out.is_dir():
        return
    hint = "choose an empty folder, or add --overwrite to write there anyway"
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
    if foreign:
        raise OutputError(f"--out {out} holds files of something else (e.g. '{foreign[0]}'); {hint}")
    refusal = mismatch(checkpoint_dir, cfg)
    if refusal:
        raise OutputError(f"{refusal}; resume with the same settings, {hint}")
    metrics = out / METRICS_FILE
    if metrics.exists() and not (checkpoint_dir / CHECKPOINT_FILE).is_file():
        refusal = _metrics_mismatch(metrics, cfg)
        if refusal:
            raise OutputError(f"--out: {refusal}; {hint}")


def _discard_foreign_checkpoint(out: Path, cfg: Config) -> None:
    """With ``overwrite``: a checkpoint of another configuration is removed so the run starts afresh."""
    path = out / CHECKPOINT_DIR / CHECKPOINT_FILE
    try:
        foreign = path.is_file() and bool(mismatch(path.parent, cfg))
    except CheckpointError:
        foreign = True
    if foreign:
        path.unlink()


@contextmanager
def claim_output(out: str | Path, cfg: Config, overwrite: bool = False) -> Iterator[Path]:
    """Check ``out`` for ``cfg``, create it and hold its lock while the block runs; yields the folder.

    Raises :class:`OutputError` (one line) when the folder is unusable, holds something else
    (unless ``overwrite``), or another run holds its lock; nothing is written or deleted then.
    """
    try:
        folder = expand(out, "--out")
        _check_contents(folder, cfg, overwrite)
        created = make_folder(folder, "--out")
    except PathProblem as err:
        raise OutputError(str(err)) from None
    lock_path = folder / LOCK_FILE
    try:
        handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        remove_folders(created)
        raise OutputError(f"--out {folder} cannot be written: {err.strerror or err}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        raise OutputError(f"--out {folder} is in use by another run (lock {lock_path}); wait for it to finish "
                          "or choose another output folder") from None
    made: list[Path] = []
    try:
        try:
            made = make_folder(folder / CHECKPOINT_DIR, "checkpoint folder")
        except PathProblem as err:
            raise OutputError(str(err)) from None
        if overwrite:
            _discard_foreign_checkpoint(folder, cfg)
        yield folder
    except BaseException:
        _unlock(handle, lock_path)
        remove_folders(created + made)  # only what this call created and is still empty
        raise
    _unlock(handle, lock_path)


def _unlock(handle: int, lock_path: Path) -> None:
    lock_path.unlink(missing_ok=True)
    fcntl.flock(handle, fcntl.LOCK_UN)
    os.close(handle)
