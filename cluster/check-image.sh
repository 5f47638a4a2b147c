#!/usr/bin/env bash
# Checks the node image on a machine with a Docker engine, in three steps:
#   1. builds it (arguments go to `docker build`: --build-arg TORCH_VARIANT=cu130, --build-arg TORCH_INDEX_URL=...)
#   2. runs `dvc repro` on the embedded defaults inside it (a local Ray, a local MLflow store) and checks that
#      the pipeline is up to date afterwards, the report was written and every study of the profile is done
#   3. starts a head and a worker container on the host's network, as docs/pipeline.md starts nodes, and runs a
#      Ray job through the head's job server whose task (three HyperMask training steps) must run on the worker
# Usage: bash cluster/check-image.sh [docker build arguments...]
# Environment: IMAGE (default hypermask-studio:check); HYPERMASK_DATA_MIRROR=<folder with MNIST/raw/> mounts a
# local copy of the datasets instead of downloading them; DOCKER_BUILD_NETWORK=host where the default bridge has
# no network; CHECK_PORT (default 26379) and CHECK_DASHBOARD_PORT (default 28265) for the test cluster.
set -euo pipefail

IMAGE=${IMAGE:-hypermask-studio:check}
PORT=${CHECK_PORT:-26379}
DASHBOARD_PORT=${CHECK_DASHBOARD_PORT:-28265}
HEAD=hypermask-check-head
WORKER=hypermask-check-worker
cd "$(dirname "$0")/.."

cleanup() { docker rm -f "$HEAD" "$WORKER" >/dev/null 2>&1 || true; }
trap cleanup EXIT
step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "1/3 build $IMAGE"
docker build ${DOCKER_BUILD_NETWORK:+--network "$DOCKER_BUILD_NETWORK"} -t "$IMAGE" "$@" .

step "2/3 dvc repro inside the image"
mirror=()
if [[ -n "${HYPERMASK_DATA_MIRROR:-}" ]]; then
    mirror=(-v "$(realpath "$HYPERMASK_DATA_MIRROR"):/mirror:ro" -e HYPERMASK_DATA_MIRROR=/mirror)
fi
docker run --rm --network host --shm-size=2g "${mirror[@]}" "$IMAGE" bash -c '
    set -euo pipefail
    dvc repro
    status=$(dvc status)
    echo "$status"
    [[ $status == *"up to date"* ]]
    test -s reports/report.md
    python - <<"EOF"
import json, yaml
params = yaml.safe_load(open("params.yaml"))
for study in params["profiles"][params["profile"]]["run"]:
    metrics = json.load(open(f"metrics/{study}.json"))
    assert metrics["status"] == "done", (study, metrics["status"])
    mean, std = (metrics["tuned"]["average_accuracy"][key] for key in ("mean", "std"))
    print(f"{study}: tuned configuration {mean:.2f} ± {std:.2f} % test accuracy")
EOF'

step "3/3 a head and a worker container, one Ray job"
cleanup
docker run -d --name "$HEAD" --network host --shm-size=2g "$IMAGE" \
    ray start --head --block --port="$PORT" --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
    --num-cpus=1 >/dev/null
docker run -d --name "$WORKER" --network host --shm-size=2g "$IMAGE" \
    ray start --address="127.0.0.1:$PORT" --block --num-cpus=1 --resources='{"check_worker": 1}' >/dev/null
# the job's code (cluster/image_job.py) goes in on stdin: the image holds the project's packages, not cluster/
docker exec -i -e DASHBOARD="http://127.0.0.1:$DASHBOARD_PORT" "$HEAD" bash -c '
    job=$(cat)
    for _ in $(seq 60); do ray job list --address "$DASHBOARD" >/dev/null 2>&1 && break; sleep 2; done
    ray job submit --address "$DASHBOARD" -- python -c "$job"' < cluster/image_job.py

step "image checks passed"
