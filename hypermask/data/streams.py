"""Benchmarks as task streams: Permuted MNIST, Split MNIST, Split CIFAR-100."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hypermask.config import Config
from hypermask.data.preprocess import Preprocess
from hypermask.data.sources import IMAGE_SHAPES, ImageArrays, load_arrays

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what hypnettorch's CIFAR-100 loader normalises with
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
# Input shape (C, H, W) and classes per task of every benchmark's stream.
STREAM_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "permuted_mnist": ((1, 32, 32), 10), "split_mnist": ((1, 28, 28), 2), "split_cifar100": ((3, 32, 32), 10)}


@dataclass
class Task:
    """One task: [0, 1] float images (N, C, H, W), labels re-indexed to 0..K-1, an optional
    pixel permutation applied to the flattened image."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    permutation: Tensor | None = None

    def view(self, x: Tensor) -> Tensor:
        """The task's view of a batch of its images (permuted pixels where the task says so)."""
        if self.permutation is None:
            return x
        return x.flatten(1)[:, self.permutation.to(x.device)]


@dataclass
class TaskStream:
    """An ordered list of tasks with their shared input shape, class count and preprocessing."""

    name: str
    tasks: list[Task]
    input_shape: tuple[int, ...]
    classes_per_task: int
    train_preprocess: Preprocess = field(default_factory=Preprocess)
    eval_preprocess: Preprocess = field(default_factory=Preprocess)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def eval_input(self, task: int, x: Tensor) -> Tensor:
        """What the network sees of a batch ``x`` of stream images as inputs of ``task`` at evaluation:
        the stream's evaluation preprocessing, then the task's view (its permutation, if any)."""
        return self.tasks[task].view(self.eval_preprocess(x))


PADDING = {"permuted_mnist": 2}  # pixels of zeros around each image side (MNIST 28x28 -> 32x32)


def _scaled(images: Tensor) -> Tensor:
    """uint8 images as float in [0, 1]."""
    return images.float().div_(255.0)


def stream_images(benchmark: str, images: Tensor) -> Tensor:
    """[0, 1] images as the dataset gives them, (N, H, W) or (N, H, W, C), laid out as ``benchmark``'s tasks
    hold them: float (N, C, H, W), padded where the benchmark pads (Permuted MNIST: 32x32)."""
    x = images.float()
    x = x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()
    pad = PADDING.get(benchmark, 0)
    return F.pad(x, (pad, pad, pad, pad)) if pad else x


def _hold_out(x: Tensor, y: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split off the last ``size`` samples as the validation set."""
    size = min(size, max(0, len(x) - 1))
    cut = len(x) - size
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _subsample(x: Tensor, y: Tensor, cfg: Config, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Keep ``shots`` samples per class, or ``train_subset`` samples, chosen at random."""
    if cfg.shots > 0:
        keep = []
        for label in torch.unique(y):
            where = torch.nonzero(y == label).flatten()
            keep.append(where[torch.randperm(len(where), generator=generator)[: cfg.shots]])
        index = torch.cat(keep).sort().values
        return x[index], y[index]
    if 0 < cfg.train_subset < len(x):
        index = torch.randperm(len(x), generator=generator)[: cfg.train_subset].sort().values
        return x[index], y[index]
    return x, y


def _split_by_classes(arrays: ImageArrays, cfg: Config, classes_per_task: int) -> list[Task]:
    """Tasks of consecutive class groups ({0,1}, {2,3}, ... or 10-class blocks)."""
    generator = torch.Generator().manual_seed(cfg.seed)
    train_x = stream_images(cfg.benchmark, _scaled(arrays.train_x))
    test_x = stream_images(cfg.benchmark, _scaled(arrays.test_x))
    tasks = []
    for t in range(cfg.tasks):
        first = t * classes_per_task
        in_train = (arrays.train_y >= first) & (arrays.train_y < first + classes_per_task)
        in_test = (arrays.test_y >= first) & (arrays.test_y < first + classes_per_task)
        x, y = train_x[in_train], arrays.train_y[in_train] - first
        x, y, vx, vy = _hold_out(x, y, cfg.validation_size)
        x, y = _subsample(x, y, cfg, generator)
        tasks.append(Task(x, y, vx, vy, test_x[in_test], arrays.test_y[in_test] - first))
    return tasks


def permuted_mnist(cfg: Config, arrays: ImageArrays) -> TaskStream:
    """MNIST padded to 32x32, one fixed pixel permutation per task (the first task included)."""
    generator = torch.Generator().manual_seed(cfg.seed)
    train = stream_images(cfg.benchmark, _scaled(arrays.train_x))
    test = stream_images(cfg.benchmark, _scaled(arrays.test_x))
    x, y, vx, vy = _hold_out(train, arrays.train_y, cfg.validation_size)
    tasks = []
    for _ in range(cfg.tasks):
        permutation = torch.randperm(32 * 32, generator=generator)
        tx, ty = _subsample(x, y, cfg, generator)
        tasks.append(Task(tx, ty, vx, vy, test, arrays.test_y, permutation))
    return TaskStream("permuted_mnist", tasks, *STREAM_SHAPES["permuted_mnist"])


def split_mnist(cfg: Config, arrays: ImageArrays) -> TaskStream:
    """Five two-class tasks {0,1}..{8,9}; random crop 28 (pad 4) and MNIST normalisation."""
    train = Preprocess(MNIST_MEAN, MNIST_STD, crop_padding=4 if cfg.augment else 0)
    shape, classes = STREAM_SHAPES["split_mnist"]
    return TaskStream("split_mnist", _split_by_classes(arrays, cfg, classes), shape, classes,
                      train, Preprocess(MNIST_MEAN, MNIST_STD))


def split_cifar100(cfg: Config, arrays: ImageArrays) -> TaskStream:
    """Ten ten-class tasks in natural class order; flip + crop 32 (pad 4), then normalisation by
    ``cfg.normalization`` (ImageNet mean/std by default, as the reference; or CIFAR-100's own)."""
    mean, std = CIFAR_NORMALIZATIONS[cfg.normalization]
    train = Preprocess(mean, std, crop_padding=4 if cfg.augment else 0, flip=cfg.augment)
    shape, classes = STREAM_SHAPES["split_cifar100"]
    return TaskStream("split_cifar100", _split_by_classes(arrays, cfg, classes), shape, classes,
                      train, Preprocess(mean, std))


def inference_state(stream: TaskStream) -> dict[str, Any]:
    """What inference on ``stream``'s tasks needs, without their data: name, shapes, the evaluation
    preprocessing and every task's permutation (plain tensors and numbers, loadable with ``weights_only``)."""
    pre = stream.eval_preprocess
    return {"name": stream.name, "input_shape": list(stream.input_shape), "classes_per_task": stream.classes_per_task,
            "mean": None if pre.mean is None else list(pre.mean), "std": None if pre.std is None else list(pre.std),
            "permutations": [task.permutation for task in stream.tasks]}


def stream_from_state(state: dict[str, Any]) -> TaskStream:
    """A stream without data from :func:`inference_state`: its tasks hold no samples, only their views."""
    empty_x, empty_y = torch.empty(0, *state["input_shape"]), torch.empty(0, dtype=torch.long)
    tasks = [Task(empty_x, empty_y, empty_x, empty_y, empty_x, empty_y, permutation)
             for permutation in state["permutations"]]
    pre = Preprocess(None if state["mean"] is None else tuple(state["mean"]),
                     None if state["std"] is None else tuple(state["std"]))
    return TaskStream(state["name"], tasks, tuple(state["input_shape"]), int(state["classes_per_task"]),
                      eval_preprocess=pre)


_BUILDERS = {"permuted_mnist": permuted_mnist, "split_mnist": split_mnist, "split_cifar100": split_cifar100}
_SOURCES = {"permuted_mnist": "mnist", "split_mnist": "mnist", "split_cifar100": "cifar100"}


def dataset_for(benchmark: str) -> str:
    """Name of the raw dataset a benchmark is built from."""
    return _SOURCES[benchmark]


def image_shape(benchmark: str) -> tuple[int, ...]:
    """Shape of one image as ``benchmark``'s dataset gives it: (28, 28) for MNIST, (32, 32, 3) for CIFAR-100."""
    return IMAGE_SHAPES[_SOURCES[benchmark]]


def build_stream(cfg: Config, arrays: ImageArrays | None = None) -> TaskStream:
    """Task stream of ``cfg.benchmark`` from ``arrays`` (loaded from ``cfg.data_root`` if omitted)."""
    if arrays is None:
        arrays = load_arrays(_SOURCES[cfg.benchmark], cfg.data_root)
    return _BUILDERS[cfg.benchmark](cfg, arrays)
