"""The semi-binary mask: |tanh| of the hypernetwork output with a per-tensor percentile cut."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class ThresholdHint:
    """Where a tensor's threshold was last time: selection then looks in a narrow band around it.

    Only a guess: the order statistics are checked by counting, so results stay exact.
    """

    value: float | None = None
    width: float = 1e-2


def _order_statistics(array: np.ndarray, low: int, high: int, hint: ThresholdHint | None) -> tuple[float, float]:
    """Exact ``low``-th and ``high``-th smallest entries of ``array`` (0-based)."""
    if hint is not None and hint.value is not None:
        # The band is [lower, upper] with both edges in the array's own precision, so every entry
        # is either below it, in it or above it (no rounding can leave an edge entry out).
        lower = array.dtype.type(hint.value - hint.width)
        upper = array.dtype.type(hint.value + hint.width)
        below = int(np.count_nonzero(array < lower))
        band = array[(array >= lower) & (array <= upper)]
        if below <= low and high < below + band.size:
            part = np.partition(band, (low - below, high - below))
            result = float(part[low - below]), float(part[high - below])
            if band.size > array.size // 50:
                hint.width /= 2
            hint.value = result[0]
            return result
        hint.width *= 4
    part = np.partition(array, (low, high))
    result = float(part[low]), float(part[high])
    if hint is not None:
        hint.value = result[0]
    return result


def percentile_threshold(values: Tensor, percent: float, hint: ThresholdHint | None = None) -> Tensor:
    """``percent``-th percentile of ``values`` with linear interpolation (as ``torch.quantile``).

    Uses partial selection instead of a full sort: ``numpy.partition`` on CPU (within a band around
    ``hint`` when one is given), ``kthvalue`` elsewhere. Returns a detached 0-d tensor.
    """
    flat = values.detach().reshape(-1)
    n = flat.numel()
    position = (percent / 100.0) * (n - 1)
    low = int(position)
    high = min(low + 1, n - 1)
    frac = position - low
    if flat.device.type == "cpu":
        low_number, high_number = _order_statistics(flat.numpy(), low, high, hint)
        low_value, high_value = torch.tensor([low_number, high_number], dtype=flat.dtype)
        return torch.lerp(low_value, high_value, frac)
    low_value = torch.kthvalue(flat, low + 1).values
    high_value = torch.kthvalue(flat, high + 1).values if frac else low_value
    return low_value + frac * (high_value - low_value)


def semi_binary_mask(raw: Tensor, percent: float, hint: ThresholdHint | None = None) -> Tensor:
    """Mask of one tensor: ``|tanh(raw)|`` with entries below the ``percent``-th percentile zeroed.

    Kept entries keep their soft value; the threshold receives no gradient. ``percent == 0``
    skips the percentile entirely.
    """
    soft = torch.tanh(raw).abs()
    if percent <= 0.0:
        return soft
    threshold = percentile_threshold(soft, percent, hint)
    return soft * (soft >= threshold)


def ramped_sparsity(percent: float, task: int, iteration: int, iterations: int) -> float:
    """Sparsity used at ``iteration`` of ``task``: linear ramp from 0 to ``percent`` in task 0."""
    if task > 0 or iterations <= 0:
        return percent
    return percent * iteration / iterations


def layer_masks(raw_tensors: list[Tensor], percent: float,
                hints: list[ThresholdHint] | None = None) -> list[Tensor]:
    """Masks for every target tensor; the last tensor (output bias) gets its unthresholded |tanh|.

    The caller decides how the last entry is used: the output bias itself is never masked in the
    forward pass, only in the masked-L1 regulariser.
    """
    chosen: list[ThresholdHint | None] = list(hints) if hints else [None] * len(raw_tensors)
    masks = [semi_binary_mask(raw, percent, hint) for raw, hint in zip(raw_tensors[:-1], chosen)]
    masks.append(torch.tanh(raw_tensors[-1]).abs())
    return masks


def mask_overlap(task_masks: list[list[Tensor]]) -> float:
    """Mean pairwise Jaccard index of the tasks' non-zero mask entries (1: every task uses the same weights,
    0: disjoint weights); 1.0 for a single task."""
    supports = [torch.cat([m.reshape(-1) != 0 for m in masks]) for masks in task_masks]
    scores = []
    for i in range(len(supports)):
        for j in range(i + 1, len(supports)):
            union = int((supports[i] | supports[j]).sum())
            scores.append(int((supports[i] & supports[j]).sum()) / union if union else 1.0)
    return sum(scores) / len(scores) if scores else 1.0
