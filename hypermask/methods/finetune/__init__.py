"""Fine-tuning: the target network alone, trained task after task (the forgetting lower bound)."""

from __future__ import annotations

from typing import Any

from hypermask.registry import MethodSizes, MethodSpec, register_method


def sizes(cfg: Any, target: Any) -> MethodSizes:
    """No hypernetwork; one trained set of target weights."""
    return MethodSizes(trained_target=target.num_params())


register_method(MethodSpec(name="finetune", build="hypermask.methods.finetune.method:Finetune", sizes=sizes))
