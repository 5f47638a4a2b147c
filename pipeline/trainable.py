"""The Ray Tune function trainable: one continual-learning run, reported task by task."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hypermask.train import DivergedError, train_continual
from ray import tune

from pipeline.results import diverged_result, final_result, task_result
from pipeline.studies import Study
from pipeline.tracking import MODEL_DIR


def _restore_state(checkpoint: tune.Checkpoint | None, state: Path) -> None:
    """Fill ``state`` with the trial's last Tune checkpoint (a retried or restored trial), else empty it."""
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            shutil.copytree(folder, state, dirs_exist_ok=True)


def run_trial(config: dict[str, Any], study: Study, runtime: dict[str, Any], save_models: bool,
              default_seed: int, arms: dict[str, dict[str, Any]] | None = None) -> None:
    """Train ``study`` with the sampled ``config`` (plus ``seed`` in the final stage, else
    ``default_seed``: the search trials' training seed). A final run's ``arm`` names its searched values
    in ``arms`` (``tuned``: the search's best; ``published``: none, so the library's published values).

    After every task the library writes its checkpoint into the trial's state folder and calls back;
    the callback reports the task's scores with that folder as the Tune checkpoint, so ASHA can stop
    the trial at a task boundary and a retry resumes after the last finished task.
    """
    chosen = dict(config)
    seed = int(chosen.pop("seed", default_seed))
    if "arm" in chosen:
        chosen = {**(arms or {})[chosen.pop("arm")], **chosen}
    cfg = study.config(chosen, seed, runtime)
    state = Path(tune.get_context().get_trial_dir()) / "state"
    _restore_state(tune.get_checkpoint(), state)
    last: dict[str, Any] = {}

    def report(task_report: Any) -> None:
        last.clear()
        last.update(task_result(task_report))
        tune.report(last, checkpoint=tune.Checkpoint.from_directory(str(state)))

    try:
        result = train_continual(cfg, on_task_end=report, checkpoint_dir=state)
    except DivergedError as err:
        tune.report(diverged_result(last, str(err)))
        return
    if save_models:
        result.save(state / MODEL_DIR)
        tune.report(final_result(result), checkpoint=tune.Checkpoint.from_directory(str(state)))
