"""Recipe for the Fe60Ni20Cr20 alloy datasets: cluster-expansion Monte Carlo.

(Monte Carlo engine below; this header section holds the lattice <-> StructureSet glue.)
"""

from __future__ import annotations

import numpy as np

from dismai import fcc
from dismai.energy.cluster_expansion import SPECIES
from dismai.structures import StructureSet

COMPOSITION = {"Cr": 51, "Fe": 154, "Ni": 51}


def default_recipe(temperature: int, sro: str) -> dict:
    return {"temperature": temperature, "sro": sro}


def alloy_species() -> tuple[str, ...]:
    return tuple(s for s in SPECIES for _ in range(COMPOSITION[s]))


def structures_from_site_species(site_species: np.ndarray) -> StructureSet:
    """(M, 256) species index per site (0 Cr, 1 Fe, 2 Ni) -> block-ordered StructureSet."""
    s = np.asarray(site_species)
    if s.ndim == 1:
        s = s[None]
    order = np.argsort(s, axis=1, kind="stable")
    frac = fcc.site_frac()[order]
    return StructureSet(fcc.lattice_matrix(), alloy_species(), frac)


def random_site_species(n: int, seed: int = 0) -> np.ndarray:
    """n uniformly random arrangements of the 51/154/51 composition on the 256 sites."""
    rng = np.random.default_rng(seed)
    base = np.repeat(np.arange(3, dtype=np.uint8), [COMPOSITION[s] for s in SPECIES])
    return np.stack([rng.permutation(base) for _ in range(n)])
