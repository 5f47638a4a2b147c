"""Stage ``final@<study>``: the tuned and the published configuration trained with every final seed, side by
side (everything equal but the searched settings); mean ± std per arm and their paired difference as metrics.
Every final run logs its model; the tuned arm's best (by the study's validation objective) is registered as
``hypermask-<study>@best``."""

from __future__ import annotations

import statistics
from typing import Any, Mapping

from ray import tune

from pipeline.errors import PipelineError
from pipeline.spec.params import Params
from pipeline.spec.studies import Study
from pipeline.tracking.model import register, registered_name
from pipeline.tuning.runner import StageRun, TuneRequest
from pipeline.tuning.stage import StageOutputs, metrics_files, run_study_stage
from pipeline.workspace.keys import study_identity
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import StageStatus, read_json
from pipeline.workspace.results import COMPLETED, SearchBest, TrialRecord
from pipeline.workspace.summaries import ARMS, PUBLISHED, TUNED, mean_std, paired, per_seed

REPORTED = ("average_accuracy", "backward_transfer", "forgetting", "task_inference_accuracy",
            "class_incremental_accuracy", "val_average_accuracy")
COMPARED = ("average_accuracy", "backward_transfer", "forgetting")  # tuned − published, paired by seed
DIFFERENCE_PARTS = ("mean", "std", "pairs", "higher", "lower", "ties", "p_value", "seed_spread", "exceeds_spread")


def arms_of(tuned: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Arm -> the searched values it trains with: the search's best for ``tuned``, none (the library's
    published values) for ``published``; only ``published`` when the profile runs no search."""
    if tuned.get("status") == StageStatus.NO_SEARCH:
        return {PUBLISHED: {}}
    return {TUNED: SearchBest.of(tuned).config, PUBLISHED: {}}


def trained_arms(study: Study, arms: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The arms that need runs of their own: when the search's best resolves to the published configuration,
    the two arms would train identical runs (same settings, same seeds), so only ``tuned`` is trained and
    ``published`` shares its runs."""
    if TUNED in arms and PUBLISHED in arms and study.config(arms[TUNED], 1) == study.config(arms[PUBLISHED], 1):
        return {TUNED: dict(arms[TUNED])}
    return {arm: dict(values) for arm, values in arms.items()}


def summarise(scores: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict[str, Any]:
    """Per arm: mean ± std of every reported score and the seeds finished; with both arms, ``difference``:
    the paired comparison (:func:`pipeline.workspace.summaries.paired`) of each compared score."""
    out: dict[str, Any] = {}
    for arm in ARMS:
        runs = scores.get(arm)
        if not runs:
            continue
        keys = [k for k in REPORTED if all(k in m for m in runs.values())]
        out[arm] = {"seeds": len(runs), **{k: mean_std([m[k] for m in runs.values()]) for k in keys}}
    if TUNED in out and PUBLISHED in out:
        out["difference"] = {k: paired({s: m[k] for s, m in scores[TUNED].items()},
                                       {s: m[k] for s, m in scores[PUBLISHED].items()})
                             for k in COMPARED if k in out[TUNED] and k in out[PUBLISHED]}
    return out


def _mean_matrix(matrices: list[list[list[float]]]) -> list[list[float]]:
    return [[statistics.fmean(m[i][j] for m in matrices) for j in range(len(row))]
            for i, row in enumerate(matrices[0])]


def _parent_metrics(summary: Mapping[str, Any], wall_s: float) -> dict[str, float]:
    values = {"wall_s": wall_s}
    for arm in ARMS:
        for key, score in summary.get(arm, {}).items():
            if isinstance(score, dict):
                values.update({f"{arm}_{key}_mean": score["mean"], f"{arm}_{key}_std": score["std"]})
    for key, diff in summary.get("difference", {}).items():
        if diff.get("pairs"):  # the report's cells: mean ± std, sign counts, t-test, seed spread, verdict
            values.update({f"difference_{key}_{part}": float(diff[part]) for part in DIFFERENCE_PARTS
                           if diff.get(part) is not None})
    return values


def final_study(layout: Layout, params: Params, name: str) -> dict[str, Any]:
    """Train each arm of ``name`` once per final seed in one Tune experiment; write per-seed runs and the
    metrics file."""
    tuned: dict[str, Any] = {}

    def searched() -> bool:
        tuned.update(read_json(layout.tune_summary(name), f"tune@{name}"))
        return tuned.get("status") in (StageStatus.DONE, StageStatus.NO_SEARCH)

    def request_of(study: Study) -> TuneRequest:
        arms = arms_of(tuned)
        best = arms.get(TUNED, {})
        identity = study_identity(layout.root, "final", study, params, best=best, tune_key=tuned.get("key"),
                                  arms=arms)
        trained = trained_arms(study, arms)
        return TuneRequest("final", study, identity, num_samples=1, save_models=True,
                          param_space={"arm": tune.grid_search(list(trained)),
                                       "seed": tune.grid_search(study.seeds)},
                          arms=trained,
                          parent_params={"profile": params.profile.name, **study.describe(),
                                         "arms": list(arms), "trained_arms": list(trained),
                                         **{f"best.{k}": v for k, v in best.items()}})

    def outputs_of(study: Study, run: StageRun | None) -> StageOutputs:
        assert run is not None
        arms = arms_of(tuned)
        metrics, runs = metrics_and_runs(name, params, tuned, arms, run.records, run.wall_s, run.resumed,
                                         trained=list(trained_arms(study, arms)))
        runs["model"] = register_best(run, study)
        return StageOutputs(metrics_files(layout, "final", name, runs, metrics), metrics,
                            _parent_metrics(metrics, run.wall_s))

    return run_study_stage(layout, params, "final", name, request_of, outputs_of, ready=searched)


def best_final_run(records: list[TrialRecord], metric: str, mode: str) -> TrialRecord | None:
    """The tuned arm's finished final run with the best ``metric`` (``mode`` max or min; a tie goes to the
    lower seed); None when the tuned arm has none (a profile without search trains the published arm only)."""
    done = sorted((r for r in records if r.outcome == COMPLETED and r.config.get("arm", TUNED) == TUNED
                   and metric in r.metrics and r.run_id), key=lambda r: int(r.config["seed"]))
    if not done:
        return None
    sign = 1.0 if mode == "max" else -1.0
    return max(done, key=lambda r: sign * r.metrics[metric])


def register_best(run: StageRun, study: Study) -> dict[str, Any] | None:
    """Register the model of :func:`best_final_run` as a new version of ``hypermask-<study>`` aliased
    ``best``; what was registered (None when nothing was: no tuned arm)."""
    best = best_final_run(run.records, study.metric, study.mode)
    if best is None:
        return None
    seed = int(best.config["seed"])
    version = register(run.client, study.name, best.run_id,
                       {"seed": seed, study.metric: best.metrics[study.metric], "key": run.key})
    name = registered_name(study.name)
    print(f"registered {name} version {version} (alias best): seed {seed}, "
          f"{study.metric} {best.metrics[study.metric]:.2f}", flush=True)
    return {"name": name, "version": version, "alias": "best", "run_id": best.run_id, "seed": seed,
            study.metric: best.metrics[study.metric]}


def metrics_and_runs(name: str, params: Params, tuned: Mapping[str, Any], arms: Mapping[str, dict[str, Any]],
                  records: list[TrialRecord], wall_s: float, resumed: bool,
                  trained: list[str] | None = None) -> tuple[dict, dict]:
    """The metrics file and ``runs.json`` of the final stage from its finished Tune trials; an arm not in
    ``trained`` (default: every arm) shares the tuned arm's runs (:func:`trained_arms`)."""
    scores = per_seed(records, REPORTED)
    shared = [arm for arm in arms if trained is not None and arm not in trained]
    if shared and TUNED in scores:
        scores.update({arm: scores[TUNED] for arm in shared})
    missing = [arm for arm in arms if arm not in scores]
    if missing:
        raise PipelineError(f"study '{name}': no final run of arm {', '.join(missing)} finished "
                            f"({'; '.join(r.error or r.outcome for r in records)})")
    finished = {arm: sorted((r for r in records if r.outcome == COMPLETED
                             and r.config.get("arm", TUNED) == (TUNED if arm in shared else arm)),
                            key=lambda r: r.config["seed"]) for arm in arms}
    metrics = {  # `dvc metrics show` and `dvc exp show` tabulate the numbers
        "status": StageStatus.DONE, "profile": params.profile.name, "arms": list(arms), **summarise(scores),
        "seed_list": sorted({int(r.config["seed"]) for r in records}), "trial_seed": params.trial_seed,
        "wall_s": {"tune": tuned.get("wall_s", 0.0), "final": round(wall_s, 1)},
        "best": dict(arms.get(TUNED, {})), "shared_runs": {arm: TUNED for arm in shared},
    }
    if TUNED in arms:
        metrics["tune"] = {"trials": len(tuned["trials"]), **tuned["counts"],
                           "best_objective": SearchBest.of(tuned).objective}
    runs = {"study": name, "resumed": resumed,
            "arms": {arm: {"settings": arms[arm], "runs_of": TUNED if arm in shared else arm,
                           "seeds_finished": [r.config["seed"] for r in done],
                           "mean_accuracy_matrix": _mean_matrix([r.accuracy_matrix for r in done]),
                           "per_seed": {str(s): m for s, m in scores[arm].items()}}
                     for arm, done in finished.items()},
            "runs": [r.to_dict() for r in records]}
    return metrics, runs


def run(layout: Layout, params: Params, study: str | None) -> None:
    """Stage ``final@<study>``."""
    final_study(layout, params, str(study))
