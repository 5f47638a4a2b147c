"""The shipped cluster files: the `ray up` file against the schema of the installed Ray, the KubeRay RayJob
against the fields KubeRay v1.7.0 defines, and both against the project's image and pipeline commands."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml

from hypermask.numerics import MARKER, PORTABLE, PORTABLE_VARIABLES
from pipeline.__main__ import _parser
from pipeline_fixtures import REPO

IMAGE = "hypermask-studio"
# KubeRay v1.7.0, ray-operator/apis/ray/v1 (rayjob_types.go, raycluster_types.go): the JSON names of the fields.
RAYJOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
               "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint",
               "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus",
               "entrypointNumGpus", "ttlSecondsAfterFinished", "preRunningDeadlineSeconds",
               "shutdownAfterJobFinishes", "suspend"}
RAYCLUSTER_SPEC = {"upgradeStrategy", "authOptions", "suspend", "managedBy", "autoscalerOptions",
                   "headServiceAnnotations", "enableInTreeAutoscaling", "gcsFaultToleranceOptions",
                   "historyServerOptions", "networkPolicy", "tlsOptions", "headGroupSpec", "rayVersion",
                   "workerGroupSpecs"}
HEAD_GROUP = {"template", "headService", "enableIngress", "ingressOptions", "resources", "labels",
              "rayStartParams", "serviceType"}
WORKER_GROUP = {"suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds", "priority",
                "resources", "labels", "rayStartParams", "template", "scaleStrategy", "numOfHosts"}


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "cluster" / name).read_text())


def _image_ray_version() -> str:
    return re.search(r'"ray\[[a-z,]+\]==([0-9.]+)"', (REPO / "Dockerfile").read_text()).group(1)


def _ray_schema() -> dict[str, Any]:
    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


def _pipeline_commands(text: str) -> list[list[str]]:
    """The argument lists of every ``python -m pipeline ...`` in ``text``."""
    return [shlex.split(args) for args in re.findall(r"python -m pipeline ([^&'\n(#]+)", text)]


def _check_pipeline_command(args: list[str]) -> None:
    """Arguments the pipeline's CLI accepts, naming a profile and a study that params.yaml lists."""
    parsed = _parser().parse_args(args)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert parsed.profile is None or parsed.profile in params["profiles"], args
    assert getattr(parsed, "study", None) in (None, *params["studies"]), args


def test_ray_up_file_passes_the_installed_ray_schema_and_runs_the_project_image() -> None:
    config = _load("ray-cluster.yaml")
    jsonschema.validate(config, _ray_schema())
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))  # Ray's own checks (head type among node types, ...)
    assert ray.__version__ == _image_ray_version()  # the client that validates is the cluster's Ray
    docker = config["docker"]
    assert docker["image"].endswith(f"/{IMAGE}")
    assert not docker.get("disable_shm_size_detection")  # Ray sizes /dev/shm (--shm-size) from the node's memory
    gpu = config["available_node_types"]["gpu"]
    assert gpu["docker"]["worker_image"].endswith(f"/{IMAGE}:cuda")
    assert "--gpus all" in gpu["docker"]["worker_run_options"]
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--head" in head_start and "--dashboard-host=0.0.0.0" in head_start  # `ray job submit` reaches it
    assert "$RAY_HEAD_IP:6379" in " ".join(config["worker_start_ray_commands"])
    for args in _pipeline_commands((REPO / "cluster" / "ray-cluster.yaml").read_text()):
        _check_pipeline_command(args)


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data[key]
    data[last] = value


@pytest.mark.parametrize("path, value", [("dockr", {}), ("available_node_types.gpu.resources", {"GPU": 0.5}),
                                         ("max_workers", "eight"), ("docker.run_options", "--shm-size=8g")])
def test_the_ray_schema_refuses_a_broken_cluster_file(path: str, value: Any) -> None:
    config = _load("ray-cluster.yaml")
    _set(config, path, value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, _ray_schema())


def _unknown(fields: dict[str, Any], known: set[str], where: str) -> list[str]:
    return [f"{where}.{name}" for name in fields if name not in known]


def _check_rayjob(job: dict[str, Any]) -> None:
    """The RayJob's required fields and every key under spec a field of KubeRay v1.7.0."""
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    cluster = spec["rayClusterSpec"]
    unknown = _unknown(spec, RAYJOB_SPEC, "spec") + _unknown(cluster, RAYCLUSTER_SPEC, "spec.rayClusterSpec")
    unknown += _unknown(cluster["headGroupSpec"], HEAD_GROUP, "headGroupSpec")
    for group in cluster.get("workerGroupSpecs", []):
        unknown += _unknown(group, WORKER_GROUP, f"workerGroupSpecs[{group.get('groupName')}]")
    assert not unknown, f"not RayJob/RayCluster fields of KubeRay v1.7.0: {unknown}"
    assert spec["entrypoint"].strip() and cluster["headGroupSpec"]["template"]["spec"]["containers"]
    for group in cluster.get("workerGroupSpecs", []):
        assert group["groupName"] and group["template"]["spec"]["containers"] and "rayStartParams" in group
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    if spec.get("ttlSecondsAfterFinished", 0) > 0:  # KubeRay rejects a TTL without the shutdown
        assert spec["shutdownAfterJobFinishes"] is True


def test_rayjob_manifest_uses_kuberay_fields_and_the_project_image() -> None:
    job = _load("rayjob.yaml")
    _check_rayjob(job)
    spec, cluster = job["spec"], job["spec"]["rayClusterSpec"]
    assert spec["shutdownAfterJobFinishes"] is True and cluster["rayVersion"] == _image_ray_version()
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"].startswith("http")  # the driver's MLflow server
    pinned = {k: v for k, v in runtime_env["env_vars"].items() if k != "MLFLOW_TRACKING_URI"}
    assert pinned == {**PORTABLE_VARIABLES, MARKER: PORTABLE}  # workers start on the default numeric path
    commands = _pipeline_commands(spec["entrypoint"])
    assert [args[-2:] for args in commands[1:]] == [["tune", "split_mnist"], ["final", "split_mnist"]]
    for args in commands:
        _check_pipeline_command(args)
    groups = {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}
    for name, group in groups.items():
        pod = group["template"]["spec"]
        memory_volumes = {v["name"] for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"}
        for container in pod["containers"]:
            assert container["image"].split("/")[-1].split(":")[0] == IMAGE, name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/dev/shm") in memory_volumes, f"{name}: /dev/shm is not a memory volume"
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]
    assert gpu["image"].endswith(f"{IMAGE}:cuda") and gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("path, value", [("spec.entrypont", "python -m pipeline check"),
                                         ("spec.rayClusterSpec.workerGroupSpec", []),
                                         ("spec.rayClusterSpec.headGroupSpec.replicas", 1)])
def test_the_rayjob_check_refuses_an_unknown_field(path: str, value: Any) -> None:
    job = _load("rayjob.yaml")
    _set(job, path, value)
    with pytest.raises(AssertionError, match="not RayJob/RayCluster fields of KubeRay v1.7.0"):
        _check_rayjob(job)


def test_docs_give_node_flags_and_the_versions_client_and_cluster_share() -> None:
    docs = (REPO / "docs" / "pipeline.md").read_text()
    section = docs[docs.index("## On a Ray cluster"):]
    section = section[:section.index("\n## ", 1)]
    runs = [line for line in section.splitlines() if line.startswith("docker run")]
    assert runs and all("--network host" in line and "--shm-size" in line for line in runs)
    assert any("--gpus all" in line and ":cuda" in line for line in runs)
    python = re.search(r"ARG PYTHON_VERSION=([0-9.]+)", (REPO / "Dockerfile").read_text()).group(1)
    assert f"Python {python}" in section and f"Ray {_image_ray_version()}" in section
    assert "cluster/ray-cluster.yaml" in section and "cluster/rayjob.yaml" in section
    for args in _pipeline_commands(section):
        _check_pipeline_command(args)


def test_image_check_script_parses_and_its_job_uses_the_library_as_it_is() -> None:
    """cluster/check-image.sh needs a Docker engine to run; here: the shell parses, and the job it submits
    (cluster/image_job.py) runs its three training steps against the installed library (so an API change
    breaks this test, not the next image check)."""
    script = REPO / "cluster" / "check-image.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert "< cluster/image_job.py" in script.read_text()
    spec = importlib.util.spec_from_file_location("image_job", REPO / "cluster" / "image_job.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    losses = job.three_hypermask_steps()
    assert len(losses) == 3 and losses[-1] < losses[0]
