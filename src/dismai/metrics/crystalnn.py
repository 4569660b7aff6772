"""CrystalNN neighbours, CrystalNN fingerprints and bond angles from one tessellation.

The reference (§6.4, §6.6, §7.3, §8.1) calls pymatgen
``CrystalNN.get_nn_data`` site by site, twice per a-Si atom (fingerprint and bond angles),
and every call runs its own qhull Voronoi tessellation of the atoms within 7 Å; then matminer
evaluates each order parameter (OP) with its own pure-Python ``LocalStructOrderParams``.
That is ~25 ms per atom.  Here, per structure:

1. :func:`voronoi_cells` - ONE tessellation of the cell atoms plus their periodic images
   within ``search_cutoff``; face solid angles and areas are computed vectorised with
   pymatgen's formulas (``solid_angle``, ``vol_tetra``, area = 3 V / face_dist).  A root
   cell is the exact periodic Voronoi cell, and it equals the reference's cell (built from the
   points within 7 Å of the centre only) whenever every vertex lies closer than
   cutoff / 2 to the centre; sites where that does not hold (large voids) or whose cell is
   unbounded are recomputed with pymatgen's own per-site ``VoronoiNN`` - so the faces are
   the reference's in every case.
2. :func:`crystalnn_nn_data` - pymatgen's ``CrystalNN.get_nn_data`` post-processing
   (porous adjustment, electronegativity factor, distance taper, 3-decimal rounding,
   semicircle CN weights, §8.1 steps 2-11) applied to the shared faces, once per
   parameter set (fingerprint settings and the geometric bond-angle settings share the
   tessellation).
3. :class:`CrystalNNFingerprinter` - matminer ``CrystalNNFingerprint`` assembly
   (wt, wt x OP per CN 1..24) with the OPs from the numba port in
   :mod:`dismai.metrics._order_params`; op types without a port use pymatgen.  Optional
   neighbour-species fractions (``nn_species``) give the interface benchmark's extra
   2 x 24 features (§7.3 step 4).

Equality with the per-site pymatgen/matminer path is checked in tests and in
benchmarks/asi_fingerprint_speed.py.  Everything is deterministic; structures run in
parallel processes with :func:`map_structures`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from scipy.spatial import Voronoi, cKDTree

from dismai.metrics._order_params import OP_CODES, op_param_vector, op_values

__all__ = [
    "CrystalNNSettings",
    "FINGERPRINT_SETTINGS",
    "GEOMETRIC_SETTINGS",
    "VoronoiCell",
    "NNData",
    "SpeciesTable",
    "voronoi_cells",
    "voronoi_cells_pymatgen",
    "crystalnn_nn_data",
    "most_probable_neighbours",
    "bond_angles",
    "CrystalNNFingerprinter",
    "ops_preset",
    "OPS_PRESET_MOTIFS",
    "structure_fingerprints",
    "map_structures",
]


@dataclass(frozen=True)
class CrystalNNSettings:
    """pymatgen ``CrystalNN`` constructor arguments that change the neighbour data."""

    cation_anion: bool = False
    distance_cutoffs: tuple[float, float] | None = (0.5, 1.0)
    x_diff_weight: float = 3.0
    porous_adjustment: bool = True
    search_cutoff: float = 7.0


#: pymatgen defaults, as matminer CrystalNNFingerprint uses them (§6.4)
FINGERPRINT_SETTINGS = CrystalNNSettings()
#: the bond-angle pass: distance_cutoffs=None, x_diff_weight=0, porous_adjustment=False (§6.6)
GEOMETRIC_SETTINGS = CrystalNNSettings(distance_cutoffs=None, x_diff_weight=0.0,
                                       porous_adjustment=False)


@dataclass
class VoronoiCell:
    """Voronoi faces of one site (all neighbours, before any target filter).

    centre: (3,) Cartesian position used for the tessellation (wrapped into the cell).
    nbr_index: (k,) atom index (in the structure) of each face's neighbour.
    nbr_cart: (k, 3) Cartesian position of the neighbour image.
    solid_angle, area: (k,) pymatgen's face solid angle and area.
    """

    centre: np.ndarray
    nbr_index: np.ndarray
    nbr_cart: np.ndarray
    solid_angle: np.ndarray
    area: np.ndarray


@dataclass
class NNData:
    """pymatgen ``CrystalNN.NNData`` with neighbours as indices into the cell's faces.

    order: face indices of the weighted neighbours, sorted as pymatgen sorts them.
    weight: their rounded weights.  cn_weights: CN -> probability (insertion order as
    pymatgen).  cn_nninfo: CN -> face indices (a prefix of ``order``).
    """

    order: np.ndarray
    weight: np.ndarray
    cn_weights: dict
    cn_nninfo: dict


# ------------------------------------------------------------------ species properties
@dataclass
class SpeciesTable:
    """Per-atom chemistry CrystalNN needs: radius for the distance taper, electronegativity,
    oxidation state (for cation_anion), all taken from pymatgen so values match.

    Built with :meth:`from_symbols`; one row per atom of the structure.
    """

    symbols: tuple
    radius: np.ndarray  # pymatgen _get_radius (0 where unavailable)
    default_radius: np.ndarray  # covalent (or atomic) radius fallback
    electronegativity: np.ndarray
    oxidation: np.ndarray  # NaN where none set

    @classmethod
    def from_symbols(cls, symbols: Sequence[str],
                     oxidation_states: dict[str, float] | None = None) -> SpeciesTable:
        symbols = tuple(symbols)
        props = {s: _species_props(s, None if oxidation_states is None
                                   else oxidation_states.get(s)) for s in set(symbols)}
        arr = np.array([props[s] for s in symbols], dtype=np.float64).reshape(len(symbols), 4)
        return cls(symbols, arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(),
                   arr[:, 3].copy())


@cache
def _species_props(symbol: str, oxi: float | None) -> tuple[float, float, float, float]:
    """(radius, default radius, X, oxidation) exactly as pymatgen's CrystalNN reads them."""
    from pymatgen.core import Element, Lattice, PeriodicSite, Species
    from pymatgen.core.local_env import _get_default_radius, _get_radius

    sp = Element(symbol) if oxi is None else Species(symbol, oxi)
    site = PeriodicSite(sp, [0.0, 0.0, 0.0], Lattice.cubic(10.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = float(_get_radius(site))
        d = float(_get_default_radius(site))
    x = float(sp.X)
    return r, d, x, (math.nan if oxi is None else float(oxi))


# ------------------------------------------------------------------ Voronoi
def _images_within(lattice: np.ndarray, frac: np.ndarray, cutoff: float):
    """Wrapped root positions plus every periodic image within `cutoff` of a root atom.

    Returns (cart (P, 3), atom index (P,)); the first n rows are the root atoms.
    """
    n = len(frac)
    f = frac % 1.0
    f[f >= 1.0] = 0.0
    vol = abs(np.linalg.det(lattice))
    heights = vol / np.linalg.norm(np.cross(lattice[[1, 2, 0]], lattice[[2, 0, 1]]), axis=1)
    k = np.ceil(cutoff / heights).astype(int)
    shifts = np.array([(i, j, m) for i in range(-k[0], k[0] + 1)
                       for j in range(-k[1], k[1] + 1) for m in range(-k[2], k[2] + 1)
                       if (i, j, m) != (0, 0, 0)], dtype=np.float64).reshape(-1, 3)
    root = f @ lattice
    cand_f = (f[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    cand = cand_f @ lattice
    idx = np.tile(np.arange(n), len(shifts))
    d, _ = cKDTree(root).query(cand, distance_upper_bound=cutoff + 1e-6)
    keep = np.isfinite(d)
    return np.concatenate([root, cand[keep]]), np.concatenate([np.arange(n), idx[keep]])


def voronoi_cells(lattice: np.ndarray, frac: np.ndarray, cutoff: float = 7.0,
                  sites: Sequence[int] | None = None, *, species: Sequence[str] | None = None,
                  fallback: bool = True, return_fallback: bool = False):
    """Voronoi faces of the requested sites from one tessellation of the periodic structure.

    lattice (3, 3) rows; frac (n, 3).  A site whose cell is unbounded or reaches farther than
    cutoff / 2 from its centre is recomputed with pymatgen's per-site VoronoiNN (the
    reference's own path, including its cutoff doubling) when ``fallback`` is True; species
    are then needed for the pymatgen Structure (default: all "Si", which does not change
    geometry).  Returns a list of :class:`VoronoiCell` (and the fallback site list when
    ``return_fallback``).
    """
    lattice = np.asarray(lattice, dtype=np.float64)
    frac = np.asarray(frac, dtype=np.float64)
    n = len(frac)
    sites = list(range(n)) if sites is None else [int(s) for s in sites]
    pts, atom = _images_within(lattice, frac, cutoff)
    try:
        vor = Voronoi(pts)
    except Exception:  # qhull failure (e.g. coincident atoms): the reference's own path
        if not fallback:
            raise
        cells = voronoi_cells_pymatgen(lattice, frac, cutoff, sites, species=species)
        return (cells, list(sites)) if return_fallback else cells
    rp = vor.ridge_points
    verts = vor.vertices
    want = np.zeros(n, dtype=bool)
    want[sites] = True
    # one face entry per (root site, ridge) with the site on either side
    sel0 = np.flatnonzero((rp[:, 0] < n) & want[np.minimum(rp[:, 0], n - 1)])
    sel1 = np.flatnonzero((rp[:, 1] < n) & want[np.minimum(rp[:, 1], n - 1)])
    ridge = np.concatenate([sel0, sel1])
    centre_pt = np.concatenate([rp[sel0, 0], rp[sel1, 1]])
    other_pt = np.concatenate([rp[sel0, 1], rp[sel1, 0]])
    order = np.argsort(centre_pt, kind="stable")
    ridge, centre_pt, other_pt = ridge[order], centre_pt[order], other_pt[order]
    rv = vor.ridge_vertices
    vlists = [rv[r] for r in ridge.tolist()]
    nv = np.fromiter((len(v) for v in vlists), dtype=np.int64, count=len(vlists))
    flat = np.fromiter((x for v in vlists for x in v), dtype=np.int64, count=int(nv.sum()))
    starts = (np.cumsum(nv) - nv).astype(np.int64)
    owner = np.repeat(np.arange(len(ridge)), nv)
    bad_face = np.bincount(owner, weights=(flat < 0), minlength=len(ridge)) > 0
    bad_face |= nv < 3
    centre_xyz = pts[centre_pt]
    # fan triangles (v0, vt, vt+1), t = 1..m-2, in pymatgen's order
    ntri = np.maximum(nv - 2, 0)
    face_of_tri = np.repeat(np.arange(len(ridge)), ntri)
    t_local = np.arange(int(ntri.sum())) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1
    base = starts[face_of_tri]
    i0 = flat[base]
    i1 = flat[base + t_local]
    i2 = flat[base + t_local + 1]
    ok_tri = ~bad_face[face_of_tri]
    i0, i1, i2 = np.where(ok_tri, i0, 0), np.where(ok_tri, i1, 0), np.where(ok_tri, i2, 0)
    c = centre_xyz[face_of_tri]
    v0, v1, v2 = verts[i0], verts[i1], verts[i2]
    sa_tri = _solid_angle_tri(c, v0, v1, v2)
    vol_tri = _vol_tetra(c, v0, v1, v2)
    nf = len(ridge)
    solid = np.bincount(face_of_tri, weights=np.where(ok_tri, sa_tri, 0.0), minlength=nf)
    volume = np.bincount(face_of_tri, weights=np.where(ok_tri, vol_tri, 0.0), minlength=nf)
    other_xyz = pts[other_pt]
    dvec = centre_xyz - other_xyz
    face_dist = np.sqrt(dvec[:, 0] * dvec[:, 0] + dvec[:, 1] * dvec[:, 1]
                        + dvec[:, 2] * dvec[:, 2]) / 2
    area = 3 * volume / face_dist
    # farthest vertex of each cell (decides whether the 7 Å per-site cell is the same cell)
    vv = verts[np.maximum(flat, 0)] - centre_xyz[owner]
    vdist = np.sqrt((vv * vv).sum(axis=1))
    vdist[flat < 0] = np.inf
    far = np.zeros(n)
    bad_site = np.zeros(n, dtype=bool)
    np.maximum.at(far, centre_pt[owner], vdist)
    np.logical_or.at(bad_site, centre_pt, bad_face)
    bounds = np.searchsorted(centre_pt, np.arange(n + 1))
    cells: list[VoronoiCell | None] = []
    redo = []
    for s in sites:
        a, b = bounds[s], bounds[s + 1]
        if b == a or bad_site[s] or not far[s] < cutoff / 2.0 - 1e-9:
            redo.append(s)
            cells.append(None)
            continue
        cells.append(VoronoiCell(pts[s].copy(), atom[other_pt[a:b]], other_xyz[a:b],
                                 solid[a:b], area[a:b]))
    if redo:
        if not fallback:
            raise RuntimeError(f"sites {redo} need the per-site Voronoi fallback")
        pm = voronoi_cells_pymatgen(lattice, frac, cutoff, redo, species=species)
        it = iter(pm)
        cells = [c if c is not None else next(it) for c in cells]
    return (cells, redo) if return_fallback else cells


def _solid_angle_tri(c, v0, v1, v2):
    """pymatgen ``solid_angle`` contribution of one fan triangle, vectorised."""
    d0, d1, d2 = v0 - c, v1 - c, v2 - c
    r0, r1, r2 = _norm3(d0), _norm3(d1), _norm3(d2)
    tp = np.abs(_dot3(d0, _cross3(d1, d2)))
    de = r0 * r1 * r2 + r2 * _dot3(d0, d1) + r1 * _dot3(d0, d2) + r0 * _dot3(d1, d2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ang = np.arctan(tp / de)
    ang = np.where(de == 0, np.where(tp > 0, 0.5 * math.pi, -0.5 * math.pi), ang)
    return np.where(ang > 0, ang, ang + math.pi) * 2


def _vol_tetra(c, v0, v1, v2):
    """pymatgen ``vol_tetra(centre, v0, vj, vk)``."""
    return np.abs(_dot3(c - v2, _cross3(v0 - v2, v1 - v2))) / 6


def _dot3(a, b):
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def _norm3(a):
    return np.sqrt(_dot3(a, a))


def _cross3(a, b):
    return np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
                     a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                     a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)


def voronoi_cells_pymatgen(lattice, frac, cutoff: float = 7.0,
                           sites: Sequence[int] | None = None, *,
                           species: Sequence[str] | None = None) -> list[VoronoiCell]:
    """The reference path: pymatgen ``VoronoiNN.get_voronoi_polyhedra`` site by site."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.core.local_env import VoronoiNN

    lattice = np.asarray(lattice, dtype=np.float64)
    f = np.asarray(frac, dtype=np.float64) % 1.0
    f[f >= 1.0] = 0.0
    n = len(f)
    species = ["Si"] * n if species is None else list(species)
    struct = Structure(Lattice(lattice), species, f)
    sites = range(n) if sites is None else sites
    out = []
    for s in sites:
        vnn = VoronoiNN(weight="solid_angle", targets=None, cutoff=cutoff)  # fresh: it mutates
        faces = vnn.get_voronoi_polyhedra(struct, int(s))
        vals = list(faces.values())
        out.append(VoronoiCell(
            np.asarray(struct[int(s)].coords, dtype=np.float64),
            np.array([v["site"].index for v in vals], dtype=np.int64),
            np.array([v["site"].coords for v in vals], dtype=np.float64).reshape(-1, 3),
            np.array([v["solid_angle"] for v in vals], dtype=np.float64),
            np.array([v["area"] for v in vals], dtype=np.float64),
        ))
    return out


# ------------------------------------------------------------------ CrystalNN weights
def _semicircle(x: float) -> float:
    return 0.5 * ((x * math.sqrt(1 - x ** 2)) + (math.atan(x / math.sqrt(1 - x ** 2))))


def _semicircle_integral(dist_bins: list, idx: int) -> float:
    """pymatgen ``CrystalNN._semicircle_integral`` (radius 1), same float operations."""
    x1 = dist_bins[idx]
    x2 = dist_bins[idx + 1]
    if x1 == 1:
        area1 = 0.25 * math.pi * 1 ** 2
    else:
        area1 = 0.5 * ((x1 * math.sqrt(1 ** 2 - x1 ** 2))
                       + (1 ** 2 * math.atan(x1 / math.sqrt(1 ** 2 - x1 ** 2))))
    area2 = 0.5 * ((x2 * math.sqrt(1 ** 2 - x2 ** 2))
                   + (1 ** 2 * math.atan(x2 / math.sqrt(1 ** 2 - x2 ** 2))))
    return (area1 - area2) / (0.25 * math.pi * 1 ** 2)


def crystalnn_nn_data(cell: VoronoiCell, centre: int, table: SpeciesTable,
                      settings: CrystalNNSettings = FINGERPRINT_SETTINGS) -> NNData:
    """pymatgen ``CrystalNN.get_nn_data`` on precomputed faces (§8.1 steps 1-10)."""
    nbr = cell.nbr_index
    sa = cell.solid_angle
    if settings.cation_anion:  # step 1: targets = species with oxi * centre oxi <= 0
        m_oxi = table.oxidation[centre]
        oxi = table.oxidation
        ok_species = np.isfinite(oxi) & (oxi * m_oxi <= 0)
        if not ok_species.any():
            raise ValueError("No valid targets for site within cation_anion constraint!")
        targ = np.flatnonzero(ok_species[nbr])
    else:
        targ = np.arange(len(nbr))
    # step 2: VoronoiNN weight = solid angle / largest (over target faces), keep > 0
    if len(targ) == 0:
        return _cn0()
    sa_t = sa[targ]
    w = sa_t / np.max(sa_t)
    keep = w > 0
    targ, w, sa_t = targ[keep], w[keep], sa_t[keep]
    if len(targ) == 0:
        return _cn0()
    if settings.porous_adjustment:  # step 3
        w = w * (sa_t / cell.area[targ])
    if settings.x_diff_weight > 0:  # step 4
        x1 = table.electronegativity[centre]
        x2 = table.electronegativity[nbr[targ]]
        chem = np.ones(len(targ))
        fin = np.isfinite(x2) & np.isfinite(x1)
        chem[fin] = [1 + settings.x_diff_weight * math.sqrt(abs(x1 - b) / 3.3)
                     for b in x2[fin]]
        w = w * chem
    o = np.argsort(-w, kind="stable")  # step 5: sorted(reverse=True) is stable
    targ, w = targ[o], w[o]
    if w[0] == 0:
        return _cn0()
    w = w / w[0]
    if settings.distance_cutoffs:  # step 6
        lo, hi = settings.distance_cutoffs
        r1 = table.radius[centre]
        r2 = table.radius[nbr[targ]]
        d1 = table.default_radius[centre]
        d2 = table.default_radius[nbr[targ]]
        diameter = np.where((r1 > 0) & (r2 > 0), r1 + r2, d1 + d2)
        dv = cell.centre[None, :] - cell.nbr_cart[targ]
        dist = np.sqrt(dv[:, 0] * dv[:, 0] + dv[:, 1] * dv[:, 1] + dv[:, 2] * dv[:, 2])
        c_lo = diameter + lo
        c_hi = diameter + hi
        dw = np.zeros(len(targ))
        dw[dist <= c_lo] = 1
        mid = (dist > c_lo) & (dist < c_hi)
        for i in np.flatnonzero(mid):
            dw[i] = (math.cos((dist[i] - c_lo[i]) / (c_hi[i] - c_lo[i]) * math.pi) + 1) * 0.5
        w = w * dw
    o = np.argsort(-w, kind="stable")  # step 7
    targ, w = targ[o], w[o]
    if w[0] == 0:
        return _cn0()
    w = np.round(w, 3)  # step 8 (numpy rounding, as round() on np.float64)
    keep = w > 0
    targ, w = targ[keep], w[keep]
    first = np.ones(len(w), dtype=bool)
    first[1:] = w[1:] != w[:-1]
    levels = w[first].tolist()
    dist_bins = levels + [0]
    cn_weights: dict = {}
    cn_nninfo: dict = {}
    for idx, val in enumerate(dist_bins):  # step 9
        if val != 0:
            cn = int(np.count_nonzero(w >= val))
            cn_nninfo[cn] = targ[:cn]
            cn_weights[cn] = _semicircle_integral(dist_bins, idx)
    cn0 = 1 - sum(cn_weights.values())  # step 10
    if cn0 > 0:
        cn_nninfo[0] = targ[:0]
        cn_weights[0] = cn0
    return NNData(targ, w, cn_weights, cn_nninfo)


def _cn0() -> NNData:
    e = np.zeros(0, dtype=np.int64)
    return NNData(e, np.zeros(0), {0: 1.0}, {0: e})


def most_probable_neighbours(nn: NNData) -> np.ndarray:
    """Face indices of ``CrystalNN.get_nn_info`` (weighted_cn False): the CN with the largest
    weight, first inserted on ties (§8.1 step 11)."""
    best = max(nn.cn_weights, key=lambda k: nn.cn_weights[k])
    return nn.cn_nninfo[best]


def bond_angles(cell: VoronoiCell, faces: np.ndarray) -> np.ndarray:
    """Angles (degrees) between all pairs of centre->neighbour vectors (§6.6).

    cos = u.v / (|u| |v|); outside [-1, 1] the reference retries arccos with cos rounded to
    5 decimals, which clipping reproduces (only ±1 can come out of that rounding).
    """
    k = len(faces)
    if k < 2:
        return np.zeros(0)
    v = cell.nbr_cart[faces] - cell.centre[None, :]
    i, j = np.triu_indices(k, 1)
    u, w = v[i], v[j]
    dot = u[:, 0] * w[:, 0] + u[:, 1] * w[:, 1] + u[:, 2] * w[:, 2]
    cos = dot / (_norm3(u) * _norm3(w))
    bad = ~((cos >= -1.0) & (cos <= 1.0))
    if bad.any():
        cos = np.where(bad, np.round(cos, 5), cos)
    return np.arccos(cos) * 180 / np.pi


# ------------------------------------------------------------------ fingerprints
#: matminer's 'ops' preset (cn_target_motif_op.yaml + cn_motif_op_params.yaml, §6.4):
#: CN -> [(motif name, pymatgen OP type, parameters or None for pymatgen defaults)].
#: Embedded so the fingerprint needs no matminer import (slow, pins pandas); the tests
#: compare this table with the installed matminer.
OPS_PRESET_MOTIFS: dict[int, list[tuple[str, str, dict | None]]] = {
    1: [("sgl_bd", "sgl_bd", None)],
    2: [("L-shaped", "bent", {"TA": 0.5, "IGW_TA": 15.15}),
        ("water-like", "bent", {"TA": 0.5802777777777778, "IGW_TA": 13.95}),
        ("bent 120 degrees", "bent", {"TA": 0.666666666667, "IGW_TA": 13.25}),
        ("bent 150 degrees", "bent", {"TA": 0.833333333333333, "IGW_TA": 12.45}),
        ("linear", "bent", {"TA": 1, "IGW_TA": 8.667})],
    3: [("trigonal planar", "tri_plan_max", None),
        ("trigonal non-coplanar", "tet_max", {"TA": 0.6081734479693927, "IGW_TA": 18.33,
                                              "fac_AA": 1.5, "exp_cos_AA": 2}),
        ("T-shaped", "T", None)],
    4: [("square co-planar", "sq_plan_max", None),
        ("tetrahedral", "tet_max", None),
        ("rectangular see-saw-like", "see_saw_rect", None),
        ("see-saw-like", "tri_bipyr", {"min_SPP": 2.356194490192345, "IGW_EP": 15.75,
                                       "IGW_SPP": 12.75, "fac_AA": 1.5, "exp_cos_AA": 2,
                                       "w_SPP": 1}),
        ("trigonal pyramidal", "tri_pyr", None)],
    5: [("pentagonal planar", "pent_plan_max", None), ("square pyramidal", "sq_pyr", None),
        ("trigonal bipyramidal", "tri_bipyr", None)],
    6: [("hexagonal planar", "hex_plan_max", None), ("octahedral", "oct_max", None),
        ("pentagonal pyramidal", "pent_pyr", None)],
    7: [("hexagonal pyramidal", "hex_pyr", None), ("pentagonal bipyramidal", "pent_bipyr", None)],
    8: [("body-centered cubic", "bcc", None), ("hexagonal bipyramidal", "hex_bipyr", None)],
    9: [("q2", "q2", None), ("q4", "q4", None), ("q6", "q6", None)],
    10: [("q2", "q2", None), ("q4", "q4", None), ("q6", "q6", None)],
    11: [("q2", "q2", None), ("q4", "q4", None), ("q6", "q6", None)],
    12: [("cuboctahedral", "cuboct_max", None), ("q2", "q2", None), ("q4", "q4", None),
         ("q6", "q6", None)],
}


def ops_preset() -> dict[int, list[str]]:
    """``CrystalNNFingerprint.from_preset('ops')`` op types: CN 1..24 -> ['wt', motifs...]."""
    return {cn: ["wt"] + [m[0] for m in OPS_PRESET_MOTIFS.get(cn, [])] for cn in range(1, 25)}


def _motif_params() -> dict[int, dict[str, list]]:
    """matminer ``load_cn_motif_op_params()`` layout of the embedded table."""
    return {cn: {name: ([typ] if p is None else [typ, dict(p)]) for name, typ, p in motifs
                 if not (name == typ and p is None)}
            for cn, motifs in OPS_PRESET_MOTIFS.items()}


@dataclass
class _CNOps:
    cn: int
    first: int  # column of 'wt'
    cols: np.ndarray  # columns of the OPs
    codes: np.ndarray
    params: np.ndarray
    slow: list = field(default_factory=list)  # (column, pymatgen LocalStructOrderParams)


class CrystalNNFingerprinter:
    """matminer ``CrystalNNFingerprint`` on shared neighbour data.

    op_types: CN -> list of motif names ('wt' first), default the 'ops' preset (61 features,
    §6.4).  settings: CrystalNN settings (cation_anion=True for the interface, which then needs
    oxidation states in the SpeciesTable).  nn_species: if given, append per CN 1..max_cn the
    fraction of each listed element among ``cn_nninfo[cn]`` (0 where wt = 0; not multiplied
    by wt), in the order (CN1: sp1, sp2, ...), (CN2: ...) - the interface's
    ``CrystalNNFingerprint_NNSpecies`` extra features (§7.3 step 4).
    """

    def __init__(self, op_types: dict[int, list[str]] | None = None,
                 settings: CrystalNNSettings = FINGERPRINT_SETTINGS,
                 nn_species: Sequence[str] | None = None):
        from pymatgen.core.local_env import DEFAULT_OP_PARAMS, LocalStructOrderParams

        self.op_types = ops_preset() if op_types is None else {int(k): list(v) for k, v
                                                                in op_types.items()}
        self.settings = settings
        self.nn_species = tuple(nn_species) if nn_species else ()
        motif_params = _motif_params()
        self.max_cn = max(self.op_types)
        labels: list[str] = []
        self._cn_ops: dict[int, _CNOps] = {}
        for cn in range(1, self.max_cn + 1):
            if cn not in self.op_types:
                continue
            first = None
            cols, codes, params, slow = [], [], [], []
            for t in self.op_types[cn]:
                col = len(labels)
                labels.append(f"{t} CN_{cn}")
                if t == "wt":
                    first = col
                    continue
                ot, p = t, None
                if cn in motif_params and t in motif_params[cn]:
                    ot = motif_params[cn][t][0]
                    if len(motif_params[cn][t]) > 1:
                        p = motif_params[cn][t][1]
                if ot in OP_CODES:
                    cols.append(col)
                    codes.append(OP_CODES[ot])
                    params.append(op_param_vector(p if p is not None
                                                  else DEFAULT_OP_PARAMS.get(ot)))
                else:
                    slow.append((col, LocalStructOrderParams([ot], parameters=[p])))
            self._cn_ops[cn] = _CNOps(cn, -1 if first is None else first,
                                      np.array(cols, dtype=np.int64),
                                      np.array(codes, dtype=np.int64),
                                      np.array(params, dtype=np.float64).reshape(-1, 12), slow)
        self.n_op_features = len(labels)
        for cn in range(1, self.max_cn + 1):
            for sp in self.nn_species:
                labels.append(f"{sp} fraction coord num {cn}")
        self.labels = tuple(labels)

    @property
    def n_features(self) -> int:
        return len(self.labels)

    def site_fingerprint(self, cell: VoronoiCell, nn: NNData, table: SpeciesTable,
                         out: np.ndarray | None = None) -> np.ndarray:
        """Feature vector of one centre from its faces and CrystalNN data (§6.4)."""
        fp = np.zeros(self.n_features) if out is None else out
        fp[:] = 0.0
        for cn, spec in self._cn_ops.items():
            wt = nn.cn_weights.get(cn, 0)
            if spec.first >= 0:
                fp[spec.first] = wt
            if wt == 0:
                continue
            faces = nn.cn_nninfo[cn]
            rij = cell.nbr_cart[faces] - cell.centre[None, :]
            dist = np.sqrt(rij[:, 0] * rij[:, 0] + rij[:, 1] * rij[:, 1] + rij[:, 2] * rij[:, 2])
            rn = rij / dist[:, None]
            if len(spec.codes):
                vals = np.empty(len(spec.codes))
                op_values(spec.codes, spec.params, rn, dist, vals)
                vals[np.isnan(vals)] = 0.0  # matminer: opval or 0
                fp[spec.cols] = wt * vals
            for col, op in spec.slow:
                fp[col] = wt * (_pymatgen_op(op, cell, faces) or 0)
        if self.nn_species:
            base = self.n_op_features
            ns = len(self.nn_species)
            for cn in range(1, self.max_cn + 1):
                if nn.cn_weights.get(cn, 0) == 0:
                    continue
                syms = [table.symbols[i] for i in cell.nbr_index[nn.cn_nninfo[cn]]]
                for s, sp in enumerate(self.nn_species):
                    fp[base + (cn - 1) * ns + s] = syms.count(sp) / cn
        return fp


def _pymatgen_op(op, cell: VoronoiCell, faces: np.ndarray):
    """Order parameter without a numba port: pymatgen on bare sites (matminer's call)."""
    from pymatgen.core import Site

    sites = [Site("Si", cell.centre)] + [Site("Si", c) for c in cell.nbr_cart[faces]]
    return op.get_order_parameters(sites, 0, indices_neighs=list(range(1, len(sites))))[0]


# ------------------------------------------------------------------ one structure
def structure_fingerprints(lattice: np.ndarray, frac: np.ndarray, species: Sequence[str],
                           centres: Sequence[int] | None = None,
                           fingerprinter: CrystalNNFingerprinter | None = None, *,
                           oxidation_states: dict[str, float] | None = None,
                           angle_settings: CrystalNNSettings | None = None,
                           angle_partners: bool = False,
                           ) -> tuple[np.ndarray, list | None, int]:
    """Fingerprints (and optionally bond angles) of the ``centres`` of one structure.

    One Voronoi tessellation serves everything: per centre, CrystalNN neighbour data with
    ``fingerprinter.settings`` (one ``get_nn_data`` equivalent) feed the fingerprint, and, if
    ``angle_settings`` is given, a second weighting of the same faces gives the bond angles
    of the most probable CN (§6.6).  Interface use (§7.3):
    ``CrystalNNFingerprinter(settings=CrystalNNSettings(cation_anion=True),
    nn_species=("Cl", "O"))`` with ``oxidation_states={"Li": 1, "Sc": 3, ...}`` and the
    cation indices as centres.

    Returns (fingerprints (len(centres), n_features), per-centre angle arrays or None,
    number of centres that needed the per-site pymatgen Voronoi fallback).  With
    ``angle_partners`` each per-centre entry is (angles, atom a, atom b): the structure
    indices of the two neighbours spanning each angle (for per-species-triplet angles).
    """
    frac = np.asarray(frac, dtype=np.float64)
    species = list(species)
    centres = list(range(len(frac))) if centres is None else [int(c) for c in centres]
    fp = CrystalNNFingerprinter() if fingerprinter is None else fingerprinter
    table = SpeciesTable.from_symbols(species, oxidation_states)
    cutoff = fp.settings.search_cutoff
    if angle_settings is not None:
        cutoff = max(cutoff, angle_settings.search_cutoff)
    cells, redo = voronoi_cells(lattice, frac, cutoff, centres, species=species,
                                return_fallback=True)
    fps = np.zeros((len(centres), fp.n_features))
    angles = [] if angle_settings is not None else None
    for r, (i, cell) in enumerate(zip(centres, cells, strict=True)):
        fp.site_fingerprint(cell, crystalnn_nn_data(cell, i, table, fp.settings), table,
                            out=fps[r])
        if angles is not None:
            faces = most_probable_neighbours(crystalnn_nn_data(cell, i, table, angle_settings))
            a = bond_angles(cell, faces)
            if angle_partners:
                p, q = np.triu_indices(len(faces), 1)  # bond_angles' pair order
                nbr = cell.nbr_index[np.asarray(faces, dtype=np.int64)]
                a = (a, nbr[p], nbr[q])
            angles.append(a)
    return fps, angles, len(redo)


# ------------------------------------------------------------------ parallel map
def map_structures(func: Callable, items: Sequence, n_workers: int | None = 1,
                   chunksize: int | None = None) -> list:
    """[func(x) for x in items], over processes when n_workers > 1 (order preserved).

    n_workers None or 0 means os.cpu_count().  Results are identical for any n_workers
    (each structure is computed independently).
    """
    items = list(items)
    if not n_workers:
        n_workers = os.cpu_count() or 1
    n_workers = max(1, min(int(n_workers), len(items)))
    if n_workers == 1:
        return [func(x) for x in items]
    import multiprocessing as mp

    if chunksize is None:
        chunksize = max(1, len(items) // (4 * n_workers))
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as ex:
        return list(ex.map(func, items, chunksize=chunksize))
