"""Stage ``prepare``: check every study file, then make the profile's datasets present and verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypermask.data import DataError, dataset_for, prepare_dataset
from pipeline.errors import PipelineError
from pipeline.spec.params import Params
from pipeline.spec.studies import Study, load_checked_study
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import StageStatus, skipped, write_json


def check_studies(layout: Layout, params: Params) -> list[Study]:
    """Every listed study under the active profile, each validated as written and under every profile that
    runs it (one-line error, naming file and profile, on the first bad one)."""
    return [load_checked_study(layout, name, params) for name in params.all_studies]


def prepare(layout: Layout, params: Params) -> Path:
    """Copy (from ``HYPERMASK_DATA_MIRROR``) or download and verify the datasets the profile needs."""
    studies = check_studies(layout, params)
    needed = sorted({dataset_for(s.benchmark) for s in studies if params.runs(s.name)})
    root = Path(layout.resolve(params.data_root))
    folders = {}
    for name in needed:
        try:
            folders[name] = str(prepare_dataset(name, root))
        except DataError as err:
            raise PipelineError(str(err)) from None
        print(f"{name} verified under {folders[name]}", flush=True)
    for study in studies:
        write_json(layout.plan_file(study.name), plan(study, params))
    return write_json(root / "prepared.json", {"profile": params.profile.name, "datasets": folders})


def plan(study: Study, params: Params) -> dict[str, Any]:
    """Everything from the study file and params.yaml that defines the study's results under the active
    profile (the DVC input of its tune, final or sweep stages)."""
    if not params.runs(study.name):
        return skipped(study.name, params.profile.name)
    return {"study": study.name, "status": StageStatus.PLANNED, "profile": params.profile.name,
            "definition": study.to_dict(), "trial_seed": params.trial_seed, "searched": params.profile.search,
            "search": params.search_settings(), "asha": params.asha_settings()}


def check(layout: Layout, params: Params, study: str | None = None) -> None:
    """Stage ``check``: validate params.yaml and the study files, nothing else."""
    print(f"params.yaml and {len(check_studies(layout, params))} study files are valid "
          f"under every profile that runs them ({', '.join(params.profiles)})")


def run(layout: Layout, params: Params, study: str | None = None) -> None:
    """Stage ``prepare``."""
    prepare(layout, params)
