"""Ray: connect to a cluster (``RAY_ADDRESS``) or start a local one in-process; size trials to it."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator, Mapping

import ray
from hypermask.config import ConfigError
from hypermask.data import pin_mirror
from hypermask.footprint import check_fits

from pipeline.errors import PipelineError
from pipeline.params import Params
from pipeline.studies import Study


def ray_address(params: Params) -> str:
    """``RAY_ADDRESS``, else params' ``ray.address``, else ``local`` (always a new in-process Ray, never
    an unrelated cluster that happens to run on this machine)."""
    return os.environ.get("RAY_ADDRESS", "").strip() or params.ray_address or "local"


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


@contextmanager
def ray_session(params: Params) -> Iterator[dict[str, float]]:
    """Ray for the duration of a stage; yields the cluster's resources. An already initialised Ray (a
    test's, or a job driver's) is used as it is and left running; a local one started here leaves
    nothing behind (:func:`local_ray`); a cluster is only disconnected from."""
    pin_mirror()  # workers start in other folders: a relative mirror path is resolved here, once
    with ExitStack() as stack:
        if not ray.is_initialized():
            address = ray_address(params)
            if address == "local":
                stack.enter_context(local_ray())
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


def plan_resources(cluster: Mapping[str, float], concurrency: int, cpus: float | None = None,
                   gpus: float | None = None) -> dict[str, float]:
    """Per-trial ``{"cpu", "gpu"}``: overrides where given, else the cluster shared by ``concurrency``
    trials (whole CPUs, at least one; a GPU fraction rounded down to 1/100, at most one GPU)."""
    if cpus is None:
        cpus = float(max(1, int(cluster.get("CPU", 1) // concurrency)))
    if gpus is None:
        total = cluster.get("GPU", 0.0)
        gpus = min(1.0, math.floor(100 * total / concurrency) / 100) if total else 0.0
    return {"cpu": cpus, "gpu": gpus}


def runtime_settings(resources: Mapping[str, float], data_root: str) -> dict[str, object]:
    """Library settings that follow from where a trial runs: threads = its CPUs, CUDA when it has a GPU."""
    return {"threads": max(1, int(resources["cpu"])), "device": "cuda" if resources["gpu"] > 0 else "cpu",
            "data_root": data_root, "progress": False}
