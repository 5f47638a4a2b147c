"""Hardening: every input checked before compute; every failure one line, nothing written."""

from __future__ import annotations

import pytest

from hypermask.config import ConfigError, resolve_config, setting_names

NUMERIC_ABUSE = ("inf", "-inf", "nan", "1e309", str(2**63), "-" + str(2**63))
STRING_SETTINGS = {"data_root"}  # any text is a path name


@pytest.mark.parametrize("name", [n for n in setting_names() if n not in STRING_SETTINGS])
@pytest.mark.parametrize("value", NUMERIC_ABUSE)
def test_every_setting_refuses_non_finite_and_overflowing_values(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config("split_mnist", overrides={name: value})
    message = str(err.value)
    assert "\n" not in message and f"'{name}'" in message


@pytest.mark.parametrize("benchmark", ["split_mnist", "permuted_mnist", "split_cifar100"])
@pytest.mark.parametrize("name, value", [("beta", float("inf")), ("lambda", 1e309), ("lr", float("nan")),
                                         ("beta", 1e300), ("lr", 2.0), ("p", 100.0)])
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
