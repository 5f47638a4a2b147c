"""Stage ``report``: ``reports/report.md`` and its PNG plots from the tune, final and sweep outputs.

The headline is, per study, the tuned configuration against the published one at the same budget on the
same seeds. The paper's figure stands beside a number only when that run has the published budget and
sizes (no :func:`pipeline.analysis.compare.reductions`); otherwise the report says so in its place."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pipeline.analysis import plots
from pipeline.analysis.compare import NOT_COMPARABLE, reductions, verdict
from pipeline.analysis.fscil_report import fscil_sections
from pipeline.analysis.importance import SearchAnalysis, analyse, sentence
from pipeline.analysis.rungs import rung_correlation
from pipeline.analysis.sweep_report import sweep_sections
from pipeline.spec.params import Params
from pipeline.spec.studies import Study, load_study
from pipeline.tracking import publish
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import StageStatus, fresh_dir, read_json
from pipeline.workspace.results import SearchBest
from pipeline.workspace.summaries import PUBLISHED, TUNED

PROTOCOL = ("Protocol: the search, ASHA's early stopping and the choice of the best trial see only validation "
            "scores (samples held out of each task's training data), search trials train with seed {trial_seed}, "
            "and every test-set number below is only reported, from final runs whose seeds differ from it.")
ARMS_TEXT = ("The final stage of every study trains two arms on the same seeds: **tuned** (the search's best "
             "settings) and **published** (the library's published configuration of the benchmark and method, "
             "with the study's fixed settings and this profile's budget and reductions): everything equal but "
             "the searched settings. The difference is tuned − published, paired by seed; it counts as real "
             "only when it is larger than the seed spread (the larger standard deviation of the two arms). "
             "The paper's figure is shown only beside a run whose tasks, iterations or epochs, training data, "
             "validation size and network sizes all equal the published ones.")


def _pm(score: Mapping[str, float] | None, signed: bool = False) -> str:
    if not score:
        return "–"
    return f"{score['mean']:+.2f} ± {score['std']:.2f}" if signed else f"{score['mean']:.2f} ± {score['std']:.2f}"


def _seconds(value: float, resumed: bool | None) -> str:
    return f"{value:.0f} s" + (" in the resuming run" if resumed else "")


OTHER_NETWORKS = "not comparable (other networks)"


def paper_cell(study: Study) -> str:
    """The paper's figure when the published arm of ``study`` has the published budget and sizes, else
    why it is not shown."""
    paper = study.paper
    if paper.get("average_accuracy") is None:
        return OTHER_NETWORKS if paper.get("note") else "not recorded"
    if reductions(study.config({}, 1)):
        return NOT_COMPARABLE
    std = f" ± {paper['std']:.2f}" if paper.get("std") is not None else ""
    return f"{paper['average_accuracy']:.2f}{std}"


def paired_cell(diff: Mapping[str, Any] | None) -> str:
    """Sign counts and the paired t-test over the shared seeds, in one cell."""
    if not diff or not diff.get("pairs"):
        return "–"
    test = (f"paired t-test p = {diff['p_value']:.2g}" if diff.get("p_value") is not None
            else "no t-test (equal differences)")
    equal = f", {diff['ties']} equal" if diff.get("ties") else ""
    return f"{diff['pairs']} seeds: {diff['higher']} higher, {diff['lower']} lower{equal}; {test}"


def spread_cell(diff: Mapping[str, Any] | None) -> str:
    if not diff or not diff.get("pairs"):
        return "–"
    answer = "yes" if diff["exceeds_spread"] else "no"
    return f"{answer} ({verdict(diff)}; spread {diff['seed_spread']:.2f})"


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


def _arm_line(arm: str, scores: Mapping[str, Any], seeds: list) -> str:
    return (f"- {arm} (seeds {', '.join(map(str, seeds))}): average accuracy {_pm(scores.get('average_accuracy'))} %, "
            f"backward transfer {_pm(scores.get('backward_transfer'))}, forgetting {_pm(scores.get('forgetting'))}, "
            f"task-inference accuracy {_pm(scores.get('task_inference_accuracy'))} %.")


def _search_lines(study: Study, tuned: dict) -> list[str]:
    counts = tuned["counts"]
    searched = SearchBest.of(tuned)
    best = searched.config
    lines = [_rung_line(study, tuned), "",
             f"Search: {len(tuned['trials'])} trials ({counts['completed']} reached the last task, "
             f"{counts['pruned']} stopped early by ASHA, {counts['diverged']} diverged, {counts['failed']} "
             f"failed), {_seconds(tuned['wall_s'], tuned.get('resumed'))}. Best {study.metric} in the search: "
             f"{searched.objective:.2f}.", ""]
    if tuned.get("selection"):
        lines += [f"Selection: {tuned['selection']['note']}.", ""]
    if study.config(best, 1) == study.config({}, 1):
        lines += ["The search's best is the published configuration itself: its runs were trained once and stand for both arms.", ""]
    published = study.config({}, 1).to_dict()
    lines += ["| setting | tuned | published |", "|---|---|---|"]
    lines += [f"| {k} | {_value(v)} | {_value(published.get(k, '–'))} |" for k, v in best.items()]
    return lines + [""]


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _search_figures(search: SearchAnalysis, metric: str, label: str) -> dict[str, tuple[str, Any]]:
    """The optimisation history (when a trial finished) and the importances (when claimed) as figures."""
    figures = {}
    if search.history:
        figures["optuna_history"] = ("Optuna's optimisation history",
                                     plots.optimisation_history(search.history, metric, label))
    if search.importances:
        figures["optuna_importances"] = ("Optuna's parameter importances",
                                         plots.param_importances(search.importances, search.finished, label))
    return figures


def _study_section(name: str, study: Study, tuned: dict, final: dict, runs: dict, plot_dir: Path,
                   search: SearchAnalysis | None) -> list[str]:
    label = f"{name} ({study.method}, {study.benchmark})"
    arms = runs["arms"]
    main = TUNED if TUNED in arms else PUBLISHED
    matrix = arms[main]["mean_accuracy_matrix"]
    figures = {  # file suffix -> (caption, figure)
        "accuracy_matrix": (f"accuracy matrix of the {main} arm (mean over seeds)",
                            plots.accuracy_heatmap(matrix, f"{label}, {main}")),
        "accuracy_over_time": (f"accuracy of each task over time, {main} arm",
                               plots.accuracy_over_time(matrix, f"{label}, {main}")),
    }
    lines = [f"## {name}", ""] + ([study.description, ""] if study.description else [])
    cut = reductions(study.config({}, 1))
    lines += [f"Reduced from the published configuration (both arms): {', '.join(cut)}; the paper's figure is "
              "not comparable and not shown." if cut else
              f"Full published budget: the published arm is comparable with the paper ({paper_cell(study)}).", ""]
    if study.paper.get("note"):
        lines += [f"Published figures: {study.paper['note']}", ""]
    if TUNED in arms:
        figures["search"] = ("searched parameters against the objective",
                             plots.search_results(tuned["trials"], tuned["space"], study.metric, label))
        lines += _search_lines(study, tuned)
    if search is not None:
        figures.update(_search_figures(search, study.metric, label))
        lines += [sentence(search, study.metric) + f" Browse the study: `{tuned['optuna']['dashboard']}`.", ""]
    else:
        lines += [f"No search in this profile: the published configuration alone, {len(study.seeds)} seeds.", ""]
    lines += [f"Final runs ({_seconds(final['wall_s']['final'], runs.get('resumed'))}):", ""]
    lines += [_arm_line(arm, final[arm], arms[arm]["seeds_finished"]) for arm in (TUNED, PUBLISHED) if arm in arms]
    diff = final.get("difference", {})
    if diff:
        lines += ["", "Tuned − published, paired by seed: " + "; ".join(
            f"{k.replace('_', ' ')} {_pm(d, signed=True)} ({paired_cell(d)}; {verdict(d)})"
            for k, d in diff.items() if d.get("pairs")) + "."]
    lines.append("")
    for suffix, (caption, fig) in figures.items():
        path = plots.save(fig, plot_dir / f"{name}_{suffix}.png")
        lines += [f"![{name}: {caption}](plots/{path.name})", ""]
    return lines


def write_report(layout: Layout, params: Params) -> Path:
    """Collect every study's outputs into ``reports/report.md`` with plots under ``reports/plots/``."""
    out = layout.reports_dir
    plot_dir = fresh_dir(out / "plots")
    summary = ["| study | method | benchmark | trials | tuned (%) | published (%) | tuned − published | "
               "paired over seeds | beyond seed spread | paper (%) |", "|---|---|---|---|---|---|---|---|---|---|"]
    sections: list[str] = []
    rows = []
    total_s = 0.0
    for name in params.studies:
        final = read_json(layout.metrics_file(name), f"final@{name}")
        if final.get("status") != StageStatus.DONE:
            summary.append(f"| {name} | | | not run: {final.get('reason', final.get('status'))} | | | | | | |")
            continue
        study = load_study(layout, name, params.profile, params.trial_seed)
        tuned = read_json(layout.tune_summary(name), f"tune@{name}")
        runs = read_json(layout.final_dir(name) / "runs.json", f"final@{name}")
        total_s += final["wall_s"]["tune"] + final["wall_s"]["final"]
        diff = final.get("difference", {}).get("average_accuracy")
        tuned_acc = final.get(TUNED, {}).get("average_accuracy")
        published_acc = final[PUBLISHED]["average_accuracy"]
        trials = len(tuned["trials"]) if TUNED in final else "no search"
        paper = paper_cell(study)
        summary.append(f"| {name} | {study.method} | {study.benchmark} | {trials} | "
                       f"{_pm(tuned_acc) if tuned_acc else '– (no search)'} | {_pm(published_acc)} | "
                       f"{_pm(diff, signed=True)} | {paired_cell(diff)} | {spread_cell(diff)} | {paper} |")
        shown = paper not in (NOT_COMPARABLE, OTHER_NETWORKS, "not recorded")
        rows.append({"name": name,
                     "tuned": (tuned_acc["mean"], tuned_acc["std"]) if tuned_acc else None,
                     "published": (published_acc["mean"], published_acc["std"]),
                     "paper": (study.paper["average_accuracy"], study.paper.get("std")) if shown else None,
                     "paper_note": None if shown else paper})
        search = None
        if TUNED in final:
            table = read_json(layout.optuna_trials(name), f"tune@{name}")
            search = analyse(table["trials"], study.mode)
        sections += _study_section(name, study, tuned, final, runs, plot_dir, search)
    lines = [f"# HyperMask studies: profile `{params.profile.name}`", "",
             "Written by the `report` stage of `dvc repro`. Every trial is in MLflow "
             "(`mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db`, one experiment per study; final runs "
             "carry the tags `hypermask.arm` and `hypermask.profile`; this report and its plots are a run of "
             f"the experiment `{publish.EXPERIMENT}`). "
             "Average accuracy is the mean over tasks after the last task (task-incremental), "
             "mean ± sample std over the final seeds; searches rank only trials that reached the last task.",
             "", ARMS_TEXT, "", PROTOCOL.format(trial_seed=params.trial_seed),
             "", *summary, ""]
    if rows:
        plots.save(plots.arm_comparison(rows), plot_dir / "tuned_vs_published.png")
        lines += ["![tuned against published at the same budget; the paper only where comparable]"
                  "(plots/tuned_vs_published.png)", ""]
    lines += [f"Search and final-run time of the studies: {total_s / 60:.1f} min (Ray start-up included).", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines + sections + sweep_sections(layout, params, plot_dir)
                                 + fscil_sections(layout, params)))
    return report


def run(layout: Layout, params: Params, study: str | None = None) -> None:
    """Stage ``report``: write the report, then log it as an MLflow run (the store is checked first)."""
    client = publish.report_client(layout, params)
    report = write_report(layout, params)
    run_id = publish.log_report(client, layout, params, report)
    print(f"report written to {report} and logged as MLflow run {run_id} (experiment {publish.EXPERIMENT})")
