"""Target networks and hypernetworks."""

from hypermask.nets.hypernet import ChunkedHyperNetwork, HyperNetwork, build_hypernetwork, split_flat
from hypermask.nets.targets import MLP, ResNet20, TargetNetwork, ZenkeNet, build_target

__all__ = ["MLP", "ResNet20", "ZenkeNet", "TargetNetwork", "build_target", "HyperNetwork",
           "ChunkedHyperNetwork", "build_hypernetwork", "split_flat"]
