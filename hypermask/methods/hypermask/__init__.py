"""HyperMask (Książek & Spurek, 2023): the hypernetwork emits a semi-binary mask over one shared set of
target weights; its own settings are the benchmark's published configuration."""

from __future__ import annotations

from typing import Any

from hypermask.registry import MethodSizes, MethodSpec, register_method


def sizes(cfg: Any, target: Any) -> MethodSizes:
    """The hypernetwork emits one number per masked target weight; the target weights are trained."""
    return MethodSizes(hypernetwork_output=target.num_params(masked_only=True), trained_target=target.num_params())


register_method(MethodSpec(name="hypermask", build="hypermask.methods.hypermask.method:HyperMask", sizes=sizes))
