"""Fine-tuning: the target network alone, trained task after task (forgetting lower bound)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from hypermask.config import Config
from hypermask.methods.base import ContinualMethod, cross_entropy, load_tensors
from hypermask.nets import TargetNetwork


class Finetune(ContinualMethod):
    """One set of target weights shared by all tasks, no regulariser."""

    name = "finetune"

    def __init__(self, cfg: Config, target: TargetNetwork, num_tasks: int) -> None:
        super().__init__(cfg, target, num_tasks)
        self.theta = nn.ParameterList(nn.Parameter(t) for t in target.init_weights())

    def training_loss(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> tuple[Tensor, Tensor]:
        logits = self(x, list(self.theta))
        return cross_entropy(logits, y), logits

    def all_task_weights(self, num_tasks: int) -> list[list[Tensor]]:
        return [list(self.theta)] * num_tasks

    def artifacts(self) -> dict[str, Any]:
        return {"target": [p.detach().cpu() for p in self.theta]}

    def load_artifacts(self, pieces: dict[str, Any]) -> None:
        load_tensors(self.theta, pieces["target"])
