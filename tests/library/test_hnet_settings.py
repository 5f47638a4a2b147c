"""HNET's reproduction settings (hnet_init, hnet_activation, input_scaling, lookahead, train_embeddings): each
changes what it names and nothing else; HyperMask's published configuration keeps the library's defaults."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from conftest import small_config
from hypermask.config import ConfigError, resolve_config
from hypermask.data import build_stream
from hypermask.methods import build_for_stream
from hypermask.methods.base import cross_entropy
from hypermask.methods.hnet.method import Hnet, adam_delta
from hypermask.nets import build_hypernetwork, split_flat
from hypermask.optim import make_optimizer
from hypermask.train import train_continual

NEW = ("hnet_init", "hnet_activation", "input_scaling", "lookahead", "train_embeddings")
LIBRARY_DEFAULTS = {"hnet_init": "default", "hnet_activation": "elu", "input_scaling": "standardize",
                    "lookahead": False, "train_embeddings": "all"}


@pytest.mark.parametrize("benchmark", ["permuted_mnist", "split_mnist", "split_cifar100", "fscil_mnist"])
@pytest.mark.parametrize("method", ["hypermask", "nomask", "finetune"])
def test_other_methods_keep_the_library_defaults(benchmark, method) -> None:
    cfg = resolve_config(benchmark, method)
    assert {k: getattr(cfg, k) for k in NEW} == LIBRARY_DEFAULTS


def test_hnet_published_configuration_is_the_authors() -> None:
    split = resolve_config("split_mnist", "hnet")
    assert (split.hnet_init, split.hnet_activation, split.input_scaling, split.lookahead, split.train_embeddings,
            split.validation_size) == ("xavier", "relu", "unit", True, "current", 0)
    permuted = resolve_config("permuted_mnist", "hnet")
    assert (permuted.hnet_init, permuted.hnet_activation, permuted.lookahead, permuted.validation_size) == (
        "xavier", "elu", True, 0)
    cifar = resolve_config("split_cifar100", "hnet")
    assert (cifar.hnet_activation, cifar.lookahead, cifar.train_embeddings, cifar.hnet_init) == (
        "relu", True, "current", "default")
    assert cifar.validation_size >= 1  # the learning-rate schedule reads it
    fscil = resolve_config("fscil_mnist", "hnet")  # Split MNIST's HNET settings over the few-shot protocol
    assert (fscil.hnet_init, fscil.lookahead, fscil.input_scaling) == ("xavier", True, "unit")
    assert fscil.validation_size == resolve_config("fscil_mnist").validation_size == 500  # its own split


@pytest.mark.parametrize("key, value", [("hnet_init", "kaiming"), ("hnet_activation", "tanh"),
                                        ("input_scaling", "minmax"), ("train_embeddings", "none"),
                                        ("lookahead", "maybe")])
def test_unknown_values_are_refused_in_one_line(key, value) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        resolve_config("split_mnist", "hnet", overrides={key: value})


def test_lookahead_belongs_to_hnet() -> None:
    with pytest.raises(ConfigError, match="'lookahead' applies to method hnet only"):
        resolve_config("split_mnist", "hypermask", overrides={"lookahead": True})


@pytest.mark.parametrize("chunk_size", [0, 500])
def test_xavier_init_gives_zero_biases_and_xavier_bounds(chunk_size) -> None:
    torch.manual_seed(0)
    default = build_hypernetwork(16, [10, 10], 1200, chunk_size, 8)
    torch.manual_seed(0)
    xavier = build_hypernetwork(16, [10, 10], 1200, chunk_size, 8, init="xavier")
    assert any(p.dim() == 1 and p.abs().sum() > 0 for p in default.parameters())
    for (name, param), (_, before) in zip(xavier.named_parameters(), default.named_parameters()):
        assert param.shape == before.shape
        if param.dim() == 1:
            assert not param.any(), name
        else:
            fan_out, fan_in = param.shape
            bound, largest = math.sqrt(6.0 / (fan_in + fan_out)), float(param.detach().abs().max())
            assert 0.8 * bound < largest <= bound, name
    assert [n for n, _ in xavier.named_parameters()] == [n for n, _ in default.named_parameters()]


def test_the_activation_changes_only_the_nonlinearity() -> None:
    torch.manual_seed(0)
    elu = build_hypernetwork(16, [10, 10], 50)
    torch.manual_seed(0)
    relu = build_hypernetwork(16, [10, 10], 50, activation="relu")
    for a, b in zip(elu.parameters(), relu.parameters()):
        assert torch.equal(a, b)
    e = torch.randn(4, 16)
    assert bool((relu.mlp.hidden(e) >= 0).all()) and bool((elu.mlp.hidden(e) < 0).any())
    layers = relu.mlp.layers
    expected = layers[2](torch.relu(layers[1](torch.relu(layers[0](e)))))
    assert torch.allclose(relu(e), expected)


def test_input_scaling_unit_feeds_the_raw_pixels(mnist) -> None:
    standard = build_stream(small_config("split_mnist", tasks=2), mnist)
    unit = build_stream(small_config("split_mnist", tasks=2, input_scaling="unit"), mnist)
    for a, b in zip(standard.tasks, unit.tasks):  # the same samples
        assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    x = unit.tasks[0].test_x
    assert torch.equal(unit.eval_preprocess(x), x) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert float(standard.eval_preprocess(x).min()) < -0.4
    assert standard.train_preprocess.crop_padding == unit.train_preprocess.crop_padding


def test_validation_size_zero_trains_on_every_image(mnist) -> None:
    stream = build_stream(small_config("split_mnist", method="hnet", train_subset=0, tasks=1), mnist)
    assert len(stream.tasks[0].val_x) == 0
    assert len(stream.tasks[0].train_x) == int(((mnist.train_y == 0) | (mnist.train_y == 1)).sum())


class _Interrupt(Exception):
    pass


def _first_embedding_after(mnist, tmp_path, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Embedding 0 when task 0 ends and when task 1 ends (HNET, look-ahead off)."""
    cfg = small_config("split_mnist", method="hnet", iterations=20, train_embeddings=mode, lookahead=False,
                       threads=1)

    def stop(report):
        if report.task == 0:
            raise _Interrupt

    stream = build_stream(cfg, mnist)
    with pytest.raises(_Interrupt):
        train_continual(cfg, stream=stream, checkpoint_dir=tmp_path / mode, on_task_end=stop)
    before = torch.load(tmp_path / mode / "checkpoint.pt", weights_only=True)["model_state"]["embeddings"][0]
    after = train_continual(cfg, stream=stream, checkpoint_dir=tmp_path / mode).method.embeddings[0].detach()
    return before, after


def test_train_embeddings_current_leaves_earlier_embeddings_alone(mnist, tmp_path) -> None:
    before, after = _first_embedding_after(mnist, tmp_path, "current")
    assert torch.equal(before, after)
    before, after = _first_embedding_after(mnist, tmp_path, "all")
    assert not torch.equal(before, after)  # the regulariser moves it


def _hnet_at_task_one(lookahead: bool) -> tuple[Hnet, torch.optim.Optimizer]:
    cfg = resolve_config("split_mnist", "hnet", overrides={"lookahead": lookahead, "target_hidden": [20],
                                                           "chunk_size": 2000, "progress": False})
    torch.manual_seed(0)
    method = build_for_stream(cfg, (1, 28, 28), 2, 2)
    assert isinstance(method, Hnet)
    optimizer = make_optimizer(method.parameters(), cfg.lr, torch.device("cpu"))
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 2, (8,))
    for _ in range(3):  # Adam has moments when task 1 starts
        loss, _ = method.training_loss(0, x, y, 0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    method.start_task(1)
    optimizer = make_optimizer(method.parameters(), cfg.lr, torch.device("cpu"))
    for _ in range(2):
        method.bind_optimizer(optimizer)
        loss, _ = method.training_loss(1, x, y, 0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    method.bind_optimizer(optimizer)
    return method, optimizer


def test_lookahead_evaluates_the_regulariser_after_adams_step_as_the_authors() -> None:
    method, optimizer = _hnet_at_task_one(lookahead=True)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 2, (8,))
    params = list(method.hnet.parameters())
    # the authors' way (hypercl mnist/train_splitMNIST.py): task loss backward, Δθ from Adam, regulariser at
    # θ + Δθ and its backward into the same gradients
    method.zero_grad()
    raw = method.hnet(method.embeddings[1:2])[0]
    task_loss = cross_entropy(method(x, split_flat(raw, method.target.param_shapes)), y)
    task_loss.backward()
    delta = adam_delta(optimizer, params, [p.grad for p in params])
    regulariser = method.lookahead_regulariser(1, delta)
    (method.cfg.beta * regulariser).backward()
    expected = [p.grad.clone() for p in [*params, method.embeddings]]
    expected_value = float((task_loss + method.cfg.beta * regulariser).detach())

    method.zero_grad()
    loss, _ = method.training_loss(1, x, y, 0.0)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(expected_value, rel=1e-6)
    for got, want in zip([p.grad for p in [*params, method.embeddings]], expected):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-8)

    # without the look-ahead the regulariser is evaluated at θ itself: another value
    plain = method.lookahead_regulariser(1, [torch.zeros_like(p) for p in params])
    _, distance = method.hnet_outputs(1)
    assert distance is not None and float(plain.detach()) == pytest.approx(float(distance.detach()), rel=1e-5)
    assert float(plain.detach()) != pytest.approx(float(regulariser.detach()), rel=1e-6)


def test_lookahead_changes_training_and_its_absence_keeps_the_old_loss(mnist) -> None:
    base = dict(method="hnet", iterations=20, threads=1)
    on = train_continual(small_config(lookahead=True, **base), stream=build_stream(small_config(**base), mnist))
    off_cfg = small_config(lookahead=False, **base)
    off = train_continual(off_cfg, stream=build_stream(off_cfg, mnist))
    assert on.accuracy_matrix[0] == off.accuracy_matrix[0]  # task 0 has no regulariser
    a, b = on.method.state_dict(), off.method.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert dataclasses.replace(on.config, lookahead=False) == off.config
