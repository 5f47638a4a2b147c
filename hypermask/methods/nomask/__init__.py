"""No mask: the target network alone with HyperMask's weight regulariser (the mask's ablation)."""

from __future__ import annotations

from hypermask.methods.finetune import sizes
from hypermask.registry import MethodSpec, register_method

register_method(MethodSpec(name="nomask", build="hypermask.methods.nomask.method:NoMask", sizes=sizes))
