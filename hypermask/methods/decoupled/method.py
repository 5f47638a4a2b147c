"""Decoupled prototype classifier: fine-tuning on the base session, then a frozen backbone and class means."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hypermask.methods.finetune.method import Finetune
from hypermask.methods.prototypes import prototype_predictor

if TYPE_CHECKING:
    from hypermask.data import TaskStream


class Decoupled(Finetune):
    """The target network trained with cross-entropy on the first session only; afterwards frozen, and every
    seen class scored by cosine similarity to its prototype (class mean of penultimate features)."""

    name = "decoupled"

    def session_steps(self, task: int, steps: int) -> int:
        return steps if task == 0 else 0

    def class_predictor(self, stream: TaskStream, sessions: int, device: torch.device):
        return prototype_predictor(self, stream, [(list(self.theta), range(sessions))], device)
