"""Few-shot class-incremental protocols: sessions, settings refused before compute, session metrics,
and short runs of every method on FSCIL MNIST and on generated CIFAR-100-shaped data."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from hypermask.cli import main
from hypermask.config import ConfigError, resolve_config
from hypermask.data import ImageArrays, build_stream
from hypermask.evaluation import session_metrics
from hypermask.metrics import INFERENCE_RULES
from hypermask.registry import DatasetSpec, dataset_spec, register_dataset
from hypermask.runtime import preflight
from hypermask.train import train_continual

TINY = {"progress": False, "target_hidden": "32", "embedding_size": 8, "hnet_hidden": "8", "iterations": 40,
        "train_subset": 200, "validation_size": 50, "chunk_size": 0, "inference_samples": 50, "threads": 1}


def test_fscil_mnist_sessions_follow_the_protocol(mnist) -> None:
    cfg = resolve_config("fscil_mnist", overrides={"progress": False, "seed": 7})
    assert (cfg.tasks, cfg.base_classes, cfg.ways, cfg.shots) == (6, 5, 1, 5)
    stream = build_stream(cfg, mnist)
    assert stream.class_incremental and stream.classes_per_task == 10 and stream.seen_classes == [5, 6, 7, 8, 9, 10]
    order = stream.protocol["class_order"]
    assert sorted(order) == list(range(10)) and stream.protocol["sessions"][0] == order[:5]
    base = stream.tasks[0]
    assert set(base.train_y.tolist()) == set(range(5)) and set(base.test_y.tolist()) == set(range(5))
    assert len(base.train_x) + len(base.val_x) == int(torch.isin(mnist.train_y, torch.tensor(order[:5])).sum())
    for s, task in enumerate(stream.tasks[1:], start=1):
        assert task.train_y.tolist() == [4 + s] * 5  # labels are positions in the class order
        chosen = stream.protocol["shot_indices"][s - 1]
        assert len(chosen) == 5 and set(mnist.train_y[chosen].tolist()) == {order[4 + s]}
        assert torch.equal(task.train_x, mnist.train_x[chosen].float()[:, None] / 255)
        assert len(task.val_x) == 500 and set(task.val_y.tolist()) == {4 + s}
        assert int((mnist.test_y == order[4 + s]).sum()) == len(task.test_y)
    # the protocol depends on protocol_seed only, not on the run's seed
    other_seed = build_stream(resolve_config("fscil_mnist", overrides={"seed": 8}), mnist)
    assert other_seed.protocol == stream.protocol
    other_protocol = build_stream(resolve_config("fscil_mnist", overrides={"protocol_seed": 2}), mnist)
    assert other_protocol.protocol["class_order"] != order


@pytest.mark.parametrize("benchmark, overrides, fragment", [
    ("fscil_mnist", {"shots": 0}, "'shots' must be between 1 and 5421"),
    ("fscil_mnist", {"shots": 5422}, "'shots' must be between 1 and 5421"),
    ("fscil_cifar100", {"shots": 501}, "'shots' must be between 1 and 500"),
    ("fscil_mnist", {"base_classes": 10}, "'base_classes' must be between 1 and 9"),
    ("fscil_cifar100", {"base_classes": 0}, "'base_classes' must be between 1 and 99"),
    ("fscil_mnist", {"ways": 0}, "'ways' must be >= 1"),
    ("fscil_mnist", {"tasks": 7}, "'tasks' must be <= 6 for fscil_mnist"),
    ("fscil_mnist", {"ways": 2}, "'tasks' must be <= 3 for fscil_mnist"),
    ("fscil_cifar100", {"tasks": 10}, "'tasks' must be <= 9 for fscil_cifar100"),
    ("fscil_cifar100", {"base_classes": 90, "ways": 5, "tasks": 4}, "'tasks' must be <= 3"),
])
def test_bad_protocols_are_refused_in_one_line(benchmark, overrides, fragment) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config(benchmark, overrides=overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_protocols_that_fit_are_accepted() -> None:
    assert resolve_config("fscil_mnist", overrides={"ways": 2, "tasks": 3, "shots": 5421}).ways == 2
    assert resolve_config("fscil_cifar100", overrides={"base_classes": 95, "tasks": 2}).tasks == 2


@pytest.mark.parametrize("method", ["hypermask", "hnet"])
def test_a_chunk_larger_than_the_hypernetwork_output_is_refused_before_compute(method) -> None:
    cfg = resolve_config("fscil_mnist", method, overrides={"chunk_size": 10**9, "progress": False})
    with pytest.raises(ConfigError, match="'chunk_size' must be <= the hypernetwork's output size") as err:
        preflight(cfg)
    assert "\n" not in str(err.value)


def test_inference_rules_and_session_history() -> None:
    # sample 0: task 0 is confident about class 1; task 1 has the single highest logit (class 0) but spreads
    logits = torch.tensor([[[0.0, 4.0, 0.0]], [[5.0, 4.9, 4.9]]])
    assert [int(v) for v in INFERENCE_RULES[""](logits)] == [0, 1]
    assert [int(v) for v in INFERENCE_RULES["maxprob_"](logits)] == [0, 1]
    assert [int(v) for v in INFERENCE_RULES["maxlogit_"](logits)] == [1, 0]
    first = session_metrics({}, {"class_incremental_accuracy": 90.0, "val_class_incremental_accuracy": 80.0})
    second = session_metrics(first, {"class_incremental_accuracy": 60.0, "val_class_incremental_accuracy": 70.0})
    assert second["session_accuracy"] == [90.0, 60.0] and second["val_session_accuracy"] == [80.0, 70.0]
    assert second["mean_session_accuracy"] == 75.0 and second["session_accuracy_drop"] == 30.0
    assert "maxprob_session_accuracy" not in second  # only rules that were measured


@pytest.mark.parametrize("method", ["hypermask", "finetune", "hnet"])
def test_every_method_runs_the_fscil_protocol(mnist, method) -> None:
    cfg = resolve_config("fscil_mnist", method, overrides={**TINY, "tasks": 3})
    reports = []
    result = train_continual(cfg, stream=build_stream(cfg, mnist), on_task_end=reports.append)
    assert [len(r.metrics["session_accuracy"]) for r in reports] == [1, 2, 3]
    for report in reports:  # class-incremental validation accuracy after every session
        assert 0.0 <= report.metrics["val_class_incremental_accuracy"] <= 100.0
        assert report.metrics["session_accuracy"][-1] == report.metrics["class_incremental_accuracy"]
    metrics = result.metrics
    for rule in INFERENCE_RULES:
        history = metrics[rule + "session_accuracy"]
        assert len(history) == 3 and all(0.0 <= a <= 100.0 for a in history)
        assert metrics[rule + "mean_session_accuracy"] == pytest.approx(sum(history) / 3)
        assert metrics[rule + "session_accuracy_drop"] == pytest.approx(history[0] - history[-1])
    assert result.metrics["session_accuracy"][0] > 50.0  # five digits, trained with all their images
    saved = result.to_dict()
    assert saved["protocol"]["sessions"] == [saved["protocol"]["class_order"][:5], *[
        [c] for c in saved["protocol"]["class_order"][5:7]]]
    assert saved["config"]["protocol_seed"] == 1 and saved["config"]["shots"] == 5


def test_a_session_is_scored_over_every_class_seen_so_far(mnist) -> None:
    cfg = resolve_config("fscil_mnist", "finetune", overrides={**TINY, "tasks": 2})
    stream = build_stream(cfg, mnist)
    widths = []
    result = train_continual(cfg, stream=stream)
    method = result.method
    original = method.target.forward
    method.target.forward = lambda x, w: (widths.append(original(x, w).shape[1]), original(x, w))[1]
    logits = method(stream.tasks[1].test_x[:3], method.task_weights(1))
    assert widths == [10] and logits.shape == (3, 6)  # one output layer of 10; classes seen: 5 + 1


CIFAR_PER_CLASS_TRAIN, CIFAR_PER_CLASS_TEST = 8, 2


@pytest.fixture
def generated_cifar100(tmp_path):
    """CIFAR-100 replaced by a generated dataset of the same shape and class count (32x32x3, 100 classes),
    registered under the same name with its own file and checksum; the real entry is restored after."""
    rng = np.random.default_rng(0)

    def make(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(100), per_class)
        x = ((y % 10)[:, None, None, None] * 25 + rng.integers(0, 20, (len(y), 32, 32, 3))).astype(np.uint8)
        return x, y

    (train_x, train_y), (test_x, test_y) = make(CIFAR_PER_CLASS_TRAIN), make(CIFAR_PER_CLASS_TEST)
    (tmp_path / "mirror" / "generated").mkdir(parents=True)
    path = tmp_path / "mirror" / "generated" / "cifar.npz"
    np.savez(path, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)

    def load(folder):
        data = np.load(folder / "generated" / "cifar.npz")
        return ImageArrays(*(torch.from_numpy(data[k]).long() if k.endswith("y") else torch.from_numpy(data[k])
                             for k in ("train_x", "train_y", "test_x", "test_y")))

    real = dataset_spec("cifar100")
    register_dataset(DatasetSpec(
        name="cifar100", folder="generated", files={"generated/cifar.npz": hashlib.md5(path.read_bytes()).hexdigest()},
        load=load, image_shape=(32, 32, 3), classes=100, train_size=len(train_y), test_size=len(test_y),
        train_per_class=CIFAR_PER_CLASS_TRAIN), replace=True)
    yield tmp_path / "mirror"
    register_dataset(real, replace=True)


def test_fscil_cifar100_end_to_end_on_generated_data(generated_cifar100, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HYPERMASK_DATA_MIRROR", str(generated_cifar100))
    out = tmp_path / "run"
    settings = {"target": "zenkenet", "epochs": 1, "embedding_size": 4, "hnet_hidden": 4, "validation_size": 10,
                "batch_size": 64, "eval_every": 5, "progress": "false", "threads": 1, "data_root": tmp_path / "data"}
    status = main(["train", "--benchmark", "fscil_cifar100", "--out", str(out),
                   *[arg for k, v in settings.items() for arg in ("--set", f"{k}={v}")]])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    protocol = metrics["protocol"]
    assert [len(s) for s in protocol["sessions"]] == [60] + [5] * 8
    assert sorted(c for s in protocol["sessions"] for c in s) == list(range(100))
    assert [len(i) for i in protocol["shot_indices"]] == [25] * 8
    assert len(metrics["session_accuracy"]) == 9 and len(metrics["maxprob_session_accuracy"]) == 9
    assert metrics["session_accuracy_drop"] == pytest.approx(metrics["session_accuracy"][0]
                                                             - metrics["session_accuracy"][-1])
    assert [len(row) for row in metrics["accuracy_matrix"]] == list(range(1, 10))
    assert metrics["config"]["protocol_seed"] == 1 and metrics["config"]["base_classes"] == 60
