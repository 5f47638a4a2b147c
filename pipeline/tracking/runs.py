"""MLflow: tracking URI and reachability check, one experiment per study, a parent run per stage of a
study, a child run per trial logged from the driver by a Ray Tune callback (one writer, no duplicates)."""

from __future__ import annotations

import functools
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import requests
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray import tune

from hypermask.messages import first_line
from pipeline.errors import PipelineError
from pipeline.workspace.layout import Layout
from pipeline.workspace.results import (
    COMPLETED,
    DIVERGED,
    FAILED,
    MODEL_DIR,
    NODE,
    NUMERIC_PATH,
    PRUNED,
    TASK_PREFIX,
    TrialResult,
    end_metrics,
    outcome,
    task_metrics,
)

URI_ENV = "MLFLOW_TRACKING_URI"
TAG_STAGE, TAG_KEY, TAG_TRIAL, TAG_OUTCOME = ("hypermask.stage", "hypermask.key", "hypermask.trial_id",
                                               "hypermask.outcome")
TAG_PROFILE, TAG_ARM = "hypermask.profile", "hypermask.arm"
TAG_PARENT, TAG_NOTE = "mlflow.parentRunId", "mlflow.note.content"
TAG_TASKS = "hypermask.tasks_done"
TAG_NODES = "hypermask.nodes"  # the Ray nodes a trial ran on, in order (more than one after a lost node)
# A stopped trial ended as it should (FINISHED), but carries no objective: sorting by the objective ranks
# the finished trials only. Diverged and crashed trials are FAILED; the outcome tag tells all four apart.
RUN_STATUS = {COMPLETED: "FINISHED", PRUNED: "FINISHED", DIVERGED: "FAILED", FAILED: "FAILED"}
OUTCOME_NOTE = {COMPLETED: "Reached the last task ({done} of {total}).",
                PRUNED: "Stopped early by ASHA after task {done} of {total}: not ranked, no objective logged.",
                DIVERGED: "Diverged (loss not finite) after task {done} of {total}.",
                FAILED: "Failed (crashed) after task {done} of {total}."}
STEP_KEY = f"{TASK_PREFIX}average_accuracy"  # the per-task history that says which tasks a run has logged
Call = TypeVar("Call", bound=Callable[..., Any])
STORE_ERRORS = (MlflowException, requests.RequestException)  # what a store that went away raises


def lost_store(uri: str, err: BaseException) -> PipelineError:
    """The one-line error of a tracking store that stopped answering during a stage."""
    first = first_line(err, limit=300)
    kind = "server" if uri.startswith(("http://", "https://")) else "store"
    return PipelineError(f"MLflow tracking {kind} {uri} stopped answering during the stage ({first}); "
                         "bring it back and run the stage again: the study resumes where it stopped")


def _store_call(method: Call) -> Call:
    """A tracker callback whose MLflow failures become :func:`lost_store` errors (they stop the study)."""
    @functools.wraps(method)
    def call(self: "TrialTracker", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except STORE_ERRORS as err:
            raise lost_store(self.active_uri, err) from err
    return call  # type: ignore[return-value]


def tracking_uri(layout: Layout, configured: str = "") -> str:
    """``MLFLOW_TRACKING_URI``, else params' ``tracking.uri``, else ``sqlite:///<root>/mlflow.db``.

    A relative sqlite path is made absolute against the project root (relative URIs break inside Ray
    trial folders)."""
    uri = os.environ.get(URI_ENV, "").strip() or configured or "mlflow.db"
    if "://" not in uri:
        uri = f"sqlite:///{uri}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{layout.root / uri[len('sqlite:///'):]}"
    return uri


def artifact_location(uri: str, experiment: str) -> str | None:
    """For a sqlite store: ``mlartifacts/<experiment>`` beside the database; a server decides itself."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts" / experiment).as_uri()


def connect(uri: str) -> MlflowClient:
    """A client for ``uri``, checked before any compute; raises a one-line :class:`PipelineError`."""
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise PipelineError(f"MLflow tracking server {uri} is unreachable ({reason}); start it, or unset "
                                f"{URI_ENV} to use the embedded sqlite store") from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise PipelineError(f"MLflow tracking store {uri}: folder {folder} does not exist")
    client = MlflowClient(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as err:  # any backend error means the store is unusable
        first = first_line(err)
        raise PipelineError(f"MLflow tracking store {uri} is unusable: {first}") from None
    return client


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """Id of experiment ``name`` (one per study), created on first use."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(client.tracking_uri, name))


def ensure_run(client: MlflowClient, experiment_id: str, name: str, tags: Mapping[str, str],
               parent_id: str | None = None, reopen: bool = True) -> tuple[str, bool]:
    """The run carrying ``tags`` (under ``parent_id``), created if absent; returns (run id, created).
    A found run that has ended is marked running again when ``reopen``.

    Looking runs up by tags instead of remembering ids is what makes a retried trial, a restored
    study or a re-run stage continue its own run rather than add a duplicate."""
    wanted = {**tags, **({TAG_PARENT: parent_id} if parent_id else {})}
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in wanted.items())
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        run_id = found[0].info.run_id
        if reopen and found[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id, False
    return client.create_run(experiment_id, run_name=name, tags=dict(wanted)).info.run_id, True


def log_params(client: MlflowClient, run_id: str, values: Mapping[str, Any]) -> None:
    """Log ``values`` as params (once, when the run is created)."""
    client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in values.items()])


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Set ``tags`` on a run in one call."""
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def child_runs(client: MlflowClient, experiment_id: str, parent_id: str) -> dict[str, str]:
    """Trial id -> child run id under ``parent_id``."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent_id}'",
                              max_results=10000)
    return {r.data.tags.get(TAG_TRIAL, ""): r.info.run_id for r in runs}


class TrialTracker(tune.Callback):
    """Logs every trial as a child run of the stage's parent run, from the driver only.

    On creation: the trial's parameters (for a final run, its arm's settings too) and ``tags`` (the
    profile and the run's context), plus the ``hypermask.arm`` tag of a final run. Per task: the scores
    under ``task_`` names and the accuracy of every seen task (step = task index); the scores under their
    own names (the objective's among them) and the other end-of-run metrics only once the trial reaches
    its last task, so sorting by the objective ranks finished trials only. At the end: the outcome tags,
    the accuracy matrix (JSON and heatmap) and, when asked, the MLflow model. Pickled into the Tune
    experiment, so it holds names and tags, not clients or ids.
    """

    def __init__(self, uri: str, experiment: str, stage: str, key: str, log_models: bool,
                 arms: Mapping[str, Mapping[str, Any]] | None = None, tags: Mapping[str, str] | None = None) -> None:
        self.uri, self.experiment, self.stage, self.key, self.log_models = uri, experiment, stage, key, log_models
        self.arms = {k: dict(v) for k, v in (arms or {}).items()}
        self.tags = dict(tags or {})
        self._reset()

    def _reset(self) -> None:
        self._client: MlflowClient | None = None
        self._experiment_id = self._parent_id = ""
        self._runs: dict[str, str] = {}
        self._last_step: dict[str, int] = {}
        self._ended: dict[str, str] = {}  # trial id -> outcome of a run that had already ended when found
        self._nodes: dict[str, list[str]] = {}  # trial id -> the nodes its run is tagged with
        self._paths: dict[str, str] = {}  # trial id -> the numeric path logged as its run's param

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("uri", "experiment", "stage", "key", "log_models", "arms", "tags")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.arms, self.tags = {}, {}
        self.__dict__.update(state)
        self._reset()

    @property
    def active_uri(self) -> str:
        """The current process's URI wins over the pickled one (a restored study may point elsewhere)."""
        return os.environ.get(URI_ENV) or self.uri

    @_store_call
    def setup(self, **info: Any) -> None:
        self._client = MlflowClient(self.active_uri)
        self._experiment_id = ensure_experiment(self._client, self.experiment)
        self._parent_id, _ = ensure_run(self._client, self._experiment_id, self.stage,
                                        {TAG_STAGE: self.stage, TAG_KEY: self.key})

    def _run(self, trial: Any) -> str:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            run_id, created = ensure_run(self._client, self._experiment_id, f"{self.stage}-{trial.trial_id}",
                                         {TAG_TRIAL: trial.trial_id, TAG_STAGE: self.stage}, self._parent_id,
                                         reopen=False)
            found = self._client.get_run(run_id)
            self._nodes[trial.trial_id] = [n for n in found.data.tags.get(TAG_NODES, "").split(",") if n]
            self._paths[trial.trial_id] = found.data.params.get(NUMERIC_PATH, "")
            if found.info.status != "RUNNING" and TAG_OUTCOME in found.data.tags:
                self._ended[trial.trial_id] = found.data.tags[TAG_OUTCOME]
            if created:
                arm = trial.config.get("arm")
                log_params(self._client, run_id, {**self.arms.get(arm, {}), **trial.config})
                set_tags(self._client, run_id, {**self.tags, **({TAG_ARM: str(arm)} if arm is not None else {})})
            history = self._client.get_metric_history(run_id, STEP_KEY)
            self._last_step[trial.trial_id] = max((m.step for m in history), default=-1)
            self._runs[trial.trial_id] = run_id
        return run_id

    @_store_call
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run(trial)

    @_store_call
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self._run(trial)
        record = TrialResult.read(result)
        if record.replayed:
            return  # the kept result of a trial that had ended before a restore: recorded then
        step = record.tasks_done - 1
        now = int(time.time() * 1000)
        if record.models_saved:  # the closing result of a final run: its end-of-run metrics
            self._client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in end_metrics(result).items()])
            return
        if record.diverged or step <= self._last_step[trial.trial_id]:
            return  # not a new task (a re-reported or replayed one is never logged twice)
        values = {**task_metrics(result), **end_metrics(result)}  # the objective's key only at the last task
        values.update({f"accuracy_task_{j}": float(v) for j, v in enumerate(result["accuracy_matrix"][-1])})
        if self._ended.pop(trial.trial_id, None) is not None:  # a new task: the run goes on
            self._client.update_run(run_id, status="RUNNING")
        self._client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])
        self._last_step[trial.trial_id] = step
        self._tag_node(run_id, trial.trial_id, result.get(NODE))
        self._log_path(run_id, trial.trial_id, result.get(NUMERIC_PATH))

    def _log_path(self, run_id: str, trial_id: str, path: Any) -> None:
        """Log the numeric path the trial ran as the run's ``numeric_path`` param, once (a resume under another
        path is refused by the library's checkpoint)."""
        if isinstance(path, str) and path and not self._paths.get(trial_id):
            log_params(self._client, run_id, {NUMERIC_PATH: path})
            self._paths[trial_id] = path

    def _tag_node(self, run_id: str, trial_id: str, node: Any) -> None:
        """Add the node a result came from to the run's ``hypermask.nodes`` when it is a new one."""
        nodes = self._nodes.setdefault(trial_id, [])
        if isinstance(node, str) and node not in nodes:
            nodes.append(node)
            self._client.set_tag(run_id, TAG_NODES, ",".join(nodes))

    @_store_call
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, error=False)

    @_store_call
    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, error=True)

    def _finish(self, trial: Any, error: bool) -> None:
        from pipeline.tracking.figures import accuracy_heatmap

        run_id = self._run(trial)
        result = trial.last_result or {}
        state = outcome(result, error)
        if trial.trial_id in self._ended:
            return  # ended before a restore and no new task logged since: its record stands
        record = TrialResult.read(result)
        done, total = record.tasks_done, record.num_tasks or "?"
        set_tags(self._client, run_id, {TAG_OUTCOME: state, TAG_TASKS: str(done),
                                        TAG_NOTE: OUTCOME_NOTE[state].format(done=done, total=total)})
        if record.error_message:
            self._client.set_tag(run_id, "hypermask.error", record.error_message[:500])
        matrix = result.get("accuracy_matrix")
        if matrix:
            self._client.log_dict(run_id, {"accuracy_matrix": matrix}, "accuracy_matrix.json")
            figure = accuracy_heatmap(matrix, f"{self.experiment} {trial.trial_id}")
            self._client.log_figure(run_id, figure, "accuracy_matrix.png")
        if self.log_models and state == COMPLETED and trial.checkpoint is not None:
            from pipeline.tracking.model import log_model

            with trial.checkpoint.as_directory() as folder:
                if (Path(folder) / MODEL_DIR).is_dir():
                    log_model(self._client.tracking_uri, run_id, Path(folder) / MODEL_DIR)
        self._client.set_terminated(run_id, status=RUN_STATUS[state])


@dataclass(frozen=True)
class EndedTrial:
    """A trial Tune has ended, as the tracker's callbacks see one, rebuilt from its Ray result."""

    trial_id: str
    config: dict[str, Any]
    last_result: dict[str, Any]
    checkpoint: Any = None


def close_open_runs(tracker: TrialTracker, results: Any) -> list[str]:
    """Record the trials whose run is still open although Tune has ended them (the study stopped between a
    trial's end and its record, e.g. when the tracking server went away): their last task and their end,
    from Ray's results, through the tracker's own callbacks. Returns the trial ids recorded."""
    tracker.setup()
    found = tracker._client.search_runs(
        [tracker._experiment_id], max_results=10000,
        filter_string=f"tags.`{TAG_PARENT}` = '{tracker._parent_id}' and attributes.status = 'RUNNING'")
    open_trials = {r.data.tags.get(TAG_TRIAL) for r in found}
    closed = []
    for result in results:
        metrics = dict(result.metrics or {})
        trial = EndedTrial(str(metrics.get("trial_id", "")), dict(result.config or {}), metrics, result.checkpoint)
        if trial.trial_id not in open_trials:
            continue
        if metrics and not TrialResult.read(metrics).models_saved:
            tracker.on_trial_result(0, [], trial, metrics)
        tracker._finish(trial, error=result.error is not None)
        closed.append(trial.trial_id)
    return closed
