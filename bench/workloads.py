"""Published configurations as benchmark workloads: a method to train and batches to feed it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hypermask.config import Config, resolve_config
from hypermask.data import build_stream
from hypermask.masks import ramped_sparsity
from hypermask.methods import HyperMask, build_method
from hypermask.nets import build_target

# Benchmark name -> (hypermask benchmark, published-config overrides, default timed repeats).
WORKLOADS: dict[str, tuple[str, dict[str, str], int]] = {
    "split_mnist": ("split_mnist", {}, 10),
    "permuted_mnist": ("permuted_mnist", {}, 5),
    "split_cifar100_resnet20": ("split_cifar100", {"target": "resnet20"}, 5),
    "split_cifar100_zenkenet": ("split_cifar100", {"target": "zenkenet"}, 5),
}
CIFAR_SHAPE, CIFAR_CLASSES = (3, 32, 32), 10


@dataclass
class Batches:
    """A few fixed training batches of one task, already preprocessed, on the device."""

    xs: list[Tensor]
    ys: list[Tensor]
    input_shape: tuple[int, ...]
    classes: int

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.xs[i % len(self.xs)], self.ys[i % len(self.ys)]


def workload_config(name: str, device: str = "auto", threads: int = 0, numerics: str = "portable") -> Config:
    """The published configuration behind a workload name."""
    benchmark, overrides, _ = WORKLOADS[name]
    return resolve_config(benchmark, overrides={**overrides, "device": device, "threads": threads,
                                                "numerics": numerics, "progress": False})


def real_batches(cfg: Config, task: int, count: int, device: torch.device) -> Batches:
    """Batches of ``task`` drawn from the real stream (MNIST through the data mirror)."""
    stream = build_stream(cfg)
    data = stream.tasks[task]
    generator = torch.Generator().manual_seed(cfg.seed)
    xs, ys = [], []
    for _ in range(count):
        index = torch.randperm(len(data.train_x), generator=generator)[: cfg.batch_size]
        xs.append(data.view(stream.train_preprocess(data.train_x[index], generator)).to(device))
        ys.append(data.train_y[index].to(device))
    return Batches(xs, ys, stream.input_shape, stream.classes_per_task)


def generated_batches(cfg: Config, count: int, device: torch.device) -> Batches:
    """Normalised random 32x32 colour images with random labels (timing does not need CIFAR)."""
    generator = torch.Generator().manual_seed(cfg.seed)
    shape = (cfg.batch_size, *CIFAR_SHAPE)
    xs = [torch.randn(shape, generator=generator).to(device) for _ in range(count)]
    ys = [torch.randint(0, CIFAR_CLASSES, (cfg.batch_size,), generator=generator).to(device)
          for _ in range(count)]
    return Batches(xs, ys, CIFAR_SHAPE, CIFAR_CLASSES)


def make_batches(cfg: Config, task: int, count: int, device: torch.device) -> Batches:
    """Real batches for MNIST benchmarks, generated ones for CIFAR-100 (not available offline)."""
    if cfg.benchmark == "split_cifar100":
        return generated_batches(cfg, count, device)
    return real_batches(cfg, task, count, device)


def make_method(cfg: Config, batches: Batches, device: torch.device) -> HyperMask:
    """A freshly initialised HyperMask (seeded, so every variant starts from the same weights)."""
    torch.manual_seed(cfg.seed)
    target = build_target(cfg.target, batches.input_shape, batches.classes, cfg.target_hidden)
    method = build_method(cfg, target, cfg.tasks).to(device)
    assert isinstance(method, HyperMask)
    return method


def step_sparsity(cfg: Config, task: int) -> float:
    """Sparsity of a mid-task step (the first task's ramp is half-way there)."""
    return ramped_sparsity(cfg.p, task, 1, 2)
