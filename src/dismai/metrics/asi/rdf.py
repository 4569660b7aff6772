"""Si-Si radial distribution function and ``d_rdf`` (§6.7).

The reference builds a 2x2x2 supercell (2048 atoms) per structure and histograms all
2048 x 2047 minimum-image distances with vasppy (500 bins on [0, 10] Å, raw ``.rdf``, not
smeared): g_b = hist_b / (rho V_shell,b N) with rho = N / V.  Every ordered pair (i, j, image)
of the original cell within 10 Å appears exactly 8 times among the supercell pairs, and
rho is the same, so the histogram of all neighbour images within 10 Å of the 256-atom cell
(self image excluded, other images of the same atom included) gives the same g(r) without
the 2048-atom distance matrix.  That equivalence needs the supercell's minimum image to see
every pair within 10 Å, i.e. every perpendicular height of the original cell >= 10 Å; for
smaller cells :func:`rdf` falls back to the literal supercell computation.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["R_MAX", "N_BINS", "RDF_EDGES", "RDF_R", "rdf", "rdf_supercell_bruteforce",
           "shell_volumes"]

R_MAX = 10.0  # Å, vasppy default r_max (§6.7)
N_BINS = 500  # vasppy default nbins -> dr = 0.02 Å
RDF_EDGES = np.linspace(0.0, R_MAX, N_BINS + 1)
#: bin midpoints 0.01 ... 9.99 Å (vasppy ``r``)
RDF_R = RDF_EDGES[:-1] + (R_MAX - 0.0) / N_BINS / 2.0


def shell_volumes(edges: np.ndarray = RDF_EDGES) -> np.ndarray:
    """4/3 pi (r_{b+1}^3 - r_b^3), as vasppy."""
    return 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)


def _heights(lattice: np.ndarray) -> np.ndarray:
    vol = abs(np.linalg.det(lattice))
    return vol / np.linalg.norm(np.cross(lattice[[1, 2, 0]], lattice[[2, 0, 1]]), axis=1)


def _normalise(hist: np.ndarray, n: int, volume: float) -> np.ndarray:
    rho = float(n) / volume
    return hist / rho / (shell_volumes() * float(n))


def pair_distances(lattice: np.ndarray, frac: np.ndarray, r_max: float = R_MAX,
                   return_atoms: bool = False):
    """All ordered-pair distances <= r_max between atoms and periodic images (no self pair);
    with ``return_atoms`` also the (i, j) atom indices of each pair (for partial g(r))."""
    lattice = np.asarray(lattice, dtype=np.float64)
    f = np.asarray(frac, dtype=np.float64) % 1.0
    n = len(f)
    k = np.ceil(r_max / _heights(lattice)).astype(int)
    shifts = np.array([(a, b, c) for a in range(-k[0], k[0] + 1) for b in range(-k[1], k[1] + 1)
                       for c in range(-k[2], k[2] + 1)], dtype=np.float64)
    img_f = (f[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    img = img_f @ lattice
    img_atom = np.tile(np.arange(n), len(shifts))
    is_self_shift = np.repeat(np.all(shifts == 0, axis=1), n)
    root = f @ lattice
    hits = cKDTree(img).query_ball_point(root, r_max + 1e-9, return_sorted=False)
    counts = np.fromiter((len(h) for h in hits), dtype=np.int64, count=n)
    j = np.fromiter((x for h in hits for x in h), dtype=np.int64, count=int(counts.sum()))
    i = np.repeat(np.arange(n), counts)
    drop = is_self_shift[j] & (img_atom[j] == i)  # the atom itself
    i, j = i[~drop], j[~drop]
    d = img[j] - root[i]
    dist = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2])
    return (dist, i, img_atom[j]) if return_atoms else dist


def rdf(lattice: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """g(r) (500,) of one structure, equal to the reference's 2x2x2-supercell vasppy value."""
    lattice = np.asarray(lattice, dtype=np.float64)
    if _heights(lattice).min() < R_MAX:
        return rdf_supercell_bruteforce(lattice, frac)
    d = pair_distances(lattice, frac, R_MAX)
    hist = np.histogram(d, bins=N_BINS, range=(0.0, R_MAX))[0]
    return _normalise(hist, len(frac), abs(np.linalg.det(lattice)))


def rdf_supercell_bruteforce(lattice: np.ndarray, frac: np.ndarray,
                             chunk: int = 256) -> np.ndarray:
    """The reference computation literally: 2x2x2 supercell, minimum-image distances of all
    ordered pairs i != j (pymatgen ``get_all_distances``: wrapped fractional difference, best
    of the 27 neighbouring images), numpy histogram, vasppy normalisation.  O(N^2); for tests
    and for cells thinner than 10 Å."""
    lattice = np.asarray(lattice, dtype=np.float64)
    f = np.asarray(frac, dtype=np.float64) % 1.0
    shifts = np.array([(a, b, c) for a in range(2) for b in range(2) for c in range(2)],
                      dtype=np.float64)
    sf = ((f[None, :, :] + shifts[:, None, :]) / 2.0).reshape(-1, 3)
    sl = 2.0 * lattice
    n = len(sf)
    images = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)],
                      dtype=np.float64)
    hist = np.zeros(N_BINS, dtype=np.int64)
    for s in range(0, n, chunk):
        df = sf[None, :, :] - sf[s:s + chunk, None, :]
        df -= np.round(df)
        best = np.full(df.shape[:2], np.inf)
        for im in images:
            v = (df + im) @ sl
            best = np.minimum(best, np.sqrt((v * v).sum(-1)))
        rows = np.arange(s, min(s + chunk, n))
        best[rows - s, rows] = np.nan  # i == j
        dd = best[np.isfinite(best)]
        hist += np.histogram(dd, bins=N_BINS, range=(0.0, R_MAX))[0]
    return _normalise(hist, n, abs(np.linalg.det(sl)))
