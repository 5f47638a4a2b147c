"""A Ray cluster of a head and two worker nodes on this machine (separate `ray start` processes, each worker
with one CPU and a resource of its own): a sweep stage run with `RAY_ADDRESS` naming the cluster's job server
submits itself as a Ray job, spreads over both workers and brings its outputs back into the project;
one worker's raylet is killed (SIGKILL) while a trial on it is between two tasks of its run; the trial goes on
on another worker from its last task checkpoint (each node reads its own verified copy of the data), the study completes with every planned run, no MLflow run
is duplicated or left RUNNING, and every number equals that of an undisturbed run from a driver.
Run alone with ``pytest -m multinode``."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from hypermask.data import verify_dataset
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import write_json
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
    write_study,
)

pytestmark = pytest.mark.multinode

SWEEP = {"kind": "sweep", "description": "multi-node sweep", "benchmark": "split_mnist", "method": "hypermask",
         "grid": {"p": [60]},
         "budget": {"concurrency": 2, "fixed_concurrency": True, "tasks": 3, "iterations": 60, "train_subset": 500,
                    "validation_size": 200},
         "final": {"seeds": [1, 2, 3]}}


class LocalCluster:
    """A head without CPUs and worker nodes with one CPU each, every node its own ``ray start`` process
    group on 127.0.0.1 (token authentication, a temporary folder of the test's own)."""

    def __init__(self, mirror: Path) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="raym", dir="/tmp")  # short: Ray's socket paths stay short
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.env = tool_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
                            HYPERMASK_DATA_MIRROR=str(mirror), RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
                            RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3",
                            # Tune saves the experiment (trials' results included) to storage every half second,
                            # so the test sees a trial between two tasks of its run
                            TUNE_GLOBAL_CHECKPOINT_S="0.5")
        self.nodes: dict[str, tuple[subprocess.Popen, int]] = {}  # name -> (process, node manager port)
        self.first_workers: dict[str, str] = {}  # resource name -> Ray node id of the workers started first
        self.head = self._start("head", ["--head", f"--port={self.gcs_port}", "--num-cpus=0",
                                         "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                                         f"--dashboard-port={self.dashboard_port}", f"--temp-dir={self.temp_dir}"])
        wait_for_dashboard(self.dashboard_url, self.head)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, options: list[str]) -> subprocess.Popen:
        port = free_port()
        process = subprocess.Popen(
            ["ray", "start", "--block", "--node-ip-address=127.0.0.1", f"--node-manager-port={port}",
             # the job agent's own port: the default one may be held by another Ray on this machine
             f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats", *options],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.nodes[name] = (process, port)
        return process

    def add_worker(self, name: str) -> None:
        """A node with one CPU and the resource ``name``, with a temporary folder of its own (as on a machine of
        its own: nodes sharing one would share the jobs' unpacked working directories)."""
        self._start(name, [f"--address={self.address}", "--num-cpus=1", f"--resources={json.dumps({name: 1})}",
                           f"--temp-dir={self.temp_dir}/{name}"])

    def node_ids(self, count: int, seconds: float = 300) -> dict[str, str]:
        """Resource name -> Ray node id of the live workers, once ``count`` of them are up."""
        code = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); "
                "print(json.dumps({k: n['NodeID'] for n in ray.nodes() if n['Alive'] for k in n['Resources'] "
                "if k.startswith('worker_')}))" % self.address)
        deadline = time.time() + seconds
        while True:
            done = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True)
            lines = done.stdout.strip().splitlines()
            found = json.loads(lines[-1]) if done.returncode == 0 and lines else {}
            if len(found) >= count:
                return found
            if time.time() > deadline:
                raise AssertionError(f"{count} worker nodes did not come up within {seconds} s (found {found}):\n"
                                     f"{done.stderr[-2000:]}")
            time.sleep(1)

    def kill_raylet(self, name: str) -> None:
        """SIGKILL the raylet of node ``name``: the process of this cluster (its temporary folder) whose program
        is ``raylet`` and whose node manager port is that node's."""
        wanted = f"--node_manager_port={self.nodes[name][1]}"
        raylets = []
        for pid in processes_using(self.temp_dir):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if Path(args[0]).name == "raylet" and wanted in args:
                raylets.append(pid)
        assert len(raylets) == 1, f"expected one raylet with {wanted} in {self.temp_dir}, found {raylets}"
        os.kill(raylets[0], signal.SIGKILL)

    def stop(self) -> None:
        for process, _ in reversed(list(self.nodes.values())):
            stop_process_group(process)
        reap(self.temp_dir)


def _project(path: Path, mirror: Path, node_root: Path | None = None) -> Path:
    root = copy_project(path, data={"root": str(mirror), "node_root": str(node_root or "")},
                        ray={"storage": str(path.parent / f"{path.name}_storage"), "max_failures": 2})
    only_studies(root, "split_mnist")
    write_study(root, "nodes_sweep", SWEEP)
    data = yaml.safe_load((root / "params.yaml").read_text())
    data["sweeps"] = {"nodes_sweep": "split_mnist"}
    data["profiles"]["test"]["run"] = ["nodes_sweep"]
    data["profiles"]["test"]["override"]["budget"] = {"concurrency": 2}
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    write_json(Layout.at(root).tune_summary("split_mnist"), {"status": "skipped", "reason": "not run here"})
    return root


def _latest_results(root: Path) -> dict[str, dict]:
    """Trial folder -> the last result Tune wrote for it so far (``result.json`` on Ray's storage)."""
    found = {}
    for path in root.parent.glob(f"{root.name}_storage/sweep-nodes_sweep-*/*/result.json"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines:
            try:
                found[path.parent.name] = json.loads(lines[-1])
            except json.JSONDecodeError:  # being written
                continue
    return found


def _wait_for_a_trial_between_tasks(root: Path, node: str, job: subprocess.Popen, seconds: float = 300) -> dict:
    """The last result of a trial on ``node`` that has finished a task of its run and not its last one."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert job.poll() is None, f"the job ended early:\n{job.stdout.read()}"
        for result in _latest_results(root).values():
            if result.get("node_id") == node and 1 <= result["task"] < result["num_tasks"]:
                return result
        time.sleep(0.2)
    raise AssertionError(f"no trial on node {node} finished a task within {seconds} s")


def _per_seed(root: Path) -> dict:
    return json.loads((root / "results" / "sweep" / "nodes_sweep" / "runs.json").read_text())["per_seed"]


@pytest.fixture(scope="module")
def cluster(mirror: Path) -> Iterator[LocalCluster]:
    """A head and two one-CPU workers, ``worker_a`` and ``worker_b``; stopped (and nothing left) at the end."""
    started = LocalCluster(mirror)
    try:
        started.add_worker("worker_a")
        started.add_worker("worker_b")
        started.first_workers = started.node_ids(2)
        yield started
    finally:
        started.stop()
    assert not processes_using(started.temp_dir)
    shutil.rmtree(started.temp_dir, ignore_errors=True)  # nothing of the cluster is left behind


@pytest.fixture(scope="module")
def reference(cluster: LocalCluster, mirror: Path, tmp_path_factory) -> dict:
    """The sweep's numbers from an undisturbed run, its driver connected with RAY_ADDRESS."""
    root = _project(tmp_path_factory.mktemp("calm") / "project", mirror)
    driver = subprocess.run([sys.executable, "-m", "pipeline", "--root", str(root), "sweep", "nodes_sweep"],
                            env={**cluster.env, "RAY_ADDRESS": cluster.address}, capture_output=True, text=True,
                            timeout=900)
    assert driver.returncode == 0, driver.stdout + driver.stderr
    runs = json.loads((root / "results" / "sweep" / "nodes_sweep" / "runs.json").read_text())["runs"]
    assert len({n for r in runs for _, n in r["nodes"]}) == 2  # trials ran on both workers
    return _per_seed(root)


def _closed_runs(root: Path) -> tuple[object, list]:
    """The sweep's MLflow parent and child runs, checked: one run per planned trial, none left RUNNING."""
    parent, children = runs_by_parent(f"sqlite:///{root / 'mlflow.db'}", "nodes_sweep")["sweep"]
    assert len(children) == 3 and len({c.data.tags["hypermask.trial_id"] for c in children}) == 3
    assert all(c.info.status == "FINISHED" for c in children) and parent.info.status == "FINISHED"
    return parent, children


def test_a_submitted_study_spreads_over_nodes_and_survives_losing_one(cluster: LocalCluster, reference: dict,
                                                                      tmp_path: Path, mirror: Path) -> None:
    node_data = tmp_path / "node_data"  # each node's own copy of the data (here the nodes share a disk)
    root = _project(tmp_path / "lost", mirror, node_data)
    nodes = cluster.first_workers
    # the stage submits itself to the job server and copies its outputs back into the project
    job = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--root", str(root), "sweep", "nodes_sweep"],
        env={**cluster.env, "RAY_ADDRESS": cluster.dashboard_url,
             "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = _wait_for_a_trial_between_tasks(root, nodes["worker_a"], job)
    cluster.kill_raylet("worker_a")
    killed_at = victim["task"]
    cluster.add_worker("worker_c")  # a replacement joins, as an autoscaler would add one
    log, _ = job.communicate(timeout=900)
    assert job.returncode == 0 and "submitted Ray job" in log and "outputs copied into" in log, log

    runs = json.loads((root / "results" / "sweep" / "nodes_sweep" / "runs.json").read_text())["runs"]
    assert len(runs) == 3 and all(r["outcome"] == "completed" for r in runs)
    assert len({n for r in runs for _, n in r["nodes"]}) >= 2  # trials ran on more than one node
    moved = [r for r in runs if r["trial_id"] == victim["trial_id"]]
    assert len(moved) == 1
    tasks_on: dict[str, set[int]] = {}
    for task, node in moved[0]["nodes"]:
        tasks_on.setdefault(node, set()).add(task)
    assert max(tasks_on.pop(nodes["worker_a"])) == killed_at  # it was between two tasks when its node died
    assert tasks_on and min(min(t) for t in tasks_on.values()) >= killed_at  # went on from its checkpoint
    assert max(max(t) for t in tasks_on.values()) == SWEEP["budget"]["tasks"]

    _, children = _closed_runs(root)
    moved_run = [c for c in children if c.data.tags["hypermask.trial_id"] == victim["trial_id"]][0]
    assert moved_run.data.tags["hypermask.nodes"].split(",")[0] == nodes["worker_a"]
    assert len(moved_run.data.tags["hypermask.nodes"].split(",")) == 2
    assert _per_seed(root) == reference  # losing a node changed no number
    verify_dataset("mnist", node_data)  # the nodes' own copy, checked against the dataset's checksums


def test_a_driver_killed_mid_study_resumes_it_on_the_cluster(cluster: LocalCluster, reference: dict,
                                                             tmp_path: Path, mirror: Path) -> None:
    root = _project(tmp_path / "restarted", mirror)
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    command = [sys.executable, "-m", "pipeline", "--root", str(root), "sweep", "nodes_sweep"]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    deadline = time.time() + 300
    while not any(r["task"] >= 1 for r in _latest_results(root).values()):
        assert driver.poll() is None and time.time() < deadline, "no trial finished a task"
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((root / "results" / "sweep" / "nodes_sweep" / "runs.json").read_text())["resumed"] is True
    _closed_runs(root)
    assert _per_seed(root) == reference
