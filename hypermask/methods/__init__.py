"""Continual-learning methods sharing one contract (see :class:`ContinualMethod`)."""

from __future__ import annotations

from hypermask.config import Config
from hypermask.methods.base import ContinualMethod
from hypermask.methods.finetune import Finetune
from hypermask.methods.hnet import Hnet
from hypermask.methods.hypermask import HyperMask
from hypermask.methods.nomask import NoMask
from hypermask.nets import TargetNetwork, build_target

METHOD_CLASSES: dict[str, type[ContinualMethod]] = {
    "hypermask": HyperMask,
    "hnet": Hnet,
    "finetune": Finetune,
    "nomask": NoMask,
}


def build_method(cfg: Config, target: TargetNetwork, num_tasks: int) -> ContinualMethod:
    """The method named by ``cfg.method`` around ``target``."""
    return METHOD_CLASSES[cfg.method](cfg, target, num_tasks)


def build_for_stream(cfg: Config, input_shape: tuple[int, ...], classes_per_task: int,
                     num_tasks: int) -> ContinualMethod:
    """A fresh method with its target network for a stream of ``num_tasks`` tasks of this input shape and
    class count (initialised from torch's current random state)."""
    target = build_target(cfg.target, input_shape, classes_per_task, cfg.target_hidden)
    return build_method(cfg, target, num_tasks)


__all__ = ["ContinualMethod", "HyperMask", "Hnet", "Finetune", "NoMask", "build_method", "build_for_stream",
           "METHOD_CLASSES"]
