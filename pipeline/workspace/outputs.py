"""Stage outputs on disk: JSON summaries and CSV tables (small, diff-friendly, read by later stages)."""

from __future__ import annotations

import csv
import json
import shutil
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterable, Mapping

from pipeline.errors import PipelineError


def fresh_dir(path: Path) -> Path:
    """An empty folder at ``path`` (a stage owns its output folder)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_json(path: Path, produced_by: str) -> dict[str, Any]:
    """A stage output; a missing one names the stage that writes it."""
    if not path.is_file():
        raise PipelineError(f"{path} is missing: run the '{produced_by}' stage first (dvc repro)")
    return json.loads(path.read_text())


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """A table whose columns are the union of the rows' keys, in first-seen order."""
    rows = list(rows)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


class StageStatus(StrEnum):
    """What a stage's output says it is: a finished stage, a study the profile does not run, a study planned
    by ``prepare``, or a search that a profile without search did not run (final trains the published
    configuration)."""

    DONE = "done"
    SKIPPED = "skipped"
    PLANNED = "planned"
    NO_SEARCH = "published_only"



def skipped(study: str, profile: str) -> dict[str, Any]:
    """The output of a stage whose study the active profile does not run."""
    return {"study": study, "status": StageStatus.SKIPPED, "profile": profile,
            "reason": f"profile '{profile}' does not run this study"}


def no_search(study: str, profile: str) -> dict[str, Any]:
    """The tune output of a study whose profile runs no search (the final stage trains the published
    configuration alone)."""
    return {"study": study, "status": StageStatus.NO_SEARCH, "profile": profile, "wall_s": 0.0,
            "reason": f"profile '{profile}' runs no search: the final stage trains the published configuration"}
