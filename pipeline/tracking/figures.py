"""The figure logged with every trial's MLflow run: its accuracy matrix as a heatmap (a bare matplotlib
Figure, no pyplot state). The report shows the same figure."""

from __future__ import annotations

import math
from typing import Sequence

from matplotlib.figure import Figure


def accuracy_heatmap(matrix: Sequence[Sequence[float]], title: str) -> Figure:
    """Accuracy matrix R: row i = accuracies of tasks 0..i after training task i."""
    n = len(matrix)
    grid = [[row[j] if j < len(row) else math.nan for j in range(n)] for row in matrix]
    fig = Figure(figsize=(max(4.0, 1.6 + 0.6 * n), max(3.0, 1.2 + 0.5 * n)), layout="constrained")
    ax = fig.subplots()
    low = min(min(r) for r in matrix)
    image = ax.imshow(grid, cmap="viridis", vmin=low, vmax=100)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            bright = value > (low + 100) / 2
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7,
                    color="black" if bright else "white")
    ax.set_xticks(range(n), [str(j + 1) for j in range(n)])
    ax.set_yticks(range(n), [str(i + 1) for i in range(n)])
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after training task")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    return fig
