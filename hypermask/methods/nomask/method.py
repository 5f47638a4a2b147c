"""No mask: the target network alone, trained task after task with HyperMask's weight regulariser."""

from __future__ import annotations

from torch import Tensor

from hypermask.config import Config
from hypermask.methods.base import l1_from_snapshot, weight_snapshot
from hypermask.methods.finetune.method import Finetune
from hypermask.nets import TargetNetwork


class NoMask(Finetune):
    """Fine-tuning plus λ·Σ_l ‖θ_l − θ*_l‖₁ from the start of each task (θ*: the weights then), over the
    tensors a mask would cover; no hypernetwork, hence no β term (the ablation of HyperMask's mask)."""

    name = "nomask"

    def __init__(self, cfg: Config, target: TargetNetwork, num_tasks: int) -> None:
        super().__init__(cfg, target, num_tasks)
        self.regularised = [i for i, m in enumerate(target.masked) if m]
        self._theta_snapshot: list[Tensor] | None = None

    def start_task(self, task: int) -> None:
        self._theta_snapshot = weight_snapshot(list(self.theta), task, self.cfg.lambda_)

    def training_loss(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> tuple[Tensor, Tensor]:
        loss, logits = super().training_loss(task, x, y, sparsity)
        if self._theta_snapshot is not None:
            loss = loss + self.cfg.lambda_ * l1_from_snapshot(list(self.theta), self._theta_snapshot,
                                                              self.regularised)
        return loss, logits
