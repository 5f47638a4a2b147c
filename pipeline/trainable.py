"""The Ray Tune function trainable: one continual-learning run, reported task by task."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hypermask.checkpoint import CHECKPOINT_FILE
from hypermask.train import DivergedError, TaskReport, train_continual
from ray import tune

from pipeline.results import diverged_result, final_result, task_result
from pipeline.studies import Study
from pipeline.tracking import MODEL_DIR


def _state_folder(checkpoint: tune.Checkpoint | None) -> Path:
    """The folder of the library's task checkpoints: ``state/`` in the trial's folder on Ray's storage.

    It outlives the trial's process, so a retried trial and a restored study continue after the last
    finished task (the library refuses a checkpoint of other settings). Per-task results carry no Tune
    checkpoint: Tune deletes superseded checkpoints before its experiment state records the newer one,
    and a study killed in between could not restore the trial. A Tune checkpoint (the final runs' model
    report) fills an empty folder."""
    state = Path(tune.get_context().get_trial_dir()) / "state"
    state.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None and not (state / CHECKPOINT_FILE).is_file():
        with checkpoint.as_directory() as folder:
            shutil.copytree(folder, state, dirs_exist_ok=True)
    return state


def run_trial(config: dict[str, Any], study: Study, runtime: dict[str, Any], save_models: bool,
              default_seed: int, arms: dict[str, dict[str, Any]] | None = None) -> None:
    """Train ``study`` with the sampled ``config`` (plus ``seed`` in the final stage, else
    ``default_seed``: the search trials' training seed). A final run's ``arm`` names its searched values
    in ``arms`` (``tuned``: the search's best; ``published``: none, so the library's published values).

    After every task the library writes its checkpoint into the trial's state folder and calls back;
    the callback reports the task's scores, so ASHA can stop the trial at a task boundary; a retry or a
    restored study resumes after the last finished task (:func:`_state_folder`).
    """
    chosen = dict(config)
    seed = int(chosen.pop("seed", default_seed))
    if "arm" in chosen:
        chosen = {**(arms or {})[chosen.pop("arm")], **chosen}
    cfg = study.config(chosen, seed, runtime)
    state = _state_folder(tune.get_checkpoint())
    last: dict[str, Any] = {}

    def report(task_report: Any) -> None:
        last.clear()
        last.update(task_result(task_report))
        tune.report(last)

    try:
        result = train_continual(cfg, on_task_end=report, checkpoint_dir=state)
    except DivergedError as err:
        tune.report(diverged_result(last, str(err)))
        return
    if save_models:
        result.save(state / MODEL_DIR)
        tune.report(final_result(result), checkpoint=tune.Checkpoint.from_directory(str(state)))
    elif not last:  # every task was already done (stopped after its last checkpoint): report the end again
        tasks = len(result.accuracy_matrix)
        tune.report(task_result(TaskReport(tasks - 1, tasks, result.accuracy_matrix, result.metrics, state,
                                           result.metrics.get("elapsed_s", 0.0), result.val_accuracy_matrix)))
