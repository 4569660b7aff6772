"""Energy models: the alloy cluster expansion and the interatomic potentials.

`get_energy_model('sw-vink' | 'chgnet' | 'sevennet')` returns an `EnergyModel`
(see `dismai.energy.base`); optional backends load lazily.
"""

from dismai.energy.base import (
    BackendUnavailable,
    EnergyModel,
    available_models,
    get_energy_model,
)

__all__ = ["BackendUnavailable", "EnergyModel", "available_models", "get_energy_model"]
