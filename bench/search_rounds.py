"""Wall time and slot use of a search in rounds (several round sizes) against the asynchronous search.

Each variant runs the ``tune`` stage of one study under one profile (default: ``split_mnist`` under the
``default`` profile) in a temporary project that links this checkout's code and studies, on one local Ray:

    HYPERMASK_DATA_MIRROR=../shared/datasets python bench/search_rounds.py [--study S] [--profile P]
        [--variants async rounds:4 rounds:8] [--json bench/results/search_rounds.json]

Slot use is the trials' busy time (the sum of every result's ``time_this_iter_s``, process starts after a
pause included) over the planned slots times the stage's wall time: what rounds leave idle while a round
waits for its slowest trial.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pipeline.cluster.session import local_ray
from pipeline.spec.params import load_params
from pipeline.stages.tune import tune_study
from pipeline.workspace.layout import Layout

REPO = Path(__file__).resolve().parents[1]
LINKED = ("pipeline", "hypermask", "studies")


def project(folder: Path, mode: str, round_size: int) -> Layout:
    """A project in ``folder`` running this checkout's code and studies, with its own storage and tracking."""
    for name in LINKED:
        (folder / name).symlink_to(REPO / name)
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["search"] = {**data.get("search", {}), "mode": mode, "round_size": round_size}
    data["ray"] = {**data.get("ray", {}), "storage": str(folder / "ray_storage")}
    data["tracking"] = {"uri": f"sqlite:///{folder / 'mlflow.db'}"}
    mirror = os.environ.get("HYPERMASK_DATA_MIRROR")
    data["data"] = {**data.get("data", {}), "root": str(Path(mirror).resolve() if mirror else REPO / "data")}
    (folder / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return Layout.at(folder)


def busy_seconds(experiment: Path) -> float:
    """The trials' busy time: every reported result's ``time_this_iter_s``, over all trials."""
    total = 0.0
    for result in experiment.glob("*/result.json"):
        for line in result.read_text().splitlines():
            if line.strip():
                total += float(json.loads(line).get("time_this_iter_s") or 0.0)
    return total


def measure(study: str, profile: str, mode: str, round_size: int) -> dict[str, Any]:
    """Run the search of ``study`` once under ``mode`` and return its wall time, slot use and selection."""
    with tempfile.TemporaryDirectory(prefix="hypermask-rounds-") as temp:
        layout = project(Path(temp), mode, round_size)
        summary = tune_study(layout, load_params(layout.params_file, profile), study)
        slots = summary["trial_plan"]["concurrency"]
        experiment = Path(temp) / "ray_storage" / summary["optuna"]["study_name"]
        busy = busy_seconds(experiment)
        return {"mode": mode, "round_size": round_size if mode == "rounds" else None, "slots": slots,
                "wall_s": summary["wall_s"], "busy_s": round(busy, 1),
                "slot_use": round(busy / (slots * summary["wall_s"]), 3), "counts": summary["counts"],
                "best_objective": summary["best"]["objective"], "best_config": summary["best"]["config"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="split_mnist")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--variants", nargs="+", default=["async", "rounds:4", "rounds:8"])
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "search_rounds.json"))
    args = parser.parse_args()
    rows = []
    with local_ray(num_cpus=os.cpu_count() or 1):
        for variant in args.variants:
            mode, _, size = variant.partition(":")
            rows.append(measure(args.study, args.profile, mode, int(size or 4)))
            print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r["mode"] == "async"), rows[0])
    print(f"\n{'variant':<12} {'wall s':>8} {'x async':>8} {'slot use':>9}  completed/pruned  best objective")
    for row in rows:
        name = row["mode"] + (f":{row['round_size']}" if row["round_size"] else "")
        print(f"{name:<12} {row['wall_s']:>8.1f} {row['wall_s'] / base['wall_s']:>8.2f} {row['slot_use']:>9.2f}  "
              f"{row['counts']['completed']}/{row['counts']['pruned']:<15} {row['best_objective']:.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
