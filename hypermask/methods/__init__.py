"""Continual-learning methods sharing one contract (see :class:`~hypermask.methods.base.ContinualMethod`).

Each method is a package here: its ``__init__`` registers a :class:`~hypermask.registry.MethodSpec` (its
published settings and sizes, without importing torch) and its ``method`` module holds the implementation.
Adding a method adds a package and touches nothing else. The classes and builders below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public names served lazily (they import torch): name -> "module:attribute".
_LAZY = {
    "ContinualMethod": "hypermask.methods.base:ContinualMethod",
    "HyperMask": "hypermask.methods.hypermask.method:HyperMask",
    "Hnet": "hypermask.methods.hnet.method:Hnet",
    "Finetune": "hypermask.methods.finetune.method:Finetune",
    "NoMask": "hypermask.methods.nomask.method:NoMask",
    "Wsn": "hypermask.methods.wsn.method:Wsn",
    "build_method": "hypermask.methods.build:build_method",
    "build_for_stream": "hypermask.methods.build:build_for_stream",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attribute = _LAZY[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


__all__ = list(_LAZY)
