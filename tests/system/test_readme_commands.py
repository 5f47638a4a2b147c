"""The README's first screen stays true: CI runs its test command exactly as written."""

from __future__ import annotations

import re

from pipeline_fixtures import REPO


def _commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text())


def test_ci_runs_the_readme_test_command_as_written() -> None:
    main_job, tests = _commands()[:2]
    assert main_job.endswith("dvc repro") and "pytest" in tests
    ci_lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert tests in ci_lines
