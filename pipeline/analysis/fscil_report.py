"""The report's few-shot class-incremental (FSCIL) sections: per method, the joint accuracy after every session
with the base and novel classes' apart, its mean over sessions and the drop from the first session to the last
(PD); beside the ``fscil_cifar100`` rows only (the literature's split and backbone), the published CIFAR-100
session accuracies of fine-tuning, TOPIC, CEC and FACT. Pure: text from the sweep's metrics, nothing written."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from pipeline.spec.params import Params
from pipeline.workspace.layout import Layout
from pipeline.workspace.outputs import StageStatus, read_json

# Published joint accuracy (%) after each of the 9 sessions of the TOPIC/CEC CIFAR-100 split (60 base classes,
# 8 sessions of 5-way 5-shot, ResNet-20), as the papers' tables give them; each row checked against the mean
# over sessions those tables print beside it (PUBLISHED_MEANS).
CEC = "Zhang et al., Few-Shot Incremental Learning with Continually Evolved Classifiers, CVPR 2021 (arXiv:2104.03047), Table 1"
FACT = "Zhou et al., Forward Compatible Few-Shot Class-Incremental Learning, CVPR 2022 (arXiv:2203.06953), Table 1"
PUBLISHED: dict[str, list[tuple[str, list[float], str]]] = {
    "fscil_cifar100": [
        ("fine-tuning", [64.10, 39.61, 15.37, 9.80, 6.67, 3.80, 3.70, 3.14, 2.65],
         f"Tao et al., CVPR 2020 (TOPIC), as reported in {CEC}"),
        ("TOPIC", [64.10, 55.88, 47.07, 45.16, 40.11, 36.38, 33.96, 31.55, 29.37],
         f"Tao et al., CVPR 2020, as reported in {CEC}"),
        ("CEC", [73.07, 68.88, 65.26, 61.19, 58.09, 55.57, 53.22, 51.34, 49.14], CEC),
        ("FACT", [74.60, 72.09, 67.56, 63.52, 61.38, 58.36, 56.28, 54.24, 52.10], FACT),
    ],
}
PUBLISHED_MEANS = {"fine-tuning": 16.54, "TOPIC": 42.62, "CEC": 59.53, "FACT": 62.24}


def is_fscil(metrics: Mapping[str, Any]) -> bool:
    """Whether a sweep's metrics come from a few-shot class-incremental benchmark (its points list sessions)."""
    return any("session_accuracy" in p.get("sessions", {}) for p in metrics.get("points", []))


def _pm(values: Mapping[str, list[float]] | None, index: int) -> str:
    if not values or index >= len(values["mean"]):
        return "–"
    return f"{values['mean'][index]:.2f} ± {values['std'][index]:.2f}"


def _scalar(score: Mapping[str, float] | None) -> str:
    return "–" if not score else f"{score['mean']:.2f} ± {score['std']:.2f}"


def session_table(points: Sequence[Mapping[str, Any]], sessions: int) -> list[str]:
    """One row per grid point (method): joint accuracy after every session (mean ± std over seeds), then the
    base classes' and the novel classes' after every session, its mean over sessions and PD."""
    head = [f"s{k + 1}" for k in range(sessions)]
    lines = ["| method | accuracy (%) | " + " | ".join(head) + " | mean | PD |",
             "|---" * (len(head) + 4) + "|"]
    for point in points:
        curves = point.get("sessions", {})
        name = point["point"].removeprefix("method=")
        joint = curves.get("session_accuracy")
        lines.append(f"| {name} | joint | " + " | ".join(_pm(joint, k) for k in range(sessions))
                     + f" | {_scalar(point.get('mean_session_accuracy'))} | {_scalar(point.get('session_accuracy_drop'))} |")
        lines.append(f"| {name} | base classes | " + " | ".join(
            _pm(curves.get("base_session_accuracy"), k) for k in range(sessions)) + " | | |")
        novel = curves.get("novel_session_accuracy")
        lines.append(f"| {name} | novel classes | – | " + " | ".join(
            _pm(novel, k) for k in range(sessions - 1)) + " | | |")
    return lines


def published_table(benchmark: str, sessions: int) -> list[str]:
    """The published session accuracies for ``benchmark`` (only the literature's split has them), with their
    sources; nothing for other benchmarks."""
    rows = PUBLISHED.get(benchmark)
    if not rows:
        return []
    lines = ["Published on the same split and backbone (joint accuracy, %, one run each as reported):", "",
             "| method | " + " | ".join(f"s{k + 1}" for k in range(sessions)) + " | mean | PD | source |",
             "|---" * (sessions + 4) + "|"]
    for name, values, source in rows:
        shown = values[:sessions]
        lines.append(f"| {name} (published) | " + " | ".join(f"{v:.2f}" for v in shown)
                     + f" | {sum(values) / len(values):.2f} | {values[0] - values[-1]:.2f} | {source} |")
    return lines


def answer(points: Sequence[Mapping[str, Any]]) -> str:
    """One sentence from the numbers: each method's joint accuracy after the last session, its base-class
    accuracy there against the base session's, and PD."""
    parts = []
    for point in points:
        curves = point.get("sessions", {})
        joint, base = curves.get("session_accuracy"), curves.get("base_session_accuracy")
        if not joint:
            continue
        text = f"{point['point'].removeprefix('method=')} {joint['mean'][-1]:.2f} %"
        if base:
            text += f" (base classes {base['mean'][0]:.2f} → {base['mean'][-1]:.2f} %)"
        parts.append(text)
    if not parts:
        return "No method finished."
    return "Joint accuracy after the last session: " + "; ".join(parts) + "."


def fscil_section(name: str, metrics: Mapping[str, Any]) -> list[str]:
    """Markdown of one FSCIL sweep: its table, the published rows for the literature's split, the answer."""
    points = metrics["points"]
    sessions = max((len(p.get("sessions", {}).get("session_accuracy", {}).get("mean", [])) for p in points),
                   default=0)
    lines = [f"## Few-shot class-incremental: {name}", "",
             f"{metrics['benchmark']}, {sessions} sessions, seeds {', '.join(map(str, metrics['seed_list']))}: joint "
             "accuracy over every class seen so far (session unknown), the base and the novel classes' apart; "
             "mean over sessions and PD (first session minus last).", "", answer(points), ""]
    lines += session_table(points, sessions) + [""]
    published = published_table(metrics["benchmark"], sessions)
    if published:
        lines += published + [""]
    return lines


def fscil_sections(layout: Layout, params: Params) -> list[str]:
    """The FSCIL section of every few-shot sweep the profile ran (reads the sweep outputs, writes nothing)."""
    lines: list[str] = []
    for name in params.sweeps:
        metrics = read_json(layout.metrics_file(name), f"sweep@{name}")
        if metrics.get("status") == StageStatus.DONE and is_fscil(metrics):
            lines += fscil_section(name, metrics)
    return lines
