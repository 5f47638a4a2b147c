"""The continual loop: tasks -> steps -> evaluation of all seen tasks -> checkpoint -> callback."""

from __future__ import annotations

import copy
import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from hypermask.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from hypermask.config import Config
from hypermask.data import TaskStream, build_stream, inference_state
from hypermask.evaluation import accuracy, evaluate_after_task, session_metrics, task_metrics
from hypermask.masks import ramped_sparsity
from hypermask.methods import ContinualMethod, build_for_stream
from hypermask.optim import in_backward_adam, make_optimizer
from hypermask.runtime import configure_runtime, preflight

INPUTS_NAME = "inputs"  # inputs.pt beside the model files


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TaskReport:
    """What the loop tells its callback after every finished task (``metrics``: test scores, the same
    on validation data with a ``val_`` prefix, task inference on both; for class-incremental streams also
    the per-session lists, e.g. ``session_accuracy``)."""

    task: int
    num_tasks: int
    accuracy_matrix: list[list[float]]
    metrics: dict[str, float | list[float]]
    checkpoint_dir: Path | None
    elapsed_s: float
    val_accuracy_matrix: list[list[float]] = field(default_factory=list)


@dataclass
class RunResult:
    """A finished run: configuration, accuracy matrix, metrics and the trained method (``protocol``: how
    the stream was drawn, where it records that, e.g. the class order and shots of a few-shot protocol)."""

    config: Config
    accuracy_matrix: list[list[float]]
    metrics: dict[str, float | list[float]]
    method: ContinualMethod
    seconds_per_step: list[float] = field(default_factory=list)
    val_accuracy_matrix: list[list[float]] = field(default_factory=list)
    inputs: dict = field(default_factory=dict)  # how the tasks see images (hypermask.data.inference_state)
    protocol: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The contents of ``metrics.json``."""
        extra = {"protocol": self.protocol} if self.protocol else {}
        return {**self.metrics, "accuracy_matrix": self.accuracy_matrix,
                "val_accuracy_matrix": self.val_accuracy_matrix,
                "seconds_per_step": self.seconds_per_step, **extra, "config": self.config.to_dict()}

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``metrics.json`` and the model files (hypernetwork, embeddings, target weights, and
        ``inputs.pt``: how each task sees an image); :func:`hypermask.model.load_model` reads them back."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "metrics.json"]
        written[0].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        pieces = {**self.method.artifacts(), **({INPUTS_NAME: self.inputs} if self.inputs else {})}
        for name, value in pieces.items():
            torch.save(value, out / f"{name}.pt")
            written.append(out / f"{name}.pt")
        return written


TaskCallback = Callable[[TaskReport], None]


def steps_per_task(cfg: Config, train_size: int) -> int:
    """Training iterations of one task: fixed, or epochs x batches per epoch."""
    if cfg.iteration_based:
        return cfg.iterations
    return cfg.epochs * math.ceil(train_size / cfg.batch_size)


def batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """Indices of ``steps`` mini-batches drawn epoch by epoch without replacement."""
    done = 0
    while done < steps:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            if done == steps:
                return
            yield order[start: start + batch_size]
            done += 1


def training_step(method: ContinualMethod, optimizer: torch.optim.Optimizer, task: int,
                  x: torch.Tensor, y: torch.Tensor, sparsity: float,
                  update_in_backward: bool = True) -> torch.Tensor:
    """One optimisation step on a batch of ``task``; returns the (detached) loss.

    With ``update_in_backward`` the hypernetwork's output weight is updated by Adam inside the
    backward pass (same update, less memory traffic; see :mod:`hypermask.optim`).
    """
    with in_backward_adam(method, optimizer) if update_in_backward else nullcontext():
        loss, _ = method.training_loss(task, x, y, sparsity)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    optimizer.step()
    return loss.detach()


def _train_task(method: ContinualMethod, stream: TaskStream, task: int, cfg: Config,
                device: torch.device) -> float:
    """Train ``task`` to its budget; returns seconds per step."""
    data = stream.tasks[task]
    steps = steps_per_task(cfg, len(data.train_x))
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + task)
    method.start_task(task)
    if stream.class_incremental:  # a few-shot session: the method says how long it trains
        method.start_session(stream, task, device)
        steps = method.session_steps(task, steps)
    optimizer = make_optimizer(method.trainable_parameters(), cfg.lr, device)
    method.bind_optimizer(optimizer)
    # Validation (the task's validation split, full sparsity) runs every ``eval_every`` steps and at
    # the task's end to keep the best weights (best_val), and at every epoch end to step the
    # plateau scheduler once per epoch on that epoch-end accuracy, as the reference does. A task without
    # validation images (a few-shot session: no novel-class data beyond the shots) keeps its last weights
    # at a constant learning rate.
    has_val = len(data.val_y) > 0
    select_best = cfg.model_selection == "best_val" and has_val
    scheduler = None
    if not cfg.iteration_based and has_val:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=math.sqrt(0.1), patience=5, min_lr=5e-7)
    batches_per_epoch = math.ceil(len(data.train_x) / cfg.batch_size)
    best_acc, best_state = -1.0, None
    bar = tqdm(total=steps, desc=f"task {task + 1}/{len(stream)}", disable=not cfg.progress,
               leave=False, dynamic_ncols=True)
    start = time.perf_counter()
    for step, index in enumerate(batch_indices(len(data.train_x), cfg.batch_size, steps, generator)):
        x = data.view(stream.train_preprocess(data.train_x[index].to(device), generator))
        y = data.train_y[index].to(device)
        sparsity = ramped_sparsity(cfg.p, task, step, steps) if cfg.ramp else cfg.p
        loss = training_step(method, optimizer, task, x, y, sparsity)
        if step % 25 == 0 or step == steps - 1:
            value = float(loss)
            if not math.isfinite(value):
                bar.close()
                raise DivergedError(f"loss became {value} at task {task}, step {step}")
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        bar.update(1)
        at_epoch_end = scheduler is not None and (step + 1) % batches_per_epoch == 0
        at_check = select_best and ((step + 1) % cfg.eval_every == 0 or step == steps - 1)
        if at_epoch_end or at_check:
            weights = method.task_weights(task)
            val = accuracy(method, weights, data.val_x, data.val_y, data.view, stream.eval_preprocess,
                           device, cfg.eval_batch_size)
            if scheduler is not None and at_epoch_end:
                scheduler.step(val)
            if select_best and val > best_acc:
                best_acc, best_state = val, copy.deepcopy(method.state_dict())
    bar.close()
    elapsed = time.perf_counter() - start
    if best_state is not None:
        method.load_state_dict(best_state)
    method.end_task(task)
    return elapsed / max(1, steps)


def train_continual(cfg: Config, on_task_end: TaskCallback | None = None,
                    checkpoint_dir: str | Path | None = None,
                    stream: TaskStream | None = None, report_resumed: bool = False) -> RunResult:
    """Train ``cfg.method`` on ``cfg.benchmark`` task after task.

    After every task all seen tasks are re-evaluated (a row of the accuracy matrix), a checkpoint
    is written to ``checkpoint_dir`` (if given) and ``on_task_end`` is called. A checkpoint already
    in ``checkpoint_dir`` for the same configuration makes the run resume after its last task; with
    ``report_resumed``, ``on_task_end`` is first called again for that task (a caller whose record of it
    may have been lost gets it once more).
    The threads and device actually used are written into the run's configuration (``threads=0``
    and ``device=auto`` resolved), so a resume under others is refused.
    """
    cfg = preflight(cfg)
    device = configure_runtime(cfg.device, cfg.threads)
    checkpoint_path = Path(checkpoint_dir) if checkpoint_dir is not None else None
    resumed = load_checkpoint(checkpoint_path, cfg)
    if stream is None:
        stream = build_stream(cfg)
    torch.manual_seed(cfg.seed)
    method = build_for_stream(cfg, stream.input_shape, stream.classes_per_task, len(stream)).to(device)
    matrix: list[list[float]] = []
    val_matrix: list[list[float]] = []
    seconds_per_step: list[float] = []
    metrics: dict[str, Any] = {}  # numbers, and lists of them (few-shot session histories)
    elapsed = 0.0
    if resumed is not None:
        method.load_state_dict(resumed.model_state)
        matrix, seconds_per_step, elapsed = resumed.accuracy_matrix, resumed.seconds_per_step, resumed.elapsed_s
        val_matrix, metrics = resumed.val_accuracy_matrix, resumed.metrics
        if report_resumed and on_task_end is not None and matrix:
            on_task_end(TaskReport(len(matrix) - 1, len(stream), [list(r) for r in matrix], dict(metrics),
                                   checkpoint_path, elapsed, [list(r) for r in val_matrix]))
    for task in range(len(matrix), len(stream)):
        started = time.perf_counter()
        method.scored_classes = stream.scored_classes(task)
        seconds_per_step.append(_train_task(method, stream, task, cfg, device))
        evaluation = evaluate_after_task(method, stream, task, cfg, device)
        matrix.append(evaluation.test_row)
        if evaluation.val_row:
            val_matrix.append(evaluation.val_row)
        previous, metrics = metrics, task_metrics(matrix, val_matrix, evaluation.inference)
        if stream.class_incremental:
            metrics.update(session_metrics(previous, metrics))
        if task == len(stream) - 1:  # the last task's report carries the run's summary (e.g. mask density)
            metrics.update(method.summary_metrics(len(stream)))
        elapsed += time.perf_counter() - started
        if checkpoint_path is not None:
            state = TrainingState({k: v.detach().cpu() for k, v in method.state_dict().items()},
                                  matrix, seconds_per_step, elapsed, val_matrix, metrics)
            save_checkpoint(checkpoint_path, cfg, state)
        if on_task_end is not None:
            on_task_end(TaskReport(task, len(stream), [list(r) for r in matrix], dict(metrics),
                                   checkpoint_path, elapsed, [list(r) for r in val_matrix]))
    metrics = {**metrics, **method.summary_metrics(len(stream)), "elapsed_s": elapsed}  # also after a resume
    return RunResult(cfg, matrix, metrics, method, seconds_per_step, val_matrix, inputs=inference_state(stream),
                     protocol=stream.protocol)
