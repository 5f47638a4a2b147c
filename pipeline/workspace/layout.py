"""Where the pipeline reads and writes, relative to the project root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Paths of one project checkout (all absolute)."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> "Layout":
        return cls(Path(root).expanduser().resolve())

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    def study_file(self, name: str) -> Path:
        return self.root / "studies" / f"{name}.yaml"

    def results_dir(self, stage: str, name: str) -> Path:
        """DVC output of ``stage@name`` (tune, final, sweep)."""
        return self.root / "results" / stage / name

    def tune_dir(self, name: str) -> Path:
        """DVC output of ``tune@name``: the search summary."""
        return self.results_dir("tune", name)

    def tune_summary(self, name: str) -> Path:
        """The search summary of ``tune@name`` (best configuration, key, every trial)."""
        return self.tune_dir(name) / "summary.json"

    def optuna_trials(self, name: str) -> Path:
        """The trial table of ``tune@name``'s Optuna study, copied from its journal (read by the report)."""
        return self.tune_dir(name) / "optuna_trials.json"

    def plan_file(self, name: str) -> Path:
        """What the ``prepare`` stage resolved for study ``name`` under the active profile: the only
        settings input of ``tune@name``, so a change to one study re-runs that study only."""
        return self.root / "results" / "plan" / f"{name}.json"

    def final_dir(self, name: str) -> Path:
        """DVC output of ``final@name``: one record per seed."""
        return self.results_dir("final", name)

    def sweep_dir(self, name: str) -> Path:
        """DVC output of ``sweep@name``: one record per grid point and seed."""
        return self.results_dir("sweep", name)

    def metrics_file(self, name: str) -> Path:
        """DVC metrics of ``final@name`` (mean and std over seeds)."""
        return self.root / "metrics" / f"{name}.json"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def local_storage(self) -> Path:
        """The driver's own state folder (the default Ray storage): Optuna journals of a URI storage."""
        return self.root / "ray_storage"

    def resolve(self, path: str) -> str:
        """``path`` made absolute against the root unless it is absolute or a URI (``s3://...``)."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str(self.root / path)
