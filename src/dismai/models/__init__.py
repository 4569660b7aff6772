"""Generative models behind one interface (see base.GenerativeModel) and a name registry.

Importing this package does not import torch: model classes load on first use.
"""

from dismai.models.base import CheckpointError, GenerativeModel, NotFittedError, TrainingDataError
from dismai.models.config import ConfigError, ModelConfig, ModelError, TrainConfig, resolve_config
from dismai.models.registry import (
    UnknownModelError,
    available_models,
    create_model,
    get_model_class,
    register_model,
)

__all__ = [
    "GenerativeModel",
    "ModelConfig",
    "TrainConfig",
    "ModelError",
    "ConfigError",
    "CheckpointError",
    "TrainingDataError",
    "NotFittedError",
    "UnknownModelError",
    "available_models",
    "create_model",
    "get_model_class",
    "register_model",
    "resolve_config",
]
