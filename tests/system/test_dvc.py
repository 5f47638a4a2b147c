"""`dvc repro` on the test profile in a temporary copy of the project, killed during the study and
started again: it finishes without losing or repeating finished trials."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from pipeline_fixtures import copy_project, metric_steps, only_studies, runs_by_parent, tool_env


def _finished_tune_trials(uri: str) -> list:
    try:
        _, children = runs_by_parent(uri, "split_mnist")["tune"]
    except (AssertionError, KeyError, Exception):  # database or experiment not created yet
        return []
    return [c for c in children if c.info.status == "FINISHED"]


def _run(args: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def temp_root() -> Iterator[Path]:
    """The stages' temporary folder (``TMPDIR``), removed after the test: a killed stage leaves its Ray
    folder there. Short, as Ray's socket paths must stay short."""
    folder = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_dvc_repro_killed_mid_study_resumes_and_reports(tmp_path: Path, mirror: Path, temp_root: Path) -> None:
    root = copy_project(tmp_path / "project")
    only_studies(root, "split_mnist")
    env = tool_env(HYPERMASK_DATA_MIRROR=str(mirror), TMPDIR=str(temp_root))
    uri = f"sqlite:///{root / 'mlflow.db'}"

    first = subprocess.Popen(["dvc", "repro"], cwd=root, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not _finished_tune_trials(uri) and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)  # killed as soon as a trial is recorded: often before Tune saved that it ended
        assert first.poll() is None, f"dvc repro ended before it could be interrupted:\n{first.stdout.read()}"
        before = {c.info.run_id: c.info.end_time for c in _finished_tune_trials(uri)}
        assert before, "no trial finished within 5 minutes"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the whole stage: dvc, the stage process, its local Ray
        first.wait(timeout=60)
    assert not (root / "reports" / "report.md").exists()

    second = _run(["dvc", "repro"], root, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming tune-split_mnist-" in second.stdout + second.stderr

    parent, children = runs_by_parent(uri, "split_mnist")["tune"]
    assert len(children) == 3 and len({c.data.tags["hypermask.trial_id"] for c in children}) == 3
    after = {c.info.run_id: c.info.end_time for c in children}
    assert all(after[run_id] == end for run_id, end in before.items())  # finished trials were not re-run
    for child in children:  # one value per finished task, none logged twice (ASHA may stop a trial early)
        steps = metric_steps(uri, child.info.run_id)
        assert steps == list(range(len(steps))) and steps
        assert (steps == [0, 1, 2]) == (child.data.tags["hypermask.outcome"] == "completed")
    assert parent.info.status == "FINISHED"
    # Every stage that ended removed its local Ray's folder (the killed one could not); no trial left a
    # checkpoint on the storage.
    assert len(list(temp_root.glob("ray-*"))) == 1
    assert [p for p in (root / "ray_storage").rglob("*") if p.name == "state" or p.name.startswith("checkpoint_")] == []

    report = (root / "reports" / "report.md").read_text()
    assert "| split_mnist | hypermask | split_mnist | 3 |" in report
    assert "Reduced from the published configuration (both arms): tasks 5 → 3, iterations 2000 → 20" in report
    assert "| not comparable (reduced budget) |" in report  # no paper figure beside a reduced run
    assert "Protocol: the search, ASHA's early stopping and the choice of the best trial see only validation" in report
    summary = json.loads((root / "results" / "tune" / "split_mnist" / "summary.json").read_text())
    assert summary["objective"]["metric"] == "val_average_accuracy"
    final = json.loads((root / "metrics" / "split_mnist.json").read_text())
    assert summary["protocol"]["trial_seed"] not in final["seed_list"]
    assert final["arms"] == ["tuned", "published"] and final["difference"]["average_accuracy"]["pairs"] == 3
    assert (root / "reports" / "plots" / "split_mnist_accuracy_matrix.png").is_file()

    metrics = _run(["dvc", "metrics", "show", "--json"], root, env)
    assert metrics.returncode == 0 and '"average_accuracy"' in metrics.stdout
    plots = _run(["dvc", "plots", "show", "-o", str(tmp_path / "plots_html")], root, env)
    assert plots.returncode == 0, plots.stderr
    pngs = list((root / "reports" / "plots").glob("*.png"))
    html = (tmp_path / "plots_html" / "index.html").read_text()
    assert pngs and html.count("<img") == len(pngs)  # each plot shown once
    assert (tmp_path / "plots_html" / "index.html").is_file()
    status = _run(["dvc", "status"], root, env)
    assert "up to date" in status.stdout

    # A figure's colour is the report's code only: editing pipeline/analysis leaves every search up to date.
    plots_module = root / "pipeline" / "analysis" / "plots.py"
    original = plots_module.read_text()
    plots_module.write_text(original + "\n# another colour\n")
    changed = json.loads(_run(["dvc", "status", "--json"], root, env).stdout)
    assert sorted(changed) == ["report"], changed
    plots_module.write_text(original)

    # A broken study file stops the pipeline before any stage deletes what earlier runs recorded.
    recorded = {p: p.read_bytes() for p in (root / "results" / "tune" / "split_mnist").iterdir()}
    metrics_before = (root / "metrics" / "split_mnist.json").read_bytes()
    study = root / "studies" / "split_mnist.yaml"
    study.write_text(study.read_text().replace("trials: 40", 'trials: "many"'))
    broken = _run(["dvc", "repro"], root, env)
    assert broken.returncode != 0
    errors = [line for line in (broken.stdout + broken.stderr).splitlines() if line.startswith("pipeline: error:")]
    assert len(errors) == 1 and "budget.trials" in errors[0]
    alone = _run([sys.executable, "-m", "pipeline", "tune", "split_mnist"], root, env)
    assert alone.returncode == 2 and len(alone.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in (root / "results" / "tune" / "split_mnist").iterdir()} == recorded
    assert (root / "metrics" / "split_mnist.json").read_bytes() == metrics_before
