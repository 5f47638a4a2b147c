# HyperMask Studio: the library, the study pipeline and Ray in one image, usable as a Ray cluster node.
#   CPU (default): docker build -t hypermask-studio .
#   CUDA:          docker build --build-arg TORCH_VARIANT=cu130 -t hypermask-studio:cuda .
#                  (any CUDA variant PyTorch publishes for torch 2.14.1; the wheels bring the CUDA
#                  runtime, the host brings the driver and the NVIDIA container toolkit)
#   Mirror:        docker build --build-arg TORCH_INDEX_URL=https://<mirror>/simple -t hypermask-studio .
#                  (a package index that holds torch 2.14.1, torchvision 0.29.1 and their dependencies)
# A node (docs/pipeline.md, "On a Ray cluster"; cluster/ holds a `ray up` file and a KubeRay RayJob):
#   Head:   docker run --rm --network host --shm-size=8g hypermask-studio
#   Worker: docker run --rm --network host --shm-size=8g [--gpus all] hypermask-studio[:cuda] \
#               ray start --address=<head>:6379 --block
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from PyTorch's index for the chosen variant (the CPU wheels carry no CUDA libraries)
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        torch==2.14.1 torchvision==0.29.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hypermask ./hypermask
COPY pipeline ./pipeline
# ray[default] adds the dashboard and job server that `ray job submit` talks to
RUN pip install --no-cache-dir . "ray[default,tune]==2.60.0"

FROM python:${PYTHON_VERSION}-slim
# rsync and ssh: the `ray up` launcher copies its files into the container and, from the head's container,
# sets up worker nodes over ssh
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends openssh-client rsync \
    && rm -rf /var/lib/apt/lists/*
# login shells (the commands of `ray up` and of KubeRay run in `bash -l`) take PATH from /etc/profile
RUN echo "export PATH=/opt/venv/bin:\$PATH" > /etc/profile.d/venv.sh
# owned by the image's user: a node's setup commands may add packages (the autoscaler's cloud SDK, e.g. boto3)
COPY --from=build --chown=1000:1000 /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 1000 --user-group ray
USER 1000:1000
# /home/ray/app is a complete project folder (python -m pipeline --root) and a DVC project without git, so
# `docker run ... hypermask-studio dvc repro` runs the pipeline on the embedded defaults: a stage's key hashes
# the sources found there, so they sit beside the settings and the study files
RUN mkdir /home/ray/app
WORKDIR /home/ray/app
COPY --chown=1000:1000 params.yaml dvc.yaml ./
COPY --chown=1000:1000 studies ./studies
COPY --chown=1000:1000 hypermask ./hypermask
COPY --chown=1000:1000 pipeline ./pipeline
ENV DVC_NO_ANALYTICS=1
RUN dvc init --no-scm --quiet
# the project's ignore list: byte code written next to the sources would otherwise change the stages' deps
COPY --chown=1000:1000 .dvcignore ./
EXPOSE 6379 8265
CMD ["ray", "start", "--head", "--block", "--port=6379", "--dashboard-host=0.0.0.0"]
