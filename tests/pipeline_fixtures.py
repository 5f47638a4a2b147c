"""Shared helpers of the pipeline tests: a temporary copy of the project, the data mirror, MLflow queries, and the
Ray processes a test starts itself."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PROJECT_PATHS = ("params.yaml", "dvc.yaml", "studies", "pipeline", "hypermask", ".dvc/config", ".dvcignore")
TINY_STUDY = {
    "description": "tiny test study",
    "benchmark": "split_mnist",
    "method": "hypermask",
    "fixed": {"target_hidden": "100,100"},  # a quarter of the published 400-400 target: seconds-scale trials
    "search_space": {"beta": {"loguniform": [1.0e-4, 1.0e-1]}, "lr": {"choice": [1.0e-3, 3.0e-3, 1.0e30]}},
    "budget": {"trials": 3, "concurrency": 2, "tasks": 2, "iterations": 20, "train_subset": 500,
               "validation_size": 200},
    "final": {"seeds": [1, 2, 3]},
}


def copy_project(dest: Path, **params: Any) -> Path:
    """Copy the project's pipeline files to ``dest`` (a fresh git repo) with ``params.yaml`` keys replaced."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_PATHS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    set_params(dest, **params)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    # The project's MLflow database (the stages' default store) with its tables already created: creating
    # them takes seconds, once per test session is enough. Never committed (a run's tree stays clean).
    shutil.copy2(empty_mlflow_db(), dest / "mlflow.db")
    with (dest / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write("/mlflow.db\n")
    return dest


_EMPTY_MLFLOW_DB: list[Path] = []


def empty_mlflow_db() -> Path:
    """An MLflow sqlite database as a stage creates it before its first run, made once per test process."""
    if not _EMPTY_MLFLOW_DB:
        from mlflow.tracking import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="mlflow-db-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()  # creates the tables
        _EMPTY_MLFLOW_DB.append(folder / "mlflow.db")
    return _EMPTY_MLFLOW_DB[0]


def commit(root: Path) -> None:
    """Commit everything in ``root``'s git repository (the runs then record a clean tree)."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "project"], cwd=root, check=True)


def set_params(root: Path, **values: Any) -> None:
    """Replace top-level keys of ``root/params.yaml``."""
    path = root / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def only_studies(root: Path, *names: str, profile: str = "test", **budget: int) -> None:
    """Make ``root``'s params list only ``names`` as studies, all run by ``profile`` (the active one),
    with ``budget`` laid over that profile's budget."""
    path = root / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data["profiles"][profile].setdefault("override", {}).setdefault("budget", {}).update(budget)
    data["studies"], data["profile"], data["sweeps"] = list(names), profile, {}
    for name, spec in data["profiles"].items():
        kept = [s for s in spec["run"] if s in names]
        spec["run"] = list(names) if name == profile or not kept else kept
        spec.get("study_override", {}).clear()
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def write_study(root: Path, name: str, study: dict[str, Any]) -> None:
    (root / "studies" / f"{name}.yaml").write_text(yaml.safe_dump(study, sort_keys=False))


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this interpreter's bin folder first (``python``, ``dvc``, ``ray``)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


def runs_by_parent(uri: str, experiment: str) -> dict[str, tuple[Any, list[Any]]]:
    """Stage name -> (parent run, child runs) of an MLflow experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment '{experiment}' in {uri}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return {p.info.run_name: (p, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id])
            for p in parents}


def metric_steps(uri: str, run_id: str, key: str = "task_average_accuracy") -> list[int]:
    from mlflow.tracking import MlflowClient

    return [m.step for m in MlflowClient(uri).get_metric_history(run_id, key)]


# Ray processes a test starts itself (a head, workers): ports, readiness, stopping them.
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_dashboard(url: str, head: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert head.poll() is None, f"ray start exited:\n{head.stdout.read()}"
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=2).close()
            return
        except urllib.error.HTTPError:  # answering (an auth error is an answer)
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the Ray dashboard at {url} did not answer within {seconds} s")


def processes_using(marker: str) -> list[int]:
    """Ids of live processes whose command line mentions ``marker`` (this test's Ray temp folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group a test started (``start_new_session``), SIGKILL it if it does not end."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def reap(marker: str) -> None:
    """Wait up to 30 s for the processes mentioning ``marker`` to end, then SIGKILL those left."""
    deadline = time.time() + 30
    while processes_using(marker) and time.time() < deadline:
        time.sleep(1)
    for pid in processes_using(marker):
        os.kill(pid, signal.SIGKILL)


# One local Ray for the whole integration tier (tests/pipeline/integration): its stages use an initialised Ray and
# leave it running, so starting it once, not once per module or test, is enough. tests/conftest.py shuts it down
# after the tier's last test, before tests elsewhere start a Ray of their own.
INTEGRATION = REPO / "tests" / "pipeline" / "integration"
SHARED_RAY_CPUS = 2


class SharedRay:
    """A local Ray (:func:`pipeline.cluster.session.local_ray`) started by :meth:`start` and stopped by
    :meth:`close`, both idempotent."""

    def __init__(self) -> None:
        self._stack: ExitStack | None = None

    def start(self) -> None:
        import ray

        from pipeline.cluster.session import local_ray

        if self._stack is None:
            assert not ray.is_initialized(), "a Ray is already running in this process"
            stack = ExitStack()
            stack.enter_context(local_ray(num_cpus=SHARED_RAY_CPUS))  # its temporary folder is removed with it
            self._stack = stack

    def wait_until_idle(self, seconds: float = 60) -> None:
        """Return once all of its CPUs are free: whatever an earlier test ran on it has ended."""
        import ray

        deadline = time.time() + seconds
        while ray.available_resources().get("CPU", 0.0) < SHARED_RAY_CPUS:
            assert time.time() < deadline, f"CPUs still held by an earlier test: {ray.available_resources()}"
            time.sleep(0.5)

    def close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


SHARED_RAY = SharedRay()


def in_integration_tier(item: Any) -> bool:
    return INTEGRATION in Path(item.path).resolve().parents
