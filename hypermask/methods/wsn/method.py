"""WSN, Winning SubNetworks (Kang et al., ICML 2022): each task trains real-valued scores over one shared set
of target weights; its binary mask keeps the top ``c`` share of every layer's weights by |score|, and the
weights any earlier task's mask holds are frozen, so an earlier task's network never changes.

Sources, github.com/ihaeyong/WSN at f066982: networks/subnet.py (the mask and its straight-through
estimator), main_wsn_pmnist.py (the training step, the masks kept per task and their union), networks/mlp.py
and networks/resnet18.py (no biases, one unmasked head per task, batch norm without affine parameters).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from hypermask.config import Config
from hypermask.methods.base import ContinualMethod, cross_entropy, load_tensors
from hypermask.nets import TargetNetwork
from hypermask.nets.targets import default_init


def kept_count(numel: int, c: float) -> int:
    """Weights a mask keeps out of ``numel`` when the share ``c`` is kept (ties aside): WSN's percentile,
    networks/subnet.py:12-14, at the pruned share 1 - c (main_wsn_pmnist.py:333)."""
    return numel - round((1.0 - c) * (numel - 1))


def top_mask(scores: Tensor, c: float) -> Tensor:
    """The binary mask of the top ``c`` share of ``scores`` by magnitude (1 where kept, as float) with a
    straight-through gradient to the scores through |score| (networks/subnet.py:16-25, GetSubnetFaster on
    ``w_m.abs()``: the k-th smallest magnitude, k = 1 + round((1 - c)·(n − 1)), is the threshold; the
    backward pass hands the gradient on unchanged)."""
    magnitude = scores.abs()
    k = 1 + round((1.0 - c) * (magnitude.numel() - 1))
    threshold = magnitude.detach().flatten().kthvalue(k).values
    hard = (magnitude.detach() >= threshold).to(scores.dtype)
    return hard + (magnitude - magnitude.detach())


class Wsn(ContinualMethod):
    """f(x; θ ⊙ M_t) with M_t = top-c of |s| per layer and the head of task t.

    Scored: every weight tensor but the output layer's. Biases are absent (zero) and batch norm has no
    affine parameters (fixed ones and zeros), as in WSN's networks (networks/mlp.py:19-30 ``bias=False``,
    networks/resnet18.py:137-152 ``affine=False``); batch norm uses each batch's statistics, so no statistic
    of an earlier task drifts. The output layer is one unmasked head per task without a bias
    (networks/mlp.py:27-30). After a task its mask is kept; the training of later tasks zeroes the gradient
    of every weight the union of the kept masks holds (main_wsn_pmnist.py:54-75, 210-226). The scores are
    one set shared by all tasks and stay trainable (WSN's ``w_m``).
    """

    name = "wsn"
    tasks_done: Tensor  # buffers (typed for the type checker)

    def __init__(self, cfg: Config, target: TargetNetwork, num_tasks: int) -> None:
        super().__init__(cfg, target, num_tasks)
        shapes, kinds = target.param_shapes, target.param_kinds
        self.scored_index = [i for i, kind in enumerate(kinds[:-2]) if kind == "weight"]
        initial = target.init_weights()
        self.theta = nn.ParameterList(nn.Parameter(initial[i]) for i in self.scored_index)
        scores = []
        for i in self.scored_index:  # networks/subnet.py:141, scores initialised like a layer's weight
            tensor = torch.empty(shapes[i])
            nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))
            scores.append(nn.Parameter(tensor))
        self.scores = nn.ParameterList(scores)
        head_shape = shapes[-2]
        self.heads = nn.ParameterList(nn.Parameter(default_init(head_shape, head_shape[1], "weight"))
                                      for _ in range(num_tasks))
        # every task's binary mask per scored tensor, and how many tasks have kept theirs (state: resumed)
        for k, i in enumerate(self.scored_index):
            self.register_buffer(f"masks_{k}", torch.zeros(num_tasks, *shapes[i], dtype=torch.bool))
        self.register_buffer("tasks_done", torch.zeros((), dtype=torch.long))
        # the fixed tensors: zero biases, batch norm's ones and zeros (not state)
        self._fixed: dict[int, str] = {}
        for i, kind in enumerate(kinds):
            if i in self.scored_index or i == len(kinds) - 2:
                continue
            name = f"fixed_{i}"
            value = torch.ones(shapes[i]) if kind == "bn_weight" else torch.zeros(shapes[i])
            self.register_buffer(name, value, persistent=False)
            self._fixed[i] = name
        self._frozen: list[Tensor] | None = None

    def mask_store(self, k: int) -> Tensor:
        """Every task's mask of scored tensor ``k`` (bool, tasks first)."""
        store = getattr(self, f"masks_{k}")
        assert isinstance(store, Tensor)
        return store

    def _fixed_tensor(self, index: int) -> Tensor:
        fixed = getattr(self, self._fixed[index])
        assert isinstance(fixed, Tensor)
        return fixed

    def kept_masks(self, task: int) -> list[Tensor]:
        """The binary masks ``task`` kept (bool), one per scored tensor."""
        return [self.mask_store(k)[task] for k in range(len(self.scored_index))]

    def current_masks(self) -> list[Tensor]:
        """The masks the scores choose now (float, straight-through to the scores)."""
        return [top_mask(s, self.cfg.c) for s in self.scores]

    def start_task(self, task: int) -> None:
        """The union of the earlier tasks' masks: the weights this task may not change."""
        if task == 0:
            self._frozen = None
            return
        self._frozen = [self.mask_store(k)[:task].any(dim=0) for k in range(len(self.scored_index))]

    def end_task(self, task: int) -> None:
        """Keep the task's mask (main_wsn_pmnist.py:210, ``per_task_masks[task_id] = model.get_masks``)."""
        with torch.no_grad():
            for k, mask in enumerate(self.current_masks()):
                self.mask_store(k)[task] = mask > 0
            self.tasks_done.fill_(task + 1)
        self._frozen = None

    def _weights(self, masks: list[Tensor], head: Tensor, frozen: list[Tensor] | None = None) -> list[Tensor]:
        """The target's tensors: θ ⊙ M for the scored ones (frozen entries detached), the fixed ones, the head."""
        weights: list[Tensor] = []
        scored = dict(zip(self.scored_index, range(len(self.scored_index))))
        count = len(self.target.param_shapes)
        for i in range(count):
            if i in scored:
                k = scored[i]
                theta = self.theta[k]
                if frozen is not None:
                    theta = torch.where(frozen[k], theta.detach(), theta)
                weights.append(theta * masks[k])
            elif i == count - 2:
                weights.append(head)
            else:
                weights.append(self._fixed_tensor(i))
        return weights

    def training_loss(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> tuple[Tensor, Tensor]:
        logits = self(x, self._weights(self.current_masks(), self.heads[task], self._frozen))
        return cross_entropy(logits, y), logits

    def all_task_weights(self, num_tasks: int) -> list[list[Tensor]]:
        """Each task's kept mask; a task not yet finished (the one in training) uses the scores' mask now."""
        done = int(self.tasks_done)
        current = None
        result = []
        for t in range(num_tasks):
            if t < done:
                masks = [m.to(self.theta[0].dtype) for m in self.kept_masks(t)]
            else:
                if current is None:
                    current = [m.detach() for m in self.current_masks()]
                masks = current
            result.append(self._weights(masks, self.heads[t]))
        return result

    @torch.no_grad()
    def summary_metrics(self, num_tasks: int) -> dict[str, float]:
        """The mean share of scored weights a task's mask keeps, and the share the union of all masks holds."""
        done = min(num_tasks, int(self.tasks_done))
        if done == 0:
            return {}
        total = sum(self.mask_store(k)[0].numel() for k in range(len(self.scored_index)))
        kept = [sum(int(m.count_nonzero()) for m in self.kept_masks(t)) / total for t in range(done)]
        union = sum(int(self.mask_store(k)[:done].any(dim=0).count_nonzero())
                    for k in range(len(self.scored_index)))
        return {"mask_density": sum(kept) / done, "capacity_used": union / total}

    def artifacts(self) -> dict[str, Any]:
        return {"target": [p.detach().cpu() for p in self.theta],
                "scores": [p.detach().cpu() for p in self.scores],
                "masks": [self.mask_store(k).cpu() for k in range(len(self.scored_index))],
                "heads": [p.detach().cpu() for p in self.heads]}

    @torch.no_grad()
    def load_artifacts(self, pieces: dict[str, Any]) -> None:
        load_tensors(self.theta, pieces["target"])
        load_tensors(self.scores, pieces["scores"])
        load_tensors(self.heads, pieces["heads"])
        masks = pieces["masks"]
        if not isinstance(masks, list) or len(masks) != len(self.scored_index):
            raise ValueError("saved masks do not match the target network's scored tensors")
        for k, mask in enumerate(masks):
            buffer = self.mask_store(k)
            if mask.shape != buffer.shape:
                raise ValueError("saved masks do not match the target network's shapes")
            buffer.copy_(mask)
        self.tasks_done.fill_(self.num_tasks)
