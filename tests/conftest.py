"""Shared fixtures: the offline MNIST mirror and small configurations."""

from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from hypermask.config import resolve_config
from hypermask.data import MIRROR_ENV, ImageArrays, load_arrays, pin_mirror
from hypermask.numerics import PORTABLE, pin
from pipeline_fixtures import SHARED_RAY, in_integration_tier


def pytest_configure(config: pytest.Config) -> None:
    """A relative ``HYPERMASK_DATA_MIRROR`` (the README's test line gives one) is made absolute once, so
    processes the tests start in other folders find the same mirror; the test process runs the default
    (portable) numeric path from before its first torch operation, as a training process does."""
    pin_mirror()
    pin(PORTABLE)


TIERS = {"library": "library", "unit": "unit", "integration": "integration", "system": "system"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test carries the marker of its tier, from its folder: ``library``, ``unit`` and ``integration``
    (under ``pipeline/``), ``system``; so ``-m "library or unit"`` is the fast loop."""
    here = Path(__file__).parent
    for item in items:
        parts = Path(item.path).relative_to(here).parts
        tier = next((TIERS[part] for part in parts[:-1] if part in TIERS), None)
        if tier is not None:
            item.add_marker(tier)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """The integration tier's shared Ray is stopped once the next test (if any) lies outside that tier."""
    if nextitem is None or not in_integration_tier(nextitem):
        SHARED_RAY.close()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Keep the fault handler on after pytest's own is switched off, so that a crash while the interpreter
    shuts down (after the summary) still prints where it happened."""
    faulthandler.enable(file=sys.__stderr__, all_threads=True)


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline data mirror (``HYPERMASK_DATA_MIRROR``), which the tests require."""
    value = os.environ.get(MIRROR_ENV)
    if not value or not (Path(value) / "MNIST" / "raw").is_dir():
        pytest.fail(f"set {MIRROR_ENV} to a folder holding MNIST/raw (torchvision layout)")
    return Path(value).resolve()  # tests hand it to processes started in other folders


@pytest.fixture(scope="session")
def mnist(mirror: Path, tmp_path_factory) -> ImageArrays:
    """Real MNIST, loaded once per test session through the mirror."""
    return load_arrays("mnist", tmp_path_factory.mktemp("empty_root"))


def small_config(benchmark: str = "split_mnist", method: str = "hypermask", **overrides):
    """A published configuration cut down to test size."""
    base = {"progress": False, "tasks": 2, "iterations": 30, "train_subset": 600}
    base.update(overrides)
    return resolve_config(benchmark, method=method, overrides=base)


@pytest.fixture(scope="session")
def shared_ray() -> Iterator[None]:
    """The integration tier's one local Ray (``pipeline_fixtures.SHARED_RAY``), started on first use."""
    SHARED_RAY.start()
    yield
    SHARED_RAY.close()


@pytest.fixture
def local_ray(shared_ray: None) -> Iterator[None]:
    """An initialised local Ray for in-process stages: the tier's shared one, with all of its CPUs free."""
    SHARED_RAY.start()  # again, should a test outside the tier have asked for it after it was stopped
    SHARED_RAY.wait_until_idle()
    yield
