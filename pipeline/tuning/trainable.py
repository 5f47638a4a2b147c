"""The Ray Tune function trainable: one continual-learning run, reported task by task."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from hypermask.data import dataset_for, prepare_dataset
from hypermask.numerics import pin
from hypermask.train import DivergedError, TaskReport, train_continual
from pipeline.spec.studies import Study
from pipeline.tuning.storage import read_trial_end, state_location, trial_end_location, trial_folder
from pipeline.workspace.results import (
    MODEL_DIR,
    NODE,
    NUMERIC_PATH,
    REPLAYED,
    diverged_result,
    final_result,
    task_result,
)


def run_trial(config: dict[str, Any], study: Study, runtime: dict[str, Any], save_models: bool,
              default_seed: int, experiment: str, arms: dict[str, dict[str, Any]] | None = None,
              node_data: bool = False) -> None:
    """Train ``study`` with the sampled ``config`` (plus ``seed`` in the final stage, else
    ``default_seed``: the search trials' training seed). A final run's ``arm`` names its searched values
    in ``arms`` (``tuned``: the search's best; ``published``: none, so the library's published values).

    After every task the library writes its checkpoint into the trial's ``state/`` folder under the Tune
    experiment's folder ``experiment`` on Ray's storage (:mod:`pipeline.tuning.storage`) and calls back; the
    callback stores it and reports the task's scores, so ASHA can stop the trial at a task boundary, and
    a retry or a restored study resumes after the last finished task. A trial that had already ended when
    the study was killed (its ``ended.json`` is there) reports its last result again, or fails again with
    its error, without training (:mod:`pipeline.tuning.storage`). With ``node_data`` the node first
    makes its own verified copy of the dataset under the runtime's ``data_root`` (params ``data.node_root``). Per-task results carry no Tune
    checkpoint: Tune deletes superseded checkpoints before its experiment state records the newer one,
    and a study killed in between could not restore the trial. A final run reports its model files as
    its one Tune checkpoint, from a temporary folder.
    """
    trial_id = tune.get_context().get_trial_id()
    if replay_ended(trial_end_location(experiment, trial_id)):
        return
    chosen = dict(config)
    seed = int(chosen.pop("seed", default_seed))
    if "arm" in chosen:
        chosen = {**(arms or {})[chosen.pop("arm")], **chosen}
    cfg = study.config(chosen, seed, runtime)
    path = pin(cfg.numerics).describe()  # before the trial's first torch operation (the dataset check runs some)
    if node_data:
        prepare_dataset(dataset_for(cfg.benchmark), cfg.data_root, own_copy=True)
    location = state_location(experiment, trial_id)
    node = ray.get_runtime_context().get_node_id()

    def send(result: dict[str, Any], **options: Any) -> None:
        tune.report({**result, NODE: node, NUMERIC_PATH: path}, **options)

    with trial_folder(location) as state:
        last: dict[str, Any] = {}

        def report(task_report: Any) -> None:
            state.persist()
            last.clear()
            last.update(task_result(task_report))
            send(last)

        try:
            result = train_continual(cfg, on_task_end=report, checkpoint_dir=state.folder, report_resumed=True)
        except DivergedError as err:
            send(diverged_result(last, str(err)))
            return
        if save_models:
            with tempfile.TemporaryDirectory(prefix="hypermask-model-") as folder:
                result.save(Path(folder) / MODEL_DIR)
                send(final_result(result), checkpoint=tune.Checkpoint.from_directory(folder))
        elif not last:  # every task was already done (stopped after its last checkpoint): report the end again
            tasks = len(result.accuracy_matrix)
            send(task_result(TaskReport(tasks - 1, tasks, result.accuracy_matrix, result.metrics,
                                        state.folder, result.metrics.get("elapsed_s", 0.0),
                                        result.val_accuracy_matrix)))


class EndedTrialError(RuntimeError):
    """A trial that had failed before its study was restored fails again with the same error."""


def replay_ended(location: str) -> bool:
    """Report the kept last result of a trial that had already ended (marked ``replayed``: the tracker and
    the searcher have it), or raise its error again; False when the trial had not ended."""
    ended = read_trial_end(location)
    if ended is None:
        return False
    if ended.error:
        raise EndedTrialError(ended.error)
    if ended.result:
        tune.report({**ended.result, REPLAYED: True})
    return True
