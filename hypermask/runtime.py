"""Process-level runtime settings for training: threads, device, allocator behaviour."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_allocator_tuned = False


def keep_freed_memory() -> bool:
    """Make glibc reuse freed heap memory instead of returning it to the OS.

    Every training step frees and re-allocates gradients of the hypernetwork's last layer (hundreds
    of MB); served by fresh ``mmap`` pages they cost a page fault per 4 KiB. Serving them from a
    heap that is never trimmed makes the step markedly faster. Returns True when applied (Linux/glibc).
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):
        return False
    _allocator_tuned = ok
    return ok


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def configure_runtime(device_name: str, threads: int, tune_allocator: bool = True) -> torch.device:
    """Set torch's thread count (0 leaves it), tune the CPU allocator, return the device."""
    if threads > 0:
        torch.set_num_threads(threads)
    device = resolve_device(device_name)
    if device.type == "cpu" and tune_allocator:
        keep_freed_memory()
    return device
