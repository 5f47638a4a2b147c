"""Reading and fetching a dataset that torchvision knows, by its class name (imported on first use, so the
data modules that declare datasets import without torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def torchvision_io(class_name: str) -> tuple[Callable[[Path], Any], Callable[[Path], None]]:
    """``load(folder)`` (train and test arrays) and ``download(root)`` of ``torchvision.datasets.<class_name>``."""

    def dataset_class() -> Any:
        import torchvision.datasets

        return getattr(torchvision.datasets, class_name)

    def load(folder: Path) -> Any:
        from hypermask.data.sources import torchvision_arrays

        return torchvision_arrays(dataset_class(), folder)

    def download(root: Path) -> None:
        for train in (True, False):
            dataset_class()(str(root), train=train, download=True)

    return load, download
