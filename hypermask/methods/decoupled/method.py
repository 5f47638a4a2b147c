"""Decoupled prototype classifier: fine-tuning on the base session, then a frozen backbone and class means."""

from __future__ import annotations

import torch

from hypermask.methods.finetune.method import Finetune
from hypermask.methods.prototypes import prototype_predictor


class Decoupled(Finetune):
    """The target network trained with cross-entropy on the first session only; afterwards frozen, and every
    seen class scored by cosine similarity to its prototype (class mean of penultimate features)."""

    name = "decoupled"

    def session_steps(self, task: int, steps: int) -> int:
        return steps if task == 0 else 0

    def class_predictor(self, stream, sessions: int, device: torch.device):
        return prototype_predictor(self, stream, [(list(self.theta), range(sessions))], device)
