"""Benchmarks as task streams: Permuted MNIST, Split MNIST, Split CIFAR-100, few-shot class-incremental
sessions; the builders that registered benchmarks name (see :mod:`hypermask.registry`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hypermask.config import Config
from hypermask.data.fscil import listed_shots, protocol_order, session_ranges
from hypermask.data.preprocess import Preprocess
from hypermask.data.sources import DataError, ImageArrays, load_arrays
from hypermask.registry import benchmark_spec, dataset_spec, resolve

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what hypnettorch's CIFAR-100 loader normalises with
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


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
    """An ordered list of tasks with their shared input shape, output size and preprocessing.

    Task-incremental streams re-index every task's labels to ``0 .. classes_per_task - 1`` and leave
    ``seen_classes`` empty. Class-incremental streams (the task id unknown at test time) keep one label per
    class over the whole stream; ``seen_classes[t]`` output units score the classes seen after task ``t``.
    ``protocol`` records how the stream was drawn (class order, chosen samples), JSON-safe.
    """

    name: str
    tasks: list[Task]
    input_shape: tuple[int, ...]
    classes_per_task: int
    train_preprocess: Preprocess = field(default_factory=Preprocess)
    eval_preprocess: Preprocess = field(default_factory=Preprocess)
    seen_classes: list[int] = field(default_factory=list)
    protocol: dict = field(default_factory=dict)

    @property
    def class_incremental(self) -> bool:
        """Whether labels are shared across tasks and the task id is unknown at test time."""
        return bool(self.seen_classes)

    def scored_classes(self, task: int) -> int | None:
        """Output units that score classes while training and evaluating ``task`` (None: all of them)."""
        return self.seen_classes[task] if self.seen_classes else None

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


def split_by_classes(arrays: ImageArrays, cfg: Config, classes_per_task: int) -> list[Task]:
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


def _last(index: Tensor, size: int) -> Tensor:
    """The last ``size`` entries of ``index`` (at most all but one), as :func:`_hold_out` holds out."""
    size = min(size, max(0, len(index) - 1))
    return index[len(index) - size:]


def _choose_shots(labels: Tensor, session: range, shots: int, generator: torch.Generator) -> Tensor:
    """Indices of ``shots`` training samples of every class of ``session``, drawn with ``generator``."""
    chosen = []
    for label in session:
        where = torch.nonzero(labels == label).flatten()
        if len(where) < shots:
            raise DataError(f"class at position {label} has {len(where)} training images, fewer than "
                            f"shots={shots}")
        chosen.append(where[torch.randperm(len(where), generator=generator)[:shots]])
    return torch.cat(chosen).sort().values


def _listed_shot_indices(cfg: Config, arrays: ImageArrays, session: range, order: list[int]) -> Tensor:
    """The published shots of ``session`` (:func:`hypermask.data.fscil.listed_shots`), checked against the
    dataset's labels: every listed image must be of the class it is listed for."""
    listed = listed_shots(cfg.benchmark)
    assert listed is not None
    number = (session.start - cfg.base_classes) // cfg.ways
    classes = listed["sessions"][number]["classes"]
    chosen = []
    for label in session:
        index = torch.tensor(classes[str(order[label])], dtype=torch.long)
        if len(index) and (int(index.max()) >= len(arrays.train_y)
                           or not bool((arrays.train_y[index] == order[label]).all())):
            raise DataError(f"the published shots of class {order[label]} ({cfg.benchmark}, "
                            f"{listed['source']['repository']}) are not images of that class in this dataset")
        chosen.append(index)
    return torch.cat(chosen).sort().values


def class_incremental_sessions(cfg: Config, arrays: ImageArrays) -> TaskStream:
    """Few-shot class-incremental sessions (see :mod:`hypermask.data.fscil`), before preprocessing.

    The base session trains on all training images of its classes but the last ``validation_size``
    (validation); every later session on ``shots`` images per class: the published lists where the benchmark
    has them (``standard`` protocol), else drawn with ``protocol_seed``. A novel session holds no validation
    images (no novel-class data beyond the shots); a pseudo-novel session of the ``pseudo`` protocol (base
    classes) holds the last ``validation_size`` of its classes' images not drawn. Tests: every test image of
    the session's classes.
    """
    spec = benchmark_spec(cfg.benchmark)
    classes = dataset_spec(spec.dataset).classes
    order = protocol_order(cfg, classes)
    position = torch.empty(classes, dtype=torch.long)
    position[torch.tensor(order)] = torch.arange(classes)
    train_y, test_y = position[arrays.train_y], position[arrays.test_y]
    train_x = stream_images(cfg.benchmark, _scaled(arrays.train_x))
    test_x = stream_images(cfg.benchmark, _scaled(arrays.test_x))
    generator = torch.Generator().manual_seed(cfg.seed)
    shot_generator = torch.Generator().manual_seed(cfg.protocol_seed)
    ranges = session_ranges(cfg)
    listed = listed_shots(cfg.benchmark) if cfg.fscil_protocol == "standard" else None
    published = listed is not None
    tasks, shot_indices = [], []
    for s, session in enumerate(ranges):
        in_session = torch.nonzero((train_y >= session.start) & (train_y < session.stop)).flatten()
        if s == 0:
            x, y, vx, vy = _hold_out(train_x[in_session], train_y[in_session], cfg.validation_size)
            x, y = _subsample(x, y, dataclasses.replace(cfg, shots=0), generator)
        else:
            if published:
                chosen = _listed_shot_indices(cfg, arrays, session, order)
            else:
                chosen = _choose_shots(train_y, session, cfg.shots, shot_generator)
            shot_indices.append(chosen.tolist())
            size = cfg.validation_size if cfg.fscil_protocol == "pseudo" else 0
            held = _last(in_session[~torch.isin(in_session, chosen)], size) if size else chosen[:0]
            x, y, vx, vy = train_x[chosen], train_y[chosen], train_x[held], train_y[held]
        in_test = (test_y >= session.start) & (test_y < session.stop)
        tasks.append(Task(x, y, vx, vy, test_x[in_test], test_y[in_test]))
    protocol = {"name": cfg.fscil_protocol, "class_order": order,
                "sessions": [[order[label] for label in r] for r in ranges], "shot_indices": shot_indices}
    if listed is not None:
        protocol["shot_source"] = listed["source"]
    return TaskStream(cfg.benchmark, tasks, spec.input_shape, spec.outputs,
                      seen_classes=[r.stop for r in ranges], protocol=protocol)


def _mnist_preprocess(cfg: Config) -> tuple[Preprocess, Preprocess]:
    """Random crop 28 (pad 4) when augmenting, MNIST normalisation unless ``input_scaling`` is ``unit``
    (then the [0, 1] pixels as they are) (training, evaluation)."""
    mean, std = (MNIST_MEAN, MNIST_STD) if cfg.input_scaling == "standardize" else (None, None)
    return Preprocess(mean, std, crop_padding=4 if cfg.augment else 0), Preprocess(mean, std)


def _cifar_preprocess(cfg: Config) -> tuple[Preprocess, Preprocess]:
    """Flip + crop 32 (pad 4) when augmenting, then normalisation by ``cfg.normalization`` (ImageNet
    mean/std by default, as the reference; or CIFAR-100's own) (training, evaluation)."""
    mean, std = CIFAR_NORMALIZATIONS[cfg.normalization]
    return Preprocess(mean, std, crop_padding=4 if cfg.augment else 0, flip=cfg.augment), Preprocess(mean, std)


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
    spec = benchmark_spec(cfg.benchmark)
    return TaskStream(cfg.benchmark, tasks, spec.input_shape, spec.outputs)


def _split(cfg: Config, arrays: ImageArrays, preprocess: tuple[Preprocess, Preprocess]) -> TaskStream:
    spec = benchmark_spec(cfg.benchmark)
    return TaskStream(cfg.benchmark, split_by_classes(arrays, cfg, spec.outputs), spec.input_shape,
                      spec.outputs, *preprocess)


def split_mnist(cfg: Config, arrays: ImageArrays) -> TaskStream:
    """Five two-class tasks {0,1}..{8,9}; random crop 28 (pad 4) and MNIST normalisation."""
    return _split(cfg, arrays, _mnist_preprocess(cfg))


def split_cifar100(cfg: Config, arrays: ImageArrays) -> TaskStream:
    """Ten ten-class tasks in natural class order; flip + crop 32 (pad 4), then normalisation by
    ``cfg.normalization`` (ImageNet mean/std by default, as the reference; or CIFAR-100's own)."""
    return _split(cfg, arrays, _cifar_preprocess(cfg))


def inference_state(stream: TaskStream) -> dict[str, Any]:
    """What inference on ``stream``'s tasks needs, without their data: name, shapes, the evaluation
    preprocessing and every task's permutation (plain tensors and numbers, loadable with ``weights_only``)."""
    pre = stream.eval_preprocess
    return {"name": stream.name, "input_shape": list(stream.input_shape), "classes_per_task": stream.classes_per_task,
            "mean": None if pre.mean is None else list(pre.mean), "std": None if pre.std is None else list(pre.std),
            "permutations": [task.permutation for task in stream.tasks], "seen_classes": list(stream.seen_classes)}


def stream_from_state(state: dict[str, Any]) -> TaskStream:
    """A stream without data from :func:`inference_state`: its tasks hold no samples, only their views."""
    empty_x, empty_y = torch.empty(0, *state["input_shape"]), torch.empty(0, dtype=torch.long)
    tasks = [Task(empty_x, empty_y, empty_x, empty_y, empty_x, empty_y, permutation)
             for permutation in state["permutations"]]
    pre = Preprocess(None if state["mean"] is None else tuple(state["mean"]),
                     None if state["std"] is None else tuple(state["std"]))
    return TaskStream(state["name"], tasks, tuple(state["input_shape"]), int(state["classes_per_task"]),
                      eval_preprocess=pre, seen_classes=list(state.get("seen_classes", [])))


def fscil_mnist(cfg: Config, arrays: ImageArrays) -> TaskStream:
    """Few-shot class-incremental MNIST; Split MNIST's preprocessing."""
    stream = class_incremental_sessions(cfg, arrays)
    stream.train_preprocess, stream.eval_preprocess = _mnist_preprocess(cfg)
    return stream


def fscil_cifar100(cfg: Config, arrays: ImageArrays) -> TaskStream:
    """Few-shot class-incremental CIFAR-100; Split CIFAR-100's preprocessing."""
    stream = class_incremental_sessions(cfg, arrays)
    stream.train_preprocess, stream.eval_preprocess = _cifar_preprocess(cfg)
    return stream


def dataset_for(benchmark: str) -> str:
    """Name of the raw dataset a benchmark is built from."""
    return benchmark_spec(benchmark).dataset


def image_shape(benchmark: str) -> tuple[int, ...]:
    """Shape of one image as ``benchmark``'s dataset gives it: (28, 28) for MNIST, (32, 32, 3) for CIFAR-100."""
    return tuple(dataset_spec(benchmark_spec(benchmark).dataset).image_shape)


def build_stream(cfg: Config, arrays: ImageArrays | None = None) -> TaskStream:
    """Task stream of ``cfg.benchmark`` from ``arrays`` (loaded from ``cfg.data_root`` if omitted)."""
    spec = benchmark_spec(cfg.benchmark)
    if arrays is None:
        arrays = load_arrays(spec.dataset, cfg.data_root)
    stream = resolve(spec.build)(cfg, arrays)
    if tuple(stream.input_shape) != tuple(spec.input_shape) or stream.classes_per_task != spec.outputs:
        raise ValueError(f"benchmark '{spec.name}' built inputs {tuple(stream.input_shape)} and "
                         f"{stream.classes_per_task} outputs, but registered {spec.input_shape} and {spec.outputs}")
    return stream
