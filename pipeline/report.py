"""Stage ``report``: ``reports/report.md`` and its PNG plots from the tune and final outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypermask.config import resolve_config

from pipeline import plots
from pipeline.layout import Layout
from pipeline.outputs import fresh_dir, read_json
from pipeline.params import Params
from pipeline.rungs import rung_correlation
from pipeline.studies import Study, load_study

PROTOCOL = ("Protocol: the search, ASHA's early stopping and the choice of the best trial see only validation "
            "scores (samples held out of each task's training data), search trials train with seed {trial_seed}, "
            "and every test-set number below is only reported, from final runs whose seeds differ from it.")
BUDGET_SETTINGS = ("tasks", "iterations", "epochs", "train_subset", "validation_size", "target_hidden")


def _size(key: str, value: Any) -> str:
    return "all" if key == "train_subset" and value == 0 else str(value)


def reductions(study: Study) -> list[str]:
    """How this profile's runs differ from the published configuration in size (empty: full size)."""
    published = resolve_config(study.benchmark, study.method).to_dict()
    used = study.config({}, 1).to_dict()
    return [f"{k} {_size(k, published[k])} → {_size(k, used[k])}" for k in BUDGET_SETTINGS
            if published[k] != used[k]]


def _pm(score: dict[str, float] | None) -> str:
    return "–" if not score else f"{score['mean']:.2f} ± {score['std']:.2f}"


def _seconds(value: float, resumed: bool | None) -> str:
    return f"{value:.0f} s" + (" in the resuming run" if resumed else "")


def _paper(paper: dict[str, Any]) -> str:
    if paper.get("average_accuracy") is None:
        return "not recorded"
    std = f" ± {paper['std']:.2f}" if paper.get("std") is not None else ""
    return f"{paper['average_accuracy']:.2f}{std}"


def _rung_line(study: Study, tuned: dict) -> str:
    """The rank correlation of ASHA's first-rung scores with the final scores, in one sentence."""
    rung = tuned.get("rung_task", 1)
    found = rung_correlation(tuned["trials"], rung, study.tasks)
    asha_on = tuned.get("asha", {}).get("enabled", True)
    if found is None:
        return (f"Rung check: fewer than 3 trials reported {study.metric} both after task {rung} and at the "
                f"last task ({study.tasks}), so no rank correlation is given.")
    rho = "undefined (tied scores)" if found["rho"] != found["rho"] else f"{found['rho']:.2f}"
    scope = ("ASHA was off, so every trial counts" if not asha_on else
             "ASHA was on, so only trials that passed the rung count; run with `asha.enabled: false` for an "
             "unbiased measure")
    return (f"Rung check: {study.metric} after task {rung} (ASHA's first rung) ranks the final {study.metric} "
            f"of {found['trials']} trials with Spearman ρ = {rho} ({scope}).")


def _study_section(name: str, study: Study, tuned: dict, final: dict, runs: dict, plot_dir: Path) -> list[str]:
    label = f"{name} ({study.method}, {study.benchmark})"
    figures = {  # file suffix -> (caption, figure)
        "accuracy_matrix": ("accuracy matrix (mean over seeds)",
                            plots.accuracy_heatmap(runs["mean_accuracy_matrix"], label)),
        "accuracy_over_time": ("accuracy of each task over time",
                               plots.accuracy_over_time(runs["mean_accuracy_matrix"], label)),
        "search": ("searched parameters against the objective",
                   plots.search_results(tuned["trials"], tuned["space"], study.metric, label)),
    }
    lines = [f"## {name}", "", study.description, ""]
    cut = reductions(study)
    lines += [f"Reduced from the published configuration: {', '.join(cut)}." if cut
              else "Full published budget.", ""]
    counts = tuned["counts"]
    lines += [_rung_line(study, tuned), ""]
    lines += [f"Search: {len(tuned['trials'])} trials ({counts['completed']} reached the last task, "
              f"{counts['pruned']} stopped early by ASHA, {counts['diverged']} diverged, {counts['failed']} "
              f"failed), {_seconds(tuned['wall_s'], tuned.get('resumed'))}. Best {study.metric} in the search: "
              f"{tuned['best']['objective']:.2f}.", "",
              "| setting | best value |", "|---|---|"]
    lines += [f"| {k} | {v:.3g} |" if isinstance(v, float) else f"| {k} | {v} |"
              for k, v in tuned["best"]["config"].items()]
    lines += ["", f"Final runs (seeds {', '.join(map(str, runs['seeds_finished']))}, "
              f"{_seconds(final['wall_s']['final'], runs['resumed'])}): average accuracy {_pm(final.get('average_accuracy'))} %, "
              f"backward transfer {_pm(final.get('backward_transfer'))}, forgetting {_pm(final.get('forgetting'))}, "
              f"task-inference accuracy {_pm(final.get('task_inference_accuracy'))} %.", ""]
    for suffix, (caption, fig) in figures.items():
        path = plots.save(fig, plot_dir / f"{name}_{suffix}.png")
        lines += [f"![{name}: {caption}](plots/{path.name})", ""]
    return lines


def write_report(layout: Layout, params: Params) -> Path:
    """Collect every study's outputs into ``reports/report.md`` with plots under ``reports/plots/``."""
    out = layout.reports_dir
    plot_dir = fresh_dir(out / "plots")
    summary = ["| study | method | benchmark | trials | average accuracy (%) | backward transfer | "
               "forgetting | paper (%) |", "|---|---|---|---|---|---|---|---|"]
    sections: list[str] = []
    comparison = []
    total_s = 0.0
    for name in params.studies:
        final = read_json(layout.metrics_file(name), f"final@{name}")
        if final.get("status") != "done":
            summary.append(f"| {name} | | | not run: {final.get('reason', final.get('status'))} | | | | |")
            continue
        study = load_study(layout, name, params.profile, params.trial_seed)
        tuned = read_json(layout.tune_summary(name), f"tune@{name}")
        runs = read_json(layout.final_dir(name) / "runs.json", f"final@{name}")
        total_s += final["wall_s"]["tune"] + final["wall_s"]["final"]
        acc = final["average_accuracy"]
        summary.append(f"| {name} | {study.method} | {study.benchmark} | {len(tuned['trials'])} | {_pm(acc)} | "
                       f"{_pm(final.get('backward_transfer'))} | {_pm(final.get('forgetting'))} | "
                       f"{_paper(study.paper)} |")
        comparison.append((name, acc["mean"], acc["std"], study.paper.get("average_accuracy"),
                           study.paper.get("std")))
        sections += _study_section(name, study, tuned, final, runs, plot_dir)
    lines = [f"# HyperMask studies: profile `{params.profile.name}`", "",
             "Written by the `report` stage of `dvc repro`. Every trial is in MLflow "
             "(`mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db`, one experiment per study). "
             "Average accuracy is the mean over tasks after the last task (task-incremental), "
             "mean ± sample std over the final seeds; searches rank only trials that reached the last task.",
             "", PROTOCOL.format(trial_seed=params.trial_seed),
             "", *summary, ""]
    if comparison:
        plots.save(plots.paper_comparison(comparison), plot_dir / "paper_comparison.png")
        lines += ["![average accuracy beside the paper's](plots/paper_comparison.png)", "",
                  "Numbers come from budgets of this profile; where the runs are reduced (see each study) they "
                  "are not comparable with the published full-length results.", ""]
    lines += [f"Search and final-run time of the studies: {total_s / 60:.1f} min (Ray start-up included).", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines + sections))
    return report


def run(layout: Layout, params: Params, study: str | None = None) -> None:
    """Stage ``report``."""
    print(f"report written to {write_report(layout, params)}")
