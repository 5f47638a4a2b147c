"""The project modules a module runs: its import closure, found statically (what the stage table's code
of a stage must cover, and what the layer rules constrain)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable

PACKAGE = "pipeline"
LIBRARY = "hypermask"


def _module_file(root: Path, module: str) -> Path | None:
    """``a/b.py`` or ``a/b/__init__.py`` of a dotted name inside the project."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.AST) -> Iterable[str]:
    """Every module named by an import statement anywhere in ``tree`` (lazy imports included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_closure(root: Path, modules: Iterable[str]) -> tuple[list[str], bool]:
    """Project-relative paths of the pipeline modules that ``modules`` import, directly or not (the
    ``__init__`` of every package on the way included), and whether any of them imports the library."""
    root = Path(root)
    todo, seen, library = list(modules), set(), False
    while todo:
        module = todo.pop()
        if module.split(".")[0] == LIBRARY:
            library = True
        if module.split(".")[0] != PACKAGE:
            continue
        path = _module_file(root, module)
        if path is None or path in seen:
            continue
        seen.add(path)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # the packages' __init__ run first
        todo.extend(_imported(ast.parse(path.read_text(), str(path))))
    return sorted(str(p.relative_to(root)) for p in seen), library
