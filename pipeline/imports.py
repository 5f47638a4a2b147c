"""The project modules a stage runs: its import closure, found statically. It names the code that
defines a stage's results (its key) and what its DVC stage depends on."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable

PACKAGE = "pipeline"
LIBRARY = "hypermask"


def _module_file(root: Path, module: str) -> Path | None:
    """``pipeline/x.py`` or ``pipeline/x/__init__.py`` of a dotted name inside the pipeline package."""
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
    package's ``__init__`` included), and whether any of them imports the library."""
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
        todo.extend(_imported(ast.parse(path.read_text(), str(path))))
    init = _module_file(root, PACKAGE)
    if seen and init is not None:
        seen.add(init)
    return sorted(str(p.relative_to(root)) for p in seen), library
