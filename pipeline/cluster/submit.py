"""A stage as a Ray job: with ``RAY_ADDRESS`` (or ``ray.address``) naming a cluster's job server
(``http://<head>:8265``), ``tune``, ``final`` and ``sweep`` submit themselves to the cluster, stream the job's
log, and bring the stage's outputs back into this project, so ``dvc repro`` runs a study on a cluster and
still records its outputs in ``dvc.lock``.

The job runs the same stage on the cluster (``--outputs-to``): Tune state on ``ray.storage`` (shared with the
cluster: a URI or a folder mounted at the same path everywhere), runs in this project's MLflow store (which
must then be a server or a shared path), and the stage outputs written to ``<ray.storage>/outputs/<job>``,
from where this process copies them into the workspace. Stopping this process stops the job; the next run
restores the study from ``ray.storage``."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from pathlib import Path

from hypermask.messages import last_line
from hypermask.numerics import PORTABLE, environment
from pipeline.errors import PipelineError
from pipeline.spec.params import Params
from pipeline.workspace.graph import STAGES
from pipeline.workspace.layout import Layout

JOB_SCHEMES = ("http://", "https://")
# Not uploaded with the job: datasets, local stores and caches. Earlier stages' outputs (results/plan, a
# search's summary) are the job's inputs and go with it.
EXCLUDES = ["data", "ray_storage", "mlflow.db", "mlartifacts", "reports", ".git", ".venv", ".dvc/cache", "__pycache__"]
ENDED = ("SUCCEEDED", "FAILED", "STOPPED")  # JobStatus values (a str enum)
SUBMIT_PATIENCE_S = 120  # how long a just-started cluster may answer "try again later"


def job_server(params: Params) -> str:
    """The cluster's job server when this stage is to run as a Ray job, else ''."""
    address = os.environ.get("RAY_ADDRESS", "").strip() or params.ray_address
    return address if address.startswith(JOB_SCHEMES) else ""


def _shared(layout: Layout, params: Params) -> tuple[str, str]:
    """Ray storage and the tracking URI as the cluster must see them; one line when they cannot be shared."""
    from pipeline.tracking.runs import tracking_uri

    storage = params.ray_storage
    if not ("://" in storage or Path(storage).is_absolute()):
        raise PipelineError(f"params.yaml: 'ray.storage' is '{storage}', a folder of this project: a stage "
                            "submitted to a Ray job server needs storage the cluster shares (s3://..., gs://... "
                            "or a path mounted on every node)")
    uri = tracking_uri(layout, params.tracking_uri)
    if not (os.environ.get("MLFLOW_TRACKING_URI") or params.tracking_uri):
        raise PipelineError("a stage submitted to a Ray job server needs a tracking store the cluster reaches: "
                            "set MLFLOW_TRACKING_URI (an MLflow server, or a shared path)")
    return storage, uri


def copy_tree(source: str, target: str) -> None:
    """Copy the file or folder ``source`` to ``target`` (local paths or URIs), replacing what is there."""
    import pyarrow.fs as pafs

    from pipeline.workspace.locations import filesystem

    source_fs, source_path = filesystem(source)
    target_fs, target_path = filesystem(target)
    info = source_fs.get_file_info(source_path)
    if info.type == pafs.FileType.NotFound:
        raise PipelineError(f"the job wrote no {source}")
    if target_fs.get_file_info(target_path).type == pafs.FileType.Directory:
        target_fs.delete_dir(target_path)
    folder = target_path if info.type == pafs.FileType.Directory else target_path.rsplit("/", 1)[0]
    target_fs.create_dir(folder, recursive=True)
    pafs.copy_files(source_path, target_path, source_filesystem=source_fs, destination_filesystem=target_fs)


def publish_outputs(layout: Layout, stage: str, study: str, destination: str) -> None:
    """In the job: copy the stage's outputs to ``destination`` (paths kept relative to the project)."""
    for path in STAGES[stage].outputs(layout, study):
        copy_tree(str(path), f"{destination.rstrip('/')}/{path.relative_to(layout.root).as_posix()}")


def _fetch_outputs(layout: Layout, stage: str, study: str, source: str) -> None:
    for path in STAGES[stage].outputs(layout, study):
        if path.is_dir():
            shutil.rmtree(path)
        copy_tree(f"{source.rstrip('/')}/{path.relative_to(layout.root).as_posix()}", str(path))


def submit_stage(layout: Layout, params: Params, stage: str, study: str, server: str) -> None:
    """Run ``stage`` of ``study`` as a Ray job on ``server``, print its log as it comes, and copy its outputs
    into this project once it has succeeded (one line when it did not)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    storage, uri = _shared(layout, params)
    job = f"hypermask-{stage}-{study}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    outputs = f"{storage.rstrip('/')}/outputs/{job}"
    entrypoint = (f"python -m pipeline --profile {params.profile.name} --outputs-to {outputs} {stage} {study}")
    env_vars = {**environment(PORTABLE), "MLFLOW_TRACKING_URI": uri}  # workers start on the default path
    runtime_env = {"working_dir": str(layout.root), "excludes": EXCLUDES, "env_vars": env_vars}
    deadline = time.time() + SUBMIT_PATIENCE_S
    while True:
        try:
            client = JobSubmissionClient(server)
            client.submit_job(entrypoint=entrypoint, submission_id=job, runtime_env=runtime_env)
            break
        except Exception as err:  # the SDK raises plain exceptions for an unreachable or refusing server
            reason = last_line(err) or type(err).__name__
            if "try again later" in reason and time.time() < deadline:  # a cluster whose job agents are starting
                print(f"the Ray job server is not ready ({reason}); trying again", flush=True)
                time.sleep(5)
                continue
            raise PipelineError(f"cannot submit to the Ray job server {server}: {reason}") from None
    print(f"submitted Ray job {job} to {server}", flush=True)
    shown = 0
    try:
        while True:
            status = client.get_job_status(job)
            log = client.get_job_logs(job)
            sys.stdout.write(log[shown:])
            sys.stdout.flush()
            shown = len(log)
            if status in ENDED:
                break
            time.sleep(2)
    except KeyboardInterrupt:
        client.stop_job(job)
        raise
    if status != JobStatus.SUCCEEDED:
        last = (client.get_job_info(job).message or "").strip().splitlines()
        raise PipelineError(f"Ray job {job} ended {status}: {last[-1] if last else 'see its log above'}")
    _fetch_outputs(layout, stage, study, outputs)
    print(f"job {job}: outputs copied into {layout.root}{_remove_copy(outputs)}", flush=True)


def _remove_copy(location: str) -> str:
    """Remove the job's copy of the outputs on the shared storage; a note when it could not."""
    from pipeline.workspace.locations import filesystem

    try:
        fs, path = filesystem(location)
        fs.delete_dir(path)
        return ""
    except OSError as err:
        return f" (its copy {location} was left: {err})"
