"""User-given paths: ``~`` expansion and folder creation that fail in one line and leave nothing behind."""

from __future__ import annotations

import os
from pathlib import Path


class PathProblem(ValueError):
    """A path given by the user cannot be used (message is one line naming the path)."""


def expand(path: str | Path, what: str) -> Path:
    """``path`` with ``~`` / ``~user`` expanded, made absolute; ``what`` names it in errors."""
    text = str(path)
    if not text.strip():
        raise PathProblem(f"{what} is empty")
    try:
        expanded = Path(text).expanduser()
    except RuntimeError:
        raise PathProblem(f"{what} {text!r} starts with an unknown user's home folder") from None
    return Path(os.path.abspath(expanded))


def check_folder(path: Path, what: str) -> None:
    """Refuse a ``path`` that exists but is not a folder, or whose nearest existing parent is not one."""
    if path.exists() and not path.is_dir():
        raise PathProblem(f"{what} {path} is an existing file, not a folder")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise PathProblem(f"{what} {path} cannot be created: {parent} is a file, not a folder")


def make_folder(path: Path, what: str) -> list[Path]:
    """Create ``path`` and its missing parents; return the folders created (outermost first).

    On failure the folders created so far are removed and :class:`PathProblem` names the path.
    """
    check_folder(path, what)
    missing = []
    parent = path
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    missing.reverse()
    created: list[Path] = []
    try:
        for folder in missing:
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise
                continue  # made meanwhile by another process or thread: theirs, not ours to remove
            created.append(folder)
    except OSError as err:
        remove_folders(created)
        raise PathProblem(f"{what} {path} cannot be created: {err.strerror or err}") from None
    return created


def remove_folders(created: list[Path]) -> None:
    """Remove folders made by :func:`make_folder` again (innermost first) where they are still empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            break
