"""Model names -> classes, through the one lazy registry (dismai.registry).

The CLI starts without importing torch: a class is imported on first use.  A new model adds
one line to ``MODELS`` below (or calls ``register_model`` from a plugin); reference
generators that learn nothing carry the tag ``baseline=True``.
"""

from __future__ import annotations

from dismai.errors import UnknownNameError
from dismai.registry import Registry

__all__ = ["MODELS", "available_models", "trainable_models", "baseline_models", "crystal_models",
           "get_model_class", "create_model", "register_model", "UnknownModelError"]


class UnknownModelError(UnknownNameError):
    """A model name that is not registered."""


MODELS = Registry("model", error=UnknownModelError)
MODELS.register("cryingan", "dismai.models.cryingan:CryinGAN")
MODELS.register("diffcsp", "dismai.models.diffcsp:DiffCSP")
MODELS.register("cdvae", "dismai.models.cdvae:CDVAE")
MODELS.register("crystens", "dismai.models.crystens:CrysTens")
MODELS.register("unimat", "dismai.models.unimat:UniMat")
MODELS.register("ssl", "dismai.models.ssl_template:SSLTemplate")
# general-crystal models (dismai.models.crystal_model): CrystalSet in, CrystalSet out
MODELS.register("crystens-wgan", "dismai.models.crystens_gan:CrysTensWGAN", crystals=True)
MODELS.register("crystens-gan", "dismai.models.crystens_gan:CrysTensGAN", crystals=True)
MODELS.register("crystens-diffusion", "dismai.models.crystens_diffusion:CrysTensDiffusion",
                crystals=True)
MODELS.register("ssl-pretrain", "dismai.models.ssl:SSLPretrain", crystals=True)
MODELS.register("ssl-gan", "dismai.models.ssl_gan:SSLGAN", crystals=True)
MODELS.register("random", "dismai.models.baselines:RandomBaseline", baseline=True)
MODELS.register("shuffled-lattice", "dismai.models.baselines:ShuffledLatticeBaseline",
                baseline=True)


def available_models() -> list[str]:
    return MODELS.names()


def trainable_models() -> list[str]:
    """Dismai-Bench models that learn from data (not the baselines, not crystal models)."""
    return MODELS.names(baseline=False, crystals=False)


def crystal_models() -> list[str]:
    """Models of general crystals (CrystalSet in and out: the original CrysTens form)."""
    return MODELS.names(crystals=True)


def baseline_models() -> list[str]:
    return MODELS.names(baseline=True)


def register_model(name: str, cls, *, baseline: bool = False) -> None:
    """Add a model class (or a "module:Class" path) at run time: plugins, tests."""
    MODELS.register(name, cls, baseline=baseline)


def get_model_class(name: str) -> type:
    return MODELS.get(name)


def create_model(name: str, config=None):
    """Instantiate model `name` with a config object or a plain dict (None: defaults)."""
    return get_model_class(name)(config)
