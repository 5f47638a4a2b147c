"""Raw datasets through torchvision: data root, offline mirror, integrity checks, clear errors."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hypermask.paths import PathProblem, check_folder, expand, make_folder, remove_folders

MIRROR_ENV = "HYPERMASK_DATA_MIRROR"

# md5 of the uncompressed MNIST IDX files (torchvision's raw/ layout).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
DATASETS = ("mnist", "cifar100")
IMAGE_SHAPES = {"mnist": (28, 28), "cifar100": (32, 32, 3)}  # one image as the dataset gives it


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


def _folder(name: str) -> str:
    return {"mnist": "MNIST", "cifar100": "cifar-100-python"}[name]


def _expected_files(name: str, root: Path) -> dict[Path, str]:
    """Every file of ``name`` under ``root`` with its md5."""
    if name == "mnist":
        return {root / "MNIST" / "raw" / f: md5 for f, md5 in MNIST_MD5.items()}
    from torchvision.datasets import CIFAR100

    folder = root / CIFAR100.base_folder
    files = {folder / f: md5 for f, md5 in CIFAR100.train_list + CIFAR100.test_list}
    files[folder / CIFAR100.meta["filename"]] = CIFAR100.meta["md5"]
    return files


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
    from torchvision.datasets import CIFAR100, MNIST

    cls = MNIST if name == "mnist" else CIFAR100
    try:
        created = make_folder(root, "data_root")
    except PathProblem as err:
        raise DataError(str(err)) from None
    target = root / _folder(name)
    fresh = not target.exists()
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as err:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        remove_folders(created)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = "" if mirror_root() else f"; or set {MIRROR_ENV} to a folder holding it in torchvision's layout"
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
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)})")
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


def prepare_dataset(name: str, root: str | Path) -> Path:
    """Make ``name`` present and verified under ``root`` (copied from the mirror or downloaded).

    A missing, partial or corrupt copy under ``root`` is replaced by the mirror's when that one is intact.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)})")
    root = _path(root, "--root")
    _check_root(root, "--root")
    mirror = mirror_root()
    if _problem(name, root) and mirror is not None and _present(name, mirror) and not _problem(name, mirror):
        _copy_folder(mirror / _folder(name), root / _folder(name), root)
    return locate_dataset(name, root)


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
    from torchvision.datasets import CIFAR100, MNIST

    folder = locate_dataset(name, root)
    cls = MNIST if name == "mnist" else CIFAR100
    try:
        train, test = cls(str(folder), train=True), cls(str(folder), train=False)
    except Exception as err:
        raise DataError(f"{name} under {folder} could not be read: {err}") from None

    def images(ds) -> Tensor:
        data = ds.data
        return data if isinstance(data, Tensor) else torch.from_numpy(np.asarray(data))

    def labels(ds) -> Tensor:
        return torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)

    return ImageArrays(images(train), labels(train), images(test), labels(test))


def dataset_checksums(name: str) -> dict[str, str]:
    """The checksums a dataset's files are verified against (they identify the data of a result)."""
    if name == "mnist":
        return dict(MNIST_MD5)
    from torchvision.datasets import CIFAR100

    listed = [*CIFAR100.train_list, *CIFAR100.test_list, [CIFAR100.meta["filename"], CIFAR100.meta["md5"]]]
    return {filename: md5 for filename, md5 in listed}


def pin_mirror() -> Path | None:
    """Make a relative ``HYPERMASK_DATA_MIRROR`` absolute in this process's environment, so processes
    started from here (Ray workers, whose working folder differs) find the same folder."""
    mirror = mirror_root()
    if mirror is not None:
        os.environ[MIRROR_ENV] = str(mirror)
    return mirror
