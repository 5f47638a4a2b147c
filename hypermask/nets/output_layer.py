"""The hypernetwork's output layer fused with the output regulariser and the optimiser update.

For hidden activations of the stacked embeddings ``[e_0 .. e_{k-1}, e_current]`` one call returns

* ``current = W h_current + b``: the current task's raw output, and
* ``distance = Σ_{j<k} ‖W h_j + b − T_j‖²``: the output regulariser's sum of squares,

computing all ``k + 1`` outputs with one product over ``W``. Backward walks ``W`` in row blocks: a
block's rows of the output gradient are assembled in cache from the regulariser's residuals and the
current output's gradient, the block's input-gradient contribution is taken from the block's
current values, and the block's weight gradient goes either into ``weight.grad`` or straight to an
optimiser binding (see :class:`hypermask.optim.InBackwardAdam`), which updates the block at once.
Neither the full output gradient nor, with a binding, the full weight gradient is ever written.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

DEFAULT_BLOCK_BYTES = 4 << 20
MAX_BLOCKS = 64  # larger weights get larger blocks: each block costs a few operator calls


class RowUpdater(Protocol):
    """What the layer needs from an optimiser binding."""

    def begin_step(self) -> None: ...

    def update_rows(self, start: int, grad_rows: Tensor) -> None: ...


def _block_rows(weight: Tensor, block_bytes: int) -> int:
    """Rows per backward block. On CPU about ``block_bytes`` of the weight (so that a block stays in
    cache between its products and its update), but no more than :data:`MAX_BLOCKS` blocks; on a GPU
    the whole weight (every block would cost kernel launches there)."""
    rows = weight.shape[0]
    if weight.device.type != "cpu":
        return rows
    by_size = block_bytes // (weight.shape[1] * weight.element_size())
    return max(1, min(rows, max(by_size, -(-rows // MAX_BLOCKS))))


class _OutputLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor, targets: Tensor | None,
                updater: RowUpdater | None, block_bytes: int) -> tuple[Tensor, Tensor]:
        earlier = 0 if targets is None else targets.shape[0]
        out = torch.mm(hidden, weight.t())  # (k + 1, N), bias not yet added
        current = out[earlier] + bias
        if earlier:
            assert targets is not None
            residual = torch.add(out[:earlier], bias).sub_(targets)
            distance = torch.dot(residual.view(-1), residual.view(-1))
        else:
            residual, distance = None, out.new_zeros(())
        ctx.save_for_backward(hidden, weight, residual)
        ctx.updater = updater
        ctx.earlier = earlier
        ctx.block_rows = _block_rows(weight, block_bytes)
        return current, distance

    @staticmethod
    def backward(ctx, grad_current: Tensor | None, grad_distance: Tensor | None):
        hidden, weight, residual = ctx.saved_tensors
        updater: RowUpdater | None = ctx.updater
        earlier = ctx.earlier
        rows, width = weight.shape
        if grad_current is None:
            grad_current = torch.zeros(rows, dtype=weight.dtype, device=weight.device)
        scale = 2.0 * grad_distance if (grad_distance is not None and earlier) else None
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.zeros_like(hidden) if need_hidden else None
        grad_bias = None
        if need_bias:
            grad_bias = grad_current.clone()
            if scale is not None:
                grad_bias.add_(residual.sum(0) * scale)
        block = ctx.block_rows
        stepper = updater if need_weight else None  # the weight's gradient goes to the optimiser, block by block
        grad_weight = torch.empty_like(weight) if need_weight and stepper is None else None
        grad_block = None
        if stepper is not None:
            grad_block = torch.empty(block, width, dtype=weight.dtype, device=weight.device)
            stepper.begin_step()
        grad_out = torch.zeros(earlier + 1, block, dtype=weight.dtype, device=weight.device)
        for start in range(0, rows, block):
            stop = min(rows, start + block)
            g = grad_out[:, : stop - start]  # this block's columns of the output gradient
            if scale is not None:
                torch.mul(residual[:, start:stop], scale, out=g[:earlier])
            g[earlier] = grad_current[start:stop]
            if grad_hidden is not None:
                grad_hidden.addmm_(g, weight[start:stop])
            if stepper is not None and grad_block is not None:
                stepper.update_rows(start, torch.mm(g.t(), hidden, out=grad_block[: stop - start]))
            elif grad_weight is not None:
                torch.mm(g.t(), hidden, out=grad_weight[start:stop])
        return grad_hidden, grad_weight, grad_bias, None, None, None


def output_and_distance(hidden: Tensor, weight: Tensor, bias: Tensor, targets: Tensor | None,
                        updater: RowUpdater | None = None,
                        block_bytes: int = DEFAULT_BLOCK_BYTES) -> tuple[Tensor, Tensor]:
    """The current task's raw output and the regulariser's sum of squares (see module docstring).

    ``hidden`` holds ``k + 1`` rows (earlier tasks, then the current one); ``targets`` is
    ``(k, N)``, the earlier tasks' recorded outputs, or ``None`` for ``k = 0``. With an
    ``updater`` the weight is updated during backward instead of receiving ``.grad``. Backward
    works on blocks of about ``block_bytes`` of the weight.
    """
    return _OutputLayer.apply(hidden, weight, bias, targets, updater, block_bytes)
