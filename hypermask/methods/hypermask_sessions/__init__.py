"""HyperMask with one mask per few-shot session (``fscil_mode=session_mask``, in the spirit of SoftNet/WSN):
the same method as ``hypermask`` with that mode as its default, so that a sweep over methods compares it."""

from __future__ import annotations

from hypermask.methods.hypermask import sizes
from hypermask.registry import MethodSpec, register_method

SESSION_MASK = {"fscil_mode": "session_mask"}

register_method(MethodSpec(
    name="hypermask_sessions", build="hypermask.methods.hypermask.method:HyperMask", sizes=sizes,
    benchmark_defaults={"split_mnist": SESSION_MASK, "split_cifar100": SESSION_MASK}))
