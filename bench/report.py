"""Summaries of the step measurements: ratios per workload and task, and a text table."""

from __future__ import annotations

from collections import defaultdict


def summarize_rows(rows: list[dict]) -> list[dict]:
    """One entry per (benchmark, task): each variant's median and peak, and the speed ratios."""
    grouped: dict[tuple[str, int], dict[str, dict]] = defaultdict(dict)
    for row in rows:
        grouped[(row["benchmark"], row["task"])][row["variant"]] = row
    summary = []
    for (benchmark, task), variants in grouped.items():
        entry: dict = {"benchmark": benchmark, "task": task}
        for name, row in variants.items():
            entry[f"{name}_s"] = row["median_s"]
            entry[f"{name}_peak_mb"] = row["peak_mb"]
            entry[f"{name}_step_mb"] = row["step_mb"]
        fast = variants.get("fast", {}).get("median_s")
        for name in ("reference", "per_task_regulariser"):
            other = variants.get(name, {}).get("median_s")
            entry[f"{name}_over_fast"] = other / fast if fast and other else None
        summary.append(entry)
    return summary


def _cell(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def format_table(summary: list[dict]) -> str:
    """Seconds per step, ratios and memory (peak / step-added MB) as aligned text."""
    header = (f"{'benchmark':<24} {'task':>4} {'fast s':>8} {'per-task s':>10} {'ref s':>8} "
              f"{'ref/fast':>8} {'per-task/fast':>13}  {'memory MB peak/step: fast | per-task | ref'}")
    lines = [header, "-" * len(header)]
    for e in summary:
        memory = " | ".join(
            f"{_cell(e.get(f'{v}_peak_mb'), '.0f')}/{_cell(e.get(f'{v}_step_mb'), '.0f')}"
            for v in ("fast", "per_task_regulariser", "reference"))
        lines.append(
            f"{e['benchmark']:<24} {e['task']:>4} {_cell(e.get('fast_s'), '.4f'):>8} "
            f"{_cell(e.get('per_task_regulariser_s'), '.4f'):>10} {_cell(e.get('reference_s'), '.4f'):>8} "
            f"{_cell(e.get('reference_over_fast'), '.2f'):>8} "
            f"{_cell(e.get('per_task_regulariser_over_fast'), '.2f'):>13}  {memory}")
    return "\n".join(lines)
