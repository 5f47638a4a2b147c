"""A trained method as an MLflow ``pyfunc`` model: logged by every final run, the study's best registered as
``hypermask-<study>@best``, loaded back from a ``models:/`` or ``runs:/`` URI.

``predict(images, params={"task": t})`` gives the class labels of task ``t`` (an array); without a task (or
``task`` -1) a DataFrame with the ``label`` and the inferred ``task`` of every image. ``images``: [0, 1]
floats as the dataset gives them (n x 28 x 28 for MNIST, n x 32 x 32 x 3 for CIFAR-100)."""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from hypermask.messages import first_line
from hypermask.model import ModelError, Prediction, TrainedModel, load_model
from pipeline.errors import PipelineError

MODEL_NAME = "model"  # the logged model's name in its run (runs:/<run id>/model)
ALIAS = "best"
RUN_ARTIFACT = "run"  # the library's model folder inside the MLflow model
INFER_TASK = -1
URI_ENV = "MLFLOW_TRACKING_URI"


def registered_name(study: str) -> str:
    """The registered model of ``study``."""
    return f"hypermask-{study}"


class HyperMaskModel(mlflow.pyfunc.PythonModel):
    """The ``pyfunc`` flavour over :class:`hypermask.model.TrainedModel` (``self.model`` once loaded)."""

    model: TrainedModel

    def load_context(self, context: Any) -> None:
        self.model = load_model(context.artifacts[RUN_ARTIFACT], device="cpu")

    # ``model_input`` carries no type hint: MLflow would derive (and enforce) an input schema from it,
    # instead of the signature logged with the model.
    def predict(self, context, model_input, params: dict[str, Any] | None = None):  # noqa: ANN001
        task = int((params or {}).get("task", INFER_TASK))
        found = self.model.predict(np.asarray(model_input), None if task == INFER_TASK else task)
        return found.labels.numpy() if task != INFER_TASK else _frame(found)


def _frame(found: Prediction) -> pd.DataFrame:
    return pd.DataFrame({"label": found.labels.numpy(), "task": found.tasks.numpy()})


@contextmanager
def _store(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking URI set to ``uri`` (unless empty) for the block, as its fluent API and
    its registry know no other; then put back as it was (``set_tracking_uri`` also writes the environment
    variable)."""
    if not uri:  # a local model folder needs no store
        yield
        return
    before = os.environ.get(URI_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # clears the URI and the variable
        if before is not None:
            os.environ[URI_ENV] = before


def log_model(uri: str, run_id: str, folder: Path) -> str:
    """Log the library model saved in ``folder`` as the ``pyfunc`` model ``model`` of run ``run_id`` (with
    signature and input example); returns the logged model's id."""
    model = load_model(folder, device="cpu")
    example = np.zeros((2, *model.image_shape), dtype=np.float32)
    with warnings.catch_warnings():  # integer outputs: MLflow warns they cannot hold missing values
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, _frame(model.predict(example)), params={"task": INFER_TASK})
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", "numpy",
                    "pandas"]
    with _store(uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name=MODEL_NAME, python_model=HyperMaskModel(),
                                       artifacts={RUN_ARTIFACT: str(folder)}, signature=signature,
                                       input_example=example, pip_requirements=requirements)
    return info.model_id


def register(client: MlflowClient, study: str, run_id: str, tags: dict[str, Any]) -> int:
    """A new version of ``hypermask-<study>`` from the model logged by run ``run_id``, aliased ``best``;
    returns the version."""
    run = client.get_run(run_id)
    logged = [o.model_id for o in (run.outputs.model_outputs if run.outputs else [])]
    if not logged:
        raise PipelineError(f"final run {run_id} logged no model; cannot register {registered_name(study)}")
    name = registered_name(study)
    try:
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name, description=f"HyperMask study '{study}': the tuned "
                                                              "configuration's final run with the best validation "
                                                              "objective")
        with _store(client.tracking_uri):  # the registry resolves a models:/ source through the global store
            version = client.create_model_version(name, source=f"models:/{logged[-1]}", run_id=run_id,
                                                  tags={k: str(v) for k, v in tags.items()}, model_id=logged[-1])
        client.set_registered_model_alias(name, ALIAS, str(version.version))
    except MlflowException as err:
        first = first_line(err)
        raise PipelineError(f"cannot register {name} from run {run_id}: {first}") from None
    return int(version.version)


def load(uri: str, model_uri: str) -> TrainedModel:
    """The library model behind ``model_uri`` (``models:/name@alias``, ``models:/name/version``,
    ``runs:/<id>/model`` or a local MLflow model folder) in the store at ``uri``; one-line PipelineError
    when there is none."""
    try:
        with _store(uri):
            wrapped = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    except (MlflowException, OSError) as err:
        first = first_line(err)
        raise PipelineError(f"no model at {model_uri} ({first})") from None
    except ModelError as err:
        raise PipelineError(f"model at {model_uri}: {err}") from None
    if not isinstance(wrapped, HyperMaskModel):
        raise PipelineError(f"{model_uri} is not a HyperMask model (it is {type(wrapped).__name__})")
    return wrapped.model
