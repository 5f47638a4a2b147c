"""Summaries of the step measurements: ratios per workload and task, and a text table."""

from __future__ import annotations

from collections import defaultdict

# Variant -> short column label, in table order; the first is the one the others are compared to.
LABELS = {"fast": "fast", "gradient_then_adam": "grad+adam", "per_task_regulariser": "per-task",
          "reference": "ref"}


def summarize_rows(rows: list[dict]) -> list[dict]:
    """One entry per (benchmark, task): each variant's median and peak, and its time over fast's."""
    grouped: dict[tuple[str, int], dict[str, dict]] = defaultdict(dict)
    for row in rows:
        grouped[(row["benchmark"], row["task"])][row["variant"]] = row
    summary = []
    for (benchmark, task), variants in grouped.items():
        entry: dict = {"benchmark": benchmark, "task": task}
        fast = variants.get("fast", {}).get("median_s")
        for name, row in variants.items():
            entry[f"{name}_s"] = row["median_s"]
            entry[f"{name}_peak_mb"] = row["peak_mb"]
            entry[f"{name}_step_mb"] = row["step_mb"]
            if name != "fast":
                entry[f"{name}_over_fast"] = row["median_s"] / fast if fast else None
        summary.append(entry)
    return summary


def _cell(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def format_table(summary: list[dict]) -> str:
    """Seconds per step, each variant's time over the fast step's, and memory (peak / added MB)."""
    names = [n for n in LABELS if any(f"{n}_s" in e for e in summary)]
    others = [n for n in names if n != "fast"]
    header = (f"{'benchmark':<24} {'task':>4} " + " ".join(f"{LABELS[n] + ' s':>11}" for n in names)
              + " " + " ".join(f"{LABELS[n] + '/fast':>14}" for n in others)
              + "  memory MB peak/added: " + " | ".join(LABELS[n] for n in names))
    lines = [header, "-" * len(header)]
    for e in summary:
        seconds = " ".join(f"{_cell(e.get(f'{n}_s'), '.4f'):>11}" for n in names)
        ratios = " ".join(f"{_cell(e.get(f'{n}_over_fast'), '.2f'):>14}" for n in others)
        memory = " | ".join(f"{_cell(e.get(f'{n}_peak_mb'), '.0f')}/{_cell(e.get(f'{n}_step_mb'), '.0f')}"
                            for n in names)
        lines.append(f"{e['benchmark']:<24} {e['task']:>4} {seconds} {ratios}  {memory}")
    return "\n".join(lines)
