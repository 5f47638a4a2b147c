"""HyperMask: hypernetwork-generated semi-binary masks for continual learning.

Heavy pieces (torch, the training loop) load on first use, so that reading settings stays quick.
"""

from __future__ import annotations

from typing import Any

from hypermask.config import Config, ConfigError, resolve_config

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "resolve_config", "train_continual", "RunResult", "TaskReport",
           "DivergedError"]

_LAZY = {"train_continual", "RunResult", "TaskReport", "DivergedError"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from hypermask import train

        return getattr(train, name)
    raise AttributeError(f"module 'hypermask' has no attribute {name!r}")
