"""HyperMask: the hypernetwork emits a semi-binary mask over one shared set of target weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hypermask.config import Config
from hypermask.masks import ThresholdHint, layer_masks, mask_overlap
from hypermask.methods.base import HypernetworkMethod, cross_entropy, l1_from_snapshot, load_tensors, weight_snapshot
from hypermask.nets import TargetNetwork, split_flat


class HyperMask(HypernetworkMethod):
    """f(x; θ ⊙ m_t) with m_t = semi-binary mask of H(e_t).

    Loss: CE + β·L_hnet/max(1, t) + λ·L_θ, where L_θ is the (optionally masked) L1 distance of θ
    from its snapshot at the start of the task.
    """

    name = "hypermask"

    def __init__(self, cfg: Config, target: TargetNetwork, num_tasks: int) -> None:
        theta = [nn.Parameter(t) for t in target.init_weights()]
        super().__init__(cfg, target, num_tasks, output_size=target.num_params(masked_only=True))
        self.theta = nn.ParameterList(theta)
        self.masked_index = [i for i, m in enumerate(target.masked) if m]
        self.masked_shapes = [target.param_shapes[i] for i in self.masked_index]
        self._theta_snapshot: list[Tensor] | None = None
        self._hints = [ThresholdHint() for _ in self.masked_index]

    def start_task(self, task: int) -> None:
        super().start_task(task)
        self._theta_snapshot = weight_snapshot(list(self.theta), task, self.cfg.lambda_)

    def masked_weights(self, raw: Tensor, sparsity: float,
                       hints: list[ThresholdHint] | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Effective target weights θ ⊙ M and the masks (last mask: the output bias's |tanh|).

        ``hints`` (the training step's previous thresholds) only speed up the percentile.
        """
        masks = layer_masks(split_flat(raw, self.masked_shapes), sparsity, hints)
        weights = list(self.theta)
        for index, mask in zip(self.masked_index[:-1], masks[:-1]):
            weights[index] = weights[index] * mask
        return weights, masks

    def weight_regulariser(self, masks: list[Tensor]) -> Tensor:
        """L1 distance of the masked target tensors from their snapshot (summed)."""
        assert self._theta_snapshot is not None
        return l1_from_snapshot(list(self.theta), self._theta_snapshot, self.masked_index,
                                masks if self.cfg.masked_l1 else None)

    def training_loss(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> tuple[Tensor, Tensor]:
        raw, hnet_reg = self.hnet_outputs(task)
        weights, masks = self.masked_weights(raw, sparsity, self._hints)
        logits = self(x, weights)
        loss = cross_entropy(logits, y)
        if hnet_reg is not None:
            loss = loss + self.cfg.beta * hnet_reg / max(1, task)
        if self._theta_snapshot is not None:
            loss = loss + self.cfg.lambda_ * self.weight_regulariser(masks)
        return loss, logits

    def all_task_weights(self, num_tasks: int) -> list[list[Tensor]]:
        raw = self.hnet(self.embeddings[:num_tasks])
        return [self.masked_weights(raw[t], self.cfg.p)[0] for t in range(num_tasks)]

    @torch.no_grad()
    def summary_metrics(self, num_tasks: int) -> dict[str, float]:
        """The hypernetwork's size, the mean share of non-zero mask entries over the tasks, and the tasks'
        mean pairwise Jaccard overlap of their non-zero entries (output bias excluded)."""
        raw = self.hnet(self.embeddings[:num_tasks])
        task_masks = [self.masked_weights(raw[t], self.cfg.p)[1][:-1] for t in range(num_tasks)]
        densities = [sum(int(m.count_nonzero()) for m in masks) / sum(m.numel() for m in masks)
                     for masks in task_masks]
        return {**super().summary_metrics(num_tasks), "mask_density": sum(densities) / len(densities),
                "mask_overlap": mask_overlap(task_masks)}

    def artifacts(self) -> dict[str, Any]:
        pieces = super().artifacts()
        pieces["target"] = [p.detach().cpu() for p in self.theta]
        return pieces

    def load_artifacts(self, pieces: dict[str, Any]) -> None:
        super().load_artifacts(pieces)
        load_tensors(self.theta, pieces["target"])
