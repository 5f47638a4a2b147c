"""Stages submitted to a Ray job server: what is refused before submitting, and the outputs' round trip."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from pipeline.cluster.submit import _fetch_outputs, job_server, publish_outputs, submit_stage
from pipeline.errors import PipelineError
from pipeline.spec.params import load_params
from pipeline.workspace.layout import Layout
from pipeline_fixtures import copy_project


@pytest.fixture
def project(tmp_path: Path) -> Layout:
    return Layout.at(copy_project(tmp_path / "project"))


def test_only_a_job_server_address_submits(project: Layout, monkeypatch) -> None:
    params = load_params(project.params_file)
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert job_server(params) == "http://head:8265"
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert job_server(params) == ""


@pytest.mark.parametrize("storage, tracking, fragment", [
    ("ray_storage", "http://mlflow:5000", "'ray.storage' is 'ray_storage', a folder of this project"),
    ("/shared/ray", "", "needs a tracking store the cluster reaches: set MLFLOW_TRACKING_URI"),
])
def test_storage_or_tracking_the_cluster_cannot_reach_is_refused_before_submitting(
        tmp_path: Path, monkeypatch, storage: str, tracking: str, fragment: str) -> None:
    root = copy_project(tmp_path / "p", ray={"storage": storage}, tracking={"uri": tracking})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    layout = Layout.at(root)
    with pytest.raises(PipelineError) as err:
        submit_stage(layout, load_params(layout.params_file), "tune", "split_mnist", "http://127.0.0.1:9")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_an_unreachable_job_server_is_one_line(tmp_path: Path, monkeypatch) -> None:
    root = copy_project(tmp_path / "p", ray={"storage": str(tmp_path / "shared")})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    layout = Layout.at(root)
    with pytest.raises(PipelineError) as err:
        submit_stage(layout, load_params(layout.params_file), "tune", "split_mnist", f"http://127.0.0.1:{port}")
    assert f"cannot submit to the Ray job server http://127.0.0.1:{port}" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_stages_outputs_go_to_shared_storage_and_come_back_whole(tmp_path: Path) -> None:
    job_side, here = Layout.at(copy_project(tmp_path / "job")), Layout.at(copy_project(tmp_path / "here"))
    (job_side.sweep_dir("s") / "nested").mkdir(parents=True)
    (job_side.sweep_dir("s") / "runs.json").write_text(json.dumps({"runs": [1, 2]}))
    (job_side.sweep_dir("s") / "nested" / "plot.png").write_bytes(b"\x89PNG")
    job_side.metrics_file("s").parent.mkdir(parents=True, exist_ok=True)
    job_side.metrics_file("s").write_text(json.dumps({"status": "done"}))
    here.sweep_dir("s").mkdir(parents=True)
    (here.sweep_dir("s") / "stale.json").write_text("{}")  # an older output is replaced, not merged
    shared = (tmp_path / "shared" / "outputs" / "job-1").as_uri()  # file:// standing in for s3://
    publish_outputs(job_side, "sweep", "s", shared)
    _fetch_outputs(here, "sweep", "s", shared)
    assert sorted(p.relative_to(here.sweep_dir("s")).as_posix() for p in here.sweep_dir("s").rglob("*")) == [
        "nested", "nested/plot.png", "runs.json"]
    assert json.loads(here.metrics_file("s").read_text()) == {"status": "done"}
    assert (here.sweep_dir("s") / "nested" / "plot.png").read_bytes() == b"\x89PNG"
