"""A method object for a configuration: the registered method's implementation around its target network."""

from __future__ import annotations

from hypermask.config import Config
from hypermask.methods.base import ContinualMethod
from hypermask.nets import TargetNetwork, build_target
from hypermask.registry import method_spec, resolve


def build_method(cfg: Config, target: TargetNetwork, num_tasks: int) -> ContinualMethod:
    """The method named by ``cfg.method`` around ``target``."""
    return resolve(method_spec(cfg.method).build)(cfg, target, num_tasks)


def build_for_stream(cfg: Config, input_shape: tuple[int, ...], classes_per_task: int,
                     num_tasks: int) -> ContinualMethod:
    """A fresh method with its target network for a stream of ``num_tasks`` tasks of this input shape and
    class count (initialised from torch's current random state)."""
    target = build_target(cfg.target, input_shape, classes_per_task, cfg.target_hidden)
    return build_method(cfg, target, num_tasks)
