"""A study against a real MLflow tracking server over HTTP (proxied artifacts): the server going away
mid-study (its address refuses connections and open ones are cut) stops the stage with one line, and a re-run
after it returns completes without losing finished trials or duplicating runs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline_fixtures import (
    TINY_STUDY,
    copy_project,
    empty_mlflow_db,
    free_port,
    metric_steps,
    only_studies,
    runs_by_parent,
    tool_env,
    write_study,
)

STUDY = {**TINY_STUDY, "initial_points": [{"beta": 5.0e-3, "lr": 1.0e-3}, {"beta": 1.0e-3, "lr": 3.0e-3},
                                          {"beta": 2.0e-2, "lr": 1.0e-3}]}


def _start_server(db: Path, artifacts: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:port (sqlite backend, proxied artifacts), once it answers /health."""
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(artifacts)],
        env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return server
        except OSError:
            assert server.poll() is None, "mlflow server exited at start"
            time.sleep(1)
    _stop(server)
    raise AssertionError("mlflow server did not answer within 3 minutes")


def _cut(end: socket.socket) -> None:
    """Shut both directions of a connection (one already shut is left as it is)."""
    try:
        end.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Gateway:
    """The server's address as the stage sees it: a TCP forwarder to the server. :meth:`close` makes the address
    refuse connections and cuts the open ones, as when the server goes away; :meth:`open` brings it back."""

    def __init__(self, target: int) -> None:
        self.port, self.target = free_port(), target
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.open()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self._lock:
                self._open += [client, upstream]
            for source, dest in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, dest), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, dest: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                dest.sendall(data)
        except OSError:
            pass
        for end in (source, dest):
            _cut(end)

    def close(self) -> None:
        assert self._listener is not None
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        with self._lock:
            cut, self._open = self._open, []
        for end in cut:
            _cut(end)
            end.close()


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=60)


def _task_results(db: Path) -> int:
    """Per-task results the server has stored (read from its database)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM metrics WHERE key = 'task_average_accuracy'").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _ended_trials(experiment: Path) -> dict[str, float]:
    """Trial id -> timestamp of the last result of every trial Ray recorded as ended."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    return {t.trial_id: t.last_result.get("timestamp") for t in analysis.trials if t.status in ("TERMINATED", "ERROR")}


@pytest.mark.slow
def test_a_study_against_a_tracking_server_that_goes_away_and_returns(tmp_path: Path, mirror: Path) -> None:
    root = copy_project(tmp_path / "project", data={"root": str(mirror)}, ray={"storage": "ray_storage"})
    write_study(root, "tiny", STUDY)
    only_studies(root, "tiny", tasks=2)
    db, artifacts, port = tmp_path / "server.db", tmp_path / "artifacts", free_port()
    shutil.copy2(empty_mlflow_db(), db)  # the server's database, its tables made
    server = _start_server(db, artifacts, port)
    gateway = Gateway(port)
    url = f"http://127.0.0.1:{gateway.port}"
    env = tool_env(HYPERMASK_DATA_MIRROR=str(mirror), MLFLOW_TRACKING_URI=url, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                   MLFLOW_HTTP_REQUEST_TIMEOUT="20")
    stage = [sys.executable, "-m", "pipeline", "tune", "tiny"]
    try:
        first = subprocess.Popen(stage, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 400
        while not _task_results(db) and first.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert first.poll() is None, "the stage ended before its first trial result"
        assert _task_results(db), "no trial result within the deadline"
        gateway.close()  # the server goes away mid-study
        out, err = first.communicate(timeout=400)
        assert first.returncode == 2, out + err
        errors = [line for line in err.splitlines() if line.startswith("pipeline: error:")]
        assert len(errors) == 1 and f"MLflow tracking server {url} stopped answering" in errors[0], err[-3000:]
        experiment = next((root / "ray_storage").glob("tune-tiny-*/"))
        ended_before = _ended_trials(experiment)
        assert not (root / "results" / "tune" / "tiny" / "summary.json").exists()

        gateway.open()  # the server returns with its database
        second = subprocess.run(stage, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "resuming tune-tiny-" in second.stdout + second.stderr
        ended_after = _ended_trials(experiment)
        assert {k: ended_after.get(k) for k in ended_before} == ended_before  # finished trials kept as they were
        assert len(ended_after) == 3

        parent, children = runs_by_parent(url, "tiny")["tune"]
        assert parent.info.status == "FINISHED"
        assert sorted(c.data.tags["hypermask.trial_id"] for c in children) == sorted(ended_after)  # no duplicates
        for child in children:
            assert child.data.tags["hypermask.outcome"] in ("completed", "pruned", "diverged", "failed")
            steps = metric_steps(url, child.info.run_id)
            assert steps == list(range(len(steps)))  # every finished task once
        done = next(c for c in children if c.data.tags["hypermask.outcome"] == "completed")
        logged = {a.path for a in MlflowClient(url).list_artifacts(done.info.run_id)}
        assert {"accuracy_matrix.json", "accuracy_matrix.png"} <= logged
        assert list(artifacts.rglob("accuracy_matrix.json"))  # stored by the server, sent over HTTP
    finally:
        _stop(server)
