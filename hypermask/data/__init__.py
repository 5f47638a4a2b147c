"""Datasets and benchmarks: registered specs (``hypermask.registry``) made into task streams.

Names load on first use, so that the data modules declaring datasets and benchmarks import without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "hypermask.data.preprocess": ("Preprocess",),
    "hypermask.data.sources": ("MIRROR_ENV", "DataError", "ImageArrays", "dataset_checksums", "load_arrays",
                               "locate_dataset", "pin_mirror", "prepare_dataset", "verify_dataset"),
    "hypermask.data.streams": ("Task", "TaskStream", "build_stream", "dataset_for", "image_shape", "inference_state",
                               "split_by_classes", "stream_from_state", "stream_images"),
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'hypermask.data' has no attribute {name!r}")
