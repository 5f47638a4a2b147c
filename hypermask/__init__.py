"""HyperMask: hypernetwork-generated semi-binary masks for continual learning.

Heavy pieces (torch, the training loop) load on first use, so that reading settings stays quick.
"""

from __future__ import annotations

from typing import Any

from hypermask.config import Config, ConfigError, resolve_config

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "resolve_config", "train_continual", "RunResult", "TaskReport",
           "DivergedError", "load_model", "TrainedModel", "ModelError"]

# Name -> the module that defines it.
_LAZY = {"train_continual": "train", "RunResult": "train", "TaskReport": "train", "DivergedError": "train",
         "load_model": "model", "TrainedModel": "model", "ModelError": "model"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"hypermask.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hypermask' has no attribute {name!r}")
