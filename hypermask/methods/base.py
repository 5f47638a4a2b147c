"""The contract every continual-learning method fulfils, and the pieces methods share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hypermask.config import Config
from hypermask.metrics import infer_task
from hypermask.nets import TargetNetwork, build_hypernetwork

if TYPE_CHECKING:
    from hypermask.data import TaskStream


class ContinualMethod(nn.Module):
    """How a task's target weights are formed and which regularisers apply.

    The training loop calls :meth:`start_task` once per task, then :meth:`training_loss` every
    step; evaluation uses :meth:`task_weights` with the target network. Logits come from
    :meth:`forward`, which keeps the first ``scored_classes`` output units (set by the loop for
    class-incremental streams: the classes seen so far; None keeps all).
    """

    name = "base"
    scored_classes: int | None = None

    def __init__(self, cfg: Config, target: TargetNetwork, num_tasks: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.target = target
        self.num_tasks = num_tasks

    def start_task(self, task: int) -> None:
        """Take the snapshots the regularisers of ``task`` compare against."""

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser of the current task (created after :meth:`start_task`), for methods that look at
        the step it is about to take."""

    def end_task(self, task: int) -> None:
        """Keep what ``task`` leaves behind (called once its training ends, before it is evaluated)."""

    def training_loss(self, task: int, x: Tensor, y: Tensor, sparsity: float) -> tuple[Tensor, Tensor]:
        """Total loss and logits of one training batch of ``task`` at the given sparsity."""
        raise NotImplementedError

    def task_weights(self, task: int) -> list[Tensor]:
        """Target weights used to evaluate ``task`` (full sparsity)."""
        return self.all_task_weights(task + 1)[task]

    def all_task_weights(self, num_tasks: int) -> list[list[Tensor]]:
        """Target weights of tasks ``0..num_tasks-1`` (one batched hypernetwork call where used)."""
        raise NotImplementedError

    def forward(self, x: Tensor, weights: list[Tensor]) -> Tensor:
        """Logits of the target network with ``weights`` over the scored classes."""
        logits = self.target(x, weights)
        return logits if self.scored_classes is None else logits[:, : self.scored_classes]

    def artifacts(self) -> dict[str, Any]:
        """Named pieces saved as model files (hypernetwork, embeddings, target weights)."""
        return {}

    def load_artifacts(self, pieces: dict[str, Any]) -> None:
        """Take the trained state back from the pieces :meth:`artifacts` gave (its inverse)."""

    def summary_metrics(self, num_tasks: int) -> dict[str, float]:
        """Method-specific numbers reported after training (e.g. mask density)."""
        return {}

    # ---------------------------------------------------- few-shot class-incremental streams (FSCIL)
    def session_steps(self, task: int, steps: int) -> int:
        """Training steps of session ``task`` of a class-incremental stream (``steps``: the budget)."""
        return steps

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """What the optimiser of the current task trains."""
        return self.parameters()

    def start_session(self, stream: TaskStream, task: int, device: torch.device) -> None:
        """Called before session ``task`` of a class-incremental stream trains (after :meth:`start_task`)."""

    def class_predictor(self, stream: TaskStream, sessions: int, device: torch.device) -> Callable[[Tensor], Tensor]:
        """Labels over the classes seen after ``sessions`` sessions, session unknown, for batches of evaluation
        inputs. Default (the paper's rule): every session's weights score the classes seen so far and the
        lowest entropy picks the session. Batch norm uses statistics of base-session training images
        (:func:`bn_sample`) under each weight set, so an image's label does not depend on its batch."""
        weights = self.all_task_weights(sessions)
        calibration = bn_sample(stream, device)
        stats = [self.target.bn_statistics(calibration, w) for w in weights]

        def predict(x: Tensor) -> Tensor:
            logits = []
            for w, s in zip(weights, stats):
                with self.target.frozen_bn(s):
                    logits.append(self(x, w))
            return infer_task(torch.stack(logits))[1]

        return predict


class HypernetworkMethod(ContinualMethod):
    """Methods with a hypernetwork, task embeddings and the output regulariser."""

    def __init__(self, cfg: Config, target: TargetNetwork, num_tasks: int, output_size: int) -> None:
        super().__init__(cfg, target, num_tasks)
        self.hnet = build_hypernetwork(cfg.embedding_size, cfg.hnet_hidden, output_size,
                                       cfg.chunk_size, cfg.chunk_embedding_size, cfg.hnet_activation,
                                       cfg.hnet_init)
        self.embeddings = nn.Parameter(torch.randn(num_tasks, cfg.embedding_size))
        self._targets: Tensor | None = None

    def summary_metrics(self, num_tasks: int) -> dict[str, float]:
        """The hypernetwork's trainable parameters (chunk embeddings included; task embeddings not)."""
        return {"hypernetwork_parameters": float(sum(p.numel() for p in self.hnet.parameters()))}

    def start_task(self, task: int) -> None:
        """Record H(e_j) of every earlier task once (detached): the regulariser's targets."""
        if task > 0 and self.cfg.beta > 0:
            with torch.no_grad():
                self._targets = self.hnet(self.embeddings[:task])
        else:
            self._targets = None

    def task_embeddings(self, task: int) -> Tensor:
        """Embeddings of tasks ``0..task`` as the training step of ``task`` sees them: with
        ``train_embeddings=current`` the earlier ones are detached, so the optimiser never moves them (their
        gradient is zero and the optimiser is new at every task)."""
        if self.cfg.train_embeddings == "current" and task > 0:
            return torch.cat([self.embeddings[:task].detach(), self.embeddings[task: task + 1]])
        return self.embeddings[: task + 1]

    def hnet_outputs(self, task: int) -> tuple[Tensor, Tensor | None]:
        """Current task's raw output and the output regulariser (1/t)·Σ_j ‖H(e_j) − H*_j‖².

        One pass over the hypernetwork's output layer serves both (see ``current_and_distance``).
        """
        if self._targets is None:
            current, _ = self.hnet.current_and_distance(self.embeddings[task: task + 1], None)
            return current, None
        current, distance = self.hnet.current_and_distance(self.task_embeddings(task), self._targets)
        return current, distance / task

    def artifacts(self) -> dict[str, Any]:
        return {"hypernetwork": self.hnet.state_dict(), "embeddings": self.embeddings.detach().cpu()}

    @torch.no_grad()
    def load_artifacts(self, pieces: dict[str, Any]) -> None:
        self.hnet.load_state_dict(pieces["hypernetwork"])
        self.embeddings.copy_(pieces["embeddings"])


def load_tensors(params: nn.ParameterList, tensors: list[Tensor]) -> None:
    """Copy ``tensors`` into ``params`` in place (same count and shapes, else ValueError)."""
    if len(tensors) != len(params) or any(p.shape != t.shape for p, t in zip(params, tensors)):
        raise ValueError("saved target weights do not match the target network's shapes")
    with torch.no_grad():
        for param, tensor in zip(params, tensors):
            param.copy_(tensor)


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of a batch."""
    return F.cross_entropy(logits, y)


def weight_snapshot(theta: list[Tensor], task: int, lambda_: float) -> list[Tensor] | None:
    """Detached copy of θ at the start of ``task``: what the weight regulariser compares against (None
    for the first task or without the regulariser)."""
    if task > 0 and lambda_ > 0:
        return [p.detach().clone() for p in theta]
    return None


def l1_from_snapshot(theta: list[Tensor], snapshot: list[Tensor], indices: list[int],
                     masks: list[Tensor] | None = None) -> Tensor:
    """Σ_i ‖(θ_i − θ*_i) ⊙ M_i‖₁ over the tensors ``indices`` (summed, not averaged); ``masks`` (aligned
    with ``indices``) weight the difference, None leaves it unweighted."""
    total = torch.zeros((), device=theta[indices[0]].device)
    for k, index in enumerate(indices):
        diff = theta[index] - snapshot[index]
        if masks is not None:
            diff = diff * masks[k]
        total = total + diff.abs().sum()
    return total


BN_SAMPLES = 1024  # base-session training images whose statistics batch norm uses at FSCIL evaluation


def bn_sample(stream: TaskStream, device: torch.device) -> Tensor:
    """A fixed sample of the base session's training images (evaluation preprocessing): the statistics batch
    norm uses when a class-incremental stream is evaluated (base-class data only, the same for every image)."""
    base = stream.tasks[0]
    generator = torch.Generator().manual_seed(0)
    index = torch.randperm(len(base.train_x), generator=generator)[:BN_SAMPLES].sort().values
    return stream.eval_input(0, base.train_x[index].to(device))
