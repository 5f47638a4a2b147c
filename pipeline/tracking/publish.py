"""The report in MLflow: a run of the ``report`` stage in an experiment of its own (the report spans studies),
with ``report.md`` and its plots as artifacts and the run's context as tags."""

from __future__ import annotations

from pathlib import Path

from pipeline.spec.params import Params
from pipeline.tracking import context
from pipeline.tracking import runs as tracking
from pipeline.workspace.keys import digest
from pipeline.workspace.layout import Layout

EXPERIMENT = "hypermask-report"
STAGE = "report"


def report_client(layout: Layout, params: Params) -> tracking.MlflowClient:
    """A checked client of the project's tracking store (before the report is written)."""
    return tracking.connect(tracking.tracking_uri(layout, params.tracking_uri))


def log_report(client: tracking.MlflowClient, layout: Layout, params: Params, report: Path) -> str:
    """Log ``report`` and the ``plots/`` beside it as a run of :data:`EXPERIMENT`; returns its id. The run
    is found again by the report's content, so the same report is never logged twice."""
    experiment_id = tracking.ensure_experiment(client, EXPERIMENT)
    plots = report.parent / "plots"
    content = {"report": report.read_text(),
               "plots": {p.name: digest(p.read_bytes().hex()) for p in sorted(plots.glob("*.png"))}}
    run_id, created = tracking.ensure_run(client, experiment_id, f"{STAGE}-{params.profile.name}",
                                          {tracking.TAG_STAGE: STAGE, tracking.TAG_KEY: digest(content)})
    if created:
        tracking.log_params(client, run_id, {"profile": params.profile.name, "studies": ",".join(params.profile.run)})
        tracking.set_tags(client, run_id, {tracking.TAG_PROFILE: params.profile.name,
                                           **context.run_tags(layout.root)})
        client.log_artifact(run_id, str(report))
        if plots.is_dir():
            client.log_artifacts(run_id, str(plots), "plots")
    client.set_terminated(run_id)
    return run_id
