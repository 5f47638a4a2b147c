"""The report's sweep sections: per sweep study, its table, its plot and the measured answer in a sentence."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pipeline import plots
from pipeline.layout import Layout
from pipeline.outputs import read_json
from pipeline.params import Params


def _pm(score: Mapping[str, float] | None, digits: int = 2) -> str:
    return "–" if not score else f"{score['mean']:.{digits}f} ± {score['std']:.{digits}f}"


def answer(metrics: Mapping[str, Any]) -> str:
    """One sentence from the numbers: the range of test accuracy over the grid, the best point on validation,
    which points lie within the seed spread of it, and its mask density and overlap."""
    points = [p for p in metrics["points"] if "average_accuracy" in p]
    if not points:
        return "No grid point finished."
    by_name = {p["point"]: p for p in points}
    best = by_name.get(metrics.get("best_point", ""), points[0])
    acc = best["average_accuracy"]
    spread = max(p["average_accuracy"]["std"] for p in points)
    close = [p["point"] for p in points if abs(p["average_accuracy"]["mean"] - acc["mean"]) <= spread]
    low = min(points, key=lambda p: p["average_accuracy"]["mean"])
    high = max(points, key=lambda p: p["average_accuracy"]["mean"])
    text = (f"Test accuracy ranges from {low['average_accuracy']['mean']:.2f} % ({low['point']}) to "
            f"{high['average_accuracy']['mean']:.2f} % ({high['point']}); the best point on validation is "
            f"{best['point']} ({_pm(acc)} % on test), and {len(close)} of {len(points)} points lie within the "
            f"seed spread ({spread:.2f}) of it: {', '.join(close)}.")
    if "mask_density" in best:
        text += (f" At {best['point']} the masks keep {100 * best['mask_density']['mean']:.0f} % of the weights "
                 f"and two tasks' masks overlap {best['mask_overlap']['mean']:.2f} (Jaccard).")
    return text


def sweep_sections(layout: Layout, params: Params, plot_dir: Path) -> list[str]:
    """Markdown of every sweep study the profile ran (a line for the others), plots written to ``plot_dir``."""
    lines: list[str] = []
    for name in params.sweeps:
        metrics = read_json(layout.metrics_file(name), f"sweep@{name}")
        lines += [f"## Sweep {name}", ""]
        if metrics.get("status") != "done":
            lines += [f"Not run: {metrics.get('reason', metrics.get('status'))}.", ""]
            continue
        seeds = metrics["seed_list"]
        lines += [f"{metrics['method']} on {metrics['benchmark']}; grid "
                  f"{', '.join(f'{k} ∈ {v}' for k, v in metrics['grid'].items())}; each point on seeds "
                  f"{', '.join(map(str, seeds))} at {metrics['base']['text']}"
                  f"{' (' + ', '.join(f'{k}={v}' for k, v in metrics['base']['settings'].items()) + ')' if metrics['base']['settings'] else ''}; "
                  f"{metrics['wall_s']:.0f} s.", "", answer(metrics), ""]
        masked = any("mask_density" in p for p in metrics["points"])
        head = "| point | average accuracy (%) | backward transfer | forgetting | val average accuracy (%) |"
        rule = "|---|---|---|---|---|"
        if masked:
            head, rule = head + " mask density | mask overlap |", rule + "---|---|"
        lines += [head, rule]
        for p in metrics["points"]:
            row = (f"| {p['point']} | {_pm(p.get('average_accuracy'))} | {_pm(p.get('backward_transfer'))} | "
                   f"{_pm(p.get('forgetting'))} | {_pm(p.get('val_average_accuracy'))} |")
            if masked:
                row += f" {_pm(p.get('mask_density'), 3)} | {_pm(p.get('mask_overlap'), 3)} |"
            lines.append(row)
        path = plots.save(plots.sweep_curves(metrics["points"], metrics["grid"], name), plot_dir / f"{name}_sweep.png")
        lines += ["", f"![{name}: accuracy, backward transfer and masks against the swept setting](plots/{path.name})",
                  ""]
    return lines
