"""Stages of studies the active profile does not run: their outputs say "skipped", written before the stage
imports Ray, MLflow or torch, so a profile's unused studies cost no start-up time."""

from __future__ import annotations

from pathlib import Path

from pipeline.layout import Layout
from pipeline.outputs import fresh_dir, skipped, write_json
from pipeline.params import Params

STUDY_STAGES = {"tune": "search", "final": "search", "sweep": "sweep"}  # stage -> the kind of study it runs


def write_skipped(layout: Layout, params: Params, stage: str, name: str) -> dict:
    """Replace the outputs of ``stage`` of study ``name`` by the record that it was skipped."""
    record = skipped(name, params.profile.name)
    folders: dict[str, tuple[Path, str]] = {"tune": (layout.tune_dir(name), "summary.json"),
                                            "final": (layout.final_dir(name), "runs.json"),
                                            "sweep": (layout.sweep_dir(name), "runs.json")}
    folder, file = folders[stage]
    write_json(fresh_dir(folder) / file, record)
    if stage != "tune":
        write_json(layout.metrics_file(name), record)
    return record


def skip_unrun(layout: Layout, params: Params, stage: str, name: str | None) -> bool:
    """Write the skipped outputs when the active profile does not run study ``name``; whether it did."""
    if stage not in STUDY_STAGES or name is None:
        return False
    params.require_study(name, kind=STUDY_STAGES[stage])
    if params.runs(name):
        return False
    write_skipped(layout, params, stage, name)
    return True
