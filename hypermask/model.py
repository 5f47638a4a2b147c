"""A trained run loaded back from its folder (what ``RunResult.save`` wrote): class labels of raw images for
a given task or with the task inferred, and the run's final evaluation repeated on its own test data."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hypermask.config import Config, ConfigError
from hypermask.data import TaskStream, build_stream, image_shape, stream_from_state, stream_images
from hypermask.evaluation import VAL_PREFIX, evaluate_after_task
from hypermask.messages import first_line
from hypermask.methods import ContinualMethod, build_for_stream
from hypermask.metrics import average_accuracy, infer_task
from hypermask.numerics import pin_if_open
from hypermask.outdir import METRICS_FILE
from hypermask.paths import PathProblem, check_folder, expand, make_folder
from hypermask.runtime import configure_runtime, resolve_device
from hypermask.train import INPUTS_NAME


class ModelError(ValueError):
    """A folder holds no usable model, or predict got unusable images or task (one line)."""


@dataclass
class Prediction:
    """Class labels (within each task's classes) and the task each image was read as."""

    labels: Tensor
    tasks: Tensor


@dataclass
class TrainedModel:
    """A trained method with its configuration (seed included) and each task's view of an image."""

    config: Config
    method: ContinualMethod
    stream: TaskStream  # no samples: the evaluation preprocessing and every task's permutation
    accuracy_matrix: list[list[float]]  # as measured when training ended
    device: torch.device

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one input image as the benchmark's dataset gives it."""
        return image_shape(self.config.benchmark)

    def _images(self, images: Any) -> Tensor:
        x = torch.as_tensor(images, dtype=torch.float32)
        if tuple(x.shape[1:]) != self.image_shape or x.dim() != len(self.image_shape) + 1:
            shape = ", ".join(map(str, self.image_shape))
            raise ModelError(f"images of {self.config.benchmark} must have shape (n, {shape}), got "
                             f"{tuple(x.shape)}")
        return stream_images(self.config.benchmark, x)

    @torch.no_grad()
    def predict(self, images: Any, task: int | None = None) -> Prediction:
        """Labels of ``images`` ([0, 1] floats as the dataset gives them) as task ``task``'s classes; with no
        task, each image is read as the task whose output has the lowest entropy (each task seeing the image
        through its own preprocessing). Batches of ``eval_batch_size``, as in evaluation."""
        count = len(self.stream)
        if task is not None and not 0 <= task < count:
            raise ModelError(f"task must be between 0 and {count - 1}, got {task}")
        x = self._images(images)
        if task is None and self.stream.class_incremental:
            return self._predict_sessions(x)
        weights = self.method.all_task_weights(count)
        step = self.config.eval_batch_size or max(1, len(x))
        labels, tasks = [], []
        for start in range(0, len(x), step):
            xb = x[start: start + step].to(self.device)
            if task is not None:
                logits = self.method(self.stream.eval_input(task, xb), weights[task])
                labels.append(logits.argmax(-1).cpu())
                tasks.append(torch.full((len(xb),), task, dtype=torch.long))
            else:
                logits = torch.stack([self.method(self.stream.eval_input(k, xb), weights[k]) for k in range(count)])
                guessed_task, guessed_class = infer_task(logits)
                labels.append(guessed_class.cpu())
                tasks.append(guessed_task.cpu())
        empty = torch.empty(0, dtype=torch.long)
        return Prediction(torch.cat(labels) if labels else empty, torch.cat(tasks) if tasks else empty)

    def _predict_sessions(self, x: Tensor) -> Prediction:
        """Few-shot class-incremental: labels over every class of the protocol by the method's own rule
        (prototypes are class means of the training data, so the run's data are read again), and the session
        that brought each label."""
        data = build_stream(self.config)
        predict = self.method.class_predictor(data, len(data), self.device)
        step = self.config.eval_batch_size or 500
        labels = [predict(data.eval_input(0, x[start: start + step].to(self.device))).cpu()
                  for start in range(0, len(x), step)]
        found = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
        sessions = torch.searchsorted(torch.tensor(data.seen_classes), found, right=True)
        return Prediction(found, sessions)

    def evaluate(self, data_root: str | Path | None = None) -> dict[str, Any]:
        """Every task on its test (and validation) split, rebuilt from the configuration (same seed, same
        data; ``data_root`` overrides where the dataset is looked for), with the run's thread count and, when
        :func:`load_model` could still pin it, the run's numeric path.

        ``accuracy_matrix`` holds one row: what the last row of the training run's matrix holds, measured
        again; ``reproduced`` says whether it is equal."""
        cfg = self.config if data_root is None else dataclasses.replace(self.config, data_root=str(data_root))
        configure_runtime(str(self.device), cfg.threads, tune_allocator=False)
        stream = build_stream(cfg)
        found = evaluate_after_task(self.method, stream, len(stream) - 1, cfg, self.device)
        self.method.eval()
        metrics: dict[str, Any] = {"average_accuracy": average_accuracy([found.test_row])}
        if found.val_row:
            metrics[VAL_PREFIX + "average_accuracy"] = average_accuracy([found.val_row])
        return {**metrics, **found.inference, "accuracy_matrix": [found.test_row],
                "val_accuracy_matrix": [found.val_row] if found.val_row else [],
                "reproduced": bool(self.accuracy_matrix) and found.test_row == self.accuracy_matrix[-1],
                "config": cfg.to_dict()}


def _device(name: str | None, recorded: str) -> torch.device:
    """``name``, else the device the run trained on when this machine has it, else the CPU."""
    try:
        return resolve_device(name or recorded)
    except ConfigError as err:
        if name:
            raise ModelError(str(err)) from None
        return torch.device("cpu")


def _load(path: Path) -> Any:
    if not path.is_file():
        raise ModelError(f"model file {path} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = first_line(err)
        raise ModelError(f"model file {path} is unreadable: {reason}") from None


def load_model(folder: str | Path, device: str | None = None) -> TrainedModel:
    """The model saved in ``folder`` by ``RunResult.save`` (``hypermask train --out`` writes one), on
    ``device`` (default: the one it trained on if present, else the CPU); ModelError (one line) when the
    folder holds no complete model."""
    try:
        path = expand(folder, "model folder")
    except PathProblem as err:
        raise ModelError(str(err)) from None
    if not path.is_dir():
        raise ModelError(f"model folder {path} does not exist")
    try:
        saved = json.loads((path / METRICS_FILE).read_text())
        cfg = Config.from_dict(saved["config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        why = str(err) if isinstance(err, ConfigError) else f"no readable {METRICS_FILE} with a config"
        raise ModelError(f"{path} holds no trained model ({why}); `hypermask train --out` writes one") from None
    pin_if_open(cfg.numerics)  # the run's numeric path, before the first operation, unless the process runs another
    stream = stream_from_state(_load(path / f"{INPUTS_NAME}.pt"))
    with torch.random.fork_rng(devices=[]):  # the initial values are replaced: leave the caller's generator be
        method = build_for_stream(cfg, stream.input_shape, stream.classes_per_task, len(stream))
    pieces = {name: _load(path / f"{name}.pt") for name in method.artifacts()}
    try:
        method.load_artifacts(pieces)
    except (RuntimeError, ValueError, KeyError) as err:
        reason = first_line(err)
        raise ModelError(f"model files in {path} do not fit its configuration: {reason}") from None
    method.scored_classes = stream.scored_classes(len(stream) - 1)  # as after the last task (class-incremental)
    where = _device(device, cfg.device)
    method.to(where).eval()
    return TrainedModel(cfg, method, stream, list(saved.get("accuracy_matrix", [])), where)


def save_evaluation(metrics: dict[str, Any], out: str | Path) -> Path:
    """Write ``metrics`` (from :meth:`TrainedModel.evaluate`) to ``out/metrics.json``; returns the file."""
    try:
        folder = expand(out, "--out")
        check_folder(folder, "--out")
        make_folder(folder, "--out")
    except PathProblem as err:
        raise ModelError(str(err)) from None
    target = folder / METRICS_FILE
    target.write_text(json.dumps(metrics, indent=2) + "\n")
    return target


def evaluation_line(metrics: dict[str, Any]) -> str:
    """One line of an evaluation's results (:meth:`TrainedModel.evaluate`)."""
    row = metrics["accuracy_matrix"][-1]
    same = "equal to" if metrics["reproduced"] else "different from"
    return (f"accuracies {' '.join(f'{a:.2f}' for a in row)} | average {metrics['average_accuracy']:.2f} %, "
            f"{same} the end of training")
