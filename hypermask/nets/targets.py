"""Target networks that hold no weights: every forward pass receives its tensors from outside.

The parameter shapes (``param_shapes``) are the contract with the hypernetwork. ``masked`` says
which tensors a HyperMask mask covers (all except batch-norm affine parameters); the output layer
comes last so that the output bias is always the final tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def default_init(shape: tuple[int, ...], fan_in: int, kind: str) -> Tensor:
    """PyTorch's default initialisation for a Linear/Conv weight or bias, or a BN scale/shift."""
    if kind == "bn_weight":
        return torch.ones(shape)
    if kind == "bn_bias":
        return torch.zeros(shape)
    tensor = torch.empty(shape)
    if kind == "weight":
        nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))
    else:
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(tensor, -bound, bound)
    return tensor


class TargetNetwork(nn.Module):
    """Base class: records tensor shapes, kinds and fan-ins; ``forward(x, weights)``."""

    def __init__(self) -> None:
        super().__init__()
        self.param_shapes: list[tuple[int, ...]] = []
        self.param_kinds: list[str] = []
        self._fan_ins: list[int] = []

    def _add(self, shape: tuple[int, ...], kind: str, fan_in: int = 0) -> None:
        self.param_shapes.append(tuple(shape))
        self.param_kinds.append(kind)
        self._fan_ins.append(fan_in)

    def _add_linear(self, n_in: int, n_out: int) -> None:
        self._add((n_out, n_in), "weight", n_in)
        self._add((n_out,), "bias", n_in)

    def _add_conv(self, c_in: int, c_out: int, k: int = 3) -> None:
        fan_in = c_in * k * k
        self._add((c_out, c_in, k, k), "weight", fan_in)
        self._add((c_out,), "bias", fan_in)

    def _add_bn(self, channels: int) -> None:
        self._add((channels,), "bn_weight")
        self._add((channels,), "bn_bias")

    @property
    def masked(self) -> list[bool]:
        """Which tensors HyperMask masks: everything except batch-norm parameters."""
        return [not kind.startswith("bn") for kind in self.param_kinds]

    def num_params(self, masked_only: bool = False) -> int:
        """Number of scalar parameters (optionally only the masked ones)."""
        return sum(math.prod(s) for s, m in zip(self.param_shapes, self.masked) if m or not masked_only)

    @property
    def feature_size(self) -> int:
        """Width of the penultimate features (the input of the output layer)."""
        return self.param_shapes[-2][1]

    def features(self, x: Tensor, weights: list[Tensor]) -> Tensor:  # pragma: no cover - abstract
        """Penultimate features of ``x`` (what the output layer reads), from every tensor but the last two."""
        raise NotImplementedError

    def forward(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        """Logits: the output layer (the last two tensors) over :meth:`features`."""
        return F.linear(self.features(x, weights), weights[-2], weights[-1])

    # Batch norm: by default each batch's own statistics. ``frozen_bn(stats)`` evaluates with fixed statistics
    # instead (per BN layer, from :meth:`bn_statistics`), so that an image's output does not depend on which
    # images share its batch.
    bn_stats: list[tuple[Tensor, Tensor]] | None = None

    def _bn(self, h: Tensor, weight: Tensor, bias: Tensor, layer: int) -> Tensor:
        if self.bn_stats is not None:
            mean, var = self.bn_stats[layer]
            return F.batch_norm(h, mean, var, weight, bias, training=False)
        if self._recording is not None:
            self._recording.append((h.mean((0, 2, 3)).detach(), h.var((0, 2, 3), unbiased=False).detach()))
        return _batch_norm(h, weight, bias)

    _recording: list[tuple[Tensor, Tensor]] | None = None

    @torch.no_grad()
    def bn_statistics(self, x: Tensor, weights: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Mean and variance of every BN layer's input over the batch ``x`` (empty without BN layers)."""
        if not any(kind.startswith("bn") for kind in self.param_kinds):
            return []
        self._recording = []
        try:
            self.features(x, weights)
            return self._recording
        finally:
            self._recording = None

    def frozen_bn(self, stats: list[tuple[Tensor, Tensor]] | None):
        """Context in which BN layers use ``stats`` (None or empty: the batch's own)."""
        return _FrozenBn(self, stats or None)

    def init_weights(self) -> list[Tensor]:
        """Fresh tensors with PyTorch's default initialisation."""
        return [default_init(s, f, k) for s, f, k in zip(self.param_shapes, self._fan_ins, self.param_kinds)]



class _FrozenBn:
    def __init__(self, net: TargetNetwork, stats: list[tuple[Tensor, Tensor]] | None) -> None:
        self.net, self.stats = net, stats
        self.before: list[tuple[Tensor, Tensor]] | None = None

    def __enter__(self) -> None:
        self.before, self.net.bn_stats = self.net.bn_stats, self.stats

    def __exit__(self, *exc: object) -> None:
        self.net.bn_stats = self.before


class MLP(TargetNetwork):
    """Fully connected ReLU network on flattened inputs."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int) -> None:
        super().__init__()
        sizes = [n_in, *hidden, n_out]
        for a, b in zip(sizes[:-1], sizes[1:]):
            self._add_linear(a, b)

    def features(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        h = x.flatten(1)
        for i in range(len(weights) // 2 - 1):
            h = F.relu(F.linear(h, weights[2 * i], weights[2 * i + 1]))
        return h


def _batch_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Batch norm with the current batch's statistics (training and test alike)."""
    return F.batch_norm(x, None, None, weight, bias, training=True)


class ResNet20(TargetNetwork):
    """ResNet-(6n+2) for 32x32 images with width factor k (n=3, k=2 by default; k=1 is the 16/32/64-channel
    ResNet-20 of He et al. that the FSCIL literature uses, target ``resnet20_k1``).

    Shortcuts subsample by striding and pad channels with zeros; BN follows every convolution and
    always uses the batch's statistics.
    """

    def __init__(self, n_out: int = 10, n: int = 3, k: int = 2, in_channels: int = 3) -> None:
        super().__init__()
        self.n = n
        self.widths = [16 * k, 32 * k, 64 * k]
        self._add_conv(in_channels, 16)
        self._add_bn(16)
        c_in = 16
        self.block_specs: list[tuple[int, int, int]] = []
        for stage, width in enumerate(self.widths):
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                self._add_conv(c_in, width)
                self._add_bn(width)
                self._add_conv(width, width)
                self._add_bn(width)
                self.block_specs.append((c_in, width, stride))
                c_in = width
        self._add_linear(c_in, n_out)

    def features(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        it = iter(weights)
        h = F.conv2d(x, next(it), next(it), padding=1)
        h = F.relu(self._bn(h, next(it), next(it), 0))
        for layer, (c_in, c_out, stride) in enumerate(self.block_specs):
            out = F.conv2d(h, next(it), next(it), stride=stride, padding=1)
            out = F.relu(self._bn(out, next(it), next(it), 2 * layer + 1))
            out = F.conv2d(out, next(it), next(it), padding=1)
            out = self._bn(out, next(it), next(it), 2 * layer + 2)
            shortcut = h[:, :, ::stride, ::stride] if stride > 1 else h
            if c_out > c_in:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, c_out - c_in))
            h = F.relu(out + shortcut)
        return F.adaptive_avg_pool2d(h, 1).flatten(1)


class ZenkeNet(TargetNetwork):
    """The four-convolution CIFAR network of Zenke et al. (dropout off)."""

    def __init__(self, n_out: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self._add_conv(in_channels, 32)
        self._add_conv(32, 32)
        self._add_conv(32, 64)
        self._add_conv(64, 64)
        self._add_linear(2304, 512)
        self._add_linear(512, n_out)

    def features(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        w = weights
        h = F.relu(F.conv2d(x, w[0], w[1], padding=1))
        h = F.relu(F.conv2d(h, w[2], w[3]))
        h = F.max_pool2d(h, 2)
        h = F.relu(F.conv2d(h, w[4], w[5], padding=1))
        h = F.relu(F.conv2d(h, w[6], w[7]))
        h = F.max_pool2d(h, 2).flatten(1)
        return F.relu(F.linear(h, w[8], w[9]))


def build_target(name: str, input_shape: tuple[int, ...], n_out: int, hidden: list[int]) -> TargetNetwork:
    """Target network by name for inputs of ``input_shape`` (without batch dimension)."""
    if name == "mlp":
        return MLP(math.prod(input_shape), hidden, n_out)
    if name == "resnet20":
        return ResNet20(n_out=n_out, in_channels=input_shape[0])
    if name == "resnet20_k1":  # the FSCIL literature's ResNet-20: 16/32/64 channels
        return ResNet20(n_out=n_out, k=1, in_channels=input_shape[0])
    if name == "zenkenet":
        return ZenkeNet(n_out=n_out, in_channels=input_shape[0])
    raise ValueError(f"unknown target network '{name}'")
