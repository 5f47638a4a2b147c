"""Small checks shared by the params and study loaders; every failure is one line naming key and value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from hypermask.messages import first_line
from pipeline.errors import PipelineError


def bad(source: str, key: str, why: str, value: Any) -> PipelineError:
    """The error for ``key`` of ``source`` (a file name) holding ``value``."""
    return PipelineError(f"{source}: '{key}' {why}, got {value!r}")


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"key {key!r} appears twice (again on line {line})")
        self.key, self.line = key, line


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (which would silently keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # an unhashable key: the base loader reports it
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (every mapping's keys distinct)."""
    if not path.is_file():
        raise PipelineError(f"{path.name}: file not found at {path}")
    try:
        data = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except _DuplicateKey as err:
        raise PipelineError(f"{path.name}: key {err.key!r} appears twice (line {err.line})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or first_line(err)
        raise PipelineError(f"{path.name}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path.name}: top level must be a mapping, got {type(data).__name__}")
    return data


def mapping(value: Any, source: str, key: str, allowed: Iterable[str] | None = None,
            required: Iterable[str] = ()) -> dict[str, Any]:
    """``value`` as a dict whose keys are all in ``allowed`` and include ``required``."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise bad(source, key, "must be a mapping", value)
    prefix = f"{key}." if key else ""
    if allowed is not None:
        allowed = set(allowed)
        for name in value:
            if name not in allowed:
                raise bad(source, f"{prefix}{name}", f"is not a known key (known: {', '.join(sorted(allowed))})",
                          value[name])
    for name in required:
        if name not in value:
            raise PipelineError(f"{source}: '{prefix}{name}' is missing")
    return dict(value)


def integer(value: Any, source: str, key: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer >= ``minimum`` and <= ``maximum`` when given (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum \
            or (maximum is not None and value > maximum):
        limit = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise bad(source, key, f"must be an integer {limit}", value)
    return value


def boolean(value: Any, source: str, key: str) -> bool:
    """A YAML boolean (``true``/``false``; 1, 0 and strings refused)."""
    if not isinstance(value, bool):
        raise bad(source, key, "must be true or false", value)
    return value


def number(value: Any, source: str, key: str, minimum: float | None = None,
           positive: bool = False) -> float:
    """A finite number (YAML strings such as '1e-3' accepted), optionally >= minimum or > 0."""
    try:
        if isinstance(value, bool):
            raise ValueError
        result = float(value)
    except (TypeError, ValueError):
        raise bad(source, key, "must be a number", value) from None
    if not math.isfinite(result) or (minimum is not None and result < minimum) or (positive and result <= 0):
        limit = "> 0" if positive else f">= {minimum}" if minimum is not None else "finite"
        raise bad(source, key, f"must be a number {limit}", value)
    return result


def names(value: Any, source: str, key: str, choices: Iterable[str] | None = None) -> list[str]:
    """A non-empty list of distinct strings, each in ``choices`` when given."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise bad(source, key, "must be a list of names", value)
    if len(set(value)) != len(value):
        raise bad(source, key, "must not repeat a name", value)
    if choices is not None:
        choices = list(choices)
        for item in value:
            if item not in choices:
                raise bad(source, key, f"names unknown '{item}' (choose from {', '.join(choices)})", value)
    return list(value)


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``patch`` laid over it; nested mappings merge, everything else is replaced."""
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
