"""Registered datasets, benchmarks and methods: one entry each, looked up by name.

A **dataset** is files with checksums and a way to read them; a **benchmark** (or protocol) is how a
dataset becomes tasks or sessions, with its published settings; a **method** is how a task's weights are
formed, with its own published settings and sizes. All are plain specs registered under their name, so a
new dataset and its benchmarks live in one data module that calls :func:`register_dataset` and
:func:`register_benchmark`, and a new method in one package under ``hypermask/methods/`` whose
``__init__`` calls :func:`register_method`; settings, the training loop, the memory estimate and the
command line read the registries. Nothing here imports torch: settings are resolved without it, and code-valued
fields may be given as ``"module:attribute"`` references that load on first use.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, Mapping, TypeVar

if TYPE_CHECKING:
    from pathlib import Path

    from hypermask.config import Config

# The data modules that register the built-in datasets and benchmarks (imported on first look-up); every
# package under hypermask/methods/ registers a method the same way.
BUILTIN_MODULES = ("hypermask.data.mnist", "hypermask.data.cifar100")
METHOD_PACKAGE = "hypermask.methods"


class UnknownName(ValueError):
    """No entry of that name is registered (one line naming the choices)."""


def resolve(ref: Callable | str) -> Callable:
    """A callable, or the attribute named by a ``"package.module:attribute"`` reference."""
    if not isinstance(ref, str):
        return ref
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its files (path under the data root -> md5), how to read and fetch them, its size.

    ``load(folder)`` returns :class:`hypermask.data.sources.ImageArrays` read from the verified files
    under ``folder``; ``download(root)``, when the dataset can be fetched, puts the files under ``root``.
    ``folder`` is the top folder of the files (what ``prepare`` copies from the mirror).
    """

    name: str
    folder: str
    files: Mapping[str, str]
    load: Callable[["Path"], Any] | str
    image_shape: tuple[int, ...]  # one raw image: (H, W) or (H, W, C)
    classes: int
    train_size: int
    test_size: int
    train_per_class: int  # training images of the smallest class
    download: Callable[["Path"], None] | str | None = None


Settings = Mapping[str, Any]
# Settings of a benchmark's data protocol that a method's published settings may set for the benchmark they
# were published on (HNET's authors hold out no validation data on MNIST) but that a benchmark borrowing that
# benchmark's method settings (``settings_like``) keeps as its own.
PROTOCOL_SETTINGS = frozenset({"validation_size"})


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark or protocol: a task stream built from a dataset, and its published settings.

    ``build(cfg, arrays)`` returns the :class:`hypermask.data.streams.TaskStream`. ``defaults`` are the
    published settings (HyperMask's), ``target_defaults[target]`` what differs for another target network;
    a method's own published settings live with the method (:class:`MethodSpec`), looked up under
    ``settings_like`` (a benchmark whose published method settings this one shares) or the benchmark's
    own name. ``outputs`` is the size of the shared output layer; ``task_share`` the largest share of the dataset's samples one task holds (memory
    estimate); ``check(cfg)`` refuses settings the protocol cannot run (ConfigError) before any compute.
    """

    name: str
    dataset: str
    build: Callable | str
    input_shape: tuple[int, int, int]
    outputs: int
    targets: tuple[str, ...]
    defaults: Settings
    max_tasks: int
    task_share: float
    target_defaults: Mapping[str, Settings] = field(default_factory=dict)
    check: Callable[["Config"], None] | str | None = None
    shots_cap_every_task: bool = True  # False where a base session keeps all its images (memory estimate)
    settings_like: str | None = None  # methods' published settings are those of this benchmark

    def settings(self, method: str, target: str | None) -> dict[str, Any]:
        """Published settings for ``method`` (and ``target``, else the benchmark's default target):
        ``defaults`` <- the method's for this benchmark <- ``target_defaults[target]`` <- the method's for
        this benchmark and target."""
        spec = method_spec(method)
        benchmark = self.settings_like or self.name
        values = dict(self.defaults)
        borrowed = spec.benchmark_defaults.get(benchmark, {})
        if self.settings_like:  # another benchmark's method settings: this protocol keeps its own data split
            borrowed = {k: v for k, v in borrowed.items() if k not in PROTOCOL_SETTINGS}
        values.update(borrowed)
        target = target or values["target"]
        values.update(self.target_defaults.get(target, {}))
        values.update(spec.target_defaults.get((benchmark, target), {}))
        return copy.deepcopy(values)


@dataclass(frozen=True)
class MethodSizes:
    """What a method adds to the target network, in numbers per run (the memory estimate's input).

    ``hypernetwork_output``: numbers its hypernetwork emits per task (0: no hypernetwork);
    ``trained_target``: target weights it trains as parameters (with gradients and Adam moments);
    ``stored_per_task``: numbers it keeps for every task besides (e.g. binary masks).
    """

    hypernetwork_output: int = 0
    trained_target: int = 0
    stored_per_task: int = 0


@dataclass(frozen=True)
class MethodSpec:
    """A continual-learning method: its implementation, its own published settings and its sizes.

    ``build(cfg, target, num_tasks)`` returns the :class:`hypermask.methods.base.ContinualMethod`;
    ``benchmark_defaults[benchmark]`` and ``target_defaults[(benchmark, target)]`` are the method's
    published settings laid over the benchmark's (:meth:`BenchmarkSpec.settings`); ``sizes(cfg, target)``
    gives its :class:`MethodSizes` for a target network (``target.num_params(masked_only=...)``).
    """

    name: str
    build: Callable | str
    sizes: Callable[["Config", Any], MethodSizes] | str
    benchmark_defaults: Mapping[str, Settings] = field(default_factory=dict)
    target_defaults: Mapping[tuple[str, str], Settings] = field(default_factory=dict)


T = TypeVar("T", DatasetSpec, BenchmarkSpec, MethodSpec)


class Registry(Generic[T]):
    """Specs by name; the built-in data modules are imported on first look-up."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, spec: T, replace: bool = False) -> T:
        """Add ``spec`` under its name (a second entry of that name needs ``replace``)."""
        if not replace and spec.name in self._entries:
            raise ValueError(f"{self.kind} '{spec.name}' is already registered")
        self._entries[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        """Remove ``name`` (absent names are ignored)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The spec of ``name``; :class:`UnknownName` (one line, naming the choices) if there is none."""
        _load_builtins()
        if name not in self._entries:
            raise UnknownName(f"unknown {self.kind} '{name}' (choose from {', '.join(self)})")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        _load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        """Names in alphabetical order (whatever order their modules were imported in)."""
        _load_builtins()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        _load_builtins()
        return len(self._entries)

    def __getitem__(self, index: int) -> str:
        return list(self)[index]


DATASETS: Registry[DatasetSpec] = Registry("dataset")
BENCHMARKS: Registry[BenchmarkSpec] = Registry("benchmark")
METHODS: Registry[MethodSpec] = Registry("method")
_loaded = False
_load_lock = threading.RLock()


def _load_builtins() -> None:
    """Import the built-in datasets, benchmarks and methods once; threads asking meanwhile wait until all
    are registered."""
    global _loaded
    if _loaded:
        return
    with _load_lock:  # reentrant, so a built-in module that looked a name up while loading could not deadlock
        if not _loaded:
            for module in (*BUILTIN_MODULES, *_method_packages()):
                importlib.import_module(module)
            _loaded = True


def _method_packages() -> list[str]:
    """Every package under ``hypermask/methods/`` (each registers one method; imported without torch)."""
    package = importlib.import_module(METHOD_PACKAGE)
    return sorted(f"{METHOD_PACKAGE}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
                  if info.ispkg)


def register_dataset(spec: DatasetSpec, replace: bool = False) -> DatasetSpec:
    """Make ``spec`` known by its name to loading, checks, ``prepare`` and the memory estimate."""
    return DATASETS.register(spec, replace)


def register_benchmark(spec: BenchmarkSpec, replace: bool = False) -> BenchmarkSpec:
    """Make ``spec`` known by its name to settings, training and the command line."""
    return BENCHMARKS.register(spec, replace)


def register_method(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Make ``spec`` known by its name to settings, training, the memory estimate and the command line."""
    return METHODS.register(spec, replace)


def dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name`` (:class:`UnknownName` if none)."""
    return DATASETS.get(name)


def benchmark_spec(name: str) -> BenchmarkSpec:
    """The registered benchmark ``name`` (:class:`UnknownName` if none)."""
    return BENCHMARKS.get(name)


def method_spec(name: str) -> MethodSpec:
    """The registered method ``name`` (:class:`UnknownName` if none)."""
    return METHODS.get(name)
