"""``studies/<name>.yaml``: one declarative study (benchmark, method, fixed settings, search space, budget,
objective, final seeds, the paper's number), with the active profile's override laid over it."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from hypermask.config import BENCHMARKS, METHODS, Config, ConfigError, resolve_config, setting_names
from pipeline.errors import PipelineError
from pipeline.spec import schema
from pipeline.spec.params import BUDGET_KEYS, FIXED_CONCURRENCY, Params, Profile, enough_seeds, seeds
from pipeline.spec.schema import bad
from pipeline.workspace.layout import Layout

# Selection (the search, ASHA, the best trial) sees validation scores only; test scores are reported.
OBJECTIVES = {"val_average_accuracy": "max", "val_backward_transfer": "max", "val_forgetting": "min",
              "val_class_incremental_accuracy": "max"}
DIRECTIONS = {"max": "maximize", "min": "minimize"}  # an objective's mode as Optuna names the direction
KINDS = ("choice", "uniform", "loguniform", "int")
STUDY_KEYS = ("description", "kind", "benchmark", "method", "fixed", "search_space", "budget", "objective",
              "final", "paper", "initial_points")
SWEEP_KEYS = ("description", "kind", "benchmark", "method", "fixed", "grid", "budget", "objective", "final")
STUDY_KINDS = ("search", "sweep")
MAX_GRID_SETTINGS = 2
RESERVED = {"seed", "benchmark", "method"}
GRID_ONLY = {"method"}  # a sweep may compare methods (each point of another method at its own published values)


@dataclass(frozen=True)
class Dimension:
    """One searched setting: ``choice`` of values, or a ``uniform``/``loguniform``/``int`` range."""

    kind: str
    args: tuple

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.args
        return not isinstance(value, bool) and isinstance(value, (int, float)) \
            and self.args[0] <= value <= self.args[1]


@dataclass(frozen=True)
class Study:
    """A validated study: what to search, how much, what to maximise, which seeds the final runs use."""

    name: str
    benchmark: str
    method: str
    description: str
    fixed: dict[str, Any]
    space: dict[str, Dimension]
    trials: int
    concurrency: int  # trials at a time; raised to fill a cluster's GPUs unless fixed_concurrency
    fixed_concurrency: bool
    budget: dict[str, Any]  # per-trial budget settings (tasks, iterations, train_subset, ...)
    metric: str
    mode: str
    seeds: list[int]
    paper: dict[str, Any] = field(default_factory=dict)
    initial_points: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "search"  # "sweep": every point of ``grid`` with every final seed, no search
    # setting -> values; beside ``method``, a setting's values may be given per method ({method: values}):
    # then only the points of those methods sweep it
    grid: dict[str, list | dict[str, list]] = field(default_factory=dict)

    def grid_points(self) -> dict[str, dict[str, Any]]:
        """A sweep's grid points by name (``p=30``, ``p=30,embedding_size=24`` or ``method=wsn,c=0.1``), in grid
        order."""
        return {",".join(f"{k}={v}" for k, v in point.items()): point for point in expand_grid(self.grid)}

    def varies(self, setting: str) -> bool:
        """Whether the runs of this study may differ in ``setting`` (searched or swept)."""
        return setting in self.space or setting in self.grid

    @property
    def methods(self) -> list[str]:
        """The methods this study trains: the swept ones, else its own."""
        return list(self.grid.get("method", [self.method]))

    def settings(self, chosen: Mapping[str, Any]) -> dict[str, Any]:
        """Library settings of a run: fixed, then budget, then the chosen (searched or swept) values."""
        return {**self.fixed, **self.budget, **{k: v for k, v in chosen.items() if k not in GRID_ONLY}}

    def config(self, chosen: Mapping[str, Any], seed: int, runtime: Mapping[str, Any] | None = None) -> Config:
        """The library :class:`Config` of one run (``runtime``: threads, device, data_root, progress); a
        swept ``method`` in ``chosen`` replaces the study's."""
        method = chosen.get("method", self.method)
        return resolve_config(self.benchmark, method, seed, {**self.settings(chosen), **(runtime or {})})

    def largest_configs(self, seed: int) -> list[Config]:
        """The base configuration and, per searched setting, the configuration at each end of its range
        (or at each choice): the runs whose memory bounds what any trial of the study needs."""
        found = [self.config({}, seed)]
        for key, dim in self.space.items():
            found += [self.config({key: value}, seed) for value in dim.args]
        return found + [self.config(point, seed) for point in self.grid_points().values()]

    @property
    def tasks(self) -> int:
        """Number of tasks of every run of this study (the ASHA rungs are task boundaries)."""
        return self.config({}, 1).tasks

    def describe(self) -> dict[str, Any]:
        """Flat description for the MLflow parent run's params."""
        return {"benchmark": self.benchmark, "method": self.method, "trials": self.trials,
                "concurrency": self.concurrency, "fixed_concurrency": self.fixed_concurrency,
                "objective": f"{self.mode} {self.metric}",
                "seeds": self.seeds, **{f"fixed.{k}": v for k, v in self.fixed.items()},
                **{f"budget.{k}": v for k, v in self.budget.items()},
                **{f"space.{k}": f"{d.kind}{list(d.args)}" for k, d in self.space.items()},
                **({"kind": self.kind, **{f"grid.{k}": v for k, v in self.grid.items()}} if self.grid else {})}

    def space_spec(self) -> dict[str, dict[str, list]]:
        """The search space as written in the study file (``{name: {kind: args}}``)."""
        return {k: {v.kind: list(v.args)} for k, v in self.space.items()}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "space": self.space_spec()}



def _scalar_kind(value: Any) -> str:
    """'bool', 'number' or 'str' for a scalar a choice may hold; '' for anything else."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "str" if isinstance(value, str) else ""


def _dimension(value: Any, source: str, key: str) -> Dimension:
    spec = schema.mapping(value, source, key, allowed=KINDS)
    if len(spec) != 1:
        raise bad(source, key, f"must have exactly one of {', '.join(KINDS)}", value)
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args or not all(_scalar_kind(a) for a in args):
            raise bad(source, f"{key}.choice", "must be a list of distinct scalar values", args)
        if len({_scalar_kind(a) for a in args}) != 1:
            raise bad(source, f"{key}.choice", "must hold values of one type (numbers, booleans or strings)",
                      args)
        if len(set(args)) != len(args):
            raise bad(source, f"{key}.choice", "must be a list of distinct scalar values", args)
        if any(isinstance(a, float) and not math.isfinite(a) for a in args):
            raise bad(source, f"{key}.choice", "must hold finite numbers", args)
        return Dimension(kind, tuple(args))
    if not isinstance(args, list) or len(args) != 2:
        raise bad(source, f"{key}.{kind}", "must be [low, high]", args)
    if kind == "int":
        low, high = (schema.integer(a, source, f"{key}.int", minimum=-(2**31)) for a in args)
    else:
        low, high = (schema.number(a, source, f"{key}.{kind}", positive=kind == "loguniform") for a in args)
    if not low < high:
        raise bad(source, f"{key}.{kind}", "must have low < high", args)
    return Dimension(kind, (low, high))


def _resolve(benchmark: str, method: str, settings: Mapping[str, Any], source: str, key: str) -> Config:
    """The library configuration of one probe of the study, checked against its network (chunk size)."""
    from hypermask.footprint import check_structure  # builds the target network: torch, imported when needed

    try:
        cfg = resolve_config(benchmark, method, 1, settings)
        check_structure(cfg)
        return cfg
    except ConfigError as err:
        raise PipelineError(f"{source}: '{key}': {err}") from None


def expand_grid(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every point of a grid, in grid order: the product of the settings' values, where a setting given per
    method ({method: values}) takes, at each ``method`` value, that method's values, and is absent for a method
    it does not list."""
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        grown = []
        for point in points:
            choices = values.get(point.get("method"), []) if isinstance(values, dict) else values
            grown += [{**point, key: v} for v in choices] if choices else [point]
        points = grown
    return points


def _distinct_values(values: Any, source: str, key: str) -> list:
    if not isinstance(values, list) or not values or len(set(map(json.dumps, values))) != len(values):
        raise bad(source, key, "must be a non-empty list of distinct values", values)
    return list(values)


def _grid(value: Any, benchmark: str, method: str, base: Mapping[str, Any],
          source: str) -> dict[str, list | dict[str, list]]:
    """A sweep's grid: one or two settings (``method`` among them, to compare methods), each a non-empty list
    of distinct values, or beside ``method`` a mapping from some of its methods to such lists (the setting is
    swept for those methods only); every point valid for the library."""
    known = (set(setting_names()) - RESERVED) | GRID_ONLY
    grid = schema.mapping(value, source, "grid", allowed=known)
    if not 1 <= len(grid) <= MAX_GRID_SETTINGS:
        raise bad(source, "grid", f"must sweep 1 to {MAX_GRID_SETTINGS} settings", value)
    checked: dict[str, list | dict[str, list]] = {}
    for key, values in grid.items():
        if key in base:
            raise bad(source, f"grid.{key}", "is also set in 'fixed' or 'budget'", values)
        if isinstance(values, dict) and key not in GRID_ONLY:
            methods = grid.get("method")
            if not isinstance(methods, list) or list(grid).index(key) < list(grid).index("method"):
                raise bad(source, f"grid.{key}", "may give values per method only after a 'method' list", values)
            for name in values:
                if name not in methods:
                    raise bad(source, f"grid.{key}.{name}", "must be a method the grid lists", values[name])
            checked[key] = {name: _distinct_values(v, source, f"grid.{key}.{name}") for name, v in values.items()}
        else:
            checked[key] = _distinct_values(values, source, f"grid.{key}")
    unknown = [m for m in checked.get("method", []) if m not in METHODS]
    if unknown:
        raise bad(source, "grid.method", f"must list methods among {', '.join(METHODS)}", unknown[0])
    for point in expand_grid(checked):
        settings = {k: v for k, v in point.items() if k not in GRID_ONLY}
        where = "grid." + ",".join(f"{k}={v}" for k, v in point.items())
        _resolve(benchmark, point.get("method", method), {**base, **settings}, source, where)
    return checked


def _objective(data: Mapping[str, Any], source: str) -> tuple[str, str]:
    objective = schema.mapping(data.get("objective"), source, "objective", allowed=("metric", "mode"))
    metric = objective.get("metric", "val_average_accuracy")
    if metric not in OBJECTIVES:
        raise bad(source, "objective.metric", f"must be one of {', '.join(OBJECTIVES)} (selection uses "
                  "validation scores only)", metric)
    mode = objective.get("mode", OBJECTIVES[metric])
    if mode != OBJECTIVES[metric]:
        raise bad(source, "objective.mode", f"must be '{OBJECTIVES[metric]}' for {metric}", mode)
    return metric, mode


def _final_seeds(data: Mapping[str, Any], source: str) -> list[int]:
    final = schema.mapping(data["final"], source, "final", allowed=("seeds",), required=("seeds",))
    final_seeds = seeds(final["seeds"], source, "final.seeds")
    enough_seeds(final_seeds, source, "final.seeds")
    return final_seeds


@dataclass(frozen=True)
class _Common:
    """What search and sweep studies declare alike, validated."""

    data: dict[str, Any]
    benchmark: str
    method: str
    fixed: dict[str, Any]
    budget: dict[str, Any]  # the training budget: settings of the base configuration
    counts: dict[str, int]  # trials, concurrency
    fixed_concurrency: bool
    metric: str
    mode: str
    seeds: list[int]


def _parse_common(data: Any, source: str, allowed: tuple[str, ...], required: tuple[str, ...],
                  counts: tuple[str, ...], selection: str, selects: bool = True) -> _Common:
    """The keys search and sweep studies share: benchmark and method, fixed settings, the budget (its
    ``counts`` apart), the objective and the final seeds; the base configuration must hold out validation
    data since ``selection`` is made on it (unless nothing is selected: ``selects`` False)."""
    data = schema.mapping(data, source, "", allowed=allowed, required=required)
    benchmark, method = _benchmark_and_method(data, source)
    known = set(setting_names()) - RESERVED
    fixed = schema.mapping(data.get("fixed"), source, "fixed", allowed=known)
    budget = schema.mapping(data["budget"], source, "budget", allowed=known | set(counts) | {FIXED_CONCURRENCY},
                            required=counts)
    numbers = {key: schema.integer(budget.pop(key), source, f"budget.{key}") for key in counts}
    fixed_concurrency = schema.boolean(budget.pop(FIXED_CONCURRENCY, False), source,
                                       f"budget.{FIXED_CONCURRENCY}")
    base = {**fixed, **budget}
    if selects and _resolve(benchmark, method, base, source, "fixed").validation_size < 1:
        raise bad(source, "budget.validation_size", f"must be >= 1: {selection} on validation data",
                  base.get("validation_size"))
    metric, mode = _objective(data, source)
    return _Common(data, benchmark, method, fixed, budget, numbers, fixed_concurrency, metric, mode,
                   _final_seeds(data, source))


def parse_sweep(name: str, data: dict[str, Any], source: str) -> Study:
    """Validate a sweep study (``kind: sweep``): a grid over one or two settings, each point trained with
    every final seed on the base configuration (no search, so no ``trials`` and no search space)."""
    common = _parse_common(data, source, SWEEP_KEYS, ("benchmark", "grid", "budget", "final"), ("concurrency",),
                           "the grid's best point is chosen")
    grid = _grid(common.data["grid"], common.benchmark, common.method, {**common.fixed, **common.budget}, source)
    study = Study(name=name, benchmark=common.benchmark, method=common.method,
                  description=str(common.data.get("description", "")), fixed=common.fixed, space={}, trials=0,
                  concurrency=common.counts["concurrency"], fixed_concurrency=common.fixed_concurrency,
                  budget=common.budget, metric=common.metric, mode=common.mode, seeds=common.seeds, kind="sweep",
                  grid=grid)
    return Study(**{**study.__dict__, "trials": len(study.grid_points()) * len(study.seeds)})


def _benchmark_and_method(data: Mapping[str, Any], source: str) -> tuple[str, str]:
    benchmark, method = data["benchmark"], data.get("method", "hypermask")
    if benchmark not in BENCHMARKS:
        raise bad(source, "benchmark", f"must be one of {', '.join(BENCHMARKS)}", benchmark)
    if method not in METHODS:
        raise bad(source, "method", f"must be one of {', '.join(METHODS)}", method)
    return benchmark, method


def parse_study(name: str, data: dict[str, Any], source: str, searched: bool = True) -> Study:
    """Validate a study mapping; ``source`` names the file (and profile) in error messages. ``kind: sweep``
    studies are parsed by :func:`parse_sweep`. ``searched`` False (a profile without search, whose final stage
    trains the published configuration alone) lets the base configuration hold out no validation data."""
    kind = data.get("kind", "search") if isinstance(data, dict) else "search"
    if kind not in STUDY_KINDS:
        raise bad(source, "kind", f"must be one of {', '.join(STUDY_KINDS)}", kind)
    if kind == "sweep":
        return parse_sweep(name, data, source)
    common = _parse_common(data, source, STUDY_KEYS, ("benchmark", "search_space", "budget", "final"),
                           BUDGET_KEYS, "trials are selected", selects=searched)
    data, benchmark, method, fixed, budget = common.data, common.benchmark, common.method, common.fixed, common.budget
    raw_space = schema.mapping(data["search_space"], source, "search_space", allowed=set(setting_names()) - RESERVED)
    if not raw_space:
        raise bad(source, "search_space", "must search at least one setting", raw_space)
    space = {k: _dimension(v, source, f"search_space.{k}") for k, v in raw_space.items()}
    for key in space:
        if key in fixed or key in budget:
            raise bad(source, f"search_space.{key}", "is also set in 'fixed' or 'budget'", raw_space[key])
    base = {**fixed, **budget}
    for key, dim in space.items():
        probes = list(dim.args)
        if dim.kind in ("uniform", "loguniform"):  # a fractional value catches integer-only settings
            probes.append(dim.args[0] + 0.377 * (dim.args[1] - dim.args[0]))
        for probe in probes:
            _resolve(benchmark, method, {**base, key: probe}, source, f"search_space.{key}")
    paper = schema.mapping(data.get("paper"), source, "paper", allowed=("average_accuracy", "std", "source", "note"))
    for key in ("average_accuracy", "std"):
        if paper.get(key) is not None:
            schema.number(paper[key], source, f"paper.{key}", minimum=0)
    points = data.get("initial_points") or []
    if not isinstance(points, list):
        raise bad(source, "initial_points", "must be a list of mappings", points)
    for i, point in enumerate(points):
        point = schema.mapping(point, source, f"initial_points[{i}]", allowed=space, required=space)
        for key, value in point.items():
            if not space[key].contains(value):
                raise bad(source, f"initial_points[{i}].{key}", "must lie in the search space", value)
    return Study(name=name, benchmark=benchmark, method=method, description=str(data.get("description", "")),
                 fixed=fixed, space=space, trials=common.counts["trials"], concurrency=common.counts["concurrency"],
                 fixed_concurrency=common.fixed_concurrency, budget=budget,
                 metric=common.metric, mode=common.mode, seeds=common.seeds,
                 paper=paper, initial_points=[dict(p) for p in points])


def check_seeds(study: Study, trial_seed: int, source: str) -> None:
    """Final seeds must differ from the search trials' training seed (the final mean never repeats a
    search run)."""
    if trial_seed in study.seeds:
        raise bad(source, "final.seeds", f"must not contain the search trials' seed {trial_seed} "
                  "(params.yaml search.trial_seed)", study.seeds)


def load_checked_study(layout: Layout, name: str, params: Params) -> Study:
    """Study ``name`` under the active profile, once it is valid as written and under every profile that
    runs it (so no profile's run finds a broken file later); final seeds apart from the trials' seed."""
    written = load_study(layout, name, trial_seed=params.trial_seed)
    listed = "sweep" if name in params.sweeps else "search"
    if written.kind != listed:
        raise PipelineError(f"studies/{name}.yaml: is a {written.kind} study but params.yaml lists it under "
                            f"'{'sweeps' if listed == 'sweep' else 'studies'}'")
    if listed == "sweep":
        base = load_study(layout, params.sweeps[name])
        if base.benchmark != written.benchmark or base.method not in written.methods:
            raise PipelineError(f"params.yaml: 'sweeps.{name}': base study '{base.name}' trains {base.method} on "
                                f"{base.benchmark}, the sweep {'/'.join(written.methods)} on {written.benchmark}")
    for profile in params.profiles.values():
        if name in profile.run and profile.name != params.profile.name:
            load_study(layout, name, profile, params.trial_seed)
    return load_study(layout, name, params.profile, params.trial_seed)


def load_study(layout: Layout, name: str, profile: Profile | None = None,
               trial_seed: int | None = None) -> Study:
    """Read ``studies/<name>.yaml`` and lay ``profile``'s override over it before validating; with
    ``trial_seed``, the final seeds are checked against it."""
    path = layout.study_file(name)
    data = schema.read_yaml(path)
    source = f"studies/{name}.yaml"
    if profile is not None:
        patch = profile.patch_for(name)
        if patch:
            data = schema.deep_merge(data, patch)
            source += f" (with profile '{profile.name}' of params.yaml)"
    study = parse_study(name, data, source, searched=profile is None or profile.search)
    if trial_seed is not None:
        check_seeds(study, trial_seed, source)
    return study
