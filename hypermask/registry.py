"""Registered datasets and benchmarks: one entry each, looked up by name.

A **dataset** is files with checksums and a way to read them; a **benchmark** (or protocol) is how a
dataset becomes tasks or sessions, with its published settings. Both are plain specs registered under
their name, so a new dataset and its benchmarks live in one data module that calls
:func:`register_dataset` and :func:`register_benchmark`; methods, the training loop and the command line
read the registries. Nothing here imports torch: settings are resolved without it, and code-valued
fields may be given as ``"module:attribute"`` references that load on first use.
"""

from __future__ import annotations

import copy
import importlib
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, Mapping, TypeVar

if TYPE_CHECKING:
    from pathlib import Path

    from hypermask.config import Config

# The data modules that register the built-in datasets and benchmarks (imported on first look-up).
BUILTIN_MODULES = ("hypermask.data.mnist", "hypermask.data.cifar100")


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


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark or protocol: a task stream built from a dataset, and its published settings.

    ``build(cfg, arrays)`` returns the :class:`hypermask.data.streams.TaskStream`. Settings are layered
    ``defaults`` <- ``method_defaults[method]`` <- ``target_defaults[target]`` <-
    ``method_target_defaults[(method, target)]`` <- the user's. ``outputs`` is the size of the shared
    output layer; ``task_share`` the largest share of the dataset's samples one task holds (memory
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
    method_defaults: Mapping[str, Settings] = field(default_factory=dict)
    target_defaults: Mapping[str, Settings] = field(default_factory=dict)
    method_target_defaults: Mapping[tuple[str, str], Settings] = field(default_factory=dict)
    check: Callable[["Config"], None] | str | None = None
    shots_cap_every_task: bool = True  # False where a base session keeps all its images (memory estimate)

    def settings(self, method: str, target: str | None) -> dict[str, Any]:
        """Published settings for ``method`` (and ``target``, else the benchmark's default target)."""
        values = dict(self.defaults)
        values.update(self.method_defaults.get(method, {}))
        target = target or values["target"]
        values.update(self.target_defaults.get(target, {}))
        values.update(self.method_target_defaults.get((method, target), {}))
        return copy.deepcopy(values)


T = TypeVar("T", DatasetSpec, BenchmarkSpec)


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
        _load_builtins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        _load_builtins()
        return len(self._entries)

    def __getitem__(self, index: int) -> str:
        return list(self)[index]


DATASETS: Registry[DatasetSpec] = Registry("dataset")
BENCHMARKS: Registry[BenchmarkSpec] = Registry("benchmark")
_loaded = False
_load_lock = threading.RLock()


def _load_builtins() -> None:
    """Import the built-in datasets and benchmarks once; threads asking meanwhile wait until all are registered."""
    global _loaded
    if _loaded:
        return
    with _load_lock:  # reentrant, so a built-in module that looked a name up while loading could not deadlock
        if not _loaded:
            for module in BUILTIN_MODULES:
                importlib.import_module(module)
            _loaded = True


def register_dataset(spec: DatasetSpec, replace: bool = False) -> DatasetSpec:
    """Make ``spec`` known by its name to loading, checks, ``prepare`` and the memory estimate."""
    return DATASETS.register(spec, replace)


def register_benchmark(spec: BenchmarkSpec, replace: bool = False) -> BenchmarkSpec:
    """Make ``spec`` known by its name to settings, training and the command line."""
    return BENCHMARKS.register(spec, replace)


def dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name`` (:class:`UnknownName` if none)."""
    return DATASETS.get(name)


def benchmark_spec(name: str) -> BenchmarkSpec:
    """The registered benchmark ``name`` (:class:`UnknownName` if none)."""
    return BENCHMARKS.get(name)
