"""Task streams, the offline mirror, integrity checks, generated CIFAR-shaped data."""

from __future__ import annotations

import shutil

import pytest
import torch

from conftest import small_config
from hypermask.config import resolve_config
from hypermask.data import DataError, ImageArrays, build_stream, locate_dataset, prepare_dataset, verify_dataset
from hypermask.data.preprocess import random_crop
from hypermask.nets import ResNet20, ZenkeNet
from hypermask.train import train_continual


def test_split_mnist_tasks_have_two_reindexed_classes(mnist) -> None:
    stream = build_stream(resolve_config("split_mnist", overrides={"progress": False}), mnist)
    assert len(stream) == 5 and stream.classes_per_task == 2
    for t, task in enumerate(stream):
        assert set(task.train_y.unique().tolist()) == {0, 1}
        assert len(task.val_x) == 1000
        in_test = (mnist.test_y == 2 * t) | (mnist.test_y == 2 * t + 1)
        assert len(task.test_x) == int(in_test.sum())


def test_permuted_mnist_permutes_every_task_differently(mnist) -> None:
    cfg = resolve_config("permuted_mnist", overrides={"tasks": 3})
    stream = build_stream(cfg, mnist)
    perms = [task.permutation for task in stream]
    assert all(p is not None and sorted(p.tolist()) == list(range(1024)) for p in perms)
    assert not torch.equal(perms[0], torch.arange(1024))  # the first task is permuted too
    assert not torch.equal(perms[0], perms[1])
    assert len(stream.tasks[0].train_x) == 55_000 and stream.tasks[0].view(stream.tasks[0].test_x[:2]).shape == (2, 1024)


def test_few_shot_and_subset(mnist) -> None:
    stream = build_stream(small_config(shots=5), mnist)
    assert len(stream.tasks[0].train_x) == 10
    stream = build_stream(small_config(train_subset=123), mnist)
    assert len(stream.tasks[1].train_x) == 123


def test_random_crop_keeps_shape_and_content() -> None:
    x = torch.rand(8, 1, 28, 28)
    out = random_crop(x, 4, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    same = random_crop(x, 0, torch.Generator().manual_seed(0))
    assert torch.equal(same, x)


def test_corrupt_file_is_reported(mirror, tmp_path) -> None:
    shutil.copytree(mirror / "MNIST", tmp_path / "MNIST")
    victim = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt.*t10k-labels"):
        locate_dataset("mnist", tmp_path)


def test_missing_data_without_download_is_one_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HYPERMASK_DATA_MIRROR", raising=False)
    import torchvision.datasets

    def refuse(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", refuse)
    with pytest.raises(DataError) as err:
        locate_dataset("mnist", tmp_path / "nothing")
    assert "could not be downloaded" in str(err.value) and "\n" not in str(err.value)


def test_prepare_copies_from_mirror_and_verifies(mirror, tmp_path) -> None:
    folder = prepare_dataset("mnist", tmp_path / "data")
    assert folder == (tmp_path / "data").resolve()
    assert (folder / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_nodes_preparing_their_own_copy_at_once_take_turns_and_end_with_one_verified_copy(mirror, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path / "node_data"
    with ThreadPoolExecutor(max_workers=3) as pool:
        folders = list(pool.map(lambda _: prepare_dataset("mnist", root, own_copy=True), range(3)))
    assert folders == [root.resolve()] * 3
    verify_dataset("mnist", root)
    assert not list(root.rglob("*.partial"))


@pytest.mark.parametrize("made_meanwhile", ["folder", "file"])
def test_a_folder_made_meanwhile_by_another_preparer_is_used_not_an_error(made_meanwhile, tmp_path,
                                                                         monkeypatch) -> None:
    """The race behind concurrent preparers: the path appears between the existence check and mkdir. A folder
    there is used (and not counted as made by this call); a file there is still a problem."""
    from pathlib import Path

    from hypermask.paths import PathProblem, make_folder

    target = tmp_path / "a" / "b"
    real_mkdir = Path.mkdir

    def another_preparer_first(self: Path, *args, **kwargs) -> None:
        if self == target:  # the other one wins the race...
            real_mkdir(self) if made_meanwhile == "folder" else self.write_text("")
        real_mkdir(self, *args, **kwargs)  # ...and this mkdir finds the path taken

    monkeypatch.setattr(Path, "mkdir", another_preparer_first)
    if made_meanwhile == "folder":
        assert make_folder(target, "data_root") == [tmp_path / "a"]  # only what this call made
        assert target.is_dir()
    else:
        with pytest.raises(PathProblem, match="cannot be created"):
            make_folder(target, "data_root")
        assert not (tmp_path / "a").exists() or target.is_file()


def test_target_network_shapes() -> None:
    resnet = ResNet20()
    assert resnet(torch.randn(4, 3, 32, 32), resnet.init_weights()).shape == (4, 10)
    assert resnet.widths == [32, 64, 128]
    assert sum(not m for m in resnet.masked) == 2 * 19  # BN scale and shift after each of 19 convs
    zenke = ZenkeNet()
    assert zenke(torch.randn(2, 3, 32, 32), zenke.init_weights()).shape == (2, 10)


def _generated_cifar(per_class_train: int = 12, per_class_test: int = 4) -> ImageArrays:
    """CIFAR-100-shaped random images whose mean brightness encodes the class (learnable)."""
    gen = torch.Generator().manual_seed(0)

    def make(per_class):
        y = torch.arange(100).repeat_interleave(per_class)
        base = (y % 10).float()[:, None, None, None] * 25
        x = (base + torch.rand(len(y), 32, 32, 3, generator=gen) * 20).clamp(0, 255).to(torch.uint8)
        return x, y

    (train_x, train_y), (test_x, test_y) = make(per_class_train), make(per_class_test)
    return ImageArrays(train_x, train_y, test_x, test_y)


@pytest.mark.parametrize("target", ["resnet20", "zenkenet"])
def test_split_cifar100_epoch_based_best_validation(target) -> None:
    cfg = resolve_config("split_cifar100", overrides={
        "target": target, "tasks": 2, "epochs": 2, "validation_size": 20, "eval_every": 2,
        "progress": False, "hnet_hidden": "8", "embedding_size": 4})
    assert cfg.model_selection == "best_val"
    stream = build_stream(cfg, _generated_cifar())
    assert stream.tasks[0].train_x.shape[1:] == (3, 32, 32) and len(stream.tasks[1].test_x) == 40
    result = train_continual(cfg, stream=stream)
    assert len(result.accuracy_matrix) == 2 and all(0 <= a <= 100 for a in result.accuracy_matrix[-1])


def _scripted_validation(monkeypatch, stream, script):
    """Replace validation accuracy (not test accuracy) by ``script``'s values; record each call's
    value and a copy of the weights it saw."""
    import copy

    import hypermask.train as train_module

    real = train_module.accuracy
    calls = []

    def fake(method, weights, x, y, *args):
        if not any(x is task.val_x for task in stream.tasks):
            return real(method, weights, x, y, *args)
        value = script[len(calls) % len(script)]
        calls.append((value, copy.deepcopy(method.state_dict())))
        return value

    monkeypatch.setattr(train_module, "accuracy", fake)
    return calls


def test_plateau_scheduler_steps_once_per_epoch_on_epoch_end_accuracy(monkeypatch) -> None:
    cfg = resolve_config("split_cifar100", overrides={
        "target": "zenkenet", "tasks": 1, "epochs": 3, "validation_size": 20, "eval_every": 3,
        "progress": False, "hnet_hidden": "4", "embedding_size": 4})
    stream = build_stream(cfg, _generated_cifar())
    batches_per_epoch = -(-len(stream.tasks[0].train_x) // cfg.batch_size)
    assert batches_per_epoch == 4  # 12 steps: checks after 3, 6, 9, 12; epoch ends after 4, 8, 12
    calls = _scripted_validation(monkeypatch, stream, [10.0, 20.0, 90.0, 30.0, 40.0, 50.0])
    stepped = []
    real_step = torch.optim.lr_scheduler.ReduceLROnPlateau.step

    def record(self, metrics, *args, **kwargs):
        stepped.append(float(metrics))
        return real_step(self, metrics, *args, **kwargs)

    monkeypatch.setattr(torch.optim.lr_scheduler.ReduceLROnPlateau, "step", record)
    result = train_continual(cfg, stream=stream)
    # validations after steps 3, 4, 6, 8, 9, 12; the scheduler sees only the epoch ends 4, 8, 12
    assert [value for value, _ in calls] == [10.0, 20.0, 90.0, 30.0, 40.0, 50.0]
    assert stepped == [20.0, 30.0, 50.0]
    # the best validation (after step 6, no epoch end) is the model the task ends with
    best = calls[2][1]
    assert all(torch.equal(value, best[key]) for key, value in result.method.state_dict().items())


def test_cifar_normalisation_is_imagenet_by_default_cifar100_on_request() -> None:
    from hypermask.config import ConfigError, setting_names

    arrays = _generated_cifar(per_class_train=3, per_class_test=1)
    grey = torch.full((1, 3, 4, 4), 0.5)
    cfg = resolve_config("split_cifar100", overrides={"tasks": 1, "validation_size": 2})
    assert cfg.normalization == "imagenet" and "normalization" in setting_names()
    stream = build_stream(cfg, arrays)
    for preprocess in (stream.train_preprocess, stream.eval_preprocess):
        expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
        assert torch.allclose(preprocess(grey)[0, :, 0, 0], expected)
    cfg = resolve_config("split_cifar100", overrides={"tasks": 1, "validation_size": 2,
                                                      "normalization": "cifar100"})
    expected = (0.5 - torch.tensor([0.5071, 0.4865, 0.4409])) / torch.tensor([0.2673, 0.2564, 0.2762])
    assert torch.allclose(build_stream(cfg, arrays).eval_preprocess(grey)[0, :, 0, 0], expected)
    with pytest.raises(ConfigError, match="normalization") as err:
        resolve_config("split_cifar100", overrides={"normalization": "mnist"})
    assert "\n" not in str(err.value)


def test_a_file_missing_from_the_mirror_is_named_with_where_it_was_looked_for(mirror, tmp_path, monkeypatch) -> None:
    broken = tmp_path / "mirror"
    shutil.copytree(mirror / "MNIST", broken / "MNIST")
    (broken / "MNIST" / "raw" / "train-labels-idx1-ubyte").unlink()
    monkeypatch.setenv("HYPERMASK_DATA_MIRROR", str(broken))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        locate_dataset("mnist", "data")
    message = str(err.value)
    assert "file missing" in message and str(broken / "MNIST" / "raw" / "train-labels-idx1-ubyte") in message
    assert "download" not in message and "set HYPERMASK_DATA_MIRROR" not in message and "\n" not in message
    assert not (tmp_path / "data").exists()


def test_prepare_replaces_a_broken_copy_from_a_good_mirror(mirror, tmp_path) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"left by a failed prepare")
    folder = prepare_dataset("mnist", tmp_path / "data")
    verify_dataset("mnist", folder)
    assert folder == (tmp_path / "data").resolve()


@pytest.mark.parametrize("root, fragment", [("~no-such-user-hm/data", "unknown user's home folder"),
                                            ("{tmp}/file", "is an existing file, not a folder")])
def test_unusable_data_root_is_one_line(tmp_path, root, fragment) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=fragment):
        locate_dataset("mnist", root.format(tmp=tmp_path))
