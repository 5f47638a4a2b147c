"""HNET baseline (von Oswald et al., 2020): the hypernetwork emits the target weights."""

from __future__ import annotations

from torch import Tensor

from hypermask.config import Config
from hypermask.methods.base import HypernetworkMethod, cross_entropy
from hypermask.nets import TargetNetwork, split_flat


class Hnet(HypernetworkMethod):
    """W_t = H(e_t); loss CE + β·(1/t)·Σ_j ‖H(e_j) − H*_j‖² (no extra 1/t)."""

    name = "hnet"

    def __init__(self, cfg: Config, target: TargetNetwork, num_tasks: int) -> None:
        super().__init__(cfg, target, num_tasks, output_size=target.num_params())

    def training_loss(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> tuple[Tensor, Tensor]:
        raw, hnet_reg = self.hnet_outputs(task)
        logits = self(x, split_flat(raw, self.target.param_shapes))
        loss = cross_entropy(logits, y)
        if hnet_reg is not None:
            loss = loss + self.cfg.beta * hnet_reg
        return loss, logits

    def all_task_weights(self, num_tasks: int) -> list[list[Tensor]]:
        raw = self.hnet(self.embeddings[:num_tasks])
        return [split_flat(raw[t], self.target.param_shapes) for t in range(num_tasks)]
