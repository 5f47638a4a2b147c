"""A tune stage restores its search only under the same key: unchanged inputs resume it, a library change
starts a fresh search and removes the old one (in-process stages on one local Ray)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.spec.params import load_params
from pipeline.stages.tune import tune_study
from pipeline.workspace.layout import Layout
from pipeline_fixtures import copy_project, only_studies, write_study


def test_a_tune_stage_after_a_library_change_searches_afresh(tmp_path: Path, mirror: Path, local_ray,
                                                            capfd) -> None:
    root = copy_project(tmp_path / "project", data={"root": str(mirror)})
    budget = {"trials": 1, "concurrency": 1, "tasks": 1, "iterations": 5, "train_subset": 200, "validation_size": 100}
    write_study(root, "tiny", {"benchmark": "split_mnist", "search_space": {"beta": {"choice": [1e-3, 1e-2]}},
                               "budget": budget, "final": {"seeds": [1, 2, 3]}})
    only_studies(root, "tiny", **budget)  # over the test profile's budget too: one trial of one task
    layout = Layout.at(root)

    def tune() -> tuple[str, dict]:
        capfd.readouterr()
        tune_study(layout, load_params(layout.params_file), "tiny")
        out = capfd.readouterr()
        return out.out + out.err, json.loads((root / "results/tune/tiny/summary.json").read_text())

    _, first = tune()
    output, again = tune()
    assert "resuming" in output and again["key"] == first["key"]  # unchanged inputs: restored
    config = root / "hypermask" / "config.py"
    config.write_text(config.read_text().replace("eval_every: int = 100", "eval_every: int = 50", 1))
    output, fresh = tune()
    assert "resuming" not in output and fresh["key"] != first["key"]
    kept = f"tune-tiny-{fresh['key']}"  # the old experiment and its Optuna journal removed
    assert sorted(p.name for p in (root / "ray_storage").iterdir()) == [kept, f"{kept}.optuna.log"]
