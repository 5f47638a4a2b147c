"""The continual loop on real MNIST: determinism, keeping old tasks, resume."""

from __future__ import annotations

import pytest
import torch

from conftest import small_config
from hypermask.config import ConfigError
from hypermask.data import build_stream
from hypermask.train import train_continual


def _run(cfg, mnist, **kwargs):
    return train_continual(cfg, stream=build_stream(cfg, mnist), **kwargs)


def test_same_seed_same_metrics(mnist) -> None:
    cfg = small_config(iterations=25, seed=3, target_hidden="100,100")
    first, second = _run(cfg, mnist), _run(cfg, mnist)
    assert first.accuracy_matrix == second.accuracy_matrix
    other = _run(small_config(iterations=25, seed=4, target_hidden="100,100"), mnist)
    assert other.accuracy_matrix != first.accuracy_matrix


def test_accuracy_matrix_is_remeasured_every_task(mnist) -> None:
    cfg = small_config(tasks=3, iterations=100, target_hidden="100,100")
    reports = []
    result = _run(cfg, mnist, on_task_end=reports.append)
    assert [r.task for r in reports] == [0, 1, 2]
    assert [len(row) for row in result.accuracy_matrix] == [1, 2, 3]
    assert all(r.num_tasks == 3 for r in reports)
    assert result.metrics["average_accuracy"] > 90.0  # two-class MNIST tasks are easy
    assert 0.0 <= result.metrics["task_inference_accuracy"] <= 100.0


def test_hypermask_keeps_first_task_while_finetuning_forgets(mnist) -> None:
    settings = dict(tasks=3, iterations=300, train_subset=4000, target_hidden="20,20", lr=5e-3, validation_size=500)
    hypermask = _run(small_config("permuted_mnist", **settings), mnist)
    finetune = _run(small_config("permuted_mnist", method="finetune", **settings), mnist)
    kept = hypermask.accuracy_matrix[-1][0]
    forgot = finetune.accuracy_matrix[-1][0]
    assert hypermask.accuracy_matrix[0][0] > 80.0 and finetune.accuracy_matrix[0][0] > 80.0
    assert kept - forgot > 15.0, (kept, forgot)
    assert hypermask.metrics["forgetting"] < finetune.metrics["forgetting"]


class _Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_the_same_result(mnist, tmp_path) -> None:
    cfg = small_config(tasks=3, iterations=30, target_hidden="100,100")
    uninterrupted = _run(cfg, mnist)

    def stop_after_second_task(report):
        if report.task == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _run(cfg, mnist, checkpoint_dir=tmp_path, on_task_end=stop_after_second_task)
    seen = []
    resumed = _run(cfg, mnist, checkpoint_dir=tmp_path, on_task_end=lambda r: seen.append(r.task))
    assert seen == [2]  # only the unfinished task was trained again
    assert resumed.accuracy_matrix == uninterrupted.accuracy_matrix


@pytest.mark.parametrize("method", ["hnet", "finetune", "nomask", "wsn"])
def test_baselines_run_in_the_same_loop(mnist, method) -> None:
    result = _run(small_config(method=method, iterations=40), mnist)
    assert len(result.accuracy_matrix) == 2
    assert result.accuracy_matrix[0][0] > 60.0


def test_chunked_hypernetwork_trains(mnist) -> None:
    result = _run(small_config(chunk_size=5000, iterations=40), mnist)
    assert result.accuracy_matrix[0][0] > 60.0


def test_mask_density_follows_sparsity(mnist) -> None:
    result = _run(small_config(p=40.0, iterations=10), mnist)
    assert abs(result.metrics["mask_density"] - 0.6) < 0.01
    # two tasks' masks of density 0.6 share at least 0.2 of the weights: Jaccard >= 0.2 / 1.0
    assert 0.2 <= result.metrics["mask_overlap"] < 1.0


def test_best_validation_model_is_kept_on_iteration_based_runs(mnist, monkeypatch) -> None:
    from test_data import _scripted_validation

    cfg = small_config(tasks=1, iterations=10, eval_every=3, model_selection="best_val",
                       validation_size=50)
    stream = build_stream(cfg, mnist)
    calls = _scripted_validation(monkeypatch, stream, [50.0, 90.0, 70.0, 80.0])
    result = train_continual(cfg, stream=stream)
    assert [value for value, _ in calls] == [50.0, 90.0, 70.0, 80.0]  # after steps 3, 6, 9 and 10
    best = calls[1][1]
    assert all(torch.equal(value, best[key]) for key, value in result.method.state_dict().items())
    last = _run(small_config(tasks=1, iterations=10, eval_every=3, validation_size=50), mnist)
    assert not all(torch.equal(value, best[key]) for key, value in last.method.state_dict().items())


def test_best_validation_needs_a_validation_split() -> None:
    with pytest.raises(ConfigError, match="validation_size") as err:
        small_config(model_selection="best_val", validation_size=0)
    assert "\n" not in str(err.value)
    assert small_config(validation_size=0).model_selection == "last"
