"""HNET baseline (von Oswald et al., 2020): the hypernetwork emits the target weights."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from hypermask.config import Config
from hypermask.methods.base import HypernetworkMethod, cross_entropy
from hypermask.nets import TargetNetwork, split_flat


def adam_delta(optimizer: torch.optim.Optimizer, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
    """The change Adam would make to ``params`` given ``grads``, without making it (detached).

    As the authors' look-ahead computes it: hypercl at e32567889f77, utils/optim_step.py:236-313
    (``adam_step``: moments advanced by the gradient, step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ), denominator √v + ε).
    """
    deltas = []
    for param, grad in zip(params, grads):
        group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
        state = optimizer.state.get(param, {})
        beta1, beta2 = group["betas"]
        step = int(state["step"]) + 1 if state else 1
        grad = grad.detach()
        exp_avg = state["exp_avg"] * beta1 + (1 - beta1) * grad if state else (1 - beta1) * grad
        exp_avg_sq = (state["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad if state
                      else (1 - beta2) * grad * grad)
        step_size = float(group["lr"]) * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
        deltas.append(-step_size * exp_avg / (exp_avg_sq.sqrt() + group["eps"]))
    return deltas


class Hnet(HypernetworkMethod):
    """W_t = H(e_t); loss CE + β·(1/t)·Σ_j ‖H(e_j) − H*_j‖² (no extra 1/t).

    With ``lookahead`` the regulariser is evaluated at Φ + ΔΦ, ΔΦ the (detached) step Adam would take on the
    task loss alone, as the authors do (hypercl at e32567889f77, mnist/train_splitMNIST.py:714-729:
    the task loss's backward, ``calc_delta_theta``, then ``calc_fix_target_reg(..., dTheta=dTheta)``).
    """

    name = "hnet"

    def __init__(self, cfg: Config, target: TargetNetwork, num_tasks: int) -> None:
        super().__init__(cfg, target, num_tasks, output_size=target.num_params())
        self._optimizer: torch.optim.Optimizer | None = None

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self._optimizer = optimizer

    def training_loss(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> tuple[Tensor, Tensor]:
        if self.cfg.lookahead and self._targets is not None and self._optimizer is not None:
            return self._lookahead_loss(task, x, y)
        raw, hnet_reg = self.hnet_outputs(task)
        logits = self(x, split_flat(raw, self.target.param_shapes))
        loss = cross_entropy(logits, y)
        if hnet_reg is not None:
            loss = loss + self.cfg.beta * hnet_reg
        return loss, logits

    def lookahead_regulariser(self, task: int, deltas: list[Tensor]) -> Tensor:
        """(1/t)·Σ_j ‖H(e_j; Φ + ΔΦ) − H*_j‖² over the earlier tasks (hypercl's ``calc_fix_target_reg``,
        utils/hnet_regularizer.py:254-300, with ``dTheta``)."""
        assert self._targets is not None
        names = [name for name, _ in self.hnet.named_parameters()]
        ahead = {name: param + delta for name, param, delta in zip(names, self.hnet.parameters(), deltas)}
        earlier = self.task_embeddings(task)[:task]
        outputs = torch.func.functional_call(self.hnet, ahead, (earlier,))
        residual = outputs - self._targets
        return torch.dot(residual.reshape(-1), residual.reshape(-1)) / task

    def _lookahead_loss(self, task: int, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """CE + β·regulariser at the look-ahead point. The task loss's gradient, needed first for ΔΦ, enters
        the returned loss as a linear term with that gradient (value 0), so one backward of the returned loss
        gives ∇CE(Φ) + β·∇R(Φ + ΔΦ), as the authors' two backward passes do."""
        assert self._optimizer is not None
        raw = self.hnet(self.embeddings[task: task + 1])[0]
        logits = self(x, split_flat(raw, self.target.param_shapes))
        loss = cross_entropy(logits, y)
        params = list(self.hnet.parameters())
        grads = torch.autograd.grad(loss, [*params, self.embeddings])
        regulariser = self.lookahead_regulariser(task, adam_delta(self._optimizer, params, list(grads[:-1])))
        linear = sum((p * g).sum() for p, g in zip([*params, self.embeddings], grads))
        assert isinstance(linear, Tensor)
        total = loss.detach() + (linear - linear.detach()) + self.cfg.beta * regulariser
        return total, logits.detach()

    def all_task_weights(self, num_tasks: int) -> list[list[Tensor]]:
        raw = self.hnet(self.embeddings[:num_tasks])
        return [split_flat(raw[t], self.target.param_shapes) for t in range(num_tasks)]
