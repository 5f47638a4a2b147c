"""Ray: connect to a cluster (``RAY_ADDRESS``) or start a local one in-process; plan trials on its nodes."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import ray

from hypermask.config import ConfigError
from hypermask.data import pin_mirror
from hypermask.footprint import check_fits
from hypermask.numerics import PORTABLE, environment
from pipeline.cluster.placement import TrialPlan, check_satisfiable, plan_trials
from pipeline.errors import PipelineError
from pipeline.spec.params import Params, ResourceRequest
from pipeline.spec.studies import Study


def ray_address(params: Params) -> str:
    """``RAY_ADDRESS``, else params' ``ray.address``, else ``local`` (always a new in-process Ray, never
    an unrelated cluster that happens to run on this machine). A job server's URL (``http://<head>:8265``)
    means the stage runs as a Ray job (:mod:`pipeline.cluster.submit`): inside it, the job's own cluster."""
    address = os.environ.get("RAY_ADDRESS", "").strip() or params.ray_address or "local"
    return "auto" if address.startswith(("http://", "https://")) else address


def ray_temp_root() -> str:
    """Where Ray puts its temporary folder: ``RAY_TMPDIR``, else the system's (``TMPDIR``, else ``/tmp``)."""
    return os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()


@contextmanager
def local_ray(**options: Any) -> Iterator[None]:
    """A new local Ray in this process, whose temporary folder (sessions, logs, trials' working folders)
    is a fresh folder of its own, removed with everything in it once Ray has shut down."""
    temp = tempfile.mkdtemp(prefix="ray-", dir=ray_temp_root())  # short: Ray's socket paths must stay short
    try:
        ray.init(address="local", include_dashboard=False, logging_level="WARNING", _temp_dir=temp, **options)
        yield
    finally:
        ray.shutdown(wait_for_processes=True)
        shutil.rmtree(temp, ignore_errors=True)


def worker_runtime_env() -> dict[str, Any]:
    """Ray's runtime environment for the stage's workers: the default (portable) numeric path pinned from
    their start, before anything in them runs; a trial pins its own setting again before its first operation
    (:func:`hypermask.numerics.pin`)."""
    return {"env_vars": environment(PORTABLE)}


@contextmanager
def ray_session(params: Params) -> Iterator[dict[str, float]]:
    """Ray for the duration of a stage; yields the cluster's resources. An already initialised Ray (a
    test's, or a job driver's) is used as it is and left running; a local one started here leaves
    nothing behind (:func:`local_ray`); a cluster is only disconnected from. The workers of a local Ray get
    :func:`worker_runtime_env`; a cluster's get their job's runtime environment (:mod:`pipeline.cluster.submit`
    and ``cluster/rayjob.yaml`` carry the same variables: Ray refuses a driver's that repeats a job's)."""
    pin_mirror()  # workers start in other folders: a relative mirror path is resolved here, once
    with ExitStack() as stack:
        if not ray.is_initialized():
            address = ray_address(params)
            if address == "local":
                stack.enter_context(local_ray(runtime_env=worker_runtime_env()))
            else:
                ray.init(address=address, logging_level="WARNING")
                stack.callback(ray.shutdown)
        yield dict(ray.cluster_resources())


def largest_node_memory() -> int:
    """Memory (bytes) Ray may hand to tasks on its largest live node."""
    return int(max((node["Resources"].get("memory", 0) for node in ray.nodes() if node.get("Alive")), default=0))


def check_trials_fit(study: Study, seed: int) -> None:
    """Refuse, before any trial starts, a study whose largest configuration cannot fit the largest node
    (one line with the estimate)."""
    memory = largest_node_memory()
    if not memory:
        return
    try:
        for cfg in study.largest_configs(seed):
            check_fits(cfg, memory, where="the largest Ray node")
    except ConfigError as err:
        raise PipelineError(f"study '{study.name}': {err}") from None


def live_nodes() -> list[dict[str, float]]:
    """The total resources of every live Ray node."""
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def plan_resources(request: ResourceRequest, concurrency: int, trials: int, fixed: bool = False) -> TrialPlan:
    """Plan trials on the live nodes (:func:`pipeline.cluster.placement.plan_trials`), refuse a request no node can
    hold unless the cluster is to add such nodes, and print the plan (one line each)."""
    nodes = live_nodes()
    plan = plan_trials(nodes, request, concurrency, trials, fixed)
    waiting = check_satisfiable(nodes, plan, request.wait_for_nodes)
    print(plan.describe(), flush=True)
    if waiting:
        print(waiting, flush=True)
    return plan


def runtime_settings(plan: TrialPlan, data_root: str) -> dict[str, object]:
    """Library settings that follow from the trial plan: the planned torch threads (whatever the trial's
    CPUs: the count changes the numbers), CUDA when a trial has a GPU."""
    return {"threads": plan.threads, "device": "cuda" if plan.gpu > 0 else "cpu", "data_root": data_root,
            "progress": False}
