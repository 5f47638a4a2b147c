"""Hardening: every input checked before compute; every failure one line, nothing written."""

from __future__ import annotations

import pytest

from hypermask.config import ConfigError, resolve_config, setting_names

NUMERIC_ABUSE = ("inf", "-inf", "nan", "1e309", str(2**63), "-" + str(2**63))
STRING_SETTINGS = {"data_root"}  # any text is a path name


# Every setting with every abusive value, except 2**63 for lr: a finite rate inside lr's range (0, 1e30]
# (1e31 is refused below).
ABUSE_CASES = [(name, value) for name in setting_names() if name not in STRING_SETTINGS
               for value in NUMERIC_ABUSE if (name, value) != ("lr", str(2**63))]


@pytest.mark.parametrize("name, value", ABUSE_CASES)
def test_every_setting_refuses_non_finite_and_overflowing_values(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config("split_mnist", overrides={name: value})
    message = str(err.value)
    assert "\n" not in message and f"'{name}'" in message


@pytest.mark.parametrize("benchmark", ["split_mnist", "permuted_mnist", "split_cifar100"])
@pytest.mark.parametrize("name, value", [("beta", float("inf")), ("lambda", 1e309), ("lr", float("nan")),
                                         ("beta", 1e300), ("lr", 0.0), ("lr", 1e31), ("p", 100.0)])
def test_float_settings_from_python_values_are_finite_and_in_range(benchmark, name, value) -> None:
    with pytest.raises(ConfigError, match=f"'{name}'"):
        resolve_config(benchmark, overrides={name: value})


@pytest.mark.parametrize("overrides, fragment", [
    ({"seed": 2**40}, "setting 'seed' must be <= 4294967295"),
    ({"seed": -1}, "setting 'seed' must be >= 0"),
    ({"threads": 1_000_000}, "setting 'threads' must be <= 256"),
    ({"device": "cuda:x"}, "setting 'device'"),
    ({"hnet_hidden": "[1," + ",".join(["2"] * 70) + "]"}, "setting 'hnet_hidden'"),
    ({"epochs": 2, "validation_size": 0}, "setting 'validation_size' must be >= 1 when epochs > 0"),
])
def test_runtime_and_structural_bounds(overrides, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        resolve_config("split_mnist", overrides=overrides)


def test_split_cifar100_with_no_validation_is_refused() -> None:
    with pytest.raises(ConfigError, match="validation_size"):
        resolve_config("split_cifar100", overrides={"validation_size": 0})


def test_large_integers_are_parsed_exactly() -> None:
    assert resolve_config("split_mnist", seed="4294967295").seed == 2**32 - 1
    with pytest.raises(ConfigError, match="seed"):
        resolve_config("split_mnist", seed="4294967296")


# ---------------------------------------------------------------- sizes that cannot fit
SIZE_SETTINGS = {"embedding_size": 2**31 - 1, "hnet_hidden": [2**31 - 1], "target_hidden": [2**31 - 1],
                 "chunk_embedding_size": 2**31 - 1}
GIB = 1024**3


@pytest.mark.parametrize("name, value", SIZE_SETTINGS.items())
def test_sizes_beyond_memory_are_refused_with_the_estimate(name, value) -> None:
    from hypermask.footprint import check_fits

    overrides = {name: value, **({"chunk_size": 1000} if name == "chunk_embedding_size" else {})}
    cfg = resolve_config("split_mnist", overrides=overrides)
    with pytest.raises(ConfigError, match=r"needs about [\d.]+ GiB of memory but this machine has 24.0 GiB"):
        check_fits(cfg, 24 * GIB)


def test_chunk_size_beyond_the_hypernetwork_output_is_refused() -> None:
    from hypermask.footprint import check_fits, hypernetwork_output_size

    cfg = resolve_config("split_mnist", overrides={"chunk_size": 10**9})
    with pytest.raises(ConfigError, match=f"'chunk_size' must be <= the hypernetwork's output size "
                                          f"{hypernetwork_output_size(cfg)}"):
        check_fits(cfg, 10**15)


@pytest.mark.parametrize("benchmark", ["split_mnist", "permuted_mnist", "split_cifar100"])
@pytest.mark.parametrize("method", ["hypermask", "hnet", "finetune"])
def test_published_configurations_fit_a_16_gib_machine(benchmark, method) -> None:
    from hypermask.footprint import check_fits, estimate

    cfg = resolve_config(benchmark, method)
    check_fits(cfg, 16 * GIB)
    assert 0.3 * GIB < estimate(cfg).total < 16 * GIB


def test_estimate_is_close_to_the_measured_split_mnist_run() -> None:
    """The published Split MNIST run peaks at about 1.2 GB resident (measured); the estimate is near it."""
    from hypermask.footprint import estimate

    assert 1.0e9 < estimate(resolve_config("split_mnist")).total < 2.5e9


def test_device_memory_is_checked_for_the_model_and_host_memory_for_the_data() -> None:
    from hypermask.footprint import check_fits, estimate

    cfg = resolve_config("permuted_mnist")
    need = estimate(cfg)
    check_fits(cfg, need.data, need.model)
    with pytest.raises(ConfigError, match="of device memory but the node has"):
        check_fits(cfg, 10**15, need.model - 1, where="the node")


# ---------------------------------------------------------------- device and threads
def test_a_missing_cuda_device_is_refused_before_training() -> None:
    import torch

    from hypermask.runtime import resolve_device

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match=f"setting 'device' is 'cuda:{count}' but this machine has"):
        resolve_device(f"cuda:{count}")


def test_runtime_settings_are_recorded_as_actually_used() -> None:
    import torch

    from hypermask.runtime import resolve_runtime

    cfg = resolve_runtime(resolve_config("split_mnist", overrides={"threads": 0, "device": "auto"}))
    assert cfg.threads == torch.get_num_threads() >= 1
    assert cfg.device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resume_under_another_thread_count_is_refused(mnist, tmp_path) -> None:
    from conftest import small_config
    from hypermask.checkpoint import CheckpointError
    from hypermask.data import build_stream
    from hypermask.train import train_continual

    cfg = small_config(tasks=1, iterations=5, train_subset=100, threads=0)
    result = train_continual(cfg, checkpoint_dir=tmp_path, stream=build_stream(cfg, mnist))
    used = result.config.threads
    assert used >= 1 and result.to_dict()["config"]["threads"] == used
    other = small_config(tasks=1, iterations=5, train_subset=100, threads=used + 1)
    with pytest.raises(CheckpointError, match=f"threads={used} there, {used + 1} now"):
        train_continual(other, checkpoint_dir=tmp_path, stream=build_stream(other, mnist))
