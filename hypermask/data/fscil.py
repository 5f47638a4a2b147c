"""Few-shot class-incremental protocols (FSCIL): which classes each session holds, its shots, the settings check.

A base session holds ``base_classes`` classes with all their training images; each later session
``ways`` new classes with ``shots`` training images each. The task id is not given at test time; labels are
positions in the protocol's class order, so the classes seen after session ``s`` are the output units
``0 .. seen(s) - 1``. ``fscil_protocol`` picks the protocol:

- ``standard``: the literature's split. Classes in the dataset's order (base classes first); the shots are
  the published lists where the benchmark has them (``fscil_cifar100``: the TOPIC/CEC index files, shipped in
  ``fscil_cifar100_shots.json``), else drawn with ``protocol_seed``.
- ``random``: a class order and shots drawn with ``protocol_seed``.
- ``pseudo``: for searches. Only the standard protocol's base classes: the last ``(tasks - 1) * ways`` of them
  are held out as pseudo-novel sessions with their own shots drawn from their training data, the others form
  the pseudo base session; validation images of every pseudo session come from the base classes' training
  data, so a search scores novel-class learning without touching the real novel classes.

Only the base session (and, in ``pseudo``, the pseudo-novel sessions, whose classes are base classes) holds
validation images: a novel class brings its shots and nothing else. ``protocol_seed``, not the run's seed,
draws shots and orders, so runs of every seed share one protocol.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypermask.config import Config

PROTOCOLS = ("standard", "random", "pseudo")
# How HyperMask learns and scores the sessions (hypermask.methods.hypermask.method): prototypes under the
# frozen base mask, one mask per session, or the classifier trained on every session (the paper's rule).
MODES = ("prototype", "session_mask", "classifier")
# Published shot lists per benchmark, shipped beside this module.
SHOT_FILES = {"fscil_cifar100": Path(__file__).with_name("fscil_cifar100_shots.json")}


@lru_cache(maxsize=4)
def _read_shot_file(path: str) -> dict:
    return json.loads(Path(path).read_text())


def listed_shots(benchmark: str) -> dict | None:
    """The published shot lists of ``benchmark`` (None where there are none): ``base_classes``, ``ways``,
    ``shots``, ``sessions`` (each ``{"classes": {class id: [training-set indices]}}``) and their ``source``."""
    path = SHOT_FILES.get(benchmark)
    return None if path is None else _read_shot_file(str(path))


def class_order(classes: int, protocol_seed: int) -> list[int]:
    """The dataset's class ids in the order the ``random`` protocol's sessions take them."""
    order = list(range(classes))
    random.Random(protocol_seed).shuffle(order)
    return order


def protocol_order(cfg: "Config", classes: int) -> list[int]:
    """Dataset class ids by label (position): drawn for ``random``, the dataset's order otherwise."""
    return class_order(classes, cfg.protocol_seed) if cfg.fscil_protocol == "random" else list(range(classes))


def session_ranges(cfg: "Config") -> list[range]:
    """Labels (positions in the class order) of every session: base classes first, then ``ways`` each. In the
    ``pseudo`` protocol the base classes alone, the last ``(tasks - 1) * ways`` held out as sessions."""
    base = cfg.base_classes - (cfg.tasks - 1) * cfg.ways if cfg.fscil_protocol == "pseudo" else cfg.base_classes
    ranges = [range(0, base)]
    for session in range(1, cfg.tasks):
        first = base + (session - 1) * cfg.ways
        ranges.append(range(first, first + cfg.ways))
    return ranges


def check_settings(cfg: "Config") -> None:
    """Refuse (ConfigError, one line) a protocol the dataset cannot provide: no base or new classes, no
    shots or more shots than a class has, sessions that run out of classes, a published split changed."""
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
    if cfg.fscil_protocol == "pseudo":
        sessions = 1 + (cfg.base_classes - 1) // cfg.ways
        if cfg.tasks > sessions:
            raise ConfigError(f"setting 'tasks' must be <= {sessions} for fscil_protocol=pseudo on {cfg.benchmark}: "
                              f"its {cfg.tasks - 1} pseudo-novel sessions of {cfg.ways} classes are held out of "
                              f"the {cfg.base_classes} base classes, got {cfg.tasks!r}")
        return
    sessions = 1 + (classes - cfg.base_classes) // cfg.ways
    if cfg.tasks > sessions:
        raise ConfigError(f"setting 'tasks' must be <= {sessions} for {cfg.benchmark}: {cfg.base_classes} base "
                          f"classes and {cfg.ways}-way sessions run out of its {classes} classes, "
                          f"got {cfg.tasks!r}")
    listed = listed_shots(cfg.benchmark)
    if cfg.fscil_protocol == "standard" and listed is not None:
        published = (listed["base_classes"], listed["ways"], listed["shots"])
        if (cfg.base_classes, cfg.ways, cfg.shots) != published:
            raise ConfigError(f"setting 'fscil_protocol' standard on {cfg.benchmark} is the published split "
                              f"(base_classes={published[0]}, ways={published[1]}, shots={published[2]}); use "
                              f"fscil_protocol=random for another, got base_classes={cfg.base_classes}, "
                              f"ways={cfg.ways}, shots={cfg.shots}")
