"""WSN, Winning SubNetworks (Kang et al., ICML 2022): per-weight scores choose each task's binary mask over one
set of target weights; the weights of earlier tasks' masks are frozen. Its own published settings."""

from __future__ import annotations

import math
from typing import Any

from hypermask.registry import MethodSizes, MethodSpec, register_method

# The WSN code, github.com/ihaeyong/WSN at f066982: Adam at lr 1e-3 (scripts/wsn/wsn_pmnist.sh:8-10,
# "--optim adam --lr 1e-3") and c = 0.5 of every layer kept (main_wsn_pmnist.py:326, "--sparsity 0.5", which
# main_wsn_pmnist.py:333 turns into the pruned share 1 - 0.5). Everything else (network, data, length, batch
# size) is the benchmark's, so that WSN runs beside HyperMask at the same budget.
WSN = dict(lr=1e-3, c=0.5)


def sizes(cfg: Any, target: Any) -> MethodSizes:
    """Trained: the scored weights and their scores, and the heads; kept per task: a binary mask over the
    scored weights and the task's head."""
    shapes, kinds = target.param_shapes, target.param_kinds
    scored = sum(math.prod(s) for s, k in zip(shapes[:-2], kinds[:-2]) if k == "weight")
    head = math.prod(shapes[-2])
    return MethodSizes(trained_target=2 * scored + head, stored_per_task=scored + head)


register_method(MethodSpec(
    name="wsn", build="hypermask.methods.wsn.method:Wsn", sizes=sizes,
    benchmark_defaults={name: WSN for name in ("permuted_mnist", "split_mnist", "split_cifar100")},
))
