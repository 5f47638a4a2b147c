"""Memory a configuration needs, estimated from its settings before anything is allocated.

The estimate counts what dominates a run: parameters with their gradients and Adam moments, the
hypernetwork's outputs of every task (regulariser targets, evaluation), the target network's
activations and the dataset held as float tensors. It errs on the high side by a small factor;
:func:`check_fits` refuses a configuration whose estimate exceeds the memory where it will train.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from hypermask.config import Config, ConfigError
from hypermask.registry import MethodSizes, benchmark_spec, dataset_spec, method_spec, resolve

GIB = 1024**3
FLOAT = 4  # bytes per float32
RUNTIME_BYTES = 512 * 1024**2  # interpreter, torch and its kernels
# Activation scalars per sample of the convolutional targets: every layer's outputs (BN included),
# and the widest layer's output (what evaluation, without gradients, holds at a time).
_CONV_ACTIVATIONS = {"resnet20": (3 * 360_448, 32 * 32 * 32), "resnet20_k1": (3 * 180_224, 16 * 32 * 32),
                     "zenkenet": (2 * 90_000, 32 * 32 * 32)}


@dataclass(frozen=True)
class Footprint:
    """Estimated bytes: ``data`` stays in host memory; ``model`` lives on the training device."""

    data: int
    model: int

    @property
    def total(self) -> int:
        return self.data + self.model


def _target(cfg: Config):
    from hypermask.nets import build_target

    spec = benchmark_spec(cfg.benchmark)
    shape, classes = spec.input_shape, spec.outputs
    return build_target(cfg.target, shape, classes, cfg.target_hidden), shape, classes


def method_sizes(cfg: Config, target=None) -> MethodSizes:
    """What the configured method adds to its target network, as the method itself states it."""
    target = target if target is not None else _target(cfg)[0]
    return resolve(method_spec(cfg.method).sizes)(cfg, target)


def hypernetwork_output_size(cfg: Config) -> int:
    """Numbers the hypernetwork emits per task (0 for methods without one)."""
    return method_sizes(cfg).hypernetwork_output


def check_structure(cfg: Config) -> None:
    """Refuse settings that contradict the network they describe (``chunk_size`` beyond the output)."""
    output = hypernetwork_output_size(cfg)
    if output and cfg.chunk_size > output:
        raise ConfigError(f"setting 'chunk_size' must be <= the hypernetwork's output size {output} "
                          f"for this target network, got {cfg.chunk_size}")


def _mlp_params(sizes: list[int]) -> int:
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def _samples_per_task(cfg: Config) -> tuple[int, int]:
    """Training and test samples of the largest task (after ``shots`` and ``train_subset``)."""
    spec = benchmark_spec(cfg.benchmark)
    dataset = dataset_spec(spec.dataset)
    train, test = int(dataset.train_size * spec.task_share), int(dataset.test_size * spec.task_share)
    if cfg.shots and spec.shots_cap_every_task:
        train = min(train, cfg.shots * spec.outputs)
    if cfg.train_subset:
        train = min(train, cfg.train_subset)
    return max(1, train), max(1, test)


def estimate(cfg: Config) -> Footprint:
    """Estimated peak memory of training ``cfg`` (see the module's docstring for what is counted)."""
    target, shape, classes = _target(cfg)
    tasks = cfg.tasks
    sizes = method_sizes(cfg, target)
    output = sizes.hypernetwork_output
    # parameters: hypernetwork, task embeddings, shared target weights
    params = 0
    scalars = 0  # per-step and evaluation tensors besides the parameters
    if output:
        if cfg.chunk_size:
            chunks = math.ceil(output / cfg.chunk_size)
            params += _mlp_params([cfg.embedding_size + cfg.chunk_embedding_size, *cfg.hnet_hidden,
                                   cfg.chunk_size]) + chunks * cfg.chunk_embedding_size
            # every chunk's hidden activations and output for every task at once (kept for backward)
            scalars += 3 * tasks * chunks * (sum(cfg.hnet_hidden) + cfg.chunk_size + cfg.embedding_size
                                             + cfg.chunk_embedding_size)
        else:
            params += _mlp_params([cfg.embedding_size, *cfg.hnet_hidden, output])
        params += tasks * cfg.embedding_size
        scalars += 6 * output  # current output, mask, masked weights and their gradients
        scalars += 3 * tasks * output  # regulariser targets; evaluation's outputs and weights of all tasks
    params += sizes.trained_target
    copies = 4 + (1 if not cfg.iteration_based and cfg.model_selection == "best_val" else 0)
    scalars += copies * params  # value, gradient, two Adam moments (and the best-validation copy)
    scalars += tasks * sizes.stored_per_task
    if cfg.target == "mlp":
        per_sample = math.prod(shape) + sum(cfg.target_hidden) + classes
        widest = max([math.prod(shape), *cfg.target_hidden])
    else:
        per_sample, widest = _CONV_ACTIVATIONS[cfg.target]
    train, test = _samples_per_task(cfg)
    eval_batch = min(cfg.eval_batch_size or test, test)
    scalars += 3 * per_sample * min(cfg.batch_size, train) + 3 * widest * eval_batch
    # dataset: raw bytes, one float copy of every image, the tasks' own copies of their samples
    dataset = dataset_spec(benchmark_spec(cfg.benchmark).dataset)
    samples = dataset.train_size + dataset.test_size
    data = samples * math.prod(dataset.image_shape) + 2 * FLOAT * samples * math.prod(shape)
    return Footprint(data=data, model=FLOAT * scalars + RUNTIME_BYTES)


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def host_memory_bytes() -> int:
    """Physical memory of this machine, or the container's limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def check_fits(cfg: Config, host_bytes: int, device_bytes: int | None = None,
               where: str = "this machine") -> Footprint:
    """Raise :class:`ConfigError` (one line with the estimate) when ``cfg`` cannot fit.

    ``host_bytes``: memory of the machine that holds the data (and the model on CPU);
    ``device_bytes``: memory of the accelerator the model trains on, None for CPU training.
    """
    check_structure(cfg)
    need = estimate(cfg)
    if device_bytes is None and need.total > host_bytes:
        raise ConfigError(f"this configuration needs about {_gib(need.total)} of memory but {where} has "
                          f"{_gib(host_bytes)} (reduce the network or batch sizes)")
    if device_bytes is not None and need.model > device_bytes:
        raise ConfigError(f"this configuration needs about {_gib(need.model)} of device memory but {where} "
                          f"has {_gib(device_bytes)} (reduce the network or batch sizes)")
    if device_bytes is not None and need.data > host_bytes:
        raise ConfigError(f"this configuration's data needs about {_gib(need.data)} of memory but {where} "
                          f"has {_gib(host_bytes)}")
    return need
