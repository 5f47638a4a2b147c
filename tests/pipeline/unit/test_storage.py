"""Ray's storage holds each checkpoint once and only while its trial runs; a local Ray leaves no folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import ray

from hypermask.numerics import PORTABLE, environment
from pipeline.cluster.session import ray_session
from pipeline.spec.params import load_params
from pipeline.tuning.storage import (
    CheckpointCleaner,
    TrialEndWriter,
    drop_checkpoints,
    drop_trial_files,
    experiment_location,
    read_trial_end,
    remove_superseded,
    state_location,
    trial_end_location,
    trial_folder,
)
from pipeline.workspace.layout import Layout
from pipeline.workspace.results import REPLAYED
from pipeline_fixtures import REPO

KEY, OTHER = "0123456789ab", "ba9876543210"


def _folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_superseded_keys_of_the_same_stage_and_study_only_are_removed(tmp_path: Path) -> None:
    names = [f"tune-tiny-{KEY}", f"tune-tiny-{OTHER}", f"final-tiny-{OTHER}", f"tune-tiny_b-{OTHER}",
             "tune-tiny-notakey", f"tune-tiny-{OTHER}0"]
    for name in names:
        (tmp_path / name / "trial").mkdir(parents=True)
    storage = f"file://{tmp_path}"  # a URI, as s3:// or gs:// would be
    gone = remove_superseded(storage, "tune-tiny", KEY)
    assert [Path(p).name for p in gone] == [f"tune-tiny-{OTHER}"]
    assert _folders(tmp_path) == sorted(set(names) - {f"tune-tiny-{OTHER}"})
    assert remove_superseded(str(tmp_path / "absent"), "tune-tiny", KEY) == []


@pytest.mark.parametrize("uri", [True, False])
def test_trial_state_is_kept_on_the_storage_across_restarts(tmp_path: Path, uri: bool) -> None:
    storage = tmp_path / "storage"
    experiment = experiment_location(f"file://{storage}" if uri else str(storage), "tune-tiny-" + KEY)
    location = state_location(experiment, "a1b2c_00001")
    kept = storage / f"tune-tiny-{KEY}" / "trials" / "a1b2c_00001" / "state"
    with trial_folder(location) as state:
        assert state.folder.is_dir() and not any(state.folder.iterdir())
        (state.folder / "checkpoint.pt").write_bytes(b"task 1")
        state.persist()
        assert (kept / "checkpoint.pt").read_bytes() == b"task 1"
        (state.folder / "checkpoint.pt").write_bytes(b"task 2")  # a kill before persist keeps task 1
        working = state.folder
    assert (working == kept) != uri and working.exists() != uri  # a URI's working copy is removed
    assert _folders(kept) == ["checkpoint.pt"]
    (kept / "checkpoint.pt.part").write_bytes(b"torn")  # an upload cut short by a kill
    with trial_folder(location) as state:  # a retried or restored trial starts from what was stored
        assert (state.folder / "checkpoint.pt").read_bytes() == (b"task 1" if uri else b"task 2")
        state.persist()
    assert _folders(kept) == ["checkpoint.pt"] + ([] if uri else ["checkpoint.pt.part"])  # replaced, not re-sent


class _Trial:
    """What :class:`CheckpointCleaner` and :class:`TrialEndWriter` read of a Tune trial: its id, its own folder
    ``<experiment>/<folder>`` (Tune's name for it) and its storage."""

    def __init__(self, experiment: Path, trial_id: str, folder: str = "", last_result: dict | None = None,
                 error: Exception | None = None) -> None:
        self.trial_id = trial_id
        self.path = str(experiment / (folder or f"run_trial_{trial_id}"))
        self.storage = type("Storage", (), {"storage_filesystem": pafs.LocalFileSystem(),
                                            "experiment_fs_path": str(experiment)})()
        self.last_result = last_result or {}
        self._error = error

    def get_pickled_error(self) -> Exception | None:
        return self._error


def test_an_ended_trial_loses_its_checkpoints_and_keeps_its_records(tmp_path: Path) -> None:
    own = tmp_path / "trials"
    for folder in (tmp_path / "run_trial_t1" / "checkpoint_000000", tmp_path / "run_trial_t1" / "checkpoint_000001",
                   own / "t1" / "state"):
        folder.mkdir(parents=True)
        (folder / "checkpoint.pt").write_bytes(b"x")
    (tmp_path / "run_trial_t1" / "result.json").write_text("{}")
    (own / "t1" / "ended.json").write_text("{}")
    (own / "t2" / "state").mkdir(parents=True)
    CheckpointCleaner().on_trial_complete(0, [], _Trial(tmp_path, "t1"))
    assert _folders(tmp_path / "run_trial_t1") == ["result.json"] and _folders(own / "t1") == ["ended.json"]
    assert _folders(own / "t2") == ["state"]
    CheckpointCleaner().on_trial_error(0, [], _Trial(tmp_path, "t2"))  # Tune never placed it: no folder of its own
    assert _folders(own / "t2") == []
    drop_checkpoints(pafs.LocalFileSystem(), str(own / "t3" / "state"), str(tmp_path / "t3"))  # none: nothing to do


def test_a_restored_trial_finds_its_files_under_its_id_whatever_tune_names_its_folder(tmp_path: Path) -> None:
    """A trial placed after Tune last saved the experiment is named afresh on restore: its checkpoints and
    its end are still its own."""
    experiment = experiment_location(str(tmp_path), f"tune-tiny-{KEY}")
    with trial_folder(state_location(experiment, "a_00002")) as state:
        (state.folder / "checkpoint.pt").write_bytes(b"task 1")
    first, restored = (_Trial(tmp_path / f"tune-tiny-{KEY}", "a_00002", f"run_trial_a_00002_{when}")
                       for when in ("17-05-41", "17-05-57"))
    TrialEndWriter().on_trial_complete(0, [], first)
    with trial_folder(state_location(experiment, "a_00002")) as state:
        assert (state.folder / "checkpoint.pt").read_bytes() == b"task 1"
    assert read_trial_end(trial_end_location(experiment, "a_00002")) is not None
    CheckpointCleaner().on_trial_complete(0, [], restored)
    assert not any(p.name == "state" for p in tmp_path.rglob("*"))


def test_storage_uris_are_taken_as_they_are() -> None:
    layout = Layout.at(REPO)
    assert layout.resolve("file:///tmp/storage") == "file:///tmp/storage"
    assert layout.resolve("s3://bucket/ray") == "s3://bucket/ray"
    assert layout.resolve("ray_storage") == str(REPO / "ray_storage")


@ray.remote
def _numeric_variables() -> dict[str, str]:
    return {k: os.environ[k] for k in environment(PORTABLE) if k in os.environ}


def test_a_local_ray_started_for_a_stage_leaves_no_folder_behind(monkeypatch) -> None:
    """... and its workers start on the portable numeric path, whatever the driver's environment holds."""
    assert not ray.is_initialized()
    with tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as temp:  # short: Ray's socket paths
        monkeypatch.setenv("RAY_TMPDIR", temp)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        for name in environment(PORTABLE):
            monkeypatch.delenv(name, raising=False)
        with ray_session(load_params(REPO / "params.yaml", "test")) as cluster:
            session = Path(ray._private.worker._global_node.get_session_dir_path())
            assert cluster["CPU"] >= 1 and session.is_dir() and session.is_relative_to(temp)
            assert ray.get(_numeric_variables.remote()) == environment(PORTABLE)
        assert not ray.is_initialized() and list(Path(temp).iterdir()) == []


@pytest.mark.parametrize("uri", [False, True])
def test_an_ended_trial_keeps_its_last_result_until_the_experiment_state_is_saved(tmp_path: Path, uri: bool) -> None:
    experiment = experiment_location(f"file://{tmp_path}" if uri else str(tmp_path), f"tune-tiny-{KEY}")
    folder = tmp_path / f"tune-tiny-{KEY}"
    reported = {"task": 2, "num_tasks": 3, "val_average_accuracy": 91.5, "accuracy_matrix": [[99.0], [98.0, 97.0]],
                "completed": False}
    tune_added = {"trial_id": "a_00000", "training_iteration": 2, "time_total_s": 3.0, "done": True,
                  "config": {"beta": 0.1}, "date": "2026-11-26", "pid": 1, "node_ip": "127.0.0.1", REPLAYED: True}
    assert read_trial_end(trial_end_location(experiment, "trial_a")) is None  # a trial that has not ended

    TrialEndWriter().on_trial_complete(0, [], _Trial(folder, "trial_a", last_result={**reported, **tune_added}))
    ended = read_trial_end(trial_end_location(experiment, "trial_a"))
    assert ended.result == reported and ended.error == ""  # what the trial reported, not what Tune added

    TrialEndWriter().on_trial_error(0, [], _Trial(folder, "trial_b", last_result=reported,
                                                  error=RuntimeError("boom\nValueError: lr")))
    assert read_trial_end(trial_end_location(experiment, "trial_b")).error == "ValueError: lr"
    # Ending again (a restored trial replaying its end) keeps the first record.
    TrialEndWriter().on_trial_error(0, [], _Trial(folder, "trial_b", error=RuntimeError("replayed")))
    assert read_trial_end(trial_end_location(experiment, "trial_b")).error == "ValueError: lr"

    (folder / "run_trial_trial_b").mkdir()
    (folder / "run_trial_trial_b" / "result.json").write_text("{}")
    assert drop_trial_files(experiment) == 2
    assert _folders(folder) == ["run_trial_trial_b"] and _folders(folder / "run_trial_trial_b") == ["result.json"]
    assert read_trial_end(trial_end_location(experiment, "trial_a")) is None
    assert drop_trial_files(experiment_location(str(tmp_path), "gone")) == 0  # no experiment: nothing to do
