"""Stage ``tune@<study>``: the Optuna + ASHA search of one study; writes ``results/tune/<study>/``."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.spec.params import Params
from pipeline.spec.studies import DIRECTIONS, Study
from pipeline.tuning import journal
from pipeline.tuning.runner import StageRun, TuneRequest
from pipeline.tuning.search import build_scheduler, build_searcher, rung_task
from pipeline.tuning.stage import StageOutputs, run_study_stage
from pipeline.workspace.keys import study_identity
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import StageStatus, no_search
from pipeline.workspace.results import COMPLETED, Outcome, SearchBest, TrialRecord


def best_trial(records: list[TrialRecord], study: Study) -> TrialRecord:
    """The best trial among those that reached the last task (stopped trials are never ranked)."""
    finished = [r for r in records if r.outcome == COMPLETED]
    if not finished:
        counts = Counter(r.outcome for r in records)
        raise PipelineError(f"study '{study.name}': no trial reached the last task "
                            f"({', '.join(f'{n} {k}' for k, n in counts.items()) or 'no trials'})")
    pick = max if study.mode == "max" else min
    return pick(finished, key=lambda r: r.metrics[study.metric])


def trial_rows(records: list[TrialRecord], study: Study) -> list[dict[str, Any]]:
    """One CSV row per trial: outcome, tasks reached, objective (finished trials only), parameters."""
    return [{"trial_id": r.trial_id, "outcome": r.outcome, "tasks_done": r.tasks_done,
             "objective": r.metrics.get(study.metric) if r.outcome == COMPLETED else "",
             **{k: r.config.get(k) for k in study.space}, "mlflow_run_id": r.run_id} for r in records]


def tune_study(layout: Layout, params: Params, name: str) -> dict[str, Any]:
    """Run (or resume) the search of study ``name`` and write its summary and trial table.

    Everything is validated before the stage's previous outputs are replaced."""
    search, asha = params.search_settings(), params.asha_settings()

    def request_of(study: Study) -> TuneRequest | None:
        if not params.profile.search:  # nothing to search: final trains the published arm
            return None
        identity = study_identity(layout.root, "tune", study, params, search=search, asha=asha)
        return TuneRequest("tune", study, identity, num_samples=study.trials,
                          searcher=partial(build_searcher, study, params),
                          scheduler=build_scheduler(study, params), trial_seed=params.trial_seed,
                          parent_params={"profile": params.profile.name, **study.describe(),
                                         "trial_seed": params.trial_seed})

    def outputs_of(study: Study, run: StageRun | None) -> StageOutputs:
        if run is None:
            record = no_search(name, params.profile.name)
            return StageOutputs({layout.tune_summary(name): record}, record)
        summary = search_summary(layout, params, study, run, search, asha)
        files = {layout.tune_summary(name): summary,
                 layout.tune_dir(name) / "trials.csv": trial_rows(run.records, study),
                 layout.optuna_trials(name): {  # the report's copy: the journal is outside DVC's outputs
                     "study_name": run.optuna["study_name"], "direction": DIRECTIONS[study.mode],
                     "trials": journal.load_rows(Path(run.optuna["storage"]), run.optuna["study_name"])}}
        return StageOutputs(files, summary, {
            f"best_{study.metric}": SearchBest.of(summary).objective, "wall_s": run.wall_s,
            **{f"trials_{k}": v for k, v in summary["counts"].items()}})

    return run_study_stage(layout, params, "tune", name, request_of, outputs_of)


def search_summary(layout: Layout, params: Params, study: Study, run: StageRun, search: dict[str, Any],
                   asha: dict[str, Any]) -> dict[str, Any]:
    """``summary.json`` of a finished search: its settings, best trial, outcome counts and every trial."""
    best = best_trial(run.records, study)
    counts = Counter(r.outcome for r in run.records)
    return {
        "study": study.name, "status": StageStatus.DONE, "profile": params.profile.name, "key": run.key,
        "benchmark": study.benchmark, "method": study.method, "objective": {"metric": study.metric,
                                                                             "mode": study.mode},
        "protocol": {"selection": "validation", "trial_seed": params.trial_seed, "final_seeds": study.seeds},
        "search": search, "selection": selection(params), "asha": asha, "rung_task": rung_task(study, params),
        "budget": {"trials": study.trials, "concurrency": study.concurrency, **study.budget},
        "fixed": study.fixed, "space": study.space_spec(),
        "best": {"trial_id": best.trial_id, "config": best.config, "objective": best.metrics[study.metric],
                 "metrics": best.metrics, "accuracy_matrix": best.accuracy_matrix,
                 "val_accuracy_matrix": best.val_accuracy_matrix, "mlflow_run_id": best.run_id},
        "counts": {k.value: counts.get(k, 0) for k in Outcome},
        "trials": [r.to_dict() for r in run.records],
        "resources_per_trial": run.resources, "trial_plan": run.plan.to_dict(), "wall_s": round(run.wall_s, 1),
        "resumed": run.resumed,
        "optuna": {**run.optuna, "trials_file": layout.optuna_trials(study.name).name,
                   "dashboard": f"optuna-dashboard {run.optuna['storage']}"},
        "mlflow": {"experiment_id": run.experiment_id, "parent_run_id": run.parent_id,
                   "tracking_uri": run.client.tracking_uri},
    }


def selection(params: Params) -> dict[str, Any]:
    """Whether the search's selection depends on when its trials reported, said in the summary and report."""
    if params.timing_dependent:
        note = ("asynchronous search: TPE proposed from whichever trials had finished and ASHA judged each trial "
                "against those that reached its rung first, so the selection depends on timing, trials at a "
                "time and nodes (another run can select another configuration)")
    else:
        note = (f"in rounds of {params.round_size}: each round proposed from finished rounds only and stopped "
                "trials at a rung once its whole round had reported it, so the selection depends on the study, "
                "its seed and settings only, not on timing, trials at a time or nodes")
    return {"mode": params.search_mode, "depends_on_timing": params.timing_dependent, "note": note}


def run(layout: Layout, params: Params, study: str | None) -> None:
    """Stage ``tune@<study>``."""
    tune_study(layout, params, str(study))
