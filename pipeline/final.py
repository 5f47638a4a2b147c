"""Stage ``final@<study>``: the best configuration trained with every final seed; mean ± std as metrics."""

from __future__ import annotations

import statistics
from typing import Any

from ray import tune

from pipeline.errors import PipelineError
from pipeline.layout import Layout
from pipeline.outputs import fresh_dir, read_json, skipped, write_json
from pipeline.params import Params
from pipeline.results import COMPLETED
from pipeline.keys import study_identity
from pipeline.runner import Experiment, run_experiment
from pipeline.studies import load_study

REPORTED = ("average_accuracy", "backward_transfer", "forgetting", "task_inference_accuracy",
            "class_incremental_accuracy", "val_average_accuracy")


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def final_study(layout: Layout, params: Params, name: str) -> dict[str, Any]:
    """Train the tuned configuration of ``name`` once per seed; write per-seed runs and the metrics file."""
    params.require_study(name)
    tuned = read_json(layout.tune_summary(name), f"tune@{name}")
    if not params.runs(name) or tuned.get("status") != "done":
        write_json(layout.metrics_file(name), skipped(name, params.profile.name))
        write_json(fresh_dir(layout.final_dir(name)) / "runs.json", skipped(name, params.profile.name))
        return skipped(name, params.profile.name)
    study = load_study(layout, name, params.profile, params.trial_seed)
    best = tuned["best"]["config"]
    identity = study_identity(layout.root, "final", study, params, best=best, tune_key=tuned["key"])
    experiment = Experiment("final", study, identity, num_samples=1, save_models=True,
                            param_space={**best, "seed": tune.grid_search(study.seeds)},
                            parent_params={"profile": params.profile.name, **study.describe(),
                                           **{f"best.{k}": v for k, v in best.items()}})
    run = run_experiment(layout, params, experiment)
    finished = sorted((r for r in run.records if r.outcome == COMPLETED), key=lambda r: r.config["seed"])
    if not finished:
        run.close({}, status="FAILED")
        raise PipelineError(f"study '{name}': no final run finished "
                            f"({'; '.join(r.error or r.outcome for r in run.records)})")
    scores = {k: mean_std([r.metrics[k] for r in finished]) for k in REPORTED if k in finished[0].metrics}
    matrices = [r.accuracy_matrix for r in finished]
    mean_matrix = [[statistics.fmean(m[i][j] for m in matrices) for j in range(len(row))]
                   for i, row in enumerate(matrices[0])]
    metrics = {  # numbers only: what `dvc metrics show` and `dvc exp show` tabulate
        "status": "done", **scores, "seeds": len(finished), "seed_list": [r.config["seed"] for r in finished],
        "trial_seed": params.trial_seed,
        "tune": {"trials": len(tuned["trials"]), **tuned["counts"], "best_objective": tuned["best"]["objective"]},
        "wall_s": {"tune": tuned["wall_s"], "final": round(run.wall_s, 1)},
        "best": best,
    }
    out = fresh_dir(layout.final_dir(name))
    write_json(out / "runs.json", {"study": name, "seeds_finished": [r.config["seed"] for r in finished],
                                   "resumed": run.resumed,
                                   "mean_accuracy_matrix": mean_matrix, "runs": [r.to_dict() for r in run.records]})
    write_json(layout.metrics_file(name), metrics)
    run.close({**{f"{k}_mean": v["mean"] for k, v in scores.items()},
               **{f"{k}_std": v["std"] for k, v in scores.items()}, "wall_s": run.wall_s})
    return metrics


def run(layout: Layout, params: Params, study: str | None) -> None:
    """Stage ``final@<study>``."""
    final_study(layout, params, str(study))
