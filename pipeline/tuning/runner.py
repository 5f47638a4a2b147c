"""One Ray Tune experiment of a study stage, tracked in MLflow and resumable: shared by tune, final and sweep."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlflow.tracking import MlflowClient
from ray import tune

from hypermask.messages import last_line
from pipeline.cluster.placement import TrialPlan
from pipeline.cluster.session import check_trials_fit, plan_resources, ray_session, runtime_settings
from pipeline.errors import PipelineError
from pipeline.spec.params import Params
from pipeline.spec.studies import Study
from pipeline.tracking import context
from pipeline.tracking import runs as tracking
from pipeline.tuning import journal
from pipeline.tuning.search import pending_trials
from pipeline.tuning.storage import (
    CheckpointCleaner,
    TrialEndWriter,
    drop_trial_files,
    experiment_location,
    remove_superseded,
)
from pipeline.tuning.trainable import run_trial
from pipeline.workspace.keys import runtime_identity, stage_key
from pipeline.workspace.layout import Layout
from pipeline.workspace.results import (
    NODE,
    SUMMARY_METRICS,
    TASK_METRICS,
    TIME_ATTR,
    TrialRecord,
    TrialResult,
    outcome,
    session_lists,
)


@dataclass(frozen=True)
class TuneRequest:
    """What a stage asks Ray Tune to run for one study."""

    stage: str  # "tune", "final" or "sweep"
    study: Study
    identity: dict[str, Any]  # what defines the results apart from where trials run (pipeline.workspace.keys)
    num_samples: int
    param_space: dict[str, Any] = field(default_factory=dict)
    searcher: Callable[[str, Any], Any] | None = None  # (Optuna study name, its storage) -> Tune searcher
    scheduler: Any = None
    save_models: bool = False
    trial_seed: int = 0  # training seed of trials whose configuration carries none
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)  # final: arm -> its searched values
    parent_params: dict[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """What the Tune experiments of this stage and study are named by, whatever their key."""
        return f"{self.stage}-{self.study.name}"

    def name(self, key: str) -> str:
        """The Tune experiment's folder name under ``key``."""
        return f"{self.prefix}-{key}"

    @property
    def trials(self) -> int:
        """How many trials the experiment runs: its samples times the size of each grid in its space."""
        grids = [len(v["grid_search"]) for v in self.param_space.values()
                 if isinstance(v, dict) and "grid_search" in v]
        return self.num_samples * math.prod(grids)

    @property
    def searches(self) -> bool:
        """Whether a searcher proposes the trials (in the asynchronous search the trials at a time then shape the
        results; in rounds, and for a grid of fixed runs, they do not)."""
        return self.searcher is not None


@dataclass
class StageRun:
    """The outcome of :func:`run_experiment`; the parent run is still open for the stage's summary."""

    records: list[TrialRecord]
    key: str
    client: MlflowClient
    experiment_id: str
    parent_id: str
    plan: TrialPlan
    wall_s: float
    resumed: bool
    optuna: dict[str, str] = field(default_factory=dict)  # the search's study: journal path and study name

    @property
    def resources(self) -> dict[str, float]:
        """CPUs and GPU share of each trial."""
        return self.plan.resources()

    def close(self, metrics: dict[str, float], status: str = "FINISHED") -> None:
        """Log the stage's summary metrics on the parent run and end it."""
        for key, value in metrics.items():
            self.client.log_metric(self.parent_id, key, float(value))
        self.client.set_terminated(self.parent_id, status=status)


def trial_trainable(request: TuneRequest, runtime: dict[str, Any], plan: TrialPlan, experiment: str,
                    node_data: bool = False) -> Any:
    """The Tune trainable of ``request``'s trials, asking Ray for the plan's resources per trial; ``experiment``
    is the Tune experiment's location on Ray's storage (where the trials keep their task checkpoints);
    ``node_data``: each node prepares its own copy of the data under the runtime's ``data_root``."""
    return tune.with_resources(
        tune.with_parameters(run_trial, study=request.study, runtime=runtime, save_models=request.save_models,
                             default_seed=request.trial_seed, arms=request.arms, experiment=experiment,
                             node_data=node_data),
        plan.request())


def optuna_study(layout: Layout, params: Params, request: TuneRequest, key: str) -> dict[str, str]:
    """Where the search's Optuna study lives: its journal file and study name (the Tune experiment's)."""
    if request.searcher is None:
        return {}
    name = request.name(key)
    path = journal.journal_path(layout.resolve(params.ray_storage), name, layout.local_storage)
    return {"storage": str(path), "study_name": name}


def _tracker(params: Params, request: TuneRequest, key: str, uri: str, tags: dict[str, str]) -> tracking.TrialTracker:
    """The MLflow callback of the stage's trials (tags: the profile and the run's context)."""
    return tracking.TrialTracker(uri, request.study.name, request.stage, key, request.save_models, arms=request.arms,
                                 tags={tracking.TAG_PROFILE: params.profile.name, **tags})


def _user_error(err: BaseException) -> PipelineError | None:
    """The pipeline's own error behind a Tune error (raised in a callback: a tracking store that went away)."""
    while err is not None and not isinstance(err, PipelineError):
        err = err.__cause__ or err.__context__
    return err


def _tuner(layout: Layout, params: Params, request: TuneRequest, key: str, storage: str, trainable: Any,
           uri: str, tags: dict[str, str], concurrency: int) -> tuple[tune.Tuner, bool]:
    """A new Tuner on ``storage``, or the earlier experiment of the same key restored; the flag says which.

    On restore, unfinished trials continue from their last task; finished ones are kept as they are,
    failed ones included (they already used their ``max_failures`` retries, so running them again on
    every restore would repeat finished work); the searcher continues its Optuna study in the journal.
    A new Tuner starts a new journal of that name. Every trial that ends first leaves its last result
    for a restore that finds it still running (:class:`pipeline.tuning.storage.TrialEndWriter`); its checkpoints
    are deleted after the tracker has logged it (:class:`pipeline.tuning.storage.CheckpointCleaner`)."""
    name = request.name(key)
    path = experiment_location(storage, name)
    found = optuna_study(layout, params, request, key)
    if tune.Tuner.can_restore(path):
        print(f"resuming {name} from {path}", flush=True)
        if found:  # the restored searcher writes on in its journal
            journal.release_stale_lock(Path(found["storage"]))
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False), True
    searcher = request.searcher(name, journal.open_storage(Path(found["storage"]), fresh=True)) if found else None
    return tune.Tuner(
        trainable,
        param_space=request.param_space,
        tune_config=tune.TuneConfig(num_samples=request.num_samples, max_concurrent_trials=_limit(params, request, concurrency),
                                    search_alg=searcher, scheduler=request.scheduler,
                                    # a trial starts in an ended trial's Ray worker, unless the trials' numeric
                                    # paths may differ (a process runs one path: hypermask.numerics)
                                    reuse_actors=not request.study.varies("numerics")),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=1,
            failure_config=tune.FailureConfig(max_failures=params.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[TrialEndWriter(), _tracker(params, request, key, uri, tags), CheckpointCleaner()]),
    ), False


def _limit(params: Params, request: TuneRequest, concurrency: int) -> int | None:
    """Tune's cap on trials at a time: the plan's concurrency, except for a search in rounds, whose trials
    waiting at a rung for their round hold no slot (the planned resources per trial bound what runs)."""
    return None if request.searches and not params.timing_dependent else concurrency


def _history(result: Any, metric: str) -> dict[int, float]:
    """The trial's ``metric`` after each finished task, from every result it reported."""
    frame = result.metrics_dataframe
    if frame is None or metric not in frame or TIME_ATTR not in frame:
        return {}
    return {int(t): float(v) for t, v in zip(frame[TIME_ATTR], frame[metric]) if v == v}


def _nodes(result: Any) -> list[list]:
    """Where the trial's results came from: [finished tasks, Ray node id] of every result it reported (a
    trial retried on another node after a node was lost shows both)."""
    frame = result.metrics_dataframe
    if frame is None or NODE not in frame or TIME_ATTR not in frame:
        return []
    return [[int(t), str(n)] for t, n in zip(frame[TIME_ATTR], frame[NODE]) if isinstance(n, str)]


def _record(result: Any, runs: dict[str, str], metric: str) -> TrialRecord:
    metrics = dict(result.metrics or {})
    trial_id = str(metrics.get("trial_id", ""))
    error = last_line(result.error)
    return TrialRecord(
        trial_id=trial_id,
        config=dict(result.config or {}),
        outcome=outcome(metrics, error=result.error is not None),
        tasks_done=int(metrics.get(TIME_ATTR, 0)),
        metrics={k: float(v) for k, v in metrics.items() if (k in TASK_METRICS + SUMMARY_METRICS or k.endswith("_accuracy"))
                 and isinstance(v, (int, float)) and not isinstance(v, bool)},
        accuracy_matrix=list(metrics.get("accuracy_matrix") or []),
        run_id=runs.get(trial_id, ""),
        error=error or TrialResult.read(metrics).error_message,
        val_accuracy_matrix=list(metrics.get("val_accuracy_matrix") or []),
        history=_history(result, metric),
        sessions=session_lists(metrics),
        nodes=_nodes(result),
    )


def run_experiment(layout: Layout, params: Params, request: TuneRequest) -> StageRun:
    """Check MLflow, start Ray and plan the trials' resources, open the parent run under the stage's key,
    run (or resume, same key only) the Tune experiment, collect its trials."""
    started = time.perf_counter()
    uri = tracking.tracking_uri(layout, params.tracking_uri)
    client = tracking.connect(uri)  # fails here, before Ray or any trial starts
    experiment_id = tracking.ensure_experiment(client, request.study.name)
    parent_id = ""
    try:
        with ray_session(params):
            check_trials_fit(request.study, request.trial_seed)
            plan = plan_resources(params.resources, request.study.concurrency, request.trials, request.study.fixed_concurrency)
            runtime = runtime_settings(plan, params.data_node_root or layout.resolve(params.data_root))
            concurrency = plan.concurrency if request.searches and params.timing_dependent else None
            key = stage_key(request.identity, runtime, concurrency)
            parent_id, created = tracking.ensure_run(client, experiment_id, request.stage,
                                                     {tracking.TAG_STAGE: request.stage, tracking.TAG_KEY: key})
            if created:
                settings = {**request.identity["settings"], **runtime_identity(runtime, concurrency)}
                tracking.log_params(client, parent_id, {**request.parent_params,
                                                        **{f"config.{k}": v for k, v in settings.items()}})
                client.log_dict(parent_id, request.study.to_dict(), "study.json")
                client.set_tag(parent_id, tracking.TAG_PROFILE, params.profile.name)
                client.log_inputs(parent_id, context.dataset_inputs(request.study.benchmark))
            tags = context.run_tags(layout.root)  # this stage run's code and tools (a resumed one may differ)
            tracking.set_tags(client, parent_id, tags)
            storage = layout.resolve(params.ray_storage)
            trainable = trial_trainable(request, runtime, plan, experiment_location(storage, request.name(key)),
                                        node_data=bool(params.data_node_root))
            tuner, resumed = _tuner(layout, params, request, key, storage, trainable, uri, tags, plan.concurrency)
            with pending_trials(plan.concurrency if request.searches else None):
                grid = tuner.fit()
            tracking.close_open_runs(_tracker(params, request, key, uri, tags), grid)
            drop_trial_files(experiment_location(storage, request.name(key)))  # Tune's state is saved whole now
            for gone in remove_superseded(storage, request.prefix, key):
                journal.journal_path(storage, Path(gone).name, layout.local_storage).unlink(missing_ok=True)
                print(f"removed {gone} (superseded by {request.name(key)})", flush=True)
    except BaseException as err:
        if parent_id:
            try:
                client.set_terminated(parent_id, status="KILLED")
            except tracking.STORE_ERRORS:
                pass  # the store itself went away: the resumed stage reopens the run
        cause = _user_error(err)
        if cause is not None and cause is not err:
            raise PipelineError(str(cause)) from None  # one line, not Tune's traceback
        raise
    runs = tracking.child_runs(client, experiment_id, parent_id)
    records = [_record(result, runs, request.study.metric) for result in grid]
    return StageRun(records, key, client, experiment_id, parent_id, plan, time.perf_counter() - started,
                    resumed, optuna_study(layout, params, request, key))
