"""The Optuna study of a search on disk: a JournalStorage file beside the Tune experiment in Ray's storage,
named after the stage key, and its trial table as the ``tune`` stage's output (read by the report)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import optuna
from optuna.distributions import distribution_to_json
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import LOCK_FILE_SUFFIX
from optuna.trial import FrozenTrial

SUFFIX = ".optuna.log"


def journal_path(storage: str, experiment: str, local: Path) -> Path:
    """``<ray storage>/<experiment>.optuna.log``, beside the Tune experiment folder. A journal needs a file
    system and only the driver writes it, so with Ray's storage at a URI (``s3://...``) it is kept in the
    driver's ``local`` folder instead."""
    return (local if "://" in storage else Path(storage)) / f"{experiment}{SUFFIX}"


def release_stale_lock(path: Path) -> None:
    """Remove the write lock a killed stage left on the journal at ``path``. Only a stage's driver writes
    its journal, one stage run at a time, so a lock found before the stage starts is stale (Optuna would
    wait 30 s before breaking it)."""
    lock = Path(f"{path}{LOCK_FILE_SUFFIX}")
    if os.path.lexists(lock):
        lock.unlink()


def open_storage(path: Path, fresh: bool = False) -> JournalStorage:
    """The journal at ``path`` (created with its folder); ``fresh`` drops an earlier journal first (a
    search that starts afresh must not inherit the trials of a Tune experiment that is gone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    release_stale_lock(path)
    if fresh:
        path.unlink(missing_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def trial_rows(trials: Iterable[FrozenTrial]) -> list[dict[str, Any]]:
    """A study's trials as JSON-able rows: number, state, value, parameters and their distributions."""
    return [{"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
             "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
             "intermediate": {str(k): v for k, v in t.intermediate_values.items()}}
            for t in trials]


def load_rows(path: Path, name: str) -> list[dict[str, Any]]:
    """The trial rows of study ``name`` in the journal at ``path``."""
    return trial_rows(optuna.load_study(study_name=name, storage=open_storage(path)).trials)
