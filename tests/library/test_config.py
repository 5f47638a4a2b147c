"""Settings: published defaults per benchmark and per method, overrides, validation."""

from __future__ import annotations

import pytest

from hypermask.config import ConfigError, resolve_config


def test_hnet_takes_its_own_published_configuration() -> None:
    split = resolve_config("split_mnist", "hnet")
    assert (split.embedding_size, split.hnet_hidden, split.chunk_size, split.chunk_embedding_size,
            split.beta, split.lr, split.batch_size, split.iterations, split.augment) == (
        96, [10, 10], 42_000, 96, 1e-2, 1e-3, 128, 2000, False)
    perm = resolve_config("permuted_mnist", "hnet")
    assert (perm.embedding_size, perm.hnet_hidden, perm.chunk_size, perm.chunk_embedding_size,
            perm.beta, perm.lr, perm.batch_size, perm.iterations) == (
        24, [25, 25], 78_000, 8, 0.1, 1e-4, 128, 5000)
    resnet = resolve_config("split_cifar100", "hnet")
    assert (resnet.target, resnet.embedding_size, resnet.chunk_size, resnet.chunk_embedding_size,
            resnet.beta, resnet.lr, resnet.batch_size, resnet.epochs) == (
        "resnet20", 32, 7000, 32, 0.05, 1e-3, 32, 200)
    zenke = resolve_config("split_cifar100", "hnet", overrides={"target": "zenkenet"})
    assert (zenke.embedding_size, zenke.hnet_hidden, zenke.chunk_size, zenke.chunk_embedding_size,
            zenke.beta, zenke.lr, zenke.batch_size, zenke.epochs, zenke.augment) == (
        48, [100, 150, 200], 5500, 80, 1e-2, 1e-4, 256, 80, False)


def test_method_defaults_leave_the_benchmark_protocol_and_other_methods_alone() -> None:
    for benchmark in ("permuted_mnist", "split_mnist", "split_cifar100"):
        hypermask, hnet = resolve_config(benchmark), resolve_config(benchmark, "hnet")
        assert resolve_config(benchmark, "finetune").to_dict() == {**hypermask.to_dict(), "method": "finetune"}
        for key in ("tasks", "target", "target_hidden", "model_selection"):
            assert getattr(hnet, key) == getattr(hypermask, key), (benchmark, key)
        # HNET's authors hold out no validation data on MNIST; the epoch-based CIFAR protocol keeps its split
        expected = 0 if "mnist" in benchmark else hypermask.validation_size
        assert hnet.validation_size == expected, benchmark
    assert resolve_config("split_mnist").chunk_size == 0 and resolve_config("split_mnist").beta == 1e-3


def test_overrides_win_over_method_and_target_defaults() -> None:
    cfg = resolve_config("split_mnist", "hnet", overrides={"beta": "0.5", "chunk_size": 0,
                                                           "hnet_hidden": "25,25", "augment": "true"})
    assert (cfg.beta, cfg.chunk_size, cfg.hnet_hidden, cfg.augment) == (0.5, 0, [25, 25], True)
    assert cfg.embedding_size == 96  # what was not overridden stays HNET's
    zenke = resolve_config("split_cifar100", "hnet", overrides={"target": "zenkenet", "lr": 3e-3,
                                                                "epochs": 2})
    assert (zenke.lr, zenke.epochs, zenke.chunk_size) == (3e-3, 2, 5500)
    with pytest.raises(ConfigError):
        resolve_config("split_mnist", "hnet", overrides={"chunk_size": -1})
