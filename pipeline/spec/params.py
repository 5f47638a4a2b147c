"""``params.yaml``: which studies run, their budgets, seeds, resources and tracking; validated on load."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypermask.config import MAX_THREADS, SEED_MAX, setting_names
from pipeline.errors import PipelineError
from pipeline.spec import schema
from pipeline.spec.schema import bad

SOURCE = "params.yaml"
PATCH_KEYS = ("budget", "fixed", "final", "grid")  # grid: a sweep's values, setting by setting
BUDGET_KEYS = ("trials", "concurrency")
FIXED_CONCURRENCY = "fixed_concurrency"  # budget flag: the study's concurrency is not raised to fill GPUs
AUTO = "auto"
ACCELERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ROUNDS, ASYNC = "rounds", "async"  # search.mode
SEARCH_MODES = (ROUNDS, ASYNC)
MIN_FINAL_SEEDS = 3  # the final stage compares tuned and published per seed: fewer give no spread to judge by


@dataclass(frozen=True)
class Profile:
    """A named size of the pipeline: the studies it runs and how it shrinks or grows them."""

    name: str
    run: list[str]
    override: dict[str, Any] = field(default_factory=dict)
    study_override: dict[str, dict[str, Any]] = field(default_factory=dict)
    search: bool = True  # false: no search; the final stage trains the published configuration alone

    def patch_for(self, study: str) -> dict[str, Any]:
        """What this profile lays over ``studies/<study>.yaml`` (the common part, then the study's own);
        nothing for a study it does not run."""
        if study not in self.run:
            return {}
        return schema.deep_merge(self.override, self.study_override.get(study, {}))


@dataclass(frozen=True)
class ResourceRequest:
    """``resources:`` of params.yaml: what each trial asks Ray for (None: planned from the live nodes)."""

    cpus: float | None = None
    gpus: float | None = None  # at most 1: a trial uses one GPU or a share of one
    accelerator_type: str = ""  # a Ray accelerator type (A100, H100, ...): trials run on such nodes only
    wait_for_nodes: bool = False  # an autoscaling cluster adds nodes for a request no live node holds
    threads: int = 1  # torch threads of every trial, whatever its CPUs (the count changes the numbers)


@dataclass(frozen=True)
class Params:
    """Validated pipeline settings (``profile`` is the active one)."""

    profile: Profile
    studies: list[str]
    search_seed: int
    startup_trials: int
    trial_seed: int  # training seed of every search trial; final seeds must differ from it
    asha_enabled: bool
    grace_tasks: int
    reduction_factor: float
    resources: ResourceRequest
    ray_address: str
    ray_storage: str
    max_failures: int
    tracking_uri: str
    data_root: str
    data_node_root: str = ""  # cluster without a shared data path: each node's own verified copy lives here
    profiles: dict[str, Profile] = field(default_factory=dict)  # every profile, the active one included
    sweeps: dict[str, str] = field(default_factory=dict)  # sweep study -> the search study giving its base
    search_mode: str = ROUNDS  # rounds: selection independent of timing; async: ASHA + constant liar
    round_size: int = 4  # configurations proposed together per round (rounds mode)

    @property
    def timing_dependent(self) -> bool:
        """Whether what a search selects depends on when its trials report (the asynchronous search)."""
        return self.search_mode == ASYNC

    @property
    def all_studies(self) -> list[str]:
        """Search studies, then sweep studies."""
        return [*self.studies, *self.sweeps]

    def search_settings(self) -> dict[str, Any]:
        """The search's settings as recorded in plans and stage keys."""
        found = {"seed": self.search_seed, "startup_trials": self.startup_trials, "trial_seed": self.trial_seed,
                 "mode": self.search_mode}
        return {**found, "round_size": self.round_size} if self.search_mode == ROUNDS else found

    def asha_settings(self) -> dict[str, Any]:
        """ASHA's settings as recorded in plans, stage keys and summaries."""
        return {"enabled": self.asha_enabled, "grace_tasks": self.grace_tasks,
                "reduction_factor": self.reduction_factor}

    def runs(self, study: str) -> bool:
        """Whether the active profile runs ``study``."""
        return study in self.profile.run

    def require_study(self, study: str, kind: str = "search") -> None:
        """Refuse a study that params.yaml does not list under ``studies`` (``kind`` search) or ``sweeps``."""
        listed, key = (self.studies, "studies") if kind == "search" else (list(self.sweeps), "sweeps")
        if study not in listed:
            raise PipelineError(f"{SOURCE}: study '{study}' is not listed in '{key}' "
                                f"(known: {', '.join(listed) or 'none'})")


def _patch(value: Any, key: str) -> dict[str, Any]:
    """Check the shape of a profile's override (values are checked when the study is loaded)."""
    patch = schema.mapping(value, SOURCE, key, allowed=PATCH_KEYS)
    known = set(setting_names())
    budget = schema.mapping(patch.get("budget"), SOURCE, f"{key}.budget",
                            allowed=known | set(BUDGET_KEYS) | {FIXED_CONCURRENCY})
    for name in BUDGET_KEYS:
        if name in budget:
            schema.integer(budget[name], SOURCE, f"{key}.budget.{name}")
    if FIXED_CONCURRENCY in budget:
        schema.boolean(budget[FIXED_CONCURRENCY], SOURCE, f"{key}.budget.{FIXED_CONCURRENCY}")
    schema.mapping(patch.get("fixed"), SOURCE, f"{key}.fixed", allowed=known - {"seed"})
    schema.mapping(patch.get("grid"), SOURCE, f"{key}.grid", allowed=known - {"seed"} | {"method"})
    final = schema.mapping(patch.get("final"), SOURCE, f"{key}.final", allowed=("seeds",))
    if "seeds" in final:
        seeds(final["seeds"], SOURCE, f"{key}.final.seeds")
        enough_seeds(final["seeds"], SOURCE, f"{key}.final.seeds")
    return patch


def enough_seeds(value: list, source: str, key: str) -> None:
    """Final seeds: at least :data:`MIN_FINAL_SEEDS` (tuned and published are compared seed by seed)."""
    if len(value) < MIN_FINAL_SEEDS:
        raise bad(source, key, f"must list at least {MIN_FINAL_SEEDS} seeds (tuned and published are compared "
                  "seed by seed)", value)


def seeds(value: Any, source: str, key: str) -> list[int]:
    """A non-empty list of distinct integer seeds in the library's seed range [0, SEED_MAX]."""
    if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value):
        raise bad(source, key, "must be a non-empty list of distinct integers", value)
    return [schema.integer(v, source, key, minimum=0, maximum=SEED_MAX) for v in value]


def _profile(name: str, value: Any, studies: list[str]) -> Profile:
    key = f"profiles.{name}"
    data = schema.mapping(value, SOURCE, key, allowed=("run", "override", "study_override", "search"),
                          required=("run",))
    run = schema.names(data["run"], SOURCE, f"{key}.run", choices=studies)
    per_study = schema.mapping(data.get("study_override"), SOURCE, f"{key}.study_override", allowed=studies)
    search = schema.boolean(data.get("search", True), SOURCE, f"{key}.search")
    return Profile(name, run, _patch(data.get("override"), f"{key}.override"),
                   {s: _patch(p, f"{key}.study_override.{s}") for s, p in per_study.items()}, search)


def _sweeps(value: Any, studies: list[str]) -> dict[str, str]:
    """``sweeps``: sweep study -> the search study whose best configuration is its base."""
    found = schema.mapping(value, SOURCE, "sweeps")
    for name, base in found.items():
        if name in studies:
            raise bad(SOURCE, f"sweeps.{name}", "is listed under 'studies' too (a study is a search or a sweep)",
                      name)
        schema.names([name], SOURCE, "sweeps")
        if base not in studies:
            raise bad(SOURCE, f"sweeps.{name}", f"must name a search study listed in 'studies' "
                      f"({', '.join(studies)})", base)
    return {str(k): str(v) for k, v in found.items()}


def _amount(value: Any, key: str, why: str, low: float, high: float | None = None) -> float | None:
    """``auto`` (None) or a number: > ``low`` without ``high`` (CPUs), else in [low, high] (a GPU share)."""
    if value == AUTO:
        return None
    try:
        number = schema.number(value, SOURCE, key)
    except PipelineError:
        raise bad(SOURCE, key, f"must be auto or {why}", value) from None
    if not (low <= number <= high if high is not None else number > low):
        raise bad(SOURCE, key, f"must be auto or {why}", value)
    return number


def _resources(value: Any) -> ResourceRequest:
    """The ``resources`` section: per-trial CPUs, torch threads and GPU share, accelerator type, waiting for
    nodes."""
    data = schema.mapping(value, SOURCE, "resources", allowed=(
        "cpus_per_trial", "threads_per_trial", "gpus_per_trial", "accelerator_type", "wait_for_nodes"))
    cpus = _amount(data.get("cpus_per_trial", AUTO), "resources.cpus_per_trial", "a number > 0", 0)
    gpus = _amount(data.get("gpus_per_trial", AUTO), "resources.gpus_per_trial",
                   "a number in [0, 1] (a trial uses at most one GPU)", 0, 1)
    accelerator = _text(data.get("accelerator_type"), "resources.accelerator_type")
    if accelerator and not ACCELERATOR_NAME.fullmatch(accelerator):
        raise bad(SOURCE, "resources.accelerator_type",
                  "must be empty or a Ray accelerator type name such as A100", accelerator)
    if accelerator and gpus == 0:
        raise bad(SOURCE, "resources.accelerator_type",
                  "asks for an accelerator but resources.gpus_per_trial is 0", accelerator)
    wait = schema.boolean(data.get("wait_for_nodes", False), SOURCE, "resources.wait_for_nodes")
    threads = schema.integer(data.get("threads_per_trial", 1), SOURCE, "resources.threads_per_trial",
                             maximum=MAX_THREADS)
    return ResourceRequest(cpus, gpus, accelerator, wait, threads)


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise bad(SOURCE, key, f"must be one of {', '.join(choices)}", value)
    return str(value)


def _text(value: Any, key: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad(SOURCE, key, "must be a string", value)
    return value.strip()


def parse_params(data: dict[str, Any], profile: str | None = None) -> Params:
    """Validate the contents of ``params.yaml``; ``profile`` replaces its ``profile`` key when given."""
    data = schema.mapping(data, SOURCE, "", required=("profile", "studies", "profiles"), allowed=(
        "profile", "studies", "sweeps", "profiles", "search", "asha", "resources", "ray", "tracking", "data"))
    studies = schema.names(data["studies"], SOURCE, "studies")
    sweeps = _sweeps(data.get("sweeps"), studies)
    profiles = schema.mapping(data["profiles"], SOURCE, "profiles")
    chosen = profile or data["profile"]
    if chosen not in profiles:
        raise bad(SOURCE, "profile", f"must name one of the profiles ({', '.join(profiles)})", chosen)
    every = {name: _profile(name, value, [*studies, *sweeps]) for name, value in profiles.items()}  # all are checked
    active = every[chosen]
    search = schema.mapping(data.get("search"), SOURCE, "search", allowed=("seed", "startup_trials", "trial_seed", "mode", "round_size"))
    asha = schema.mapping(data.get("asha"), SOURCE, "asha", allowed=("enabled", "grace_tasks", "reduction_factor"))
    asha_enabled = schema.boolean(asha.get("enabled", True), SOURCE, "asha.enabled")
    ray = schema.mapping(data.get("ray"), SOURCE, "ray", allowed=("address", "storage", "max_failures"))
    tracking = schema.mapping(data.get("tracking"), SOURCE, "tracking", allowed=("uri",))
    data_cfg = schema.mapping(data.get("data"), SOURCE, "data", allowed=("root", "node_root"))
    reduction = schema.number(asha.get("reduction_factor", 2), SOURCE, "asha.reduction_factor")
    if reduction <= 1:
        raise bad(SOURCE, "asha.reduction_factor", "must be a number > 1", reduction)
    storage = _text(ray.get("storage", "ray_storage"), "ray.storage")
    root = _text(data_cfg.get("root", "data"), "data.root")
    if not storage:
        raise bad(SOURCE, "ray.storage", "must name a folder or URI", ray.get("storage"))
    if not root:
        raise bad(SOURCE, "data.root", "must name a folder", data_cfg.get("root"))
    return Params(
        profile=active,
        studies=studies,
        search_seed=schema.integer(search.get("seed", 0), SOURCE, "search.seed", minimum=0, maximum=SEED_MAX),
        startup_trials=schema.integer(search.get("startup_trials", 4), SOURCE, "search.startup_trials"),
        trial_seed=seeds([search.get("trial_seed", 0)], SOURCE, "search.trial_seed")[0],
        asha_enabled=asha_enabled,
        grace_tasks=schema.integer(asha.get("grace_tasks", 2), SOURCE, "asha.grace_tasks"),
        reduction_factor=reduction,
        resources=_resources(data.get("resources")),
        ray_address=_text(ray.get("address"), "ray.address"),
        ray_storage=storage,
        max_failures=schema.integer(ray.get("max_failures", 2), SOURCE, "ray.max_failures", minimum=0),
        tracking_uri=_text(tracking.get("uri"), "tracking.uri"),
        data_root=root,
        data_node_root=_text(data_cfg.get("node_root"), "data.node_root"),
        profiles=every,
        sweeps=sweeps,
        search_mode=_choice(search.get("mode", ROUNDS), "search.mode", SEARCH_MODES),
        round_size=schema.integer(search.get("round_size", 4), SOURCE, "search.round_size"),
    )


def load_params(path: Path, profile: str | None = None) -> Params:
    """Read and validate ``params.yaml`` (raises :class:`PipelineError` with one line)."""
    return parse_params(schema.read_yaml(path), profile)
