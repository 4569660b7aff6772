"""The Li3ScCl6(100)-LiCoO2(110) interface cell: constants and the interface energy.

Shared by the dataset recipe (dismai.datasets.interface_recipe) and the interface metrics
(dismai.metrics.interface), as dismai.fcc is for the alloys; definitions in
docs/interface.md.
"""

from __future__ import annotations

import numpy as np

from dismai.errors import InputError

__all__ = ["CELL_A", "CELL_B", "CELL_GAMMA_DEG", "CELL_C", "DATASET_AREA", "N_ATOMS",
           "EV_TO_J", "SPECIES_ORDER", "COMPOSITION", "INTERFACE_COMPOSITION", "CATIONS",
           "ANIONS", "cell_lattice", "energy_scale", "interface_energy",
           "low_energy_reference"]

CELL_A = 12.46997  # Å, |a| of the in-plane cell (recipe §3.1)
CELL_B = 17.19967  # Å, |b|
CELL_GAMMA_DEG = 75.6674
CELL_C = 34.0  # Å; 4.24 + 6 + 9.02 + 14 = 33.27 Å needed for the thickest case
#: in-plane area |a x b| in Å^2 (207.8037, §7.2)
DATASET_AREA = CELL_A * CELL_B * np.sin(np.radians(CELL_GAMMA_DEG))
N_ATOMS = 264
EV_TO_J = 1.602176634e-19
SPECIES_ORDER = ("Li", "Sc", "Co", "Cl", "O")
COMPOSITION = {"Li": 72, "Sc": 12, "Co": 36, "Cl": 72, "O": 72}
INTERFACE_COMPOSITION = {"Li": 9, "Sc": 3, "Cl": 18}  # 3 f.u. Li3ScCl6 (recipe §3.2)
#: the cations in the order the reference processes them (metric and column order)
CATIONS = ("Li", "Co", "Sc")
ANIONS = ("Cl", "O")


def cell_lattice(c: float = CELL_C) -> np.ndarray:
    """The dataset cell: a along x, b in the xy-plane at γ, c along z (rows, Å)."""
    g = np.radians(CELL_GAMMA_DEG)
    return np.array([[CELL_A, 0.0, 0.0],
                     [CELL_B * np.cos(g), CELL_B * np.sin(g), 0.0],
                     [0.0, 0.0, float(c)]])


def _area(lattice: np.ndarray) -> float:
    lattice = np.asarray(lattice, dtype=np.float64)
    return float(np.linalg.norm(np.cross(lattice[0], lattice[1])))


def energy_scale(lattice: np.ndarray | None = None, n_atoms: int = N_ATOMS,
                 area_rtol: float = 1e-4) -> float:
    """J/m^2 per eV/atom: N e / A (20.3545 for the dataset cell, §7.2).

    Refuses a cell whose in-plane area |a x b| differs from the dataset's 207.8037 Å^2,
    because eq. 6 is only comparable across structures on that one cell.
    """
    area = DATASET_AREA if lattice is None else _area(lattice)
    if abs(area - DATASET_AREA) > area_rtol * DATASET_AREA:
        raise InputError(f"in-plane area |a x b| = {area:.4f} Å^2 differs from the interface "
                         f"dataset's {DATASET_AREA:.4f} Å^2; interface energies are only "
                         "defined on the dataset cell")
    return n_atoms * EV_TO_J / (area * 1e-20)


def interface_energy(energy_per_atom, e_ref: float, lattice: np.ndarray | None = None,
                     n_atoms: int = N_ATOMS) -> np.ndarray:
    """Normalised interface energy γ = (E_atom - E_ref) N e / A in J/m^2 (P eq. 6, §7.2).

    No division by 2 for the two interfaces, as in the reference.  lattice: the structures'
    cell (its area is checked, see :func:`energy_scale`); None means the dataset cell.
    """
    e = np.asarray(energy_per_atom, dtype=np.float64)
    return (e - float(e_ref)) * energy_scale(lattice, n_atoms)


def low_energy_reference(relaxed_energies_per_atom, window_j_m2: float = 0.4,
                         n_atoms: int = N_ATOMS, lattice: np.ndarray | None = None) -> float:
    """E_ref (eV/atom) = E_min + window / (N e / A): structures within 0.4 J/m^2 of the
    lowest relaxed one get γ ≤ 0 (P §2.1.3, §4.1.3; recipe §3.1).  NaNs are ignored."""
    e = np.asarray(relaxed_energies_per_atom, dtype=np.float64)
    e = e[np.isfinite(e)]
    if e.size == 0:
        raise InputError("no finite relaxed energies to set E_ref from")
    return float(e.min() + window_j_m2 / energy_scale(lattice, n_atoms))
