"""Energy models: the alloy cluster expansion and the interatomic potentials.

`get_energy_model('sw-vink' | 'chgnet' | 'sevennet')` returns an `EnergyModel` (see
`dismai.energy.base`); `available_potentials()` lists the names; optional backends load
lazily.
"""

from dismai.energy.base import (
    POTENTIALS,
    EnergyModel,
    available_potentials,
    get_energy_model,
    register_potential,
)
from dismai.errors import BackendUnavailable

__all__ = ["BackendUnavailable", "EnergyModel", "POTENTIALS", "available_potentials",
           "get_energy_model", "register_potential"]
