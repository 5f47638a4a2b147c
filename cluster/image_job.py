"""The Ray job of cluster/check-image.sh: on a cluster of a head and one worker offering the custom resource
``check_worker``, three HyperMask training steps must run on the worker and lower the loss."""

from __future__ import annotations

import time

import ray


def three_hypermask_steps() -> list[float]:
    """Losses of three training steps of the published Split MNIST HyperMask on one random batch."""
    import torch

    from hypermask.config import resolve_config
    from hypermask.methods import build_for_stream
    from hypermask.optim import make_optimizer
    from hypermask.train import training_step

    cfg = resolve_config("split_mnist", overrides={"device": "cpu", "threads": 1, "progress": False})
    torch.manual_seed(0)
    method = build_for_stream(cfg, (784,), 2, cfg.tasks)
    optimizer = make_optimizer(method.parameters(), cfg.lr, torch.device("cpu"))
    x, y = torch.randn(cfg.batch_size, 784), torch.randint(0, 2, (cfg.batch_size,))
    return [float(training_step(method, optimizer, 0, x, y, cfg.p)) for _ in range(3)]


@ray.remote(resources={"check_worker": 1})
def _on_the_worker() -> tuple[str, list[float]]:
    return ray.get_runtime_context().get_node_id(), three_hypermask_steps()


def main() -> None:
    ray.init()
    for _ in range(60):
        if sum(node["Alive"] for node in ray.nodes()) == 2:
            break
        time.sleep(2)
    assert sum(node["Alive"] for node in ray.nodes()) == 2, ray.nodes()
    node, losses = ray.get(_on_the_worker.remote())
    assert node != ray.get_runtime_context().get_node_id(), "the task ran on the head"
    assert losses[-1] < losses[0], losses
    print(f"3 HyperMask steps on worker node {node[:12]}, losses {losses}: cluster check passed")


if __name__ == "__main__":
    main()
