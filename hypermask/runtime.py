"""Process-level runtime settings for training: CPU code paths, threads, device, allocator behaviour."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import sys

import torch

from hypermask.config import Config, ConfigError
from hypermask.numerics import pin

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
    """``auto`` means CUDA when present, else CPU; a named CUDA device must exist (else ConfigError)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"setting 'device' is '{name}' but this machine has no CUDA device "
                              "(use device=cpu or device=auto)")
        if (device.index or 0) >= count:
            raise ConfigError(f"setting 'device' is '{name}' but this machine has {count} CUDA device(s) "
                              f"(cuda:0 to cuda:{count - 1})")
    return device


def resolve_runtime(cfg: Config) -> Config:
    """``cfg`` with the numeric path, threads and device this process will actually use written in.

    The CPU code paths are pinned first (:func:`hypermask.numerics.pin`, before any torch operation) and
    recorded as ``numeric_path``; ``threads=0`` becomes torch's current thread count and ``device=auto``
    the device it picks, so that what is recorded (checkpoint, ``metrics.json``) says what produced the
    numbers. A ``numeric_path`` already recorded that this process does not run is refused (ConfigError).
    """
    path = pin(cfg.numerics).describe()
    if cfg.numeric_path and cfg.numeric_path != path:
        raise ConfigError(f"setting 'numeric_path' is '{cfg.numeric_path}' but this process runs '{path}' "
                          "(another CPU or numerics setting); leave numeric_path empty to record this one")
    device = resolve_device(cfg.device)
    threads = cfg.threads or torch.get_num_threads()
    name = cfg.device if cfg.device != "auto" else device.type
    return dataclasses.replace(cfg, threads=threads, device=name, numeric_path=path)


def memory_bytes(device: torch.device) -> tuple[int, int | None]:
    """Memory of this machine and, for a CUDA device, of that device (None on CPU)."""
    from hypermask.footprint import host_memory_bytes

    if device.type != "cuda":
        return host_memory_bytes(), None
    return host_memory_bytes(), torch.cuda.get_device_properties(device.index or 0).total_memory


def preflight(cfg: Config) -> Config:
    """Checks before any compute: ``data_root`` can be a folder, the device exists and the run fits its
    memory (ConfigError, one line).

    Returns ``cfg`` with its threads and device resolved (see :func:`resolve_runtime`).
    """
    from hypermask.footprint import check_fits
    from hypermask.paths import PathProblem, check_folder, expand

    try:
        check_folder(expand(cfg.data_root, "setting 'data_root'"), "setting 'data_root'")
    except PathProblem as err:
        raise ConfigError(str(err)) from None
    cfg = resolve_runtime(cfg)
    check_fits(cfg, *memory_bytes(resolve_device(cfg.device)))
    return cfg


def configure_runtime(device_name: str, threads: int, tune_allocator: bool = True) -> torch.device:
    """Set torch's thread count (0 leaves it), tune the CPU allocator, return the device."""
    if threads > 0:
        torch.set_num_threads(threads)
    device = resolve_device(device_name)
    if device.type == "cpu" and tune_allocator:
        keep_freed_memory()
    return device
