"""Si bond-angle distribution and ``d_angle`` (§6.6).

Neighbours: pymatgen CrystalNN in geometric mode (distance_cutoffs=None, x_diff_weight=0,
porous_adjustment=False), the neighbour set of the most probable CN (empty if CN 0 wins).
Angles: every unordered pair of neighbours, arccos of u.v/(|u||v|) in degrees.  Per
structure the pooled angles are binned into 360 bins of 0.5 deg on [0, 180] (pandas.cut
semantics: right-closed, lowest edge included) and normalised to fractions.  d_angle is the
Euclidean distance between the mean train and mean generated fraction vectors.

The neighbours come from the same Voronoi tessellation as the motif fingerprint
(:mod:`dismai.metrics.crystalnn`); the reference runs a second CrystalNN pass per atom.
"""

from __future__ import annotations

import numpy as np

from dismai.metrics.bootstrap import euclidean_to
from dismai.metrics.crystalnn import (
    GEOMETRIC_SETTINGS,
    SpeciesTable,
    bond_angles,
    crystalnn_nn_data,
    most_probable_neighbours,
    voronoi_cells,
)

__all__ = ["ANGLE_EDGES", "ANGLE_CENTRES", "angle_distribution", "structure_bond_angles",
           "d_angle"]

#: np.arange(0, 180 + 0.5, 0.5): 361 edges, 360 bins (bin_bond_angles.py defaults)
ANGLE_EDGES = np.arange(0.0, 180.0 + 0.5, 0.5)
ANGLE_CENTRES = (ANGLE_EDGES[1:] + ANGLE_EDGES[:-1]) / 2


def angle_distribution(angles: np.ndarray) -> np.ndarray:
    """Fractions (360,) of angles per bin: (e_i, e_i+1], first bin [0, 0.5] (§6.6).

    The reference asserts all angles lie in [0, 180]; a structure with no angle at all
    (every atom CN <= 1) crashes it - here it gets an all-zero row.
    """
    a = np.asarray(angles, dtype=np.float64).ravel()
    if len(a) == 0:
        return np.zeros(len(ANGLE_EDGES) - 1)
    if a.min() < ANGLE_EDGES[0] or a.max() > ANGLE_EDGES[-1]:
        raise ValueError(f"bond angle outside [0, 180]: {a.min()} .. {a.max()}")
    b = np.searchsorted(ANGLE_EDGES, a, side="left") - 1
    b[b < 0] = 0  # include_lowest: 0 belongs to the first bin
    counts = np.bincount(b, minlength=len(ANGLE_EDGES) - 1).astype(np.float64)
    return counts / len(a)


def structure_bond_angles(lattice: np.ndarray, frac: np.ndarray, species=None,
                          cells=None) -> np.ndarray:
    """All CrystalNN bond angles (degrees) of one structure, pooled over atoms (§6.6)."""
    frac = np.asarray(frac, dtype=np.float64)
    species = ["Si"] * len(frac) if species is None else list(species)
    table = SpeciesTable.from_symbols(species)
    if cells is None:
        cells = voronoi_cells(lattice, frac, GEOMETRIC_SETTINGS.search_cutoff, species=species)
    out = [bond_angles(c, most_probable_neighbours(
        crystalnn_nn_data(c, i, table, GEOMETRIC_SETTINGS))) for i, c in enumerate(cells)]
    return np.concatenate(out) if out else np.zeros(0)


def d_angle(train_mean: np.ndarray):
    """Statistic for the bootstrap: Euclidean distance of mean fraction vectors (§6.6)."""
    return euclidean_to(train_mean)
