"""Figures of the pipeline: accuracy matrices, accuracy per task over time, search results, the search's
optimisation history and parameter importances, tuned against published (the paper beside them only where
comparable). Built as bare matplotlib Figures (no pyplot state), so they are safe in any process."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from pipeline.tracking.figures import accuracy_heatmap  # noqa: F401  (part of this module's figures)

# accuracy_heatmap (imported above, used by the report) is also logged with every trial: kept with the tracking.


def accuracy_over_time(matrix: Sequence[Sequence[float]], title: str) -> Figure:
    """Accuracy of every task after each later task (a flat line means no forgetting)."""
    n = len(matrix)
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    for j in range(n):
        steps = list(range(j, n))
        ax.plot([t + 1 for t in steps], [matrix[t][j] for t in steps], marker="o", label=f"task {j + 1}")
    ax.set_xticks(range(1, n + 1))
    ax.set_xlabel("after training task")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncols=2)
    return fig


def search_results(trials: Sequence[dict[str, Any]], space: dict[str, dict[str, list]], metric: str,
                   title: str) -> Figure:
    """Each searched parameter against the objective, for the trials that reached the last task."""
    names = list(space)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.3 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    finished = [t for t in trials if t["outcome"] == "completed"]
    for ax, name in zip(axes, names):
        kind, args = next(iter(space[name].items()))
        xs = [t["config"].get(name) for t in finished]
        ys = [t["metrics"][metric] for t in finished]
        if kind == "choice":
            labels = [str(a) for a in args]
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_xlim(-0.5, len(labels) - 0.5)
            xs = [labels.index(str(x)) for x in xs]
        elif kind == "loguniform":
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.scatter(xs, ys, s=18)
        ax.set_xlabel(name)
        ax.set_ylabel(metric, fontsize=8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{title} ({len(finished)} of {len(trials)} trials reached the last task)", fontsize=9)
    return fig


def optimisation_history(history: Sequence[tuple[int, float, float]], metric: str, title: str) -> Figure:
    """The objective of each finished trial in Optuna's trial order, and the best so far."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    numbers = [n for n, _, _ in history]
    ax.scatter(numbers, [v for _, v, _ in history], s=18, label="trial")
    ax.step(numbers, [b for _, _, b in history], where="post", color="tab:red", label="best so far")
    ax.set_xlabel("Optuna trial number")
    ax.set_ylabel(metric)
    ax.set_title(f"{title}: optimisation history ({len(history)} finished trials)", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def param_importances(importances: dict[str, float], finished: int, title: str) -> Figure:
    """Optuna's importance of each searched parameter (they sum to 1)."""
    names = list(importances)[::-1]  # the most important on top
    fig = Figure(figsize=(5, 1.2 + 0.35 * len(names)), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlim(0, 1)
    ax.set_xlabel("importance (PED-ANOVA)")
    ax.set_title(f"{title}: parameter importances ({finished} finished trials)", fontsize=9)
    return fig


def arm_comparison(rows: Sequence[dict[str, Any]]) -> Figure:
    """Per study: the tuned and the published configuration (mean ± std over the same seeds), and the
    paper's figure only where the run is comparable with it; otherwise a note stands in its place.

    Each row: ``name``, ``tuned`` and ``published`` (``(mean, std)`` or None), ``paper`` (``(mean, std)``
    or None) and ``paper_note`` (the text shown instead of a paper bar)."""
    fig = Figure(figsize=(3.4 + 1.9 * len(rows), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.27
    bars = {"tuned": -width, "published": 0.0, "paper": width}
    shown = [r[k][0] for r in rows for k in bars if r.get(k)]
    low = max(0.0, min(shown) - 5) if shown else 0.0
    for key, offset in bars.items():
        known = [(x, r[key]) for x, r in enumerate(rows) if r.get(key)]
        if known:
            ax.bar([x + offset for x, _ in known], [v[0] for _, v in known], width,
                   yerr=[v[1] or 0.0 for _, v in known], label=key if key != "paper" else "paper (published budget)")
    for x, row in enumerate(rows):
        if not row.get("tuned"):
            ax.text(x + bars["tuned"], low + 1, "no\nsearch", ha="center", fontsize=6)
        if not row.get("paper"):
            note = (row.get("paper_note") or "not recorded").replace(" (", "\n(")
            ax.text(x + bars["paper"], low + 1, f"paper:\n{note}", ha="center", fontsize=6, rotation=90,
                    va="bottom")
    ax.set_xticks(list(range(len(rows))), [r["name"] for r in rows], fontsize=7, rotation=15)
    ax.set_ylim(low, 100)
    ax.set_ylabel("average accuracy (%)")
    ax.set_title("tuned against published, same budget and seeds", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def sweep_curves(points: Sequence[dict[str, Any]], grid: dict[str, list], title: str) -> Figure:
    """A sweep: test accuracy and backward transfer (mean ± std over seeds) against the first swept setting,
    one line per value of a second one; mask density and overlap beside them when the method has masks."""
    first, *rest = list(grid)
    masked = any("mask_density" in p for p in points)
    fig = Figure(figsize=(9.6 if masked else 6.6, 3.2), layout="constrained")
    axes = fig.subplots(1, 3 if masked else 2)
    groups: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        label = ", ".join(f"{k}={point['settings'][k]}" for k in rest)
        groups.setdefault(label, []).append(point)
    panels = [("average_accuracy", "average accuracy (%)"), ("backward_transfer", "backward transfer (%)")]
    for ax, (key, label) in zip(axes, panels):
        for name, group in groups.items():
            shown = [p for p in group if key in p]
            ax.errorbar([p["settings"][first] for p in shown], [p[key]["mean"] for p in shown],
                        yerr=[p[key]["std"] for p in shown], marker="o", capsize=3, label=name or None)
        ax.set_xlabel(first)
        ax.set_ylabel(label)
    if masked:
        for key, style in (("mask_density", "o-"), ("mask_overlap", "s--")):
            for name, group in groups.items():
                shown = [p for p in group if key in p]
                axes[2].plot([p["settings"][first] for p in shown], [p[key]["mean"] for p in shown], style,
                             label=f"{key.replace('_', ' ')} {name}".strip())
        axes[2].set_xlabel(first)
        axes[2].set_ylim(0, 1.05)
        axes[2].legend(fontsize=7)
    if rest:
        axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def session_curves(points: Sequence[dict[str, Any]], title: str) -> Figure:
    """Few-shot class-incremental sweeps: accuracy over all classes seen so far after every session (mean ±
    std over seeds), one line per grid point; the session inferred by lowest entropy (solid) and by highest
    probability (dashed)."""
    fig = Figure(figsize=(6.6, 3.4), layout="constrained")
    ax = fig.subplots()
    for index, point in enumerate(points):
        color = f"C{index % 10}"
        for key, style in (("session_accuracy", "-"), ("maxprob_session_accuracy", "--")):
            curve = point.get("sessions", {}).get(key)
            if curve:
                sessions = range(1, len(curve["mean"]) + 1)
                ax.errorbar(sessions, curve["mean"], yerr=curve["std"], fmt="o" + style, color=color, capsize=3,
                            markersize=4, label=point["point"] if style == "-" else None)
    ax.set_xlabel("session (1: base classes)")
    ax.set_ylabel("class-incremental accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, title="solid: lowest entropy; dashed: highest probability", title_fontsize=7)
    ax.set_title(title, fontsize=9)
    return fig
