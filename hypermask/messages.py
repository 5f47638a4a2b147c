"""One-line messages from exceptions: what the command line, stages and records show of an error."""

from __future__ import annotations

from typing import Any


def first_line(error: Any, default: str | None = None, limit: int | None = None) -> str:
    """The first non-blank line of ``error``'s text (a message's headline); ``default``, else the
    exception's type name, when it has none; at most ``limit`` characters."""
    lines = str(error if error is not None else "").strip().splitlines()
    text = lines[0] if lines else (default if default is not None else type(error).__name__)
    return text[:limit] if limit else text


def last_line(error: Any, limit: int = 300) -> str:
    """The last line of an error's text (where Python puts the exception itself, after a traceback), at
    most ``limit`` characters; "" for none."""
    return (str(error or "").strip().splitlines() or [""])[-1][:limit]
