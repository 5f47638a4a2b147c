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

MIRROR_ENV = "HYPERMASK_DATA_MIRROR"

# md5 of the uncompressed MNIST IDX files (torchvision's raw/ layout).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
DATASETS = ("mnist", "cifar100")


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
    return Path(value).expanduser().resolve() if value else None


def _folder(name: str) -> str:
    return {"mnist": "MNIST", "cifar100": "cifar-100-python"}[name]


def _present(name: str, root: Path) -> bool:
    if name == "mnist":
        return all((root / "MNIST" / "raw" / f).is_file() for f in MNIST_MD5)
    return (root / "cifar-100-python" / "train").is_file() and (root / "cifar-100-python" / "test").is_file()


def verify_dataset(name: str, root: Path) -> None:
    """Check the files of ``name`` under ``root``; raise :class:`DataError` naming the bad file."""
    if name == "mnist":
        for filename, expected in MNIST_MD5.items():
            path = root / "MNIST" / "raw" / filename
            if not path.is_file():
                raise DataError(f"MNIST file missing: {path}")
            if _md5(path) != expected:
                raise DataError(f"MNIST file is corrupt (md5 mismatch): {path}")
        return
    try:
        from torchvision.datasets import CIFAR100

        ok = CIFAR100(str(root), train=True, download=False)._check_integrity()
    except Exception as err:  # torchvision raises on unreadable folders
        raise DataError(f"CIFAR-100 under {root} is unreadable: {err}") from None
    if not ok:
        raise DataError(f"CIFAR-100 files under {root / 'cifar-100-python'} are missing or corrupt")


def _download(name: str, root: Path) -> None:
    from torchvision.datasets import CIFAR100, MNIST

    cls = MNIST if name == "mnist" else CIFAR100
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f"{name} is not under {root} and could not be downloaded ({reason}); "
            f"set {MIRROR_ENV} to a folder holding it in torchvision's layout") from None


def locate_dataset(name: str, root: str | Path) -> Path:
    """Folder that holds a verified copy of ``name``: ``root``, else the mirror, else a download."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)})")
    root = Path(root).expanduser().resolve()
    mirror = mirror_root()
    if _present(name, root):
        chosen = root
    elif mirror is not None and _present(name, mirror):
        chosen = mirror
    else:
        _download(name, root)
        chosen = root
    verify_dataset(name, chosen)
    return chosen


def prepare_dataset(name: str, root: str | Path) -> Path:
    """Make ``name`` present and verified under ``root`` (copied from the mirror or downloaded)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)})")
    root = Path(root).expanduser().resolve()
    mirror = mirror_root()
    if not _present(name, root) and mirror is not None and _present(name, mirror):
        shutil.copytree(mirror / _folder(name), root / _folder(name), dirs_exist_ok=True)
    return locate_dataset(name, root)


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
