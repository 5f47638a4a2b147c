"""The skeleton every study stage shares (tune, final, sweep): skip what the profile does not run, check the
study, run its Tune experiment, turn the finished trials into the stage's files, and close the MLflow parent
run as failed when that fails. The previous outputs are replaced only once the new ones exist."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from pipeline.errors import PipelineError
from pipeline.spec.params import Params
from pipeline.spec.studies import Study, load_checked_study
from pipeline.tuning.runner import StageRun, TuneRequest, run_experiment
from pipeline.workspace.graph import STAGES
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import fresh_dir, write_csv, write_json
from pipeline.workspace.skip import write_skipped


@dataclass
class StageOutputs:
    """What a study stage writes: JSON files (a ``.csv`` path takes a list of rows), the parent run's
    metrics, and the record the stage returns (its summary or metrics)."""

    files: dict[Path, Any]
    result: dict[str, Any]
    parent_metrics: dict[str, float] = field(default_factory=dict)


def run_study_stage(layout: Layout, params: Params, stage: str, name: str,
                    request_of: Callable[[Study], TuneRequest | None],
                    outputs_of: Callable[[Study, StageRun | None], StageOutputs],
                    ready: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run ``stage`` of study ``name``: skipped when the profile does not run it (or ``ready()`` says its
    inputs are not there); else the experiment ``request_of(study)`` (None: nothing to train) and the
    files ``outputs_of(study, run)``, written into the freshly emptied output folder."""
    spec = STAGES[stage]
    params.require_study(name, kind=spec.study_kind)
    if not params.runs(name) or (ready is not None and not ready()):
        return write_skipped(layout, params, stage, name)
    study = load_checked_study(layout, name, params)
    experiment = request_of(study)
    run = run_experiment(layout, params, experiment) if experiment is not None else None
    try:
        outputs = outputs_of(study, run)
    except PipelineError:
        if run is not None:
            run.close({}, status="FAILED")
        raise
    fresh_dir(spec.output_dir(layout, name))
    for path, data in outputs.files.items():
        if path.suffix == ".csv":
            write_csv(path, data)
        else:
            write_json(path, data)
    if run is not None:
        run.close(outputs.parent_metrics)
    return outputs.result


def stage_record(layout: Layout, stage: str, name: str) -> Path:
    """The file of ``stage``'s output folder that records what it did for study ``name``."""
    spec = STAGES[stage]
    return spec.output_dir(layout, name) / spec.record


def metrics_files(layout: Layout, stage: str, name: str, record: Mapping[str, Any],
                  metrics: Mapping[str, Any]) -> dict[Path, Any]:
    """The record file and ``metrics/<study>.json`` of a stage that writes metrics (final, sweep)."""
    return {stage_record(layout, stage, name): record, layout.metrics_file(name): metrics}
