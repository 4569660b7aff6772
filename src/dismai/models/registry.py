"""Model names -> classes, imported lazily so the CLI starts without loading torch."""

from __future__ import annotations

import importlib

from dismai.models.config import ModelError

__all__ = ["available_models", "get_model_class", "create_model", "register_model",
           "UnknownModelError"]


class UnknownModelError(ModelError):
    """A model name that is not registered."""


#: name -> "module:Class".  A new model adds one line here.
_BUILTIN: dict[str, str] = {
    "cryingan": "dismai.models.cryingan:CryinGAN",
    "diffcsp": "dismai.models.diffcsp:DiffCSP",
    "random": "dismai.models.baselines:RandomBaseline",
    "shuffled-lattice": "dismai.models.baselines:ShuffledLatticeBaseline",
}
_EXTRA: dict[str, type] = {}


def available_models() -> list[str]:
    return sorted(set(_BUILTIN) | set(_EXTRA))


def register_model(name: str, cls: type) -> None:
    """Add a model class at run time (plugins, tests)."""
    _EXTRA[name] = cls


def get_model_class(name: str) -> type:
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in _BUILTIN:
        raise UnknownModelError(
            f"unknown model {name!r}; available: {', '.join(available_models())}"
        )
    module, cls = _BUILTIN[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create_model(name: str, config=None):
    """Instantiate model `name` with a config object or a plain dict (None: defaults)."""
    return get_model_class(name)(config)
