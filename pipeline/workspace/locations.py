"""Places the pipeline reads and writes outside the project folder: a local folder or a URI (``s3://``,
``gs://``, ``file://``), opened through pyarrow's filesystems."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs


def is_uri(location: str) -> bool:
    """Whether ``location`` names a filesystem by scheme (``s3://...``) rather than a local path."""
    return "://" in location


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of ``location`` and the path on it (a local folder or a URI)."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).resolve())
    return pafs.FileSystem.from_uri(location)
