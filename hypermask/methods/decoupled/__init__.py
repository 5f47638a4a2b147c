"""Decoupled prototype classifier (the decoupled baseline of CEC, Zhang et al., CVPR 2021): the target network
trained on the base session alone with cross-entropy, then frozen; every class is scored by cosine similarity
to the mean of its training images' penultimate features (base classes: all base training images; novel
classes: their shots). No hypernetwork, no mask. Meant for few-shot class-incremental benchmarks; on a
task-incremental one it is fine-tuning."""

from __future__ import annotations

from hypermask.methods.finetune import sizes
from hypermask.registry import MethodSpec, register_method

register_method(MethodSpec(name="decoupled", build="hypermask.methods.decoupled.method:Decoupled", sizes=sizes))
