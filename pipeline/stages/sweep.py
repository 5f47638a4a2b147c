"""Stage ``sweep@<study>``: every grid point of a sweep study trained with every final seed on the base
configuration (the best of its base search when that search ran in the same profile, else the published
configuration); mean ± std per point, and the point with the best validation objective."""

from __future__ import annotations

from typing import Any, Mapping

from ray import tune

from pipeline.errors import PipelineError
from pipeline.spec.params import Params
from pipeline.spec.studies import Study, load_study
from pipeline.tuning.runner import StageRun, TuneRequest
from pipeline.tuning.stage import StageOutputs, metrics_files, run_study_stage
from pipeline.workspace.keys import study_identity
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import StageStatus, read_json
from pipeline.workspace.results import (
    COMPLETED,
    INFERENCE_PREFIXES,
    SESSION_LISTS,
    SESSION_SCORES,
    SearchBest,
    TrialRecord,
)
from pipeline.workspace.summaries import mean_std, per_seed

# Per rule of task inference (plain: lowest entropy; maxprob_, maxlogit_): task inference and
# class-incremental accuracy, and in few-shot class-incremental streams the session summaries.
INFERRED = tuple(rule + key for rule in INFERENCE_PREFIXES
                 for key in ("task_inference_accuracy", "class_incremental_accuracy", *SESSION_SCORES))
SWEPT = ("average_accuracy", "backward_transfer", "forgetting", "val_average_accuracy", "val_backward_transfer",
         "val_forgetting", *INFERRED, *(f"val_{k}" for k in INFERRED), "base_class_accuracy", "novel_class_accuracy",
         "mask_density", "mask_overlap",
         "hypernetwork_parameters")


def base_configuration(layout: Layout, params: Params, sweep: Study) -> dict[str, Any]:
    """The settings every grid point starts from, with where they come from: the best configuration of the
    sweep's base search when it ran in the active profile (settings the sweep fixes or sweeps itself are
    left to the sweep), else none (the library's published configuration)."""
    name = params.sweeps[sweep.name]
    method = load_study(layout, name).method
    summary = read_json(layout.tune_summary(name), f"tune@{name}")
    if summary.get("status") == StageStatus.DONE and summary.get("profile") == params.profile.name:
        own = set(sweep.grid) | set(sweep.fixed) | set(sweep.budget)
        settings = {k: v for k, v in SearchBest.of(summary).config.items() if k not in own}
        others = [m for m in sweep.methods if m != method]
        return {"study": name, "method": method, "source": "search", "settings": settings,
                "text": f"the best configuration of the search '{name}' in profile '{params.profile.name}'"
                        + (f" ({method}; {', '.join(others)} at their published configuration)" if others else "")}
    return {"study": name, "method": method, "source": "published", "settings": {},
            "text": f"the published configuration (the search '{name}' did not run in profile "
                    f"'{params.profile.name}')"}


def point_arms(study: Study, base: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Grid point -> its settings: the base configuration's (for points of the base search's method) under
    the point's own values."""
    return {point: {**(base["settings"] if values.get("method", study.method) == base["method"] else {}), **values}
            for point, values in study.grid_points().items()}


def session_curves(study: Study, records: list[TrialRecord]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Per grid point and session list (class-incremental accuracy after every session, per inference rule):
    the mean and std over seeds after each session; empty for streams without sessions."""
    curves: dict[str, dict[str, dict[str, list[float]]]] = {}
    for point in study.grid_points():
        runs = [r for r in records if r.config.get("arm") == point and r.outcome == COMPLETED]
        for key in SESSION_LISTS:
            lists = [r.sessions[key] for r in runs if key in r.sessions]
            if lists and len(lists) == len(runs) and len({len(x) for x in lists}) == 1:
                per_session = [mean_std(list(values)) for values in zip(*lists)]
                curves.setdefault(point, {})[key] = {"mean": [s["mean"] for s in per_session],
                                                     "std": [s["std"] for s in per_session]}
    return curves


def point_summaries(study: Study, scores: Mapping[str, Mapping[int, Mapping[str, float]]]) -> list[dict[str, Any]]:
    """Per grid point, in grid order: its settings, the seeds finished and mean ± std of every swept score."""
    rows = []
    for point, values in study.grid_points().items():
        runs = scores.get(point, {})
        keys = [k for k in SWEPT if runs and all(k in m for m in runs.values())]
        rows.append({"point": point, "settings": values, "seeds": len(runs),
                     **{k: mean_std([m[k] for m in runs.values()]) for k in keys}})
    return rows


def best_point(study: Study, rows: list[dict[str, Any]]) -> str:
    """The grid point with the best mean validation objective (selection never sees test scores)."""
    ranked = [r for r in rows if study.metric in r]
    if not ranked:
        return ""
    pick = max if study.mode == "max" else min
    return pick(ranked, key=lambda r: r[study.metric]["mean"])["point"]


def metrics_and_runs(study: Study, params: Params, base: Mapping[str, Any], records: list[TrialRecord],
                  wall_s: float, resumed: bool) -> tuple[dict, dict]:
    """The metrics file and ``runs.json`` of a sweep from its finished Tune trials."""
    scores = per_seed(records, SWEPT)
    missing = [p for p in study.grid_points() if p not in scores]
    if missing:
        raise PipelineError(f"study '{study.name}': no run of grid point {', '.join(missing)} finished "
                            f"({'; '.join(r.error or r.outcome for r in records if r.config.get('arm') in missing)})")
    rows = point_summaries(study, scores)
    curves = session_curves(study, records)
    for row in rows:
        if row["point"] in curves:
            row["sessions"] = curves[row["point"]]
    metrics = {"status": StageStatus.DONE, "kind": "sweep", "profile": params.profile.name, "benchmark": study.benchmark,
               "method": study.method, "methods": study.methods, "grid": study.grid, "base": dict(base),
               "points": rows,
               "objective": {"metric": study.metric, "mode": study.mode}, "best_point": best_point(study, rows),
               "seed_list": list(study.seeds), "wall_s": round(wall_s, 1)}
    runs = {"study": study.name, "resumed": resumed,
            "per_seed": {p: {str(s): m for s, m in by_seed.items()} for p, by_seed in scores.items()},
            "runs": [r.to_dict() for r in records]}
    return metrics, runs


def _parent_metrics(rows: list[dict[str, Any]], wall_s: float) -> dict[str, float]:
    values = {"wall_s": wall_s}
    for row in rows:
        for key in ("average_accuracy", "val_average_accuracy"):
            if key in row:
                point = row["point"].replace("=", "_").replace(",", "/")  # MLflow's metric-name alphabet
                values[f"{key}_mean/{point}"] = row[key]["mean"]
    return values


def sweep_study(layout: Layout, params: Params, name: str) -> dict[str, Any]:
    """Train every grid point of sweep ``name`` with every final seed in one Tune experiment; write the
    per-seed runs and the metrics file."""
    bases: dict[str, dict[str, Any]] = {}

    def request_of(study: Study) -> TuneRequest:
        base = bases.setdefault(study.name, base_configuration(layout, params, study))
        arms = point_arms(study, base)
        identity = study_identity(layout.root, "sweep", study, params, base=base["settings"], arms=arms)
        return TuneRequest("sweep", study, identity, num_samples=1,
                          param_space={"arm": tune.grid_search(list(arms)), "seed": tune.grid_search(study.seeds)},
                          arms=arms,
                          parent_params={"profile": params.profile.name, **study.describe(),
                                         "base": base["text"],
                                         **{f"base.{k}": v for k, v in base["settings"].items()}})

    def outputs_of(study: Study, run: StageRun | None) -> StageOutputs:
        assert run is not None
        metrics, runs = metrics_and_runs(study, params, bases[study.name], run.records, run.wall_s, run.resumed)
        return StageOutputs(metrics_files(layout, "sweep", name, runs, metrics), metrics,
                            _parent_metrics(metrics["points"], run.wall_s))

    return run_study_stage(layout, params, "sweep", name, request_of, outputs_of)


def run(layout: Layout, params: Params, study: str | None) -> None:
    """Stage ``sweep@<study>``."""
    sweep_study(layout, params, str(study))
