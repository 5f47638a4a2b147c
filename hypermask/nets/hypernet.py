"""Hypernetworks: task embedding -> one number per target parameter (full or chunked)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _MLP(nn.Module):
    """Linear layers with ELU between them; default PyTorch initialisation."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.elu(x)
        return x


class HyperNetwork(nn.Module):
    """H(e; Φ): an MLP from a task embedding to ``output_size`` numbers.

    ``forward`` takes a batch of embeddings ``(B, d_e)`` and returns ``(B, output_size)``, so the
    outputs for several tasks come from one call.
    """

    def __init__(self, embedding_size: int, hidden: list[int], output_size: int) -> None:
        super().__init__()
        self.output_size = output_size
        self.mlp = _MLP([embedding_size, *hidden, output_size])

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.mlp(embeddings)


class ChunkedHyperNetwork(nn.Module):
    """A small hypernetwork called once per chunk with a learned chunk embedding appended.

    The chunk outputs are concatenated and cut to ``output_size``.
    """

    def __init__(self, embedding_size: int, hidden: list[int], output_size: int,
                 chunk_size: int, chunk_embedding_size: int) -> None:
        super().__init__()
        self.output_size = output_size
        self.chunk_size = chunk_size
        n_chunks = math.ceil(output_size / chunk_size)
        self.chunk_embeddings = nn.Parameter(torch.randn(n_chunks, chunk_embedding_size))
        self.mlp = _MLP([embedding_size + chunk_embedding_size, *hidden, chunk_size])

    def forward(self, embeddings: Tensor) -> Tensor:
        batch = embeddings.shape[0]
        n_chunks = self.chunk_embeddings.shape[0]
        task_part = embeddings[:, None, :].expand(batch, n_chunks, embeddings.shape[1])
        chunk_part = self.chunk_embeddings[None].expand(batch, -1, -1)
        out = self.mlp(torch.cat([task_part, chunk_part], dim=2))
        return out.reshape(batch, n_chunks * self.chunk_size)[:, : self.output_size]


def build_hypernetwork(embedding_size: int, hidden: list[int], output_size: int,
                       chunk_size: int = 0, chunk_embedding_size: int = 32) -> nn.Module:
    """Full hypernetwork, or the chunked variant when ``chunk_size > 0``."""
    if chunk_size > 0:
        return ChunkedHyperNetwork(embedding_size, hidden, output_size, chunk_size, chunk_embedding_size)
    return HyperNetwork(embedding_size, hidden, output_size)


def split_flat(flat: Tensor, shapes: list[tuple[int, ...]]) -> list[Tensor]:
    """Cut a flat vector into tensors of the given shapes (views, no copies)."""
    sizes = [math.prod(s) for s in shapes]
    return [chunk.view(shape) for chunk, shape in zip(torch.split(flat, sizes), shapes)]
