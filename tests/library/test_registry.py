"""Datasets and benchmarks as registered entries: a new one runs through the usual entry points."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hypermask.cli import main
from hypermask.config import ConfigError, resolve_config
from hypermask.data import ImageArrays, TaskStream, split_by_classes
from hypermask.data.preprocess import Preprocess
from hypermask.registry import (
    BENCHMARKS,
    DATASETS,
    BenchmarkSpec,
    DatasetSpec,
    benchmark_spec,
    register_benchmark,
    register_dataset,
)

CLASSES, PER_CLASS_TRAIN, PER_CLASS_TEST = 4, 40, 10


def _toy_images(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 images whose class is the quadrant that is lit (learnable), with noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), per_class)
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        images[i, row * 14:(row + 1) * 14, col * 14:(col + 1) * 14] += 180
    order = rng.permutation(len(labels))
    return images[order], labels[order]


def _load_toy(folder: Path) -> ImageArrays:
    data = np.load(folder / "toy" / "toy.npz")
    return ImageArrays(*(torch.from_numpy(data[key]) for key in ("train_x", "train_y", "test_x", "test_y")))


def _split_toy(cfg, arrays: ImageArrays) -> TaskStream:
    return TaskStream(cfg.benchmark, split_by_classes(arrays, cfg, 2), (1, 28, 28), 2,
                      Preprocess((0.3,), (0.3,)), Preprocess((0.3,), (0.3,)))


@pytest.fixture
def toy_mirror(tmp_path, monkeypatch) -> Path:
    """A mirror holding real MNIST and a generated dataset 'toy', with 'toy' and 'split_toy' registered."""
    import os

    mirror = tmp_path / "mirror"
    (mirror / "toy").mkdir(parents=True)
    os.symlink(Path(os.environ["HYPERMASK_DATA_MIRROR"]).resolve() / "MNIST", mirror / "MNIST")
    (train_x, train_y), (test_x, test_y) = _toy_images(PER_CLASS_TRAIN, 0), _toy_images(PER_CLASS_TEST, 1)
    np.savez(mirror / "toy" / "toy.npz", train_x=train_x, train_y=train_y.astype(np.int64),
             test_x=test_x, test_y=test_y.astype(np.int64))
    md5 = hashlib.md5((mirror / "toy" / "toy.npz").read_bytes()).hexdigest()
    monkeypatch.setenv("HYPERMASK_DATA_MIRROR", str(mirror))
    register_dataset(DatasetSpec(
        name="toy", folder="toy", files={"toy/toy.npz": md5}, load=_load_toy, image_shape=(28, 28),
        classes=CLASSES, train_size=CLASSES * PER_CLASS_TRAIN, test_size=CLASSES * PER_CLASS_TEST,
        train_per_class=PER_CLASS_TRAIN))
    register_benchmark(BenchmarkSpec(
        name="split_toy", dataset="toy", build=_split_toy, input_shape=(1, 28, 28), outputs=2, targets=("mlp",),
        max_tasks=2, task_share=0.5, defaults=dict(
            target="mlp", target_hidden=[32], tasks=2, validation_size=10, embedding_size=8, hnet_hidden=[8],
            p=10.0, beta=1e-3, lambda_=1e-3, masked_l1=True, lr=1e-2, batch_size=16, iterations=60, epochs=0,
            augment=False, model_selection="last")))
    yield mirror
    BENCHMARKS.unregister("split_toy")
    DATASETS.unregister("toy")


@pytest.mark.parametrize("method", ["hypermask", "finetune"])
def test_a_registered_dataset_and_benchmark_train_through_the_command_line(toy_mirror, tmp_path, capsys,
                                                                          method) -> None:
    out = tmp_path / "run"
    status = main(["train", "--benchmark", "split_toy", "--method", method, "--out", str(out),
                   "--set", f"data_root={tmp_path / 'data'}", "--set", "progress=false", "--set", "threads=1"])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert [len(row) for row in metrics["accuracy_matrix"]] == [1, 2]
    assert metrics["accuracy_matrix"][0][0] > 80.0  # the lit quadrant is easy to learn
    assert metrics["config"]["benchmark"] == "split_toy" and metrics["config"]["target_hidden"] == [32]
    assert not (tmp_path / "data").exists()  # read from the mirror, which holds MNIST beside it


def test_a_registered_dataset_is_prepared_and_checked_like_the_built_in_ones(toy_mirror, tmp_path, capsys) -> None:
    assert main(["prepare", "toy", "--root", str(tmp_path / "data")]) == 0
    copy = tmp_path / "data" / "toy" / "toy.npz"
    assert copy.is_file()
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    cfg = resolve_config("split_toy", overrides={"data_root": str(tmp_path / "data"), "progress": False})
    from hypermask.data import DataError, build_stream

    with pytest.raises(DataError, match="toy file is corrupt.*toy.npz"):
        build_stream(cfg)


def test_registered_settings_are_validated_from_the_spec(toy_mirror) -> None:
    assert resolve_config("split_toy").iterations == 60
    with pytest.raises(ConfigError, match="'tasks' must be between 1 and 2 for split_toy"):
        resolve_config("split_toy", overrides={"tasks": 3})
    with pytest.raises(ConfigError, match="must be 'mlp' for split_toy"):
        resolve_config("split_toy", overrides={"target": "resnet20"})
    with pytest.raises(ValueError, match="already registered"):
        register_benchmark(benchmark_spec("split_toy"))


def test_unknown_names_are_one_line_with_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config("split_tiny")
    message = str(err.value)
    assert message.startswith("unknown benchmark 'split_tiny' (choose from ") and "fscil_cifar100" in message
    assert "\n" not in message


def test_threads_asking_at_once_all_find_the_builtins() -> None:
    """The first lookups of a fresh process, from several threads at once (concurrent data preparers): each
    waits until the built-in datasets are registered instead of finding an empty registry."""
    import subprocess
    import sys

    code = ("from concurrent.futures import ThreadPoolExecutor\n"
            "from hypermask.registry import dataset_spec\n"
            "with ThreadPoolExecutor(8) as pool:\n"
            "    print(sorted({spec.name for spec in pool.map(lambda _: dataset_spec('mnist'), range(8))}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['mnist']"


def test_a_registered_method_is_known_to_settings_the_memory_estimate_and_training(tmp_path) -> None:
    """A method is one spec: its published settings, its sizes and its implementation, nowhere else."""
    from hypermask.footprint import estimate, method_sizes
    from hypermask.methods import Finetune, build_method
    from hypermask.nets import build_target
    from hypermask.registry import METHODS, MethodSizes, MethodSpec, register_method

    class Scaled(Finetune):
        name = "scaled"

    register_method(MethodSpec(
        name="scaled", build=Scaled, sizes=lambda cfg, target: MethodSizes(
            trained_target=target.num_params(), stored_per_task=7 * target.num_params()),
        benchmark_defaults={"split_mnist": {"lr": 0.05}}))
    try:
        assert list(METHODS) == sorted(METHODS) and "scaled" in METHODS  # listed by name, not by arrival
        cfg = resolve_config("split_mnist", method="scaled")
        assert cfg.lr == 0.05 and resolve_config("permuted_mnist", method="scaled").lr == 1e-3
        assert resolve_config("split_mnist", method="hypermask").lr == 1e-3
        target = build_target(cfg.target, (1, 28, 28), 2, cfg.target_hidden)
        assert method_sizes(cfg, target).stored_per_task == 7 * target.num_params()
        finetune = resolve_config("split_mnist", method="finetune", overrides={"lr": 0.05})
        assert estimate(cfg).model - estimate(finetune).model == 4 * cfg.tasks * 7 * target.num_params()
        assert type(build_method(cfg, target, cfg.tasks)) is Scaled
    finally:
        METHODS.unregister("scaled")
    with pytest.raises(ConfigError, match="unknown method 'scaled'"):
        resolve_config("split_mnist", method="scaled")


def test_settings_resolve_without_torch() -> None:
    """Benchmarks and methods register without importing torch (stages decide what to do before loading it)."""
    import subprocess
    import sys

    code = ("import sys; from hypermask.config import resolve_config; "
            "[resolve_config(b, method=m) for b in ('split_mnist', 'fscil_cifar100') for m in ('hnet', 'hypermask')]; "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
