"""Registered datasets on disk: data root, offline mirror, integrity checks, loading, clear errors.

What a dataset is (files, checksums, how to read and fetch them) is its registered
:class:`hypermask.registry.DatasetSpec`; this module does the same for every one of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from hypermask.messages import first_line
from hypermask.paths import PathProblem, check_folder, expand, make_folder, remove_folders
from hypermask.registry import DatasetSpec, UnknownName, dataset_spec, resolve

MIRROR_ENV = "HYPERMASK_DATA_MIRROR"


class DataError(RuntimeError):
    """A dataset is missing, cannot be downloaded, or fails its integrity check (one line)."""


@dataclass
class ImageArrays:
    """A dataset's train and test images (uint8, NHWC or NHW) and integer labels."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def mirror_root() -> Path | None:
    """The offline mirror folder from ``HYPERMASK_DATA_MIRROR``, if set."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return _path(value, MIRROR_ENV) if value else None


def _path(path: str | Path, what: str) -> Path:
    try:
        return expand(path, what)
    except PathProblem as err:
        raise DataError(str(err)) from None


def _spec(name: str) -> DatasetSpec:
    try:
        return dataset_spec(name)
    except UnknownName as err:
        raise DataError(str(err)) from None


def _expected_files(name: str, root: Path) -> dict[Path, str]:
    """Every file of ``name`` under ``root`` with its md5."""
    return {root / path: md5 for path, md5 in _spec(name).files.items()}


def _present(name: str, root: Path) -> bool:
    """Whether any file of ``name`` is under ``root`` (a complete or a partial copy)."""
    return any(path.exists() for path in _expected_files(name, root))


def _problem(name: str, root: Path) -> str:
    """The first missing or corrupt file of ``name`` under ``root`` ('' when the copy is intact)."""
    for path, expected in _expected_files(name, root).items():
        if not path.is_file():
            return f"{name} file missing: {path}"
        try:
            if _md5(path) != expected:
                return f"{name} file is corrupt (md5 mismatch): {path}"
        except OSError as err:
            return f"{name} file is unreadable ({err.strerror or err}): {path}"
    return ""


def verify_dataset(name: str, root: Path) -> None:
    """Check the files of ``name`` under ``root``; raise :class:`DataError` naming the bad file."""
    problem = _problem(name, root)
    if problem:
        raise DataError(problem)


def _download(name: str, root: Path) -> None:
    """Download ``name`` into ``root``; on failure remove what this call created and name the cause."""
    spec = _spec(name)
    hint = "" if mirror_root() else f"; or set {MIRROR_ENV} to a folder holding {spec.folder}/"
    if spec.download is None:
        raise DataError(f"{name} is not under {root} and cannot be downloaded{hint}")
    try:
        created = make_folder(root, "data_root")
    except PathProblem as err:
        raise DataError(str(err)) from None
    target = root / spec.folder
    fresh = not target.exists()
    try:
        resolve(spec.download)(root)
    except Exception as err:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        remove_folders(created)
        reason = first_line(err)
        raise DataError(f"{name} is not under {root} and could not be downloaded ({reason}){hint}") from None


def _check_root(root: Path, what: str) -> None:
    try:
        check_folder(root, what)
    except PathProblem as err:
        raise DataError(str(err)) from None


def locate_dataset(name: str, root: str | Path) -> Path:
    """Folder that holds a verified copy of ``name``: ``root``, else the mirror, else a download.

    A copy under ``root`` or in the mirror that is incomplete or corrupt is reported (file and
    folder named), not downloaded over; ``root`` is created only when something is downloaded.
    """
    _spec(name)
    root = _path(root, "data_root")
    _check_root(root, "data_root")
    mirror = mirror_root()
    if _present(name, root):
        verify_dataset(name, root)
        return root
    if mirror is not None and _present(name, mirror):
        problem = _problem(name, mirror)
        if problem:
            raise DataError(f"{problem} (in the mirror {MIRROR_ENV}={mirror}; {name} is not under {root})")
        return mirror
    _download(name, root)
    verify_dataset(name, root)
    return root


def prepare_dataset(name: str, root: str | Path, own_copy: bool = False) -> Path:
    """Make ``name`` present and verified under ``root`` (copied from the mirror or downloaded).

    A missing, partial or corrupt copy under ``root`` is replaced by the mirror's when that one is intact.
    With ``own_copy`` the files end up under ``root`` whatever the mirror holds (a node's own copy), and
    processes preparing the same ``root`` at once take turns (a lock file beside the dataset).
    """
    _spec(name)
    root = _path(root, "--root")
    _check_root(root, "--root")
    with _exclusive(root, name) if own_copy else contextlib.nullcontext():
        mirror = mirror_root()
        if _problem(name, root) and mirror is not None and _present(name, mirror) and not _problem(name, mirror):
            folder = _spec(name).folder
            _copy_folder(mirror / folder, root / folder, root)
        if own_copy and not _present(name, root):
            _download(name, root)
        return locate_dataset(name, root)


@contextlib.contextmanager
def _exclusive(root: Path, name: str) -> Iterator[None]:
    """Hold ``root/.<name>.lock`` exclusively (POSIX ``flock``; elsewhere no lock)."""
    try:
        make_folder(root, "data_root")
    except PathProblem as err:
        raise DataError(str(err)) from None
    with open(root / f".{name}.lock", "a") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _copy_folder(source: Path, target: Path, root: Path) -> None:
    """Replace ``target`` by a copy of ``source`` (copied beside it first, then swapped in)."""
    try:
        created = make_folder(root, "--root")
    except PathProblem as err:
        raise DataError(str(err)) from None
    staging = target.with_name(target.name + ".partial")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        remove_folders(created)
        raise DataError(f"cannot copy {source} to {target}: {err.strerror or err}") from None


def load_arrays(name: str, root: str | Path) -> ImageArrays:
    """Train and test images and labels of ``name`` as tensors (uint8 images, int64 labels)."""
    folder = locate_dataset(name, root)
    try:
        return resolve(_spec(name).load)(folder)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{name} under {folder} could not be read: {err}") from None


def torchvision_arrays(dataset_class: type, folder: Path) -> ImageArrays:
    """Train and test splits of a torchvision dataset class whose files are under ``folder``."""
    train, test = dataset_class(str(folder), train=True), dataset_class(str(folder), train=False)

    def images(ds) -> Tensor:
        data = ds.data
        return data if isinstance(data, Tensor) else torch.from_numpy(np.asarray(data))

    def labels(ds) -> Tensor:
        return torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)

    return ImageArrays(images(train), labels(train), images(test), labels(test))


def dataset_checksums(name: str) -> dict[str, str]:
    """The checksums a dataset's files are verified against (they identify the data of a result)."""
    return {Path(path).name: md5 for path, md5 in _spec(name).files.items()}


def pin_mirror() -> Path | None:
    """Make a relative ``HYPERMASK_DATA_MIRROR`` absolute in this process's environment, so processes
    started from here (Ray workers, whose working folder differs) find the same folder."""
    mirror = mirror_root()
    if mirror is not None:
        os.environ[MIRROR_ENV] = str(mirror)
    return mirror
