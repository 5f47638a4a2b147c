"""The stages of the pipeline in one table: the module that runs each, the studies it runs for, what it
writes, and the code its results depend on. The entry point, stage keys, skipping, job submission, the
layout and the DVC graph (``dvc.yaml``, checked against this table) all read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.workspace.layout import Layout

LIBRARY = "hypermask"
# What every stage runs: the entry point and what it reads before any stage runs, the job submission,
# the tracking, and the library.
COMMON_CODE = ("pipeline/__init__.py", "pipeline/__main__.py", "pipeline/errors.py", "pipeline/stages/__init__.py", "pipeline/spec",
               "pipeline/workspace", "pipeline/cluster", "pipeline/tracking", LIBRARY)


@dataclass(frozen=True)
class Stage:
    """One DVC stage. ``study_kind``: the kind of study it runs once for ("search" or "sweep"), None for a
    stage of the whole project; ``record``: the file of its output folder that records what it did;
    ``writes_metrics``: whether it writes ``metrics/<study>.json``; ``code``: the project paths (folders or
    files) whose code defines its results: its DVC dependencies and its key."""

    name: str
    module: str
    study_kind: str | None = None
    record: str = ""
    writes_metrics: bool = False
    code: tuple[str, ...] = COMMON_CODE

    def output_dir(self, layout: Layout, study: str) -> Path:
        """The folder the stage writes for ``study``."""
        return layout.results_dir(self.name, study)

    def outputs(self, layout: Layout, study: str) -> list[Path]:
        """What the stage writes for ``study`` (as dvc.yaml declares it)."""
        return [self.output_dir(layout, study)] + ([layout.metrics_file(study)] if self.writes_metrics else [])


def _code(*own: str) -> tuple[str, ...]:
    return COMMON_CODE + own


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("prepare", "pipeline.stages.prepare", code=_code("pipeline/stages/prepare.py")),
    Stage("tune", "pipeline.stages.tune", "search", "summary.json",
          code=_code("pipeline/tuning", "pipeline/stages/tune.py")),
    Stage("final", "pipeline.stages.final", "search", "runs.json", writes_metrics=True,
          code=_code("pipeline/tuning", "pipeline/stages/final.py")),
    Stage("sweep", "pipeline.stages.sweep", "sweep", "runs.json", writes_metrics=True,
          code=_code("pipeline/tuning", "pipeline/stages/sweep.py")),
    Stage("report", "pipeline.stages.report", code=_code("pipeline/analysis", "pipeline/stages/report.py")),
)}
# Commands of ``python -m pipeline`` that are not DVC stages -> the module that carries each out.
COMMANDS = {"check": "pipeline.stages.prepare", "evaluate": "pipeline.stages.evaluate"}


def study_stage(name: str) -> Stage | None:
    """The stage ``name`` when it runs once per study, else None."""
    stage = STAGES.get(name)
    return stage if stage is not None and stage.study_kind else None


def code_files(root: Path, stage: str) -> list[str]:
    """Project-relative paths of the Python files under the stage's ``code`` (what its key hashes)."""
    files: set[str] = set()
    for entry in STAGES[stage].code:
        path = root / entry
        found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files.update(str(p.relative_to(root)) for p in found if "__pycache__" not in p.parts)
    return sorted(files)
