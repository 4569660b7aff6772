"""Generative models behind one interface (see base.GenerativeModel) and a name registry.

Importing this package does not import torch: model classes load on first use.
"""

from dismai.errors import (
    CheckpointError,
    ConfigError,
    ModelError,
    NotFittedError,
    TrainingDataError,
)
from dismai.models.base import GenerativeModel
from dismai.models.config import ModelConfig, TrainConfig, resolve_config
from dismai.models.registry import (
    MODELS,
    UnknownModelError,
    available_models,
    baseline_models,
    create_model,
    get_model_class,
    register_model,
    trainable_models,
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
    "MODELS",
    "available_models",
    "trainable_models",
    "baseline_models",
    "create_model",
    "get_model_class",
    "register_model",
    "resolve_config",
]
