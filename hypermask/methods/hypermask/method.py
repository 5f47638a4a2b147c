"""HyperMask: the hypernetwork emits a semi-binary mask over one shared set of target weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import Tensor, nn

from hypermask.config import Config
from hypermask.masks import ThresholdHint, layer_masks, mask_overlap
from hypermask.methods.base import (
    HypernetworkMethod,
    bn_sample,
    cross_entropy,
    l1_from_snapshot,
    load_tensors,
    weight_snapshot,
)
from hypermask.methods.prototypes import TEMPERATURE, cosine, prototype_predictor, session_prototypes
from hypermask.nets import TargetNetwork, split_flat

if TYPE_CHECKING:
    from hypermask.data import TaskStream


class HyperMask(HypernetworkMethod):
    """f(x; θ ⊙ m_t) with m_t = semi-binary mask of H(e_t).

    Loss: CE + β·L_hnet/max(1, t) + λ·L_θ, where L_θ is the (optionally masked) L1 distance of θ
    from its snapshot at the start of the task.
    """

    name = "hypermask"

    def __init__(self, cfg: Config, target: TargetNetwork, num_tasks: int) -> None:
        theta = [nn.Parameter(t) for t in target.init_weights()]
        super().__init__(cfg, target, num_tasks, output_size=target.num_params(masked_only=True))
        self.theta = nn.ParameterList(theta)
        self.masked_index = [i for i, m in enumerate(target.masked) if m]
        self.masked_shapes = [target.param_shapes[i] for i in self.masked_index]
        self._theta_snapshot: list[Tensor] | None = None
        self._hints = [ThresholdHint() for _ in self.masked_index]
        self._session: SessionMask | None = None  # a session of fscil_mode=session_mask being trained

    def start_task(self, task: int) -> None:
        super().start_task(task)
        self._theta_snapshot = weight_snapshot(list(self.theta), task, self.cfg.lambda_)

    # ------------------------------------------------------------ few-shot class-incremental streams
    # fscil_mode (see README, "Few-shot class-incremental protocols"): ``prototype`` trains the base session
    # only and scores every class by cosine similarity to its prototype under the base mask; ``session_mask``
    # gives every later session its own embedding (mask), learnt from the shots with a prototype loss while
    # target weights change only outside the earlier sessions' masks, and scores each class under the mask of
    # the session that brought it; ``classifier`` trains every session with cross-entropy over the classes
    # seen so far and picks the session by lowest entropy (the paper's rule).
    def session_steps(self, task: int, steps: int) -> int:
        if task == 0 or self.cfg.fscil_mode == "classifier":
            return steps
        return 0 if self.cfg.fscil_mode == "prototype" else self.cfg.session_steps

    def start_session(self, stream: TaskStream, task: int, device: torch.device) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self.hnet.requires_grad_(True)
        if task > 0 and self.cfg.fscil_mode == "session_mask":
            self._session = SessionMask(self, stream, task, device)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return self._session.parameters() if self._session is not None else super().trainable_parameters()

    def class_predictor(self, stream: TaskStream, sessions: int, device: torch.device):
        if self.cfg.fscil_mode == "classifier":
            return super().class_predictor(stream, sessions, device)
        if self.cfg.fscil_mode == "prototype":
            return prototype_predictor(self, stream, [(self.task_weights(0), range(sessions))], device)
        weights = self.all_task_weights(sessions)
        return prototype_predictor(self, stream, [(weights[k], [k]) for k in range(sessions)], device)

    def masked_weights(self, raw: Tensor, sparsity: float,
                       hints: list[ThresholdHint] | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Effective target weights θ ⊙ M and the masks (last mask: the output bias's |tanh|).

        ``hints`` (the training step's previous thresholds) only speed up the percentile.
        """
        masks = layer_masks(split_flat(raw, self.masked_shapes), sparsity, hints)
        weights = list(self.theta)
        for index, mask in zip(self.masked_index[:-1], masks[:-1]):
            weights[index] = weights[index] * mask
        return weights, masks

    def weight_regulariser(self, masks: list[Tensor]) -> Tensor:
        """L1 distance of the masked target tensors from their snapshot (summed)."""
        assert self._theta_snapshot is not None
        return l1_from_snapshot(list(self.theta), self._theta_snapshot, self.masked_index,
                                masks if self.cfg.masked_l1 else None)

    def training_loss(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> tuple[Tensor, Tensor]:
        if self._session is not None:
            return self._session.loss(task, x, y, sparsity)
        raw, hnet_reg = self.hnet_outputs(task)
        weights, masks = self.masked_weights(raw, sparsity, self._hints)
        logits = self(x, weights)
        loss = cross_entropy(logits, y)
        if hnet_reg is not None:
            loss = loss + self.cfg.beta * hnet_reg / max(1, task)
        if self._theta_snapshot is not None:
            loss = loss + self.cfg.lambda_ * self.weight_regulariser(masks)
        return loss, logits

    def all_task_weights(self, num_tasks: int) -> list[list[Tensor]]:
        raw = self.hnet(self.embeddings[:num_tasks])
        return [self.masked_weights(raw[t], self.cfg.p)[0] for t in range(num_tasks)]

    @torch.no_grad()
    def summary_metrics(self, num_tasks: int) -> dict[str, float]:
        """The hypernetwork's size, the mean share of non-zero mask entries over the tasks, and the tasks'
        mean pairwise Jaccard overlap of their non-zero entries (output bias excluded)."""
        raw = self.hnet(self.embeddings[:num_tasks])
        task_masks = [self.masked_weights(raw[t], self.cfg.p)[1][:-1] for t in range(num_tasks)]
        densities = [sum(int(m.count_nonzero()) for m in masks) / sum(m.numel() for m in masks)
                     for masks in task_masks]
        return {**super().summary_metrics(num_tasks), "mask_density": sum(densities) / len(densities),
                "mask_overlap": mask_overlap(task_masks)}

    def artifacts(self) -> dict[str, Any]:
        pieces = super().artifacts()
        pieces["target"] = [p.detach().cpu() for p in self.theta]
        return pieces

    def load_artifacts(self, pieces: dict[str, Any]) -> None:
        super().load_artifacts(pieces)
        load_tensors(self.theta, pieces["target"])


class SessionMask:
    """One session of ``fscil_mode=session_mask``: its embedding starts as the base session's and is learnt
    from the shots (the hypernetwork is frozen, so earlier sessions' masks stay as they were), the target
    weights change only where every earlier session's mask is zero (gradients elsewhere are cut), batch norm
    uses base-session statistics under the current weights. Loss: cross-entropy of cosine similarities
    (scaled by :data:`TEMPERATURE`) of the shots' features to the prototypes of the base classes (base mask,
    base training images, fixed) and of the session's classes (current mask, the shots themselves)."""

    def __init__(self, method: HyperMask, stream: TaskStream, task: int, device: torch.device) -> None:
        self.method, self.stream, self.task = method, stream, task
        cfg = method.cfg
        with torch.no_grad():
            method.embeddings[task].copy_(method.embeddings[0])
            raw = method.hnet(method.embeddings[:task])
            earlier = [method.masked_weights(raw[k], cfg.p)[1] for k in range(task)]
        method.hnet.requires_grad_(False)
        self.calibration = bn_sample(stream, device)
        base_weights = method.task_weights(0)
        stats = method.target.bn_statistics(self.calibration, base_weights)
        self.base_prototypes = session_prototypes(method.target, base_weights, stream, [0], stats, device)
        self.first = stream.seen_classes[task - 1]
        self.hooks = []
        used = {index: torch.zeros_like(method.theta[index], dtype=torch.bool) for index in method.masked_index}
        for masks in earlier:
            for index, mask in zip(method.masked_index[:-1], masks[:-1]):
                used[index] |= mask != 0
        for index, param in enumerate(method.theta):
            if index in used and index != method.masked_index[-1]:
                free = (~used[index]).to(param.dtype)
                self.hooks.append(param.register_hook(lambda grad, free=free: grad * free))
            else:  # batch norm, the output bias: shared with the base session, frozen
                self.hooks.append(param.register_hook(torch.zeros_like))

    def parameters(self):
        return [self.method.embeddings, *self.method.theta]

    def loss(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> tuple[Tensor, Tensor]:
        method = self.method
        raw = method.hnet(method.embeddings[task: task + 1])[0]
        weights, _ = method.masked_weights(raw, method.cfg.p)
        stats = method.target.bn_statistics(self.calibration, [w.detach() for w in weights])
        with method.target.frozen_bn(stats):
            feats = method.target.features(x, weights)
        classes = range(self.first, self.stream.seen_classes[task])
        labels = y.to(feats.device)
        novel = torch.stack([feats[labels == c].mean(0) for c in classes]).detach()
        logits = TEMPERATURE * cosine(feats, torch.cat([self.base_prototypes, novel]))
        return cross_entropy(logits, len(self.base_prototypes) + labels - self.first), logits

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.method.hnet.requires_grad_(True)
