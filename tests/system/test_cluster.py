"""`ray job submit` of a tune stage against a local head started by the test (loopback, token auth)."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pipeline_fixtures import (
    copy_project,
    free_port,
    only_studies,
    processes_using,
    reap,
    runs_by_parent,
    stop_process_group,
    tool_env,
    wait_for_dashboard,
)

EXCLUDES = ["data", "ray_storage", "mlflow.db", "mlartifacts", "results", "metrics", "reports", ".git"]


def _stop_head(head: subprocess.Popen, temp_dir: str) -> None:
    """Stop the head this test started: its process group, then any of its processes left (by id)."""
    stop_process_group(head)
    reap(temp_dir)


def test_ray_job_submit_runs_a_study_on_a_local_head(tmp_path: Path, mirror: Path) -> None:
    root = copy_project(tmp_path / "project", data={"root": str(mirror)})
    only_studies(root, "split_mnist", trials=2, tasks=1)
    temp_dir = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Ray's socket paths must stay short
    gcs_port, dashboard_port = free_port(), free_port()
    env = tool_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
                   HYPERMASK_DATA_MIRROR=str(mirror), RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    # the job agent on a port of its own: the default one may be held by another Ray on this machine
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
         "--num-cpus=1", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard_port}", f"--dashboard-agent-listen-port={free_port()}",
         f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard_port}"
    try:
        wait_for_dashboard(url, head)
        runtime_env = {"excludes": EXCLUDES, "env_vars": {"HYPERMASK_DATA_MIRROR": str(mirror)}}
        deadline = time.time() + 120
        while True:  # the head answers before its job agent is up ("No available agent ... try again later")
            job = subprocess.run(
                ["ray", "job", "submit", "--address", url, "--working-dir", str(root),
                 "--runtime-env-json", json.dumps(runtime_env), "--",
                 "python", "-m", "pipeline", "--root", str(root), "tune", "split_mnist"],
                env=env, capture_output=True, text=True, timeout=480)
            log = job.stdout + job.stderr
            if job.returncode == 0 or "try again later" not in log or time.time() > deadline:
                break
            time.sleep(3)
        assert job.returncode == 0 and "succeeded" in log, log
        summary = json.loads((root / "results" / "tune" / "split_mnist" / "summary.json").read_text())
        assert summary["status"] == "done" and len(summary["trials"]) == 2
        assert summary["resources_per_trial"] == {"cpu": 1.0, "gpu": 0.0}  # sized to the 1-CPU head
        _, children = runs_by_parent(f"sqlite:///{root / 'mlflow.db'}", "split_mnist")["tune"]
        assert len(children) == 2
    finally:
        _stop_head(head, temp_dir)
    assert not processes_using(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)
