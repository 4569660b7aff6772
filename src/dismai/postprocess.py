"""Post-processing before relaxation: pushing apart atoms that are too close.

Generated a-Si and interface structures often contain pairs of atoms far closer than any
bond; a potential (or the optimiser) can explode on them.  Dismai-Bench therefore runs
`move_atoms_apart.py` before relaxing (§6.1, paper 4.3.1-4.3.2):
repeatedly find all pairs closer than 1.5 Å and push them to 1.6 Å, at most 100 times;
structures that still have close pairs are rejected (count as failed).

Two modes (`reference_compatible`):

- default (minimum image): each close pair is separated along its **minimum-image**
  vector, both atoms moving by half the deficit, and a pair already separated by an
  earlier move in the same sweep is left alone.  A pair that touches across the cell
  boundary is fixed by a small, local displacement.
- `reference_compatible=True`: the reference behaviour (spec 9.5).  For each pair i < j
  the **raw Cartesian difference** d = x_j - x_i is used and only atom j moves, to
  x_i + d * 1.6/|d|, even if that pulls a pair that is already far enough apart back to
  1.6 Å.  A pair touching across the boundary makes atom j jump up to a cell length,
  to 1.6 Å from atom i's in-cell position.

Both modes use the reference's pair order (unique sorted pairs, lexicographic, moved
sequentially with the current coordinates), its iteration count (the number of
close-pair checks: 1 for a clean structure; success only if one of the first
`max_iter` checks finds no pair) and leave coordinates unwrapped.  Coincident atoms
(distance 0, where the reference would produce NaN) are separated along a fixed
pseudo-random direction seeded by the pair indices.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import numpy as np

from dismai.fileio import atomic_path
from dismai.structures import StructureSet

__all__ = ["close_pairs", "move_apart_one", "move_atoms_apart", "MoveApartResult"]


def close_pairs(cart: np.ndarray, lattice: np.ndarray, min_dist: float) -> np.ndarray:
    """Unique periodic pairs (i < j) closer than min_dist, lexicographically sorted.

    Any periodic image counts (as pymatgen's get_neighbor_list in the reference); an
    atom's own images are ignored.
    """
    from ase.neighborlist import primitive_neighbor_list

    i, j, d = primitive_neighbor_list("ijd", (True, True, True), lattice, cart, min_dist,
                                      self_interaction=False)
    keep = (i < j) & (d < min_dist)
    if not keep.any():
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.stack([i[keep], j[keep]], axis=1).astype(np.int64)
    return np.unique(pairs, axis=0)  # unique rows, lexicographic order


_IMAGES = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)],
                   dtype=np.float64)


def _min_image(d: np.ndarray, lattice: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """Shortest periodic image of one Cartesian vector (exact for skewed cells too)."""
    f = d @ inv
    f -= np.round(f)
    cands = (f + _IMAGES) @ lattice
    return cands[np.argmin((cands**2).sum(axis=1))]


def _fallback_direction(i: int, j: int) -> np.ndarray:
    v = np.random.default_rng([int(i), int(j)]).normal(size=3)
    return v / np.linalg.norm(v)


def move_apart_one(cart: np.ndarray, lattice: np.ndarray, *, min_dist: float = 1.5,
                   push: float = 0.1, max_iter: int = 100,
                   reference_compatible: bool = False
                   ) -> tuple[np.ndarray, bool, int, np.ndarray]:
    """Push close atoms of one structure apart.

    Returns (new Cartesian coordinates, ok, iterations, close pairs found by the first
    check).  `iterations` counts close-pair checks as the reference does.
    """
    x = np.array(cart, dtype=np.float64)
    lattice = np.asarray(lattice, dtype=np.float64)
    inv = np.linalg.inv(lattice)
    target = min_dist + push
    first = None
    for it in range(1, max_iter + 1):
        pairs = close_pairs(x, lattice, min_dist)
        if first is None:
            first = pairs
        if len(pairs) == 0:
            return x, True, it, first
        for i, j in pairs:
            if reference_compatible:
                d = x[j] - x[i]
                r = float(np.linalg.norm(d))
                u = d / r if r > 0 else _fallback_direction(i, j)
                x[j] = x[i] + u * target
            else:
                d = _min_image(x[j] - x[i], lattice, inv)
                r = float(np.linalg.norm(d))
                if r >= min_dist:
                    continue  # already fixed by an earlier move in this sweep
                u = d / r if r > 0 else _fallback_direction(i, j)
                half = 0.5 * (target - r)
                x[i] -= u * half
                x[j] += u * half
    return x, False, max_iter, first


@dataclass
class MoveApartResult:
    """structures: survivors in input order (properties carried, plus `input_index` and
    `move_apart_iterations`); per-input arrays ok, iterations, first_count; first_pairs
    holds each input's close pairs from the first check."""

    structures: StructureSet
    ok: np.ndarray
    iterations: np.ndarray
    first_count: np.ndarray
    first_pairs: list[np.ndarray] = field(default_factory=list)

    @property
    def failed(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.ok)]

    @property
    def percent_failed(self) -> float:
        return 100.0 * float((~self.ok).sum()) / max(len(self.ok), 1)

    def write_log_csv(self, path) -> None:
        """The reference's too_close_count.csv: survivors only, 1-based `No`."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["No", "iterations", "count", "pair_index"])
        for k in np.flatnonzero(self.ok):
            pairs = self.first_pairs[k].tolist()
            w.writerow([int(k) + 1, int(self.iterations[k]), int(self.first_count[k]), pairs])
        with atomic_path(path, suffix=".csv") as tmp:
            tmp.write_text(buf.getvalue())


def move_atoms_apart(structures: StructureSet, *, min_dist: float = 1.5, push: float = 0.1,
                     max_iter: int = 100, reference_compatible: bool = False
                     ) -> MoveApartResult:
    """Apply `move_apart_one` to every structure; failures are dropped from the output."""
    cart = structures.cart()
    m = len(structures)
    ok = np.zeros(m, dtype=bool)
    iters = np.zeros(m, dtype=np.int64)
    counts = np.zeros(m, dtype=np.int64)
    firsts: list[np.ndarray] = []
    new = np.empty_like(cart)
    for k in range(m):
        new[k], ok[k], iters[k], first = move_apart_one(
            cart[k], structures.lattice, min_dist=min_dist, push=push, max_iter=max_iter,
            reference_compatible=reference_compatible)
        counts[k] = len(first)
        firsts.append(first)
    keep = np.flatnonzero(ok)
    frac = structures.frac[keep].copy()
    moved = iters[keep] > 1  # untouched structures keep their exact input coordinates
    frac[moved] = new[keep][moved] @ np.linalg.inv(structures.lattice)
    props = {k: v[keep] for k, v in structures.properties.items()}
    props["input_index"] = keep.astype(np.int64)
    props["move_apart_iterations"] = iters[keep]
    out = StructureSet(structures.lattice, structures.species, frac, props)
    return MoveApartResult(out, ok, iters, counts, firsts)
