"""Typed run settings: published defaults per benchmark, KEY=VALUE overrides, validation.

Settings are layered: general defaults <- benchmark (published configuration) <- method (a baseline's
own published configuration) <- target network <- user overrides; the published layers are part of each
benchmark's registered spec (:mod:`hypermask.registry`, declared in the ``hypermask/data`` modules).
Every problem is reported as one :class:`ConfigError` line naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from hypermask.registry import BENCHMARKS, METHODS, UnknownName, benchmark_spec, resolve  # noqa: F401  (re-exported)

TARGETS = ("mlp", "resnet20", "resnet20_k1", "zenkenet")
MODEL_SELECTIONS = ("last", "best_val")
NORMALIZATIONS = ("imagenet", "cifar100")
HNET_INITS = ("default", "xavier")
HNET_ACTIVATIONS = ("elu", "relu")
INPUT_SCALINGS = ("standardize", "unit")
TRAIN_EMBEDDINGS = ("all", "current")
NUMERICS = ("portable", "native")  # CPU code paths: AVX2 on every x86-64 CPU, or the machine's best


class ConfigError(ValueError):
    """A setting is unknown or has an invalid value (message is one line)."""


@dataclass
class Config:
    """Every setting of one continual-learning run (public names are the ``--set`` keys)."""

    benchmark: str = "split_mnist"
    method: str = "hypermask"
    seed: int = 1
    target: str = "mlp"
    target_hidden: list[int] = field(default_factory=lambda: [400, 400])
    tasks: int = 5
    # hypernetwork / mask
    p: float = 30.0
    beta: float = 1e-3
    lambda_: float = 1e-3
    masked_l1: bool = True
    embedding_size: int = 128
    hnet_hidden: list[int] = field(default_factory=lambda: [25, 25])
    chunk_size: int = 0
    chunk_embedding_size: int = 32
    ramp: bool = True
    # hypernetwork details where HNET's authors differ from HyperMask (the defaults are HyperMask's):
    # ``hnet_init`` default = PyTorch's, xavier = Xavier-uniform weights (and chunk embeddings), zero biases;
    # ``hnet_activation`` between hidden layers; ``lookahead``: the output regulariser evaluates the
    # hypernetwork at its parameters plus the step Adam is about to take (HNET only);
    # ``train_embeddings``: which task embeddings the optimiser steps (all, or the current task's only)
    hnet_init: str = "default"
    hnet_activation: str = "elu"
    lookahead: bool = False
    train_embeddings: str = "all"
    # WSN: the share of each layer's weights a task's binary mask keeps, in (0, 1]
    c: float = 0.5
    # optimisation
    lr: float = 1e-3
    batch_size: int = 128
    iterations: int = 2000
    epochs: int = 0
    model_selection: str = "last"
    eval_every: int = 100
    # data
    validation_size: int = 1000
    train_subset: int = 0
    shots: int = 0  # training samples per class (few-shot; FSCIL: per class of every session after the base)
    # few-shot class-incremental protocols: classes of the base session, new classes per later session, and
    # the seed of the class order and of the shots chosen (recorded, so that runs share one protocol)
    base_classes: int = 0
    ways: int = 0
    protocol_seed: int = 1
    # FSCIL: which protocol (hypermask.data.fscil.PROTOCOLS), how HyperMask learns and scores sessions
    # (hypermask.data.fscil.MODES), and the steps of a session-mask session
    fscil_protocol: str = "standard"
    fscil_mode: str = "prototype"
    session_steps: int = 100
    augment: bool = True
    # CIFAR-100 input normalisation: ImageNet mean/std as hypnettorch (the reference) does, or
    # CIFAR-100's own statistics; MNIST benchmarks always use MNIST's.
    normalization: str = "imagenet"
    # MNIST inputs: standardize with MNIST's mean/std, or unit = the [0, 1] pixel values as they are
    input_scaling: str = "standardize"
    data_root: str = "data"
    eval_batch_size: int = 0
    inference_samples: int = 0  # test/validation samples per task for task inference (0 = all)
    # runtime
    device: str = "auto"
    threads: int = 0
    # CPU code paths (hypermask.numerics): ``portable`` pins ATen, MKL and oneDNN to AVX2, so a run's numbers
    # are the same on every x86-64 CPU with AVX2; ``native`` the machine's best. ``numeric_path``: the path
    # the run actually ran, written in at start (empty: not yet; a resume under another path is refused)
    numerics: str = "portable"
    numeric_path: str = ""
    progress: bool = True

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary using the public setting names (``lambda`` not ``lambda_``)."""
        data = dataclasses.asdict(self)
        data["lambda"] = data.pop("lambda_")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        """Rebuild a configuration written by :meth:`to_dict` (validated)."""
        values = dict(data)
        benchmark = values.pop("benchmark", "split_mnist")
        method = values.pop("method", "hypermask")
        seed = values.pop("seed", 1)
        return resolve_config(benchmark, method=method, seed=seed, overrides=values)

    @property
    def iteration_based(self) -> bool:
        """True when tasks last a fixed number of iterations (MNIST style)."""
        return self.epochs <= 0


_ALIASES = {"lambda": "lambda_", "lam": "lambda_"}
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_INT_LIST_KEYS = {"target_hidden", "hnet_hidden"}


def _public(key: str) -> str:
    return "lambda" if key == "lambda_" else key


def _integer(value: Any) -> int:
    """An exact integer from an int, an integral float or a decimal string ('12', '1e3', '2.0')."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    number = float(value)
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError
    return int(number)


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """Convert a value (possibly a command-line string) to the type of setting ``key``."""
    name = _public(key)
    kind = str(kind)
    try:
        if key in _INT_LIST_KEYS:
            if isinstance(value, str):
                text = value.strip().strip("[]")
                return [_integer(v) for v in text.replace(" ", "").split(",") if v]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return [_integer(v) for v in value]
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "int":
            return _integer(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(f"setting '{name}' must be a finite number, got {value!r}")
            return number
        return str(value)
    except (TypeError, ValueError, OverflowError) as err:
        if isinstance(err, ConfigError):
            raise
        expected = {"bool": "a boolean", "int": "an integer", "float": "a number"}.get(
            kind, "a list of integers" if key in _INT_LIST_KEYS else "a string")
        raise ConfigError(f"setting '{name}' must be {expected}, got {value!r}") from None


# Bounds of every numeric setting, inclusive: (low, high). Integers stay within 32 bits so that
# derived seeds and step counts never overflow; seeds fit numpy's and torch's generators.
INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1
MAX_THREADS = 256
MAX_LAYERS = 64
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "p": (0.0, 100.0), "c": (0.0, 1.0), "beta": (0.0, 1e4), "lambda_": (0.0, 1e4), "lr": (0.0, 1e30)}
INT_RANGES: dict[str, tuple[int, int]] = {
    "seed": (0, SEED_MAX), "embedding_size": (1, INT_MAX), "batch_size": (1, INT_MAX),
    "chunk_size": (0, INT_MAX), "chunk_embedding_size": (0, INT_MAX), "iterations": (0, INT_MAX),
    "epochs": (0, INT_MAX), "eval_every": (1, INT_MAX), "validation_size": (0, INT_MAX),
    "train_subset": (0, INT_MAX), "shots": (0, INT_MAX), "eval_batch_size": (0, INT_MAX),
    "inference_samples": (0, INT_MAX), "base_classes": (0, INT_MAX), "ways": (0, INT_MAX),
    "protocol_seed": (0, SEED_MAX), "session_steps": (0, INT_MAX),
    "threads": (0, MAX_THREADS), "tasks": (1, INT_MAX)}


def _check_ranges(cfg: Config) -> None:
    """Every number finite and inside its bounds (one line naming the setting and the value)."""
    for key in FLOAT_RANGES:
        value = getattr(cfg, key)
        if not math.isfinite(value):
            raise ConfigError(f"setting '{_public(key)}' must be a finite number, got {value!r}")
    if not (0.0 <= cfg.p < 100.0):
        raise ConfigError(f"setting 'p' must be a percentage in [0, 100), got {cfg.p!r}")
    if not (0.0 < cfg.c <= 1.0):
        raise ConfigError(f"setting 'c' must be a fraction in (0, 1], got {cfg.c!r}")
    for key in ("beta", "lambda_"):
        low, high = FLOAT_RANGES[key]
        if not low <= getattr(cfg, key) <= high:
            why = "must be >= 0" if getattr(cfg, key) < low else f"must be <= {high:g}"
            raise ConfigError(f"setting '{_public(key)}' {why}, got {getattr(cfg, key)!r}")
    if not 0.0 < cfg.lr <= FLOAT_RANGES["lr"][1]:  # up to rates that diverge at once (tests of divergence use 1e30)
        raise ConfigError(f"setting 'lr' must be > 0 and <= {FLOAT_RANGES['lr'][1]:g}, got {cfg.lr!r}")
    for key, (low, high) in INT_RANGES.items():
        value = getattr(cfg, key)
        if value < low:
            raise ConfigError(f"setting '{key}' must be >= {low}, got {value!r}")
        if value > high:
            raise ConfigError(f"setting '{key}' must be <= {high}, got {value!r}")
    for key in _INT_LIST_KEYS:
        sizes = getattr(cfg, key)
        if len(sizes) > MAX_LAYERS or any(not 1 <= v <= INT_MAX for v in sizes):
            raise ConfigError(f"setting '{key}' must list at most {MAX_LAYERS} layer sizes, each in "
                              f"[1, {INT_MAX}], got {sizes!r}")


def _validate(cfg: Config) -> None:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"setting '{key}' {why}, got {getattr(cfg, key if key != 'lambda' else 'lambda_')!r}")

    if cfg.method not in METHODS:
        raise ConfigError(f"unknown method '{cfg.method}' (choose from {', '.join(METHODS)})")
    if cfg.target not in TARGETS:
        raise bad("target", f"must be one of {', '.join(TARGETS)}")
    spec = benchmark_spec(cfg.benchmark)
    if cfg.target not in spec.targets:
        raise bad("target", f"must be {' or '.join(repr(t) for t in spec.targets)} for {cfg.benchmark}")
    _check_ranges(cfg)
    if not (1 <= cfg.tasks <= spec.max_tasks):
        raise bad("tasks", f"must be between 1 and {spec.max_tasks} for {cfg.benchmark}")
    if not cfg.hnet_hidden:
        raise bad("hnet_hidden", "must list one or more positive layer sizes")
    if cfg.chunk_size and cfg.chunk_embedding_size < 1:
        raise bad("chunk_embedding_size", "must be >= 1")
    if cfg.epochs == 0 and cfg.iterations == 0:
        raise bad("iterations", "must be >= 1 when epochs is 0")
    if cfg.epochs > 0 and cfg.validation_size < 1:
        raise bad("validation_size", "must be >= 1 when epochs > 0 (the learning-rate schedule "
                                     "and model selection read the validation accuracy)")
    if cfg.model_selection not in MODEL_SELECTIONS:
        raise bad("model_selection", f"must be one of {', '.join(MODEL_SELECTIONS)}")
    if cfg.normalization not in NORMALIZATIONS:
        raise bad("normalization", f"must be one of {', '.join(NORMALIZATIONS)}")
    for key, choices in (("hnet_init", HNET_INITS), ("hnet_activation", HNET_ACTIVATIONS),
                         ("input_scaling", INPUT_SCALINGS), ("train_embeddings", TRAIN_EMBEDDINGS),
                         ("numerics", NUMERICS)):
        if getattr(cfg, key) not in choices:
            raise bad(key, f"must be one of {', '.join(choices)}")
    if cfg.lookahead and cfg.method != "hnet":
        raise bad("lookahead", "applies to method hnet only")
    from hypermask.data.fscil import MODES, PROTOCOLS
    if cfg.fscil_protocol not in PROTOCOLS:
        raise bad("fscil_protocol", f"must be one of {', '.join(PROTOCOLS)}")
    if cfg.fscil_mode not in MODES:
        raise bad("fscil_mode", f"must be one of {', '.join(MODES)}")
    if cfg.model_selection == "best_val" and cfg.validation_size == 0:
        raise bad("validation_size", "must be >= 1 with model_selection=best_val")
    if not _valid_device_name(cfg.device):
        raise bad("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
    from hypermask.numerics import PATH_FORMAT
    if cfg.numeric_path and not PATH_FORMAT.fullmatch(cfg.numeric_path):
        raise bad("numeric_path", "must be empty (recorded at start) or a recorded path such as "
                                  "x86_64/aten=avx2/mkl=AVX2,STRICT/onednn=AVX2")
    if spec.check is not None:
        resolve(spec.check)(cfg)


def _valid_device_name(name: str) -> bool:
    if name in ("auto", "cpu", "cuda"):
        return True
    head, _, index = name.partition(":")
    return head == "cuda" and index.isdigit() and int(index) < 1024


# Settings that change neither the numbers nor the task sequence of a run. Everything else affects the
# results (``eval_batch_size`` changes batch-statistics BN numbers; ``threads``, ``device``, ``numerics``
# and ``numeric_path`` change floating-point reductions): the one list behind checkpoint resume, pipeline keys and what is recorded.
NON_RESULT_SETTINGS = frozenset({"progress", "data_root"})


def result_settings(cfg: Config) -> dict[str, Any]:
    """The settings of ``cfg`` that define its results (public names), for keys and resume checks."""
    return {k: v for k, v in cfg.to_dict().items() if k not in NON_RESULT_SETTINGS}


def setting_names() -> list[str]:
    """Public names accepted by ``--set``."""
    return sorted(_public(name) for name in _FIELDS if name not in ("benchmark", "method"))


def resolve_config(benchmark: str, method: str = "hypermask", seed: int | str = 1,
                   overrides: Mapping[str, Any] | None = None) -> Config:
    """Published configuration of ``benchmark`` with ``overrides`` applied and validated.

    Raises :class:`ConfigError` (one line) for an unknown benchmark, method or key, or a bad value.
    """
    try:
        spec = benchmark_spec(benchmark)
    except UnknownName as err:
        raise ConfigError(str(err)) from None
    if method not in METHODS:
        raise ConfigError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    overrides = {(_ALIASES.get(k, k)): v for k, v in (overrides or {}).items()}
    for key in overrides:
        if key not in _FIELDS or key in ("benchmark", "method"):
            raise ConfigError(f"unknown setting '{_public(key)}' (known: {', '.join(setting_names())})")
    typed = {k: _coerce(k, v, _FIELDS[k].type) for k, v in overrides.items()}
    values = spec.settings(method, typed.get("target"))
    values.update(typed)
    values["seed"] = _coerce("seed", typed.get("seed", seed), "int")
    cfg = Config(benchmark=benchmark, method=method, **values)
    _validate(cfg)
    return cfg


def parse_assignments(items: list[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` strings from the command line."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        result[key.strip()] = value.strip()
    return result
