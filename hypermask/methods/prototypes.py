"""Prototype classifiers for few-shot class-incremental streams: class means of penultimate features, scored
by cosine similarity (the decoupled classifier of CEC, Zhang et al., CVPR 2021).

A prototype is the mean of the features of a class's training images under one set of target weights: all
training images for a base class (the base session's data, before any novel session), the shots for a novel
class. Batch norm uses fixed statistics of base-session training images (:func:`bn_sample`), so features, and
hence labels, do not depend on which images share a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hypermask.methods.base import bn_sample

if TYPE_CHECKING:
    from hypermask.data import TaskStream

TEMPERATURE = 16.0  # scale of the cosine logits in the prototype loss (CEC's temperature)
FEATURE_BATCH = 1024


@torch.no_grad()
def features(target, weights: list[Tensor], x: Tensor, stats, view: Callable[[Tensor], Tensor],
             device: torch.device) -> Tensor:
    """Penultimate features of stream images ``x`` (evaluation inputs through ``view``) in batches."""
    out = []
    with target.frozen_bn(stats):
        for start in range(0, len(x), FEATURE_BATCH):
            out.append(target.features(view(x[start: start + FEATURE_BATCH].to(device)), weights))
    return torch.cat(out) if out else torch.empty(0, target.feature_size, device=device)


def class_means(feats: Tensor, labels: Tensor, classes: range) -> Tensor:
    """Mean feature of every class of ``classes`` (rows in that order)."""
    labels = labels.to(feats.device)
    return torch.stack([feats[labels == c].mean(0) for c in classes])


def cosine(feats: Tensor, prototypes: Tensor) -> Tensor:
    """Cosine similarity of every feature row to every prototype row."""
    return F.normalize(feats, dim=-1) @ F.normalize(prototypes, dim=-1).T


@torch.no_grad()
def session_prototypes(target, weights: list[Tensor], stream: TaskStream, sessions: Sequence[int], stats,
                       device: torch.device) -> Tensor:
    """Prototypes of the classes of ``sessions`` under ``weights``, from each session's training images (the
    base session's: all its training images; a later session's: its shots)."""
    rows = []
    for s in sessions:
        task = stream.tasks[s]
        feats = features(target, weights, task.train_x, stats, lambda x: stream.eval_input(s, x), device)
        classes = range(stream.seen_classes[s - 1] if s else 0, stream.seen_classes[s])
        rows.append(class_means(feats, task.train_y, classes))
    return torch.cat(rows)


def prototype_predictor(method, stream: TaskStream, groups: Sequence[tuple[list[Tensor], Sequence[int]]],
                        device: torch.device) -> Callable[[Tensor], Tensor]:
    """Labels by the highest cosine similarity to a prototype. ``groups``: weight sets and the sessions whose
    classes each scores (the prototypes of those classes under those weights); the groups' classes together
    must be every seen class, each once. A class's score is the cosine similarity of the image's features under
    its group's weights to its prototype under the same weights."""
    calibration = bn_sample(stream, device)
    parts = []
    for weights, sessions in groups:
        stats = method.target.bn_statistics(calibration, weights)
        prototypes = session_prototypes(method.target, weights, stream, sessions, stats, device)
        labels = torch.cat([torch.arange(stream.seen_classes[s - 1] if s else 0, stream.seen_classes[s])
                            for s in sessions]).to(device)
        parts.append((weights, stats, prototypes, labels))

    def predict(x: Tensor) -> Tensor:
        scores, labels = [], []
        for weights, stats, prototypes, group_labels in parts:
            with method.target.frozen_bn(stats):
                scores.append(cosine(method.target.features(x, weights), prototypes))
            labels.append(group_labels)
        return torch.cat(labels)[torch.cat(scores, dim=1).argmax(1)].cpu()

    return predict
