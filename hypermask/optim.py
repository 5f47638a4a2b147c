"""The optimiser: Adam (fused kernel where available), and Adam applied inside the backward pass.

The hypernetwork's output layer holds almost all parameters (≈204M for Permuted MNIST). A plain
step writes its gradient to memory, then Adam reads it back together with the weight and both
moment buffers. :class:`InBackwardAdam` instead lets the layer's backward pass hand over its
weight gradient block by block while the block is still in cache: Adam updates that block of the
weight at once, with the optimiser's own state and hyperparameters, and the full gradient is never
written. The update is the one ``optimizer.step()`` would make.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

_FUSED_ADAM = getattr(torch, "_fused_adam_", None)  # the kernel behind Adam(fused=True)


def make_optimizer(params: Iterable[Tensor], lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam with default betas; the fused kernel where the build supports it."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=device.type == "cuda")


def _param_group(optimizer: torch.optim.Optimizer, param: Tensor) -> dict | None:
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return group
    return None


class InBackwardAdam:
    """Adam's update of one parameter, applied in row blocks from inside the backward pass.

    Bound to an existing ``torch.optim.Adam``: it uses (and creates, as Adam would) that optimiser's
    state for the parameter and reads lr, betas and eps from its param group at every step, so
    learning-rate schedulers and ``optimizer.state_dict()`` keep working. The parameter's ``.grad``
    stays ``None``, so ``optimizer.step()`` leaves it alone.

    Use :meth:`for_optimizer`, which returns ``None`` where the optimiser's settings are not plain
    fused Adam (then the ordinary step is used).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, param: Tensor, group: dict) -> None:
        self.optimizer = optimizer
        self.param = param
        self.group = group  # read at every step: schedulers change its lr in place
        self._state: dict | None = None

    @classmethod
    def for_optimizer(cls, optimizer: torch.optim.Optimizer, param: Tensor) -> "InBackwardAdam | None":
        """A binding for ``param`` when ``optimizer`` is fused Adam without extras, else ``None``.

        CPU only: there the saved memory traffic was measured to pay; on a GPU the ordinary
        gradient-then-fused-Adam step is kept.
        """
        group = _param_group(optimizer, param)
        plain_fused_adam = (
            _FUSED_ADAM is not None and isinstance(optimizer, torch.optim.Adam) and group is not None
            and group.get("fused") and not group.get("amsgrad") and not group.get("maximize")
            and not group.get("differentiable") and not group.get("capturable")
            and not group.get("decoupled_weight_decay") and group.get("weight_decay", 0) == 0
            and not isinstance(group["lr"], Tensor))
        if (group is None or not plain_fused_adam or param.device.type != "cpu" or not param.is_contiguous()
                or param.dim() != 2):
            return None
        return cls(optimizer, param, group)

    def begin_step(self) -> None:
        """Advance Adam's step counter once; every block of this step then uses it.

        A binding serves one optimisation step: a second gradient for the parameter within it (the
        layer used twice in one loss) would be applied as a second, partial step, so it is refused.
        """
        if self._state is not None:
            raise RuntimeError("the hypernetwork's output layer was used more than once in one "
                               "training step; its in-backward update takes one gradient per step")
        state = self.optimizer.state[self.param]
        if not state:  # as torch.optim.Adam initialises a fused parameter's state
            state["step"] = torch.zeros((), dtype=torch.float32, device=self.param.device)
            state["exp_avg"] = torch.zeros_like(self.param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(self.param, memory_format=torch.preserve_format)
        state["step"].add_(1)
        self._state = state

    @torch.no_grad()
    def update_rows(self, start: int, grad_rows: Tensor) -> None:
        """Apply Adam to rows ``start : start + len(grad_rows)`` of the parameter."""
        state, group = self._state, self.group
        assert state is not None, "update_rows before begin_step"
        assert _FUSED_ADAM is not None  # for_optimizer binds only where the kernel exists
        stop = start + grad_rows.shape[0]
        beta1, beta2 = group["betas"]
        _FUSED_ADAM([self.param[start:stop]], [grad_rows], [state["exp_avg"][start:stop]],
                    [state["exp_avg_sq"][start:stop]], [], [state["step"]], amsgrad=False,
                    lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2), weight_decay=0.0,
                    eps=float(group["eps"]), maximize=False, grad_scale=None, found_inf=None)


@contextmanager
def in_backward_adam(module: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[int]:
    """Within the block (one training step), every hypernetwork in ``module`` has its output weight
    updated by ``optimizer`` during backward (where the optimiser is plain fused Adam). Yields how
    many layers were bound; all bindings are removed on exit."""
    bound = []
    for sub in module.modules():
        if hasattr(sub, "output_updater"):
            updater = InBackwardAdam.for_optimizer(optimizer, getattr(sub, "output_weight"))
            setattr(sub, "output_updater", updater)
            if updater is not None:
                bound.append(sub)
    try:
        yield len(bound)
    finally:
        for sub in bound:
            setattr(sub, "output_updater", None)
