"""The report's few-shot class-incremental section: per method the joint accuracy after every session with the
base and novel classes' apart, mean and PD, and the published CIFAR-100 rows beside fscil_cifar100 only."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.analysis.fscil_report import PUBLISHED, PUBLISHED_MEANS, fscil_section, fscil_sections, is_fscil


def _curve(values: list[float]) -> dict[str, list[float]]:
    return {"mean": values, "std": [0.5] * len(values)}


def _point(method: str, joint: list[float], base: list[float], novel: list[float]) -> dict:
    mean = sum(joint) / len(joint)
    return {"point": f"method={method}", "seeds": 3,
            "mean_session_accuracy": {"mean": mean, "std": 0.1},
            "session_accuracy_drop": {"mean": joint[0] - joint[-1], "std": 0.2},
            "sessions": {"session_accuracy": _curve(joint), "base_session_accuracy": _curve(base),
                         "novel_session_accuracy": _curve(novel)}}


def _metrics(benchmark: str, sessions: int) -> dict:
    joint = [90.0 - 5 * k for k in range(sessions)]
    return {"status": "done", "kind": "sweep", "benchmark": benchmark, "seed_list": [1, 2, 3],
            "points": [_point("hypermask", joint, [90.0] * sessions, [50.0] * (sessions - 1)),
                       _point("finetune", [90.0] + [10.0] * (sessions - 1), [90.0] + [0.0] * (sessions - 1),
                              [40.0] * (sessions - 1))]}


def test_the_section_lists_joint_base_and_novel_accuracy_after_every_session_with_mean_and_pd() -> None:
    lines = fscil_section("fscil_mnist", _metrics("fscil_mnist", 4))
    text = "\n".join(lines)
    assert "## Few-shot class-incremental: fscil_mnist" in text
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in lines if line.startswith("| ")}
    assert rows[("hypermask", "joint")] == ("| hypermask | joint | 90.00 ± 0.50 | 85.00 ± 0.50 | 80.00 ± 0.50 | "
                                           "75.00 ± 0.50 | 82.50 ± 0.10 | 15.00 ± 0.20 |")
    assert rows[("hypermask", "base classes")].startswith("| hypermask | base classes | 90.00 ± 0.50 |")
    assert rows[("finetune", "novel classes")] == ("| finetune | novel classes | – | 40.00 ± 0.50 | 40.00 ± 0.50 | "
                                                  "40.00 ± 0.50 | | |")
    assert "hypermask 75.00 % (base classes 90.00 → 90.00 %); finetune 10.00 % (base classes 90.00 → 0.00 %)" in text
    assert "published" not in text  # no published numbers beside another split


def test_published_cifar100_rows_stand_beside_the_fscil_cifar100_rows_only_with_their_sources() -> None:
    text = "\n".join(fscil_section("fscil_cifar100", _metrics("fscil_cifar100", 9)))
    for name, values, source in PUBLISHED["fscil_cifar100"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} (published) |"))
        assert f"| {values[0]:.2f} |" in row and f"| {values[-1]:.2f} |" in row and source in row
        assert f"| {sum(values) / 9:.2f} | {values[0] - values[-1]:.2f} |" in row
    assert "CVPR 2021" in text and "CVPR 2022" in text  # CEC and FACT cited
    published = dict((name, values) for name, values, _ in PUBLISHED["fscil_cifar100"])
    assert published["FACT"][-1] == 52.10 and sum(published["FACT"]) / 9 == pytest.approx(62.24, abs=0.01)
    assert all(len(v) == 9 for v in published.values())


def test_sections_come_only_from_finished_few_shot_sweeps(tmp_path: Path) -> None:
    files = {"fscil_mnist": _metrics("fscil_mnist", 4), "ablation_sparsity": {"status": "done", "points": [
        {"point": "p=0"}]}, "fscil_cifar100": {"status": "skipped", "reason": "not in this profile"}}
    for name, metrics in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(metrics))
    layout = SimpleNamespace(metrics_file=lambda name: tmp_path / f"{name}.json")
    params = SimpleNamespace(sweeps={name: "x" for name in files})
    text = "\n".join(fscil_sections(layout, params))
    assert text.count("## Few-shot class-incremental") == 1 and "fscil_mnist" in text
    assert is_fscil(files["fscil_mnist"]) and not is_fscil(files["ablation_sparsity"])
    before = sorted(p.name for p in tmp_path.iterdir())
    fscil_sections(layout, params)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_published_rows_agree_with_the_means_their_tables_print() -> None:
    """A mistyped session value shows as a mean the source table does not print."""
    rows = PUBLISHED["fscil_cifar100"]
    assert {name for name, _, _ in rows} == set(PUBLISHED_MEANS)
    for name, values, _ in rows:
        assert len(values) == 9 and round(sum(values) / len(values), 2) == PUBLISHED_MEANS[name], name
