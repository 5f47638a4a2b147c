"""Ray's storage holds each checkpoint once and only while its trial runs; a local Ray leaves no folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import ray

from pipeline.cluster import ray_session
from pipeline.layout import Layout
from pipeline.params import load_params
from pipeline.storage import (CheckpointCleaner, drop_checkpoints, experiment_location, remove_superseded,
                              state_location, trial_state)
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
    location = state_location(experiment, "run_trial_1_beta=0.1,lr=0.01")
    kept = storage / f"tune-tiny-{KEY}" / "run_trial_1_beta=0.1,lr=0.01" / "state"
    with trial_state(location) as state:
        assert state.folder.is_dir() and not any(state.folder.iterdir())
        (state.folder / "checkpoint.pt").write_bytes(b"task 1")
        state.persist()
        assert (kept / "checkpoint.pt").read_bytes() == b"task 1"
        (state.folder / "checkpoint.pt").write_bytes(b"task 2")  # a kill before persist keeps task 1
        working = state.folder
    assert (working == kept) != uri and working.exists() != uri  # a URI's working copy is removed
    assert _folders(kept) == ["checkpoint.pt"]
    (kept / "checkpoint.pt.part").write_bytes(b"torn")  # an upload cut short by a kill
    with trial_state(location) as state:  # a retried or restored trial starts from what was stored
        assert (state.folder / "checkpoint.pt").read_bytes() == (b"task 1" if uri else b"task 2")
        state.persist()
    assert _folders(kept) == ["checkpoint.pt"] + ([] if uri else ["checkpoint.pt.part"])  # replaced, not re-sent


class _Trial:
    """What :class:`CheckpointCleaner` reads of a Tune trial."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.storage = type("Storage", (), {"storage_filesystem": pafs.LocalFileSystem()})()


def test_an_ended_trial_loses_its_checkpoints_and_keeps_its_records(tmp_path: Path) -> None:
    for name in ("state", "checkpoint_000000", "checkpoint_000001"):
        (tmp_path / "t1" / name).mkdir(parents=True)
        (tmp_path / "t1" / name / "checkpoint.pt").write_bytes(b"x")
    (tmp_path / "t1" / "result.json").write_text("{}")
    (tmp_path / "t2" / "state").mkdir(parents=True)
    CheckpointCleaner().on_trial_complete(0, [], _Trial(tmp_path / "t1"))
    assert _folders(tmp_path / "t1") == ["result.json"] and _folders(tmp_path / "t2") == ["state"]
    CheckpointCleaner().on_trial_error(0, [], _Trial(tmp_path / "t2"))
    assert _folders(tmp_path / "t2") == []
    drop_checkpoints(pafs.LocalFileSystem(), str(tmp_path / "t3"))  # no folder: nothing to do


def test_storage_uris_are_taken_as_they_are() -> None:
    layout = Layout.at(REPO)
    assert layout.resolve("file:///tmp/storage") == "file:///tmp/storage"
    assert layout.resolve("s3://bucket/ray") == "s3://bucket/ray"
    assert layout.resolve("ray_storage") == str(REPO / "ray_storage")


def test_a_local_ray_started_for_a_stage_leaves_no_folder_behind(monkeypatch) -> None:
    assert not ray.is_initialized()
    with tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as temp:  # short: Ray's socket paths
        monkeypatch.setenv("RAY_TMPDIR", temp)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        with ray_session(load_params(REPO / "params.yaml", "test")) as cluster:
            session = Path(ray._private.worker._global_node.get_session_dir_path())
            assert cluster["CPU"] >= 1 and session.is_dir() and session.is_relative_to(temp)
        assert not ray.is_initialized() and list(Path(temp).iterdir()) == []
