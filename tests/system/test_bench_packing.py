"""The packing benchmark: concurrent Split MNIST trainings through fractional Ray resources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.packing import format_table, main


def test_packing_benchmark_runs_concurrent_trials_and_reports_throughput(mirror: Path, tmp_path: Path,
                                                                          monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the mirror given relative to this folder, as the README's test line does
    monkeypatch.setenv("HYPERMASK_DATA_MIRROR", os.path.relpath(mirror, tmp_path))
    out = tmp_path / "packing.json"
    rows = main(["--concurrency", "1", "2", "--tasks", "1", "--iterations", "5", "--device", "cpu",
                 "--json", str(out)])
    assert [row["concurrency"] for row in rows] == [1, 2]
    for row in rows:
        assert row["steps_per_s"] > 0 and row["wall_s"] > 0
        assert 0.0 <= row["average_accuracy"] <= 100.0
    steps_done = [row["steps_per_s"] * row["wall_s"] for row in rows]
    assert steps_done == pytest.approx([5, 10])  # every trial trained its 1 task x 5 iterations
    saved = json.loads(out.read_text())
    assert saved["device"] == "CPU" and len(saved["rows"]) == 2
    assert "highest throughput" in format_table(rows, "CPU")
