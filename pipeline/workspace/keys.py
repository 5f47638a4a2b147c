"""Keys of stage runs: one hash of everything that defines a stage's results. A Tune experiment and an
MLflow run are reused (resumed) only under the same key, so a change of code, data, settings or
profile always starts afresh."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from hypermask.config import NON_RESULT_SETTINGS, result_settings
from hypermask.data import dataset_checksums, dataset_for
from pipeline.spec.params import Params
from pipeline.spec.studies import Study
from pipeline.workspace.graph import code_files


def digest(data: Any, length: int = 12) -> str:
    """Short, stable hash of JSON-able ``data``."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def code_digest(root: Path, stage: str) -> str:
    """Hash of the contents of the stage's code files (:func:`pipeline.workspace.graph.code_files`)."""
    sha = hashlib.sha256()
    for name in code_files(root, stage):
        sha.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return sha.hexdigest()[:12]


def runtime_identity(runtime: Mapping[str, Any], concurrency: int | None = None) -> dict[str, Any]:
    """The result-affecting part of a trial's runtime settings (threads, device) and, for the asynchronous
    search, the planned trials at a time (they decide which results the searcher has seen when it proposes a
    trial)."""
    found = {k: v for k, v in runtime.items() if k not in NON_RESULT_SETTINGS}
    return found if concurrency is None else {**found, "concurrency": concurrency}


# How many trials run at once is where they run, not what they give: it enters a key only through
# :func:`runtime_identity`, for the asynchronous search whose selection depends on it.
PLACEMENT_KEYS = ("concurrency", "fixed_concurrency")


def study_identity(root: Path, stage: str, study: Study, params: Params, **extra: Any) -> dict[str, Any]:
    """What defines the results of ``stage`` of ``study`` apart from where trials run: the study as
    resolved under the profile (without its trials at a time), the result-affecting settings of its base
    configuration, the stage's code, the data's checksums, the profile, and ``extra`` (search settings, the
    tuned configuration)."""
    return {
        "stage": stage, "profile": params.profile.name,
        "study": {k: v for k, v in study.to_dict().items() if k not in PLACEMENT_KEYS},
        "settings": result_settings(study.config({}, params.trial_seed)),
        "code": code_digest(root, stage),
        "data": dataset_checksums(dataset_for(study.benchmark)),
        **extra,
    }


def stage_key(identity: Mapping[str, Any], runtime: Mapping[str, Any], concurrency: int | None = None) -> str:
    """The key of a stage run: its identity with the result-affecting runtime settings."""
    return digest({**identity, "runtime": runtime_identity(runtime, concurrency)})
