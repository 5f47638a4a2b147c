"""Hypernetworks: task embedding -> one number per target parameter (full or chunked)."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hypermask.nets.output_layer import DEFAULT_BLOCK_BYTES, RowUpdater, output_and_distance

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"elu": F.elu, "relu": F.relu}


class _MLP(nn.Module):
    """Linear layers with ELU (or ``activation``) between them; default PyTorch initialisation."""

    def __init__(self, sizes: list[int], activation: str = "elu") -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation = ACTIVATIONS[activation]

    @property
    def last(self) -> nn.Linear:
        """The output layer."""
        layer = self.layers[-1]
        assert isinstance(layer, nn.Linear)
        return layer

    def hidden(self, x: Tensor) -> Tensor:
        """Activations entering the last layer."""
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.layers[-1](self.hidden(x))


class HyperNetwork(nn.Module):
    """H(e; Φ): an MLP from a task embedding to ``output_size`` numbers.

    ``forward`` takes a batch of embeddings ``(B, d_e)`` and returns ``(B, output_size)``, so the
    outputs for several tasks come from one call. Training uses :meth:`current_and_distance`,
    which also forms the output regulariser in the same pass.
    """

    def __init__(self, embedding_size: int, hidden: list[int], output_size: int, activation: str = "elu") -> None:
        super().__init__()
        self.output_size = output_size
        self.mlp = _MLP([embedding_size, *hidden, output_size], activation)
        # Set for one training step by hypermask.optim.in_backward_adam; None: plain ``.grad``.
        self.output_updater: RowUpdater | None = None
        self.block_bytes = DEFAULT_BLOCK_BYTES  # weight memory per backward block

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.mlp(embeddings)

    @property
    def output_weight(self) -> Tensor:
        """The last layer's weight (``output_size`` x last hidden size): nearly all parameters."""
        return self.mlp.last.weight

    def current_and_distance(self, embeddings: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        """Output of the last embedding and Σ_j ‖H(e_j) − T_j‖² over the earlier ones, in one pass.

        ``embeddings`` holds the ``k`` earlier embeddings then the current one; ``targets`` comes from
        the earlier ones' recorded outputs ``(k, output_size)`` (``None`` when ``k = 0``).
        """
        last = self.mlp.last
        return output_and_distance(self.mlp.hidden(embeddings), last.weight, last.bias, targets,
                                   self.output_updater, self.block_bytes)


class ChunkedHyperNetwork(nn.Module):
    """A small hypernetwork called once per chunk with a learned chunk embedding appended.

    The chunk outputs are concatenated and cut to ``output_size``.
    """

    def __init__(self, embedding_size: int, hidden: list[int], output_size: int,
                 chunk_size: int, chunk_embedding_size: int, activation: str = "elu") -> None:
        super().__init__()
        self.output_size = output_size
        self.chunk_size = chunk_size
        n_chunks = math.ceil(output_size / chunk_size)
        self.chunk_embeddings = nn.Parameter(torch.randn(n_chunks, chunk_embedding_size))
        self.mlp = _MLP([embedding_size + chunk_embedding_size, *hidden, chunk_size], activation)

    def forward(self, embeddings: Tensor) -> Tensor:
        batch = embeddings.shape[0]
        n_chunks = self.chunk_embeddings.shape[0]
        task_part = embeddings[:, None, :].expand(batch, n_chunks, embeddings.shape[1])
        chunk_part = self.chunk_embeddings[None].expand(batch, -1, -1)
        out = self.mlp(torch.cat([task_part, chunk_part], dim=2))
        return out.reshape(batch, n_chunks * self.chunk_size)[:, : self.output_size]

    def current_and_distance(self, embeddings: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        """Output of the last embedding and Σ_j ‖H(e_j) − T_j‖² over the earlier ones (one call)."""
        out = self(embeddings)
        if targets is None:
            return out[-1], out.new_zeros(())
        residual = out[:-1] - targets
        return out[-1], torch.dot(residual.reshape(-1), residual.reshape(-1))


@torch.no_grad()
def xavier_init(hnet: nn.Module) -> None:
    """HNET's authors' initialisation: every matrix of the hypernetwork (layer weights, chunk embeddings)
    Xavier-uniform, every bias zero (hypercl at e32567889f77, mnist/train_utils.py:255-260, which runs
    over all parameters of the classifier's hypernetwork)."""
    for param in hnet.parameters():
        if param.dim() == 1:
            nn.init.zeros_(param)
        else:
            nn.init.xavier_uniform_(param)


def build_hypernetwork(embedding_size: int, hidden: list[int], output_size: int,
                       chunk_size: int = 0, chunk_embedding_size: int = 32, activation: str = "elu",
                       init: str = "default") -> HyperNetwork | ChunkedHyperNetwork:
    """Full hypernetwork, or the chunked variant when ``chunk_size > 0``; ``init`` "default" keeps PyTorch's
    initialisation, "xavier" re-initialises it as :func:`xavier_init` does."""
    if chunk_size > 0:
        hnet: HyperNetwork | ChunkedHyperNetwork = ChunkedHyperNetwork(embedding_size, hidden, output_size, chunk_size,
                                              chunk_embedding_size, activation)
    else:
        hnet = HyperNetwork(embedding_size, hidden, output_size, activation)
    if init == "xavier":
        xavier_init(hnet)
    elif init != "default":
        raise ValueError(f"unknown hypernetwork initialisation '{init}'")
    return hnet


def split_flat(flat: Tensor, shapes: list[tuple[int, ...]]) -> list[Tensor]:
    """Cut a flat vector into tensors of the given shapes (views, no copies)."""
    sizes = [math.prod(s) for s in shapes]
    return [chunk.view(shape) for chunk, shape in zip(torch.split(flat, sizes), shapes)]
