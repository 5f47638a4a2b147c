"""The semi-binary mask: |tanh| of the hypernetwork output with a per-tensor percentile cut."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def percentile_threshold(values: Tensor, percent: float) -> Tensor:
    """``percent``-th percentile of ``values`` with linear interpolation (as ``torch.quantile``).

    Uses partial selection (``numpy.partition`` on CPU, ``kthvalue`` elsewhere) instead of a full
    sort. Works on the flattened tensor and returns a detached 0-d tensor.
    """
    flat = values.detach().reshape(-1)
    n = flat.numel()
    position = (percent / 100.0) * (n - 1)
    low = int(position)
    high = min(low + 1, n - 1)
    frac = position - low
    if flat.device.type == "cpu":
        selected = np.partition(flat.numpy(), (low, high))
        low_value, high_value = torch.from_numpy(selected[[low, high]])
    else:
        low_value = torch.kthvalue(flat, low + 1).values
        high_value = torch.kthvalue(flat, high + 1).values if frac else low_value
    return low_value + frac * (high_value - low_value)


def semi_binary_mask(raw: Tensor, percent: float) -> Tensor:
    """Mask of one tensor: ``|tanh(raw)|`` with entries below the ``percent``-th percentile zeroed.

    Kept entries keep their soft value; the threshold receives no gradient. ``percent == 0``
    skips the percentile entirely.
    """
    soft = torch.tanh(raw).abs()
    if percent <= 0.0:
        return soft
    threshold = percentile_threshold(soft, percent)
    return soft * (soft >= threshold)


def ramped_sparsity(percent: float, task: int, iteration: int, iterations: int) -> float:
    """Sparsity used at ``iteration`` of ``task``: linear ramp from 0 to ``percent`` in task 0."""
    if task > 0 or iterations <= 0:
        return percent
    return percent * iteration / iterations


def layer_masks(raw_tensors: list[Tensor], percent: float) -> list[Tensor]:
    """Masks for every target tensor; the last tensor (output bias) gets its unthresholded |tanh|.

    The caller decides how the last entry is used: the output bias itself is never masked in the
    forward pass, only in the masked-L1 regulariser.
    """
    masks = [semi_binary_mask(raw, percent) for raw in raw_tensors[:-1]]
    masks.append(torch.tanh(raw_tensors[-1]).abs())
    return masks
