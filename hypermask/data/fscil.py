"""Few-shot class-incremental protocols (FSCIL): which classes each session holds, and the settings check.

A base session holds ``base_classes`` classes with all their training images; each later session
``ways`` new classes with ``shots`` training images each. The class order is a permutation of the
dataset's classes drawn with ``protocol_seed`` (not the run's seed, so runs of any seed share the
protocol); labels are positions in that order, so the classes seen after session ``s`` are the output
units ``0 .. seen(s) - 1``. The task id is not given at test time.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypermask.config import Config


def class_order(classes: int, protocol_seed: int) -> list[int]:
    """The dataset's class ids in the order sessions take them."""
    order = list(range(classes))
    random.Random(protocol_seed).shuffle(order)
    return order


def session_ranges(cfg: "Config") -> list[range]:
    """Labels (positions in the class order) of every session: base classes first, then ``ways`` each."""
    ranges = [range(0, cfg.base_classes)]
    for session in range(1, cfg.tasks):
        first = cfg.base_classes + (session - 1) * cfg.ways
        ranges.append(range(first, first + cfg.ways))
    return ranges


def check_settings(cfg: "Config") -> None:
    """Refuse (ConfigError, one line) a protocol the dataset cannot provide: no base or new classes, no
    shots or more shots than a class has, sessions that run out of classes."""
    from hypermask.config import ConfigError
    from hypermask.registry import benchmark_spec, dataset_spec

    dataset = dataset_spec(benchmark_spec(cfg.benchmark).dataset)
    classes, per_class = dataset.classes, dataset.train_per_class
    if not 1 <= cfg.base_classes < classes:
        raise ConfigError(f"setting 'base_classes' must be between 1 and {classes - 1} ({cfg.benchmark} has "
                          f"{classes} classes), got {cfg.base_classes!r}")
    if cfg.ways < 1:
        raise ConfigError(f"setting 'ways' must be >= 1 for {cfg.benchmark}, got {cfg.ways!r}")
    if not 1 <= cfg.shots <= per_class:
        raise ConfigError(f"setting 'shots' must be between 1 and {per_class} (the training images of "
                          f"{dataset.name}'s smallest class), got {cfg.shots!r}")
    sessions = 1 + (classes - cfg.base_classes) // cfg.ways
    if cfg.tasks > sessions:
        raise ConfigError(f"setting 'tasks' must be <= {sessions} for {cfg.benchmark}: {cfg.base_classes} base "
                          f"classes and {cfg.ways}-way sessions run out of its {classes} classes, "
                          f"got {cfg.tasks!r}")
