"""The report's sweep sections: per sweep study, its table, its plot and the measured answer in a sentence."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pipeline.analysis import plots
from pipeline.spec.params import Params
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import StageStatus, read_json

RULES = {"": "lowest entropy", "maxprob_": "highest probability", "maxlogit_": "highest logit"}


def _pm(score: Mapping[str, float] | None, digits: int = 2) -> str:
    return "–" if not score else f"{score['mean']:.{digits}f} ± {score['std']:.{digits}f}"


def reported_score(metrics: Mapping[str, Any]) -> str:
    """The test counterpart of the sweep's validation objective: what its answer is stated in."""
    return metrics["objective"]["metric"].removeprefix("val_")


def answer(metrics: Mapping[str, Any]) -> str:
    """One sentence from the numbers: the range of the test score over the grid, the best point on validation,
    which points lie within the seed spread of it, and its mask density and overlap."""
    key = reported_score(metrics)
    name = key.replace("_", " ")
    points = [p for p in metrics["points"] if key in p]
    if not points:
        return "No grid point finished."
    by_name = {p["point"]: p for p in points}
    best = by_name.get(metrics.get("best_point", ""), points[0])
    score = best[key]
    spread = max(p[key]["std"] for p in points)
    close = [p["point"] for p in points if abs(p[key]["mean"] - score["mean"]) <= spread]
    low = min(points, key=lambda p: p[key]["mean"])
    high = max(points, key=lambda p: p[key]["mean"])
    text = (f"Test {name} ranges from {low[key]['mean']:.2f} % ({low['point']}) to "
            f"{high[key]['mean']:.2f} % ({high['point']}); the best point on validation is "
            f"{best['point']} ({_pm(score)} % on test), and {len(close)} of {len(points)} points lie within the "
            f"seed spread ({spread:.2f}) of it: {', '.join(close)}.")
    if "mask_density" in best:
        text += (f" At {best['point']} the masks keep {100 * best['mask_density']['mean']:.0f} % of the weights "
                 f"and two tasks' masks overlap {best['mask_overlap']['mean']:.2f} (Jaccard).")
    if "mean_session_accuracy" in best:
        text += (f" Over its sessions {best['point']} averages {_pm(best['mean_session_accuracy'])} % and drops "
                 f"{_pm(best.get('session_accuracy_drop'))} points from the first session to the last.")
        rules = {label: best[f"{rule}mean_session_accuracy"]["mean"] for rule, label in RULES.items()
                 if f"{rule}mean_session_accuracy" in best}
        if len(rules) > 1:
            top = max(rules, key=rules.get)
            text += (" Inferring the session by " + ", ".join(f"{label} gives {v:.2f} %" for label, v in rules.items())
                     + f" there: {top} is best.")
    return text


def _cell(point: Mapping[str, Any], key: str, digits: int) -> str:
    if key == "hypernetwork_parameters" and key in point:  # the same for every seed: a count, no spread
        return f"{point[key]['mean']:,.0f}"
    return _pm(point.get(key), digits)


def _table(points: list[dict[str, Any]]) -> list[str]:
    """The sweep's table: test scores, validation objective, and the columns its runs have (masks,
    hypernetwork size, class-incremental sessions)."""
    columns = [("average accuracy (%)", "average_accuracy", 2), ("backward transfer", "backward_transfer", 2),
               ("forgetting", "forgetting", 2), ("val average accuracy (%)", "val_average_accuracy", 2),
               ("mask density", "mask_density", 3), ("mask overlap", "mask_overlap", 3),
               ("hypernetwork parameters", "hypernetwork_parameters", 0)]
    columns += [(f"mean session accuracy, {label} (%)", f"{rule}mean_session_accuracy", 2)
                for rule, label in RULES.items()]
    columns += [("session accuracy drop", "session_accuracy_drop", 2),
                ("val class-incremental accuracy (%)", "val_class_incremental_accuracy", 2)]
    shown = [c for c in columns if any(c[1] in p for p in points)]
    lines = ["| point | " + " | ".join(c[0] for c in shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for p in points:
        lines.append(f"| {p['point']} | " + " | ".join(_cell(p, key, digits) for _, key, digits in shown) + " |")
    return lines


def _figures(name: str, metrics: Mapping[str, Any], plot_dir: Path) -> list[str]:
    """The sweep's plot: accuracy, backward transfer and masks against the swept setting; for few-shot
    class-incremental streams the accuracy after every session."""
    points = metrics["points"]
    if any("sessions" in p for p in points):
        path = plots.save(plots.session_curves(points, name), plot_dir / f"{name}_sessions.png")
        return [f"![{name}: class-incremental accuracy after every session, per grid point](plots/{path.name})"]
    path = plots.save(plots.sweep_curves(points, metrics["grid"], name), plot_dir / f"{name}_sweep.png")
    return [f"![{name}: accuracy, backward transfer and masks against the swept setting](plots/{path.name})"]


def sweep_sections(layout: Layout, params: Params, plot_dir: Path) -> list[str]:
    """Markdown of every sweep study the profile ran (a line for the others), plots written to ``plot_dir``."""
    lines: list[str] = []
    for name in params.sweeps:
        metrics = read_json(layout.metrics_file(name), f"sweep@{name}")
        lines += [f"## Sweep {name}", ""]
        if metrics.get("status") != StageStatus.DONE:
            lines += [f"Not run: {metrics.get('reason', metrics.get('status'))}.", ""]
            continue
        seeds = metrics["seed_list"]
        base = metrics["base"]
        methods = metrics.get("methods", [metrics["method"]])
        lines += [f"{'/'.join(methods)} on {metrics['benchmark']}; grid "
                  f"{', '.join(f'{k} ∈ {v}' for k, v in metrics['grid'].items())}; each point on seeds "
                  f"{', '.join(map(str, seeds))} at {base['text']}"
                  f"{' (' + ', '.join(f'{k}={v}' for k, v in base['settings'].items()) + ')' if base['settings'] else ''}; "
                  f"{metrics['wall_s']:.0f} s.", "", answer(metrics), ""]
        lines += _table(metrics["points"]) + [""] + _figures(name, metrics, plot_dir) + [""]
    return lines
