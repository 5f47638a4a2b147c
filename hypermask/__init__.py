"""HyperMask: hypernetwork-generated semi-binary masks for continual learning."""

from hypermask.config import Config, ConfigError, resolve_config
from hypermask.train import DivergedError, RunResult, TaskReport, train_continual

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "resolve_config", "train_continual", "RunResult", "TaskReport",
           "DivergedError"]
