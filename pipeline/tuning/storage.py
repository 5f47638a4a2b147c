"""Trial files on Ray's storage (a folder, or a URI such as ``s3://``, ``gs://`` or ``file://``).

Each trial keeps its own files in ``trials/<trial id>/`` of its Tune experiment's folder, named by the trial's
id, which a restored study keeps (Tune names a trial's own folder when the trial is first placed, and names it
afresh on restore if its last saved experiment state was taken before that). A running trial keeps its task
checkpoints once, in ``state/`` there, where a retried trial or a restored study finds them. A trial that has
ended needs none of its checkpoints (its record is in MLflow), and the Tune experiments of superseded keys are
never resumed again: both are removed, so the storage holds the experiment state of the current keys and the
checkpoints of the trials still running.

Tune saves its experiment state (which trials have ended) every few seconds, so a study killed just after
a trial ended may be restored with that trial still running. Each ended trial therefore leaves its last
result in ``ended.json`` beside its ``state/``, written before its MLflow run is closed; a restored trial
that finds one reports that result again instead of training (:func:`read_trial_end`), so what the study
selects and records is what it had before the kill. The trials' files go once Tune's state is saved
complete (:func:`drop_trial_files`).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import pyarrow.fs as pafs
from ray import tune
from ray.tune import result as tune_keys

from hypermask.messages import last_line
from pipeline.workspace.locations import filesystem, is_uri
from pipeline.workspace.results import REPLAYED

TRIALS_DIR = "trials"  # the trials' own files in an experiment's folder, one folder per trial id
STATE_DIR = "state"
CHECKPOINT_PREFIX = "checkpoint_"  # Tune's checkpoint folders in a trial's folder
PART = ".part"  # an upload in progress (left behind only by a kill)
END_FILE = "ended.json"  # an ended trial's last result, kept until Tune's experiment state says it ended
# What Tune adds to every reported result (reporting them again would clash with Tune's own).
TUNE_KEYS = frozenset((*tune_keys.AUTO_RESULT_KEYS, *tune_keys.DEFAULT_EXPERIMENT_INFO_KEYS, tune_keys.DONE,
                       tune_keys.SHOULD_CHECKPOINT, tune_keys.RESULT_DUPLICATE, tune_keys.TRIAL_INFO))


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _write_whole(fs: pafs.FileSystem, target: str, source: BinaryIO) -> None:
    """Write ``source`` to ``target`` on ``fs`` under a temporary name, then move it in place: a kill never
    leaves half a file there."""
    with fs.open_output_stream(target + PART) as out:
        shutil.copyfileobj(source, out, 1 << 22)
    fs.move(target + PART, target)


def _remove(fs: pafs.FileSystem, path: str) -> None:
    """Delete the folder ``path`` on ``fs`` if it is there."""
    if _exists(fs, path):
        fs.delete_dir(path)


@dataclass(frozen=True)
class TrialFolder:
    """The local folder a trial writes its task checkpoints into, and where they are kept.

    On a local (or shared, mounted) folder the trial writes straight into storage; on a URI it writes
    into a private temporary folder and :meth:`persist` uploads each file after every task."""

    folder: Path
    fs: pafs.FileSystem | None = None  # None: ``folder`` is on the storage itself
    remote: str = ""

    def persist(self) -> None:
        """Store the folder's files on the storage (each replaced whole: a kill never leaves half)."""
        if self.fs is None:
            return
        self.fs.create_dir(self.remote, recursive=True)
        for file in sorted(p for p in self.folder.iterdir() if p.is_file() and p.suffix != PART):
            with file.open("rb") as source:
                _write_whole(self.fs, f"{self.remote}/{file.name}", source)


def experiment_location(storage: str, name: str) -> str:
    """The folder (or URI) of the Tune experiment ``name`` on ``storage``, as Tune names it."""
    return f"{storage.rstrip('/')}/{name}"


def _in_trial(experiment: str, trial_id: str, name: str) -> str:
    """``name`` in the folder of trial ``trial_id``'s own files in the Tune experiment ``experiment``."""
    return f"{experiment.rstrip('/')}/{TRIALS_DIR}/{trial_id}/{name}"


def state_location(experiment: str, trial_id: str) -> str:
    """Where the task checkpoints of trial ``trial_id`` of the Tune experiment ``experiment`` are kept."""
    return _in_trial(experiment, trial_id, STATE_DIR)


@contextmanager
def trial_folder(location: str) -> Iterator[TrialFolder]:
    """The trial's state folder for ``location`` (see :class:`TrialFolder`); a temporary folder is
    filled from the storage first and removed on exit."""
    if not is_uri(location):
        folder = Path(location)
        folder.mkdir(parents=True, exist_ok=True)
        yield TrialFolder(folder)
        return
    fs, remote = filesystem(location)
    with tempfile.TemporaryDirectory(prefix="hypermask-state-") as temp:
        if _exists(fs, remote):
            pafs.copy_files(remote, temp, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        yield TrialFolder(Path(temp), fs, remote)


def drop_checkpoints(fs: pafs.FileSystem, state_path: str, trial_path: str) -> None:
    """Delete one trial's task checkpoints (its ``state_path``) and Tune's ``checkpoint_*`` folders in the
    trial's own folder ``trial_path``."""
    _remove(fs, state_path)
    for info in fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True)):
        if info.type == pafs.FileType.Directory and info.base_name.startswith(CHECKPOINT_PREFIX):
            fs.delete_dir(info.path)


@dataclass(frozen=True)
class TrialEnd:
    """How a trial ended, as its ``ended.json`` keeps it: its last result and, if it failed, the error."""

    result: dict[str, Any]
    error: str = ""


def _json_value(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)  # numpy scalars; anything else as text


def trial_end_location(experiment: str, trial_id: str) -> str:
    """Where trial ``trial_id`` of the Tune experiment ``experiment`` keeps its ``ended.json``."""
    return _in_trial(experiment, trial_id, END_FILE)


def write_trial_end(fs: pafs.FileSystem, path: str, result: dict[str, Any], error: str = "") -> None:
    """Write a trial's ``ended.json`` at ``path`` (its last result without Tune's own keys) whole: a kill
    never leaves half of it."""
    kept = {k: v for k, v in result.items() if k not in TUNE_KEYS and k != REPLAYED}
    text = json.dumps({"result": kept, "error": error}, default=_json_value).encode()
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    _write_whole(fs, path, io.BytesIO(text))


def read_trial_end(location: str) -> TrialEnd | None:
    """The :class:`TrialEnd` kept at ``location`` (see :func:`trial_end_location`), None if there is none."""
    fs, path = filesystem(location)
    if not _exists(fs, path):
        return None
    with fs.open_input_stream(path) as source:
        found = json.loads(source.read())
    return TrialEnd(dict(found["result"]), str(found.get("error") or ""))


def drop_trial_files(experiment: str) -> int:
    """Delete the trials' own files of ``experiment`` (call once Tune has saved its state with every trial
    ended: none is running, none needs its ``ended.json``); returns how many ``ended.json`` were there."""
    fs, root = filesystem(experiment)
    trials = f"{root}/{TRIALS_DIR}"
    ended = [info for info in fs.get_file_info(pafs.FileSelector(trials, allow_not_found=True, recursive=True))
             if info.type == pafs.FileType.File and info.base_name == END_FILE]
    _remove(fs, trials)
    return len(ended)


def _in_tune_trial(trial: Any, name: str) -> str:
    """``name`` in the folder of a Tune trial's own files, on its storage's filesystem."""
    return _in_trial(trial.storage.experiment_fs_path, trial.trial_id, name)


class TrialEndWriter(tune.Callback):
    """Writes each ended trial's ``ended.json``. Listed before the MLflow tracker, so a trial whose run is
    closed always has one."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, "")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, _error_line(trial))

    @staticmethod
    def _write(trial: Any, error: str) -> None:
        fs, path = trial.storage.storage_filesystem, _in_tune_trial(trial, END_FILE)
        if not _exists(fs, path):  # a replayed end keeps the first one's record
            write_trial_end(fs, path, dict(trial.last_result or {}), error)


def _error_line(trial: Any) -> str:
    """The last line of the error a Tune trial failed with."""
    try:
        error = trial.get_pickled_error()
    except Exception:  # noqa: BLE001 - the error file may be unreadable; the trial failed all the same
        error = None
    return last_line(error) or "the trial failed"


class CheckpointCleaner(tune.Callback):
    """Deletes a trial's checkpoints once it has ended (finished, stopped early or failed for good).

    Listed after the MLflow tracker, which logs a final run's model from the trial's checkpoint before
    this runs. A retried trial keeps its checkpoints: Tune reports an error here only when no retry is
    left."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._drop(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._drop(trial)

    @staticmethod
    def _drop(trial: Any) -> None:
        drop_checkpoints(trial.storage.storage_filesystem, _in_tune_trial(trial, STATE_DIR), trial.path)


def superseded(storage: str, prefix: str, key: str) -> list[str]:
    """Paths (on the storage's filesystem) of the experiments ``<prefix>-<other key>`` under ``storage``."""
    fs, root = filesystem(storage)
    pattern = re.compile(f"{re.escape(prefix)}-[0-9a-f]{{{len(key)}}}")  # keys are hex digests of one length
    return [info.path for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
            if info.type == pafs.FileType.Directory and pattern.fullmatch(info.base_name)
            and info.base_name != f"{prefix}-{key}"]


def remove_superseded(storage: str, prefix: str, key: str) -> list[str]:
    """Delete the experiments of ``prefix`` (a stage and a study) under other keys than ``key``; returns
    their paths."""
    fs, _ = filesystem(storage)
    gone = superseded(storage, prefix, key)
    for path in gone:
        fs.delete_dir(path)
    return gone
