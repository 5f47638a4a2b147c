"""WSN (Winning SubNetworks): frozen weights keep earlier tasks exactly, masks of the chosen density, resume,
its published settings and its size in the memory estimate."""

from __future__ import annotations

import pytest
import torch

from conftest import small_config
from hypermask.config import ConfigError, resolve_config
from hypermask.data import build_stream
from hypermask.footprint import estimate, method_sizes
from hypermask.methods.wsn.method import Wsn, kept_count
from hypermask.train import train_continual


def _run(cfg, mnist, **kwargs):
    return train_continual(cfg, stream=build_stream(cfg, mnist), **kwargs)


def test_earlier_tasks_keep_their_accuracy_to_the_last_digit(mnist) -> None:
    cfg = small_config(method="wsn", tasks=4, iterations=40, threads=1)
    result = _run(cfg, mnist)
    matrix = result.accuracy_matrix
    assert [len(row) for row in matrix] == [1, 2, 3, 4]
    for row in range(1, 4):  # re-measured after every task, and equal because the weights are frozen
        for task in range(row):
            assert matrix[row][task] == matrix[task][task], (row, task)
    assert result.metrics["backward_transfer"] == 0.0 and result.metrics["forgetting"] == 0.0
    assert min(matrix[t][t] for t in range(4)) > 80.0


class _Interrupt(Exception):
    pass


def _stop_after(task: int):
    def callback(report):
        if report.task == task:
            raise _Interrupt
    return callback


def test_weights_of_earlier_masks_never_move_and_later_tasks_use_others(mnist, tmp_path) -> None:
    cfg = small_config(method="wsn", tasks=3, iterations=30, c=0.3, threads=1)
    with pytest.raises(_Interrupt):
        _run(cfg, mnist, checkpoint_dir=tmp_path, on_task_end=_stop_after(0))
    after_first = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model_state"]
    method = _run(cfg, mnist, checkpoint_dir=tmp_path).method
    assert isinstance(method, Wsn)
    for k, mask in enumerate(method.kept_masks(0)):
        before, now = after_first[f"theta.{k}"], method.theta[k].detach()
        assert torch.equal(before[mask], now[mask])  # frozen
        assert not torch.equal(before[~mask], now[~mask])  # the free weights trained on
        union = getattr(method, f"masks_{k}").any(dim=0)
        assert int(union.count_nonzero()) > int(mask.count_nonzero())  # later tasks chose other weights too


@pytest.mark.parametrize("c", [0.1, 0.5, 1.0])
def test_masks_keep_the_chosen_share_of_every_layer(mnist, c) -> None:
    cfg = small_config(method="wsn", tasks=2, iterations=10, c=c, threads=1)
    method = _run(cfg, mnist).method
    assert isinstance(method, Wsn)
    for task in range(2):
        for mask in method.kept_masks(task):
            assert mask.dtype == torch.bool
            assert int(mask.count_nonzero()) == kept_count(mask.numel(), c)
            assert abs(int(mask.count_nonzero()) / mask.numel() - c) < 1e-3
    assert method.summary_metrics(2)["mask_density"] == pytest.approx(c, abs=1e-3)


def test_a_resumed_run_equals_an_uninterrupted_one(mnist, tmp_path) -> None:
    cfg = small_config(method="wsn", tasks=3, iterations=30, threads=1)
    uninterrupted = _run(cfg, mnist)
    with pytest.raises(_Interrupt):
        _run(cfg, mnist, checkpoint_dir=tmp_path, on_task_end=_stop_after(1))
    seen = []
    resumed = _run(cfg, mnist, checkpoint_dir=tmp_path, on_task_end=lambda r: seen.append(r.task))
    assert seen == [2]
    assert resumed.accuracy_matrix == uninterrupted.accuracy_matrix
    assert resumed.metrics["task_inference_accuracy"] == uninterrupted.metrics["task_inference_accuracy"]
    a, b = uninterrupted.method.state_dict(), resumed.method.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_published_settings_and_the_density_setting() -> None:
    cfg = resolve_config("split_mnist", "wsn")
    assert (cfg.lr, cfg.c, cfg.iterations, cfg.batch_size, cfg.target_hidden) == (1e-3, 0.5, 2000, 128, [400, 400])
    assert resolve_config("split_mnist", "wsn", overrides={"c": "0.1"}).c == 0.1
    for bad in ("0", "-0.1", "1.5", "nan"):
        with pytest.raises(ConfigError, match="'c'"):
            resolve_config("split_mnist", "wsn", overrides={"c": bad})
    assert resolve_config("split_cifar100", "wsn", overrides={"target": "resnet20"}).c == 0.5


def test_memory_estimate_counts_every_task_mask() -> None:
    cfg = resolve_config("split_mnist", "wsn")
    sizes = method_sizes(cfg)
    scored = 784 * 400 + 400 * 400  # the hidden layers' weights; the head is per task and unmasked
    assert sizes.stored_per_task == scored + 400 * 2
    assert sizes.trained_target == 2 * scored + 400 * 2 and sizes.hypernetwork_output == 0
    fewer = resolve_config("split_mnist", "wsn", overrides={"tasks": 1})
    assert estimate(cfg).model - estimate(fewer).model >= 4 * 4 * sizes.stored_per_task


def test_resnet_batch_norm_has_no_trained_parameters_and_no_biases() -> None:
    from hypermask.nets import build_target

    target = build_target("resnet20", (3, 32, 32), 10, [])
    method = Wsn(resolve_config("split_cifar100", "wsn", overrides={"target": "resnet20", "tasks": 2}), target, 2)
    trained = sum(p.numel() for p in method.parameters())
    scored = sum(p.numel() for p in method.theta)
    assert trained == 2 * scored + 2 * target.param_shapes[-2][0] * target.param_shapes[-2][1]
    weights = method.all_task_weights(1)[0]
    for weight, kind in zip(weights, target.param_kinds):
        if kind in ("bias", "bn_bias"):
            assert not weight.any()
        elif kind == "bn_weight":
            assert bool((weight == 1).all())
    assert method(torch.rand(4, 3, 32, 32), weights).shape == (4, 10)
