"""Geometry of the Dismai-Bench alloy lattice: the 4x4x4 conventional FCC supercell.

Sites are indexed on an integer grid in units of a/2 (a = 3.6 Å): (i, j, k) with
0 <= i, j, k < 8 and i + j + k even, ordered lexicographically.  That makes every
neighbour lookup plain integer arithmetic, which is exact for on-lattice structures
(§1.1, §3.1, §3.6).
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np

A_FCC = 3.6  # Å, hard-coded length scale of every alloy algorithm (§1.3)
N_CELLS = 4  # conventional cells per edge
GRID = 2 * N_CELLS  # grid points per edge in units of a/2
N_SITES = 4 * N_CELLS**3  # 256
CELL_LENGTH = A_FCC * N_CELLS  # 14.4 Å

#: Representative vector of pair shells 1..7 in units of a/2 (§3.1 table).
SHELL_VECTORS = ((1, 1, 0), (2, 0, 0), (2, 1, 1), (2, 2, 0), (3, 1, 0), (2, 2, 2), (3, 2, 1))
#: Pairs per site in each shell, m_k = z_k / 2.
MULTIPLICITY = (6, 3, 12, 6, 12, 4, 24)
N_SHELLS = len(SHELL_VECTORS)


def lattice_matrix() -> np.ndarray:
    """The 14.4 Å cubic cell (rows are cell vectors)."""
    return np.eye(3) * CELL_LENGTH


@cache
def _grid() -> np.ndarray:
    pts = [p for p in itertools.product(range(GRID), repeat=3) if sum(p) % 2 == 0]
    return np.array(pts, dtype=np.int64)


def site_grid() -> np.ndarray:
    """(256, 3) integer site coordinates in units of a/2."""
    return _grid().copy()


def site_frac() -> np.ndarray:
    """(256, 3) fractional coordinates of the ideal sites."""
    return _grid() / GRID


@cache
def _grid_to_index() -> np.ndarray:
    lut = -np.ones((GRID, GRID, GRID), dtype=np.int64)
    g = _grid()
    lut[g[:, 0], g[:, 1], g[:, 2]] = np.arange(len(g))
    return lut


def grid_to_index(grid: np.ndarray) -> np.ndarray:
    """Site index for integer grid coordinates (any shape (..., 3)); wraps periodically.

    Points with odd coordinate sum are not sites and map to -1.
    """
    g = np.asarray(grid, dtype=np.int64) % GRID
    return _grid_to_index()[g[..., 0], g[..., 1], g[..., 2]]


def star(vector) -> np.ndarray:
    """All signed permutations of `vector` (its O_h star), deduplicated, sorted."""
    out = set()
    for perm in itertools.permutations(vector):
        for signs in itertools.product((1, -1), repeat=3):
            out.add(tuple(int(s * p) for s, p in zip(signs, perm, strict=True)))
    return np.array(sorted(out), dtype=np.int64)


@cache
def neighbour_table(shell: int) -> np.ndarray:
    """(256, z_shell) indices of the shell-`shell` neighbours (shell = 1..7) of every site."""
    vecs = star(SHELL_VECTORS[shell - 1])
    table = grid_to_index(_grid()[:, None, :] + vecs[None, :, :])
    assert (table >= 0).all()
    return table


@cache
def all_neighbour_tables() -> tuple[np.ndarray, ...]:
    return tuple(neighbour_table(k) for k in range(1, N_SHELLS + 1))
