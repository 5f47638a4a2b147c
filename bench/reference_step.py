"""A plain, unoptimised HyperMask training step that computes the same numbers as the library's.

It works on a library :class:`~hypermask.methods.HyperMask` object (same parameters) but uses only
its public pieces, and does everything the straightforward way: one hypernetwork call per earlier
task for the output regulariser plus one for the current task, ``torch.quantile`` thresholds for
every tensor (also at p = 0), a mask list built on its own from which the masked weights and the
L1 term are formed, and ``torch.optim.Adam(foreach=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hypermask.methods import HyperMask
from hypermask.nets import split_flat


@dataclass
class LossTerms:
    """The three parts of the HyperMask loss, already weighted."""

    cross_entropy: Tensor
    hnet_regulariser: Tensor
    theta_regulariser: Tensor

    @property
    def total(self) -> Tensor:
        return self.cross_entropy + self.hnet_regulariser + self.theta_regulariser


def task_output(method: HyperMask, task: int) -> Tensor:
    """Raw hypernetwork output of one task from its own call."""
    return method.hnet(method.embeddings[task: task + 1])[0]


def per_task_regulariser(method: HyperMask, task: int, targets: list[Tensor]) -> Tensor:
    """(1/t) Σ_{j<t} ‖H(e_j) − H*_j‖², one hypernetwork call per earlier task."""
    total = sum(((task_output(method, j) - targets[j]) ** 2).sum() for j in range(task))
    return total / task


def reference_masks(raw: Tensor, shapes: list[tuple[int, ...]], sparsity: float) -> list[Tensor]:
    """|tanh| masks with ``torch.quantile`` per tensor; the last (output bias) is unthresholded."""
    tensors = split_flat(raw, shapes)
    masks = []
    for raw_tensor in tensors[:-1]:
        soft = torch.tanh(raw_tensor).abs()
        threshold = torch.quantile(soft.detach().flatten(), sparsity / 100.0)
        masks.append(torch.where(soft >= threshold, soft, torch.zeros_like(soft)))
    masks.append(torch.tanh(tensors[-1]).abs())
    return masks


class ReferenceStep:
    """Reference training of one task: ``start_task`` once, then ``step`` per batch."""

    def __init__(self, method: HyperMask, lr: float) -> None:
        self.method = method
        self.optimizer = torch.optim.Adam(method.parameters(), lr=lr, foreach=True)
        self.targets: list[Tensor] = []
        self.snapshot: list[Tensor] = []

    def start_task(self, task: int) -> None:
        """Record H*_j of the earlier tasks (one call each) and θ*; reset the optimiser state."""
        with torch.no_grad():
            self.targets = [task_output(self.method, j).clone() for j in range(task)]
        self.snapshot = [p.detach().clone() for p in self.method.theta]
        self.optimizer.state.clear()

    def loss_terms(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> LossTerms:
        """CE on the masked target, β·L_hnet/max(1, t) and λ·L_θ, term by term."""
        method, cfg = self.method, self.method.cfg
        masks = reference_masks(task_output(method, task), method.masked_shapes, sparsity)
        weights = list(method.theta)
        for index, mask in zip(method.masked_index[:-1], masks[:-1]):
            weights[index] = method.theta[index] * mask
        cross_entropy = F.cross_entropy(method.target(x, weights), y)
        zero = torch.zeros((), device=x.device)
        hnet_term = zero
        if task > 0 and cfg.beta > 0:
            hnet_term = cfg.beta * per_task_regulariser(method, task, self.targets) / task
        theta_term = zero
        if task > 0 and cfg.lambda_ > 0:
            distance = zero
            for mask, index in zip(masks, method.masked_index):
                diff = method.theta[index] - self.snapshot[index]
                distance = distance + (diff * mask if cfg.masked_l1 else diff).abs().sum()
            theta_term = cfg.lambda_ * distance
        return LossTerms(cross_entropy, hnet_term, theta_term)

    def step(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> Tensor:
        """One optimisation step; gradients stay in ``.grad`` afterwards. Returns the loss."""
        loss = self.loss_terms(task, x, y, sparsity).total
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
