"""Stage ``prepare``: check every study file, then make the profile's datasets present and verified."""

from __future__ import annotations

from pathlib import Path

from hypermask.data import DataError, dataset_for, prepare_dataset

from pipeline.errors import PipelineError
from pipeline.layout import Layout
from pipeline.outputs import write_json
from pipeline.params import Params
from pipeline.studies import Study, load_study


def check_studies(layout: Layout, params: Params) -> list[Study]:
    """Validate every listed study as written and under every profile that runs it; return them under
    the active profile (one-line error, naming file and profile, on the first bad one)."""
    for name in params.studies:
        load_study(layout, name)
        for profile in params.profiles.values():
            if name in profile.run and profile.name != params.profile.name:
                load_study(layout, name, profile)
    return [load_study(layout, name, params.profile) for name in params.studies]


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
    return write_json(root / "prepared.json", {"profile": params.profile.name, "datasets": folders})
