"""``python -m pipeline evaluate --model URI --out DIR``: a logged or registered model evaluated again on its
own test data (rebuilt from the configuration and seed the model carries); writes ``DIR/metrics.json``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from hypermask.data import DataError
from hypermask.model import ModelError, evaluation_line, save_evaluation
from pipeline.errors import PipelineError
from pipeline.spec.params import load_params
from pipeline.tracking import runs as tracking
from pipeline.tracking.model import load
from pipeline.workspace.layout import Layout

STORE_SCHEMES = ("models:/", "runs:/")


def store_uri(layout: Layout, profile: str | None, model_uri: str) -> str:
    """The tracking store holding ``model_uri`` (``MLFLOW_TRACKING_URI``, else the project's ``tracking.uri``,
    else its ``mlflow.db``), checked; '' for a local MLflow model folder, which needs none."""
    if not model_uri.startswith(STORE_SCHEMES):
        return ""
    configured = load_params(layout.params_file, profile).tracking_uri if layout.params_file.is_file() else ""
    uri = tracking.tracking_uri(layout, configured)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise PipelineError(f"MLflow tracking store {uri} does not exist; set {tracking.URI_ENV} to the store "
                            f"that holds {model_uri}")
    tracking.connect(uri)
    return uri


def evaluate(uri: str, model_uri: str, out: str | Path, data_root: str | None = None) -> dict[str, Any]:
    """Load ``model_uri`` from the store at ``uri``, evaluate it on its test data, write ``out/metrics.json``."""
    model = load(uri, model_uri)
    try:
        metrics = {**model.evaluate(data_root), "model": model_uri}
        written = save_evaluation(metrics, out)
    except (ModelError, DataError) as err:
        raise PipelineError(str(err)) from None
    print(f"{evaluation_line(metrics)}; written to {written}", flush=True)
    return metrics


def run_command(layout: Layout, args: argparse.Namespace) -> None:
    """The ``evaluate`` command of ``python -m pipeline``."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one result line, no bars
    evaluate(store_uri(layout, args.profile, args.model), args.model, args.out, args.data_root)
