"""Small geometric helpers shared by the alloy lattice matching and cluster counting.

Every alloy algorithm of the reference works in the 14.4 Å reference cube (spec
§1.3, §9.7).  A StructureSet validated against an alloy dataset
template has that cell to within 1e-3 Å, so generated atoms are placed into the exact
reference cube by their fractional coordinates (as the reference does when it builds the
cleaned structure), which lets every periodic search use scipy's cKDTree with
``boxsize=14.4``.
"""

from __future__ import annotations

import numpy as np

from dismai import fcc
from dismai.energy.cluster_expansion import SPECIES
from dismai.errors import InputError
from dismai.structures import StructureSet

L = fcc.CELL_LENGTH  # 14.4 Å
HALF = fcc.A_FCC / 2  # 1.8 Å, the integer site grid step
A = fcc.A_FCC  # 3.6 Å

__all__ = [
    "L",
    "HALF",
    "A",
    "check_alloy_cell",
    "species_indices",
    "wrap_cart",
    "wrapped_cartesian",
    "min_image",
    "strictly_within",
    "find_basis",
]


def check_alloy_cell(structures: StructureSet, atol: float = 1e-3) -> None:
    """Raise ValueError unless the set uses the 14.4 Å reference cube (§1.3, §9.7)."""
    if not np.allclose(structures.lattice, fcc.lattice_matrix(), atol=atol):
        raise InputError(
            "alloy evaluation needs the 14.4 Å cubic reference cell; got "
            f"{np.round(structures.lattice, 4).tolist()}"
        )


def species_indices(species) -> np.ndarray:
    """Species symbols -> indices into cluster_expansion.SPECIES (0 Cr, 1 Fe, 2 Ni)."""
    lut = {s: i for i, s in enumerate(SPECIES)}
    bad = sorted(set(species) - set(lut))
    if bad:
        # the reference asserts on any key other than Cr/Fe/Ni (§3.4, §9.12)
        raise InputError(f"alloy evaluation supports only {list(SPECIES)}; got {bad}")
    return np.array([lut[s] for s in species], dtype=np.int64)


def wrap_cart(x: np.ndarray) -> np.ndarray:
    """Cartesian coordinates into [0, L) (cKDTree's periodic box needs the half-open range)."""
    x = np.mod(x, L)
    x[x >= L] = 0.0  # np.mod(-1e-17, L) == L in floating point
    return x


def wrapped_cartesian(structures: StructureSet) -> np.ndarray:
    """(M, N, 3) positions in the reference cube, placed by fractional coordinates."""
    return wrap_cart(structures.frac * L)


def min_image(delta: np.ndarray) -> np.ndarray:
    """Minimum-image Cartesian difference vectors in the cube."""
    return delta - L * np.rint(delta / L)


def strictly_within(r: float) -> float:
    """Radius for cKDTree ball queries (which use <=) that reproduces pymatgen's strict d < r.

    pymatgen's get_neighbor_list(r) excludes points at exactly r (checked with pymatgen
    2026.x); cKDTree.query(distance_upper_bound=r) is already strict.
    """
    return float(np.nextafter(r, 0.0))


class _LazyNeighbours:
    """Ball queries in chunks of atoms, on demand: find_basis usually stops at the first atom."""

    def __init__(self, tree, cart: np.ndarray, r: float, chunk: int = 16):
        self.tree, self.cart, self.r, self.chunk = tree, cart, r, chunk
        self.done: dict[int, list] = {}

    def __getitem__(self, j: int):
        if j not in self.done:
            lo = (j // self.chunk) * self.chunk
            hits = self.tree.query_ball_point(self.cart[lo:lo + self.chunk], self.r)
            self.done.update(zip(range(lo, lo + len(hits)), hits, strict=True))
        return self.done[j]


def find_basis(cart: np.ndarray, margin: float = 0.4, normalise_c: bool = True,
               tree=None, neighbours=None) -> tuple[np.ndarray | None, int]:
    """Local cubic axes from the first atom with six 2NN-like neighbours (§2.3 A, §3.2).

    Loops over atoms in index order: neighbours within 3.6 + margin Å with d >= 3.6 - margin;
    exactly 6 are required; they are sorted by |d - 3.6| (numpy's default argsort, as the
    reference); a is the first, b the first later one within 0.0175 rad of 90° to a;
    c = a x b (normalised for §2.3, not for §3.2, where star vectors are rescaled anyway).
    Returns (B with rows a, b, c, pin atom index) or (None, -1) when no atom qualifies.

    The order of equally good neighbours can differ from pymatgen's neighbour-list order
    (§10.5); on perfect lattices every choice is a signed permutation.
    """
    from scipy.spatial import cKDTree

    cart = np.asarray(cart, dtype=np.float64)
    if len(cart) == 0:
        return None, -1
    if neighbours is None:
        if tree is None:
            tree = cKDTree(cart, boxsize=L)
        neighbours = _LazyNeighbours(tree, cart, strictly_within(A + margin))
    lo = A - margin
    for j in range(len(cart)):
        idx = np.sort(np.asarray(neighbours[j], dtype=np.int64))  # by index
        idx = idx[idx != j]
        if len(idx) < 6:
            continue
        delta = min_image(cart[idx] - cart[j])
        d = np.sqrt(np.einsum("ij,ij->i", delta, delta))
        keep = d >= lo
        if keep.sum() != 6:
            continue
        vec, dk = delta[keep], d[keep]
        order = np.argsort(np.abs(dk - A))
        a = vec[order[0]] / dk[order[0]]
        for o in order[1:]:
            b = vec[o] / dk[o]
            if abs(np.arccos(np.clip(a @ b, -1.0, 1.0)) - np.pi / 2) <= 0.0175:
                c = np.cross(a, b)
                if normalise_c:
                    c = c / np.linalg.norm(c)
                return np.stack([a, b, c]), j
    return None, -1
