"""Stages of studies the active profile does not run: their outputs say "skipped", written before the stage
imports Ray, MLflow or torch, so a profile's unused studies cost no start-up time."""

from __future__ import annotations

from pipeline.spec.params import Params
from pipeline.workspace.graph import STAGES, study_stage
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import fresh_dir, skipped, write_json


def write_skipped(layout: Layout, params: Params, stage: str, name: str) -> dict:
    """Replace the outputs of ``stage`` of study ``name`` by the record that it was skipped."""
    record = skipped(name, params.profile.name)
    spec = STAGES[stage]
    write_json(fresh_dir(spec.output_dir(layout, name)) / spec.record, record)
    if spec.writes_metrics:
        write_json(layout.metrics_file(name), record)
    return record


def skip_unrun(layout: Layout, params: Params, stage: str, name: str | None) -> bool:
    """Write the skipped outputs when the active profile does not run study ``name``; whether it did."""
    spec = study_stage(stage)
    if spec is None or name is None:
        return False
    params.require_study(name, kind=spec.study_kind)
    if params.runs(name):
        return False
    write_skipped(layout, params, stage, name)
    return True
