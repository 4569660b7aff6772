"""Recipe for the Li3ScCl6(100)-LiCoO2(110) interface dataset (recipe §3).

One candidate = a fixed 4-plane LiCoO2(110) slab (144 atoms), an interface region 4-6 Å
thick holding 9 Li + 3 Sc + 18 Cl at random positions, and a 7-plane Tasker-2b
Li3ScCl6(100) slab (90 atoms) strained onto the LCO in-plane cell and shifted laterally at
random (P §2.1.3, §4.1.3; recipe §3.6).  Candidates are relaxed (positions only) with a
universal MLIP, and the low-energy ones (normalised interface energy γ ≤ 0, eq. 6 /
§7.2, with E_ref recomputed for that potential, recipe §3.1) are kept in
candidate order.

Fixed choices (all documented in docs/interface.md):

* cell: a = 12.46997 Å, b = 17.19967 Å, γ = 75.6674° (recipe §3.1), c = 34.0 Å so the
  thickest candidate (LCO 4.24 + gap 6 + LSC 9.02 Å) keeps ≥ 14 Å of vacuum;
* atom order: species blocks Li, Sc, Co, Cl, O; inside each block the interface atoms
  first, then the slab atoms plane by plane from the bottom of the LCO slab to the top of
  the LSC slab (ascending height), and within a plane by in-plane fractional (u, v);
* interface region: the space between the top LCO plane and the bottom LSC plane, t Å
  thick; its 30 atoms are drawn uniformly and pushed apart until every minimum distance
  (to every atom, slabs included) holds: cation-anion ≥ 2.0 Å, cation-cation ≥ 2.8 Å,
  anion-anion ≥ 2.6 Å (:data:`MIN_DISTANCES`, justified from bulk bond lengths in the
  docs; 2.8-3.0 Å anion-anion cannot be packed reliably at t = 4 Å).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from dismai.errors import ComputationError, InputError
from dismai.interface_cell import (
    CATIONS,
    CELL_A,
    CELL_B,
    CELL_C,
    CELL_GAMMA_DEG,
    COMPOSITION,
    DATASET_AREA,
    EV_TO_J,
    INTERFACE_COMPOSITION,
    N_ATOMS,
    SPECIES_ORDER,
    cell_lattice,
    energy_scale,
    interface_energy,
    low_energy_reference,
)
from dismai.progress import reporter, silent
from dismai.structures import StructureSet

__all__ = [
    "CELL_A", "CELL_B", "CELL_GAMMA_DEG", "CELL_C", "DATASET_AREA", "N_ATOMS",
    "SPECIES_ORDER", "COMPOSITION", "MIN_DISTANCES", "RECIPE_DEFAULTS", "EV_TO_J",
    "default_recipe", "cell_lattice", "lco_bulk", "lsc_bulk_ideal", "lco_slab", "lsc_slab",
    "Slab", "build_candidates", "interface_energy", "energy_scale", "low_energy_reference",
    "relax_lsc_bulk", "InterfaceBuild", "build",
]

# --------------------------------------------------------------------------- constants
# the cell, composition, cation/anion split and interface energy: dismai.interface_cell
#: minimum separations (Å) enforced when inserting interface atoms, by charge class
MIN_DISTANCES = {"cation-anion": 2.0, "cation-cation": 2.8, "anion-anion": 2.6}

# LiCoO2 R-3m, hexagonal setting (recipe §3.3): the DFT+U lattice fixed by the code cell
LCO_A = 2.8296
LCO_C = 14.1331
LCO_OZ = 0.260  # O 6c (0, 0, z) with Co on 3a, Li on 3b
# Li3ScCl6 C2/m experimental cell (Bohnsack 1997, recipe §3.4)
LSC_CELL = (6.398, 11.040, 6.391, 109.89)  # a, b, c, beta

RECIPE_DEFAULTS = {
    "n_structures": 1500,
    "n_candidates": 3200,  # ~48 % of relaxed candidates are low-energy (recipe §3.1)
    "seed": 0,
    "cell_c": CELL_C,
    "thickness_range": [4.0, 6.0],  # Å, interface region thickness, uniform (recipe §3.6)
    "min_vacuum": 14.0,
    "min_distances": dict(MIN_DISTANCES),
    "relax_lsc_bulk": False,  # recipe §3.4 says relax before use; off by default for speed
    "relax_fmax": 0.05,
    "relax_steps": 1000,
    "optimizer": "fire",  # ASE FIRE: ~1.8x fewer CHGNet calls than the reference's CG
    "window_j_m2": 0.4,  # low-energy window above the lowest structure (recipe §3.1)
    "e_ref": None,  # eV/atom; None = recompute from the relaxed candidates
    "train_fraction": 0.8,
}


def default_recipe() -> dict:
    r = dict(RECIPE_DEFAULTS)
    r["min_distances"] = dict(MIN_DISTANCES)
    r["thickness_range"] = list(RECIPE_DEFAULTS["thickness_range"])
    return r


def _hex_lattice(a: float, c: float) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, c]])


def lco_bulk() -> tuple[np.ndarray, list[str], np.ndarray]:
    """(lattice, species, frac) of the 12-atom hexagonal LiCoO2 cell (R-3m, recipe §3.3)."""
    base = [("Co", (0, 0, 0)), ("Li", (0, 0, 0.5)), ("O", (0, 0, LCO_OZ)),
            ("O", (0, 0, -LCO_OZ))]
    rcent = [(0, 0, 0), (2 / 3, 1 / 3, 1 / 3), (1 / 3, 2 / 3, 2 / 3)]
    species, frac = [], []
    for s, p in base:
        for t in rcent:
            species.append(s)
            frac.append((np.array(p) + np.array(t)) % 1.0)
    return _hex_lattice(LCO_A, LCO_C), species, np.array(frac)


def _monoclinic_lattice(a: float, b: float, c: float, beta_deg: float) -> np.ndarray:
    be = np.radians(beta_deg)
    return np.array([[a, 0.0, 0.0], [0.0, b, 0.0], [c * np.cos(be), 0.0, c * np.sin(be)]])


def lsc_bulk_ideal() -> tuple[np.ndarray, list[str], np.ndarray]:
    """(lattice, species, frac) of the ideal ordered 20-atom C2/m Li3ScCl6 cell (recipe §3.4).

    Sc 2a (0,0,0); Li 4h (0,1/6,1/2) and 2d (0,1/2,1/2); Cl 4i (1/4,0,3/4) and
    8j (1/4,1/6,1/4); 4g left vacant.  C-centring adds (1/2,1/2,0).
    """
    y4h, x4i, z4i, (xj, yj, zj) = 1 / 6, 0.25, 0.75, (0.25, 1 / 6, 0.25)
    orbits = [
        ("Sc", [(0, 0, 0)]),
        ("Li", [(0, y4h, 0.5), (0, -y4h, 0.5)]),
        ("Li", [(0, 0.5, 0.5)]),
        ("Cl", [(x4i, 0, z4i), (-x4i, 0, -z4i)]),
        ("Cl", [(xj, yj, zj), (-xj, yj, -zj), (-xj, -yj, -zj), (xj, -yj, zj)]),
    ]
    species, frac = [], []
    for s, pts in orbits:
        for p in pts:
            for t in ((0, 0, 0), (0.5, 0.5, 0)):
                species.append(s)
                frac.append((np.array(p, dtype=float) + t) % 1.0)
    return _monoclinic_lattice(*LSC_CELL), species, np.array(frac)


# --------------------------------------------------------------------------- slabs
@dataclass(frozen=True)
class Slab:
    """Atoms of one slab on the dataset's in-plane cell.

    species (n,), uv (n, 2) in-plane fractional coordinates in [0, 1), h (n,) height in Å
    above the slab's lowest plane, plane (n,) plane index counted from the bottom.
    """

    species: tuple
    uv: np.ndarray
    h: np.ndarray
    plane: np.ndarray

    @property
    def thickness(self) -> float:
        return float(self.h.max() - self.h.min())


def _plane_sites(lattice: np.ndarray, species, frac, in_a: np.ndarray, in_b: np.ndarray,
                 reps: int, tol: float = 1e-4):
    """All atoms of a bulk crystal, expressed as (species, u, v, height) for the in-plane
    supercell vectors in_a, in_b (Cartesian, lattice vectors of the crystal); heights
    along the unit normal in_a x in_b; every image with -reps..reps cell shifts."""
    n_hat = np.cross(in_a, in_b)
    n_hat /= np.linalg.norm(n_hat)
    m2 = np.array([in_a, in_b])  # rows
    g = m2 @ m2.T
    out_s, out_p = [], []
    rng = np.arange(-reps, reps + 1)
    shifts = np.array(np.meshgrid(rng, rng, rng, indexing="ij")).reshape(3, -1).T
    cart = (np.asarray(frac)[:, None, :] + shifts[None, :, :]) @ lattice  # (n, S, 3)
    h = cart @ n_hat
    par = cart - h[..., None] * n_hat
    uv = (par @ m2.T) @ np.linalg.inv(g)  # g is symmetric
    for i, s in enumerate(species):
        out_s += [s] * cart.shape[1]
        out_p.append(np.column_stack([uv[i], h[i]]))
    pts = np.concatenate(out_p)
    return np.array(out_s), pts, tol


def _unique_in_cell(species: np.ndarray, pts: np.ndarray, tol: float):
    """Keep points with u, v in [0, 1) (wrapped), dropping duplicates."""
    uv = pts[:, :2] % 1.0
    uv[uv > 1 - tol] = 0.0
    key = np.round(np.column_stack([uv, pts[:, 2]]) / tol).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    return species[first], uv[first], pts[first, 2]


def _order_slab(species, uv, h, plane) -> Slab:
    order = np.lexsort((uv[:, 1], uv[:, 0], plane))
    return Slab(tuple(species[order]), uv[order], h[order], plane[order])


@lru_cache(maxsize=1)
def lco_slab() -> Slab:
    """The 4-plane LiCoO2(110) slab (144 atoms: 36 Li, 36 Co, 72 O), recipe §3.3.

    In-plane vectors (hex fractional) a_cell = B = [-5/3, 5/3, 2/3] (12.46997 Å) and
    b_cell = A = [2, -2, 1] (17.19967 Å), 75.667° apart; planes x + y = 0..3, a/2 apart,
    each stoichiometric LiCoO2 (9 f.u.).  The slab is built along the plane normal, so it
    is unstrained and exactly matches the dataset cell.
    """
    lat, sp, frac = lco_bulk()
    in_a = np.array([-5 / 3, 5 / 3, 2 / 3]) @ lat
    in_b = np.array([2.0, -2.0, 1.0]) @ lat
    spacing = LCO_A / 2
    species, pts, tol = _plane_sites(lat, sp, frac, in_a, in_b, reps=4)
    plane = np.rint(pts[:, 2] / spacing).astype(np.int64)
    on_plane = np.abs(pts[:, 2] - plane * spacing) < 1e-6
    keep = on_plane & (plane >= 0) & (plane <= 3)
    s, uv, h = _unique_in_cell(species[keep], pts[keep], tol)
    plane = np.rint(h / spacing).astype(np.int64)
    return _order_slab(s, uv, h - h.min(), plane)


def lsc_slab(bulk: tuple | None = None) -> Slab:
    """The 7-plane Tasker-2b Li3ScCl6(100) slab (90 atoms: 27 Li, 9 Sc, 54 Cl), recipe §3.2-3.5.

    bulk: (lattice, species, frac) of a C2/m Li3ScCl6 cell in the standard setting
    (default :func:`lsc_bulk_ideal`; pass :func:`relax_lsc_bulk` output to use a relaxed
    cell).  The (100) planes are x = 1/4, 1/2, ..., 7/4: Cl, cation, Cl, cation, Cl,
    cation, Cl.  The in-plane supercell B = b + c, A = b - 2c (3 cells, recipe §3.5) is mapped
    onto the dataset cell's a and b (strain in-plane only, plane spacing kept).  Tasker 2b:
    each terminal Cl plane keeps the 9 of its 18 Cl that bond to the Sc of the adjacent
    cation plane (their ScCl6 octahedra stay whole), giving Cl planes 9/18/18/9.
    """
    lat, sp, frac = lsc_bulk_ideal() if bulk is None else bulk
    lat = np.asarray(lat, dtype=float)
    in_a = lat[1] + lat[2]  # -> cell a (12.47 Å)
    in_b = lat[1] - 2 * lat[2]  # -> cell b (17.20 Å)
    species, pts, tol = _plane_sites(lat, sp, np.asarray(frac) % 1.0, in_a, in_b, reps=3)
    d100 = abs(np.dot(lat[0], np.cross(lat[1], lat[2]))) / np.linalg.norm(
        np.cross(lat[1], lat[2]))
    spacing = d100 / 4
    q = pts[:, 2] / spacing  # plane number: Cl at q = 1, 3, 5, 7; cations at 2, 4, 6
    plane_q = np.rint(q).astype(np.int64)
    keep = (np.abs(q - plane_q) < 0.25) & (plane_q >= 1) & (plane_q <= 7)
    s, uv, h = _unique_in_cell(species[keep], pts[keep], tol)
    plane = np.rint(h / spacing).astype(np.int64) - 1
    # Tasker 2b: keep half of each terminal Cl plane (the Cl bonded to the neighbour Sc)
    drop = np.zeros(len(s), dtype=bool)
    for term, nbr in ((0, 1), (6, 5)):
        cl = np.flatnonzero((plane == term) & (s == "Cl"))
        sc = np.flatnonzero((plane == nbr) & (s == "Sc"))
        d = _inplane_dist(uv[cl], uv[sc], h[cl], h[sc], np.array(
            [[CELL_A, 0.0], [CELL_B * np.cos(np.radians(CELL_GAMMA_DEG)),
                             CELL_B * np.sin(np.radians(CELL_GAMMA_DEG))]]))
        nearest = d.min(axis=1)
        order = np.argsort(nearest, kind="stable")
        drop[cl[order[len(cl) // 2:]]] = True
    s, uv, h, plane = s[~drop], uv[~drop], h[~drop], plane[~drop]
    return _order_slab(s, uv, h - h.min(), plane)


def _inplane_dist(uv1, uv2, h1, h2, lat2: np.ndarray) -> np.ndarray:
    """(n1, n2) minimum-image distances, periodic in-plane (2D cell rows lat2), open in z."""
    d = uv1[:, None, :] - uv2[None, :, :]
    d -= np.rint(d)
    best = np.full(d.shape[:2], np.inf)
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            xy = (d + np.array([i, j])) @ lat2
            dz = h1[:, None] - h2[None, :]
            best = np.minimum(best, np.sqrt((xy ** 2).sum(-1) + dz ** 2))
    return best


def relax_lsc_bulk(energy_model="chgnet", fmax: float = 0.02, steps: int = 500,
                   **model_kwargs) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Relax the ideal Li3ScCl6 cell (positions and cell, C2/m kept) with the benchmark
    potential, as recipe §3.4 asks before the slab is cut.  Returns (lattice, species, frac).

    Off by default in the recipe (``relax_lsc_bulk``) because it loads the MLIP; the
    ideal model's Sc-Cl is 2.61 Å against ~2.5 Å relaxed, which the slab relaxation of every
    candidate absorbs anyway.
    """
    from ase import Atoms
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    from dismai.energy.base import get_energy_model

    model = energy_model if not isinstance(energy_model, str) else get_energy_model(
        energy_model, **model_kwargs)
    lat, sp, frac = lsc_bulk_ideal()
    atoms = Atoms(symbols=sp, scaled_positions=frac, cell=lat, pbc=True)
    atoms.set_constraint(FixSymmetry(atoms))
    atoms.calc = model.calculator()
    FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=steps)
    return (np.array(atoms.cell.array), list(atoms.get_chemical_symbols()),
            np.array(atoms.get_scaled_positions(wrap=True)))


# --------------------------------------------------------------------------- candidates
def _charge_class(s: str) -> str:
    return "cation" if s in CATIONS else "anion"


def _pair_cutoff(a: str, b: str, min_distances: dict) -> float:
    ca, cb = _charge_class(a), _charge_class(b)
    if ca != cb:
        return float(min_distances["cation-anion"])
    return float(min_distances[f"{ca}-{cb}"])


def _min_image(d_xy: np.ndarray, lat2: np.ndarray, inv2: np.ndarray) -> np.ndarray:
    """Shortest periodic image of in-plane Cartesian displacements (..., 2), oblique cell."""
    f = d_xy @ inv2
    f -= np.rint(f)
    best = f @ lat2
    best_r2 = (best ** 2).sum(-1)
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            if i == 0 and j == 0:
                continue
            v = (f + np.array([i, j])) @ lat2
            r2 = (v ** 2).sum(-1)
            better = r2 < best_r2
            best = np.where(better[..., None], v, best)
            best_r2 = np.where(better, r2, best_r2)
    return best


def _fill_interface(rng: np.random.Generator, fixed_sp: np.ndarray, fixed_uv: np.ndarray,
                    fixed_z: np.ndarray, z_lo: float, z_hi: float, min_distances: dict,
                    lat2: np.ndarray, margin: float = 0.05, max_tries: int = 20,
                    n_shakes: int = 5
                    ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Place the 30 interface atoms (18 Cl, 3 Sc, 9 Li) between z_lo and z_hi.

    Random sequential insertion cannot reach the density needed here (18 Cl form almost
    a close-packed layer), so, like a random-structure generator, we draw uniform random
    positions and then push overlapping atoms apart: minimise sum (d_min + margin - d)^2
    over violated pairs (slab atoms fixed, in-plane periodic, heights bounded to the
    region) with L-BFGS-B.  A draw is accepted only when every pair clears its minimum
    distance; otherwise a fresh draw is made (max_tries).  Deterministic given rng.
    """
    from scipy.optimize import minimize

    todo = (["Li"] * INTERFACE_COMPOSITION["Li"] + ["Sc"] * INTERFACE_COMPOSITION["Sc"]
            + ["Cl"] * INTERFACE_COMPOSITION["Cl"])
    n = len(todo)
    inv2 = np.linalg.inv(lat2)
    fixed_xyz = np.column_stack([fixed_uv @ lat2, fixed_z])
    cut_mf = np.array([[_pair_cutoff(a, b, min_distances) for b in fixed_sp] for a in todo])
    cut_mm = np.array([[_pair_cutoff(a, b, min_distances) for b in todo] for a in todo])
    iu = np.triu_indices(n, 1)
    # only slab atoms that can come within reach of the region matter
    reach = float(max(min_distances.values())) + margin + 0.1
    near = (fixed_z > z_lo - reach) & (fixed_z < z_hi + reach)
    fixed_xyz, cut_mf = fixed_xyz[near], cut_mf[:, near]

    def vectors(x):
        x = x.reshape(n, 3)
        d_mf = x[:, None, :] - fixed_xyz[None, :, :]
        d_mf[..., :2] = _min_image(d_mf[..., :2], lat2, inv2)
        d_mm = x[:, None, :] - x[None, :, :]
        d_mm[..., :2] = _min_image(d_mm[..., :2], lat2, inv2)
        return d_mf, d_mm

    def penalty(x, scale):
        d_mf, d_mm = vectors(x)
        r_mf = np.sqrt((d_mf ** 2).sum(-1))
        r_mm = np.sqrt((d_mm ** 2).sum(-1)) + np.eye(n)
        o_mf = np.maximum(scale * (cut_mf + margin) - r_mf, 0.0)
        o_mm = np.maximum(scale * (cut_mm + margin) - r_mm, 0.0)
        o_mm[np.diag_indices(n)] = 0.0
        e = (o_mf ** 2).sum() + 0.5 * (o_mm ** 2).sum()
        g = -2.0 * ((o_mf / np.maximum(r_mf, 1e-9))[..., None] * d_mf).sum(1)
        g -= 2.0 * ((o_mm / np.maximum(r_mm, 1e-9))[..., None] * d_mm).sum(1)
        return e, g.ravel()

    def clear(x) -> bool:
        d_mf, d_mm = vectors(x)
        r_mf = np.sqrt((d_mf ** 2).sum(-1))
        r_mm = np.sqrt((d_mm ** 2).sum(-1))[iu]
        return bool((r_mf >= cut_mf).all() and (r_mm >= cut_mm[iu]).all())

    bounds = [(None, None), (None, None), (z_lo, z_hi)] * n
    opts = {"maxiter": 500, "ftol": 1e-12, "gtol": 1e-8}
    for _ in range(max_tries):
        x = np.column_stack([rng.random((n, 2)) @ lat2,
                             z_lo + (z_hi - z_lo) * rng.random(n)]).ravel()
        # grow the exclusion spheres gradually (denser than quenching at full size)
        for scale in (0.6, 0.85, 1.0):
            x = minimize(penalty, x, args=(scale,), jac=True, method="L-BFGS-B",
                         bounds=bounds, options=opts).x
        for _shake in range(n_shakes):  # jammed: jiggle, re-minimise
            if clear(x):
                break
            x = x + rng.normal(0.0, 0.3, x.shape)
            x[2::3] = np.clip(x[2::3], z_lo, z_hi)
            x = minimize(penalty, x, args=(1.0,), jac=True, method="L-BFGS-B",
                         bounds=bounds, options=opts).x
        if clear(x):
            x = x.reshape(n, 3)
            uv = (x[:, :2] @ inv2) % 1.0
            return todo, uv, np.clip(x[:, 2], z_lo, z_hi)
    raise ComputationError("could not fill the interface region under the minimum distances; "
                       "lower recipe['min_distances'] or widen the thickness range")


def build_candidates(n: int, seed: int, recipe: dict | None = None,
                     lsc_bulk: tuple | None = None, progress=None) -> StructureSet:
    """n random unrelaxed interface structures, deterministic from seed (recipe §3.6).

    Candidate k uses its own generator ``default_rng([seed, k])``, so a candidate does
    not depend on n (a longer run extends a shorter one).  Properties:
    ``interface_thickness`` (Å), ``lsc_shift`` (u, v lateral shift of the LSC slab),
    ``candidate_index``.  lsc_bulk: optional relaxed (lattice, species, frac) for the LSC
    slab (:func:`relax_lsc_bulk`).  progress: see dismai.progress (stage "candidates").
    """
    report = progress or silent
    r = default_recipe() if recipe is None else {**default_recipe(), **recipe}
    t_lo, t_hi = (float(x) for x in r["thickness_range"])
    c = float(r["cell_c"])
    lattice = cell_lattice(c)
    lat2 = lattice[:2, :2]
    lco = lco_slab()
    lsc = lsc_slab(lsc_bulk)
    total_max = lco.thickness + t_hi + lsc.thickness
    if c - total_max < float(r["min_vacuum"]) - 1e-9:
        raise InputError(f"cell c = {c} Å leaves {c - total_max:.2f} Å of vacuum for the "
                         f"thickest case; need >= {r['min_vacuum']} Å")
    z0 = 0.5 * (c - total_max)  # vacuum split evenly across the periodic boundary
    lco_sp = np.array(lco.species)
    lco_z = z0 + lco.h
    z_top = lco_z.max()
    lsc_sp = np.array(lsc.species)
    frac = np.empty((n, N_ATOMS, 3))
    thickness = np.empty(n)
    shifts = np.empty((n, 2))
    for k in range(n):
        if k % 20 == 0:
            report("candidates", k, n)
        rng = np.random.default_rng([int(seed), k])
        t = t_lo + (t_hi - t_lo) * rng.random()
        shift = rng.random(2)
        lsc_uv = (lsc.uv + shift) % 1.0
        lsc_z = z_top + t + lsc.h
        fixed_sp = np.concatenate([lco_sp, lsc_sp])
        fixed_uv = np.vstack([lco.uv, lsc_uv])
        fixed_z = np.concatenate([lco_z, lsc_z])
        isp, iuv, iz = _fill_interface(rng, fixed_sp, fixed_uv, fixed_z, z_top, z_top + t,
                                       r["min_distances"], lat2)
        # assemble in block order: per species, interface atoms then slab atoms by height
        rows = []
        for s in SPECIES_ORDER:
            for j, sj in enumerate(isp):
                if sj == s:
                    rows.append((iuv[j], iz[j]))
            for j in np.flatnonzero(fixed_sp == s):  # LCO then LSC, each plane-ordered
                rows.append((fixed_uv[j], fixed_z[j]))
        uvz = np.array([[u[0], u[1], z] for u, z in rows])
        frac[k, :, :2] = uvz[:, :2] % 1.0
        frac[k, :, 2] = uvz[:, 2] / c
        thickness[k] = t
        shifts[k] = shift
    species = tuple(s for s in SPECIES_ORDER for _ in range(COMPOSITION[s]))
    report("candidates", n, n)
    return StructureSet(lattice, species, frac,
                        {"interface_thickness": thickness, "lsc_shift": shifts,
                         "candidate_index": np.arange(n, dtype=np.int64)})


def _cached_candidates(work: Path, r: dict, bulk, report) -> StructureSet:
    """build_candidates, kept in the work folder so a resumed build skips it."""
    import hashlib
    import io
    import json

    from dismai.fileio import write_bytes

    key = hashlib.sha256(json.dumps({k: r[k] for k in sorted(r)}, sort_keys=True,
                                    default=str).encode()
                         + repr(None if bulk is None else np.asarray(bulk[2]).tobytes()).encode()
                         ).hexdigest()[:12]
    path = work / f"candidates-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            lattice, frac = z["lattice"], z["frac"]
            props = {k[5:]: z[k] for k in z.files if k.startswith("prop_")}
        species = tuple(s for s in SPECIES_ORDER for _ in range(COMPOSITION[s]))
        report("candidates", len(frac), len(frac))
        return StructureSet(lattice, species, frac, props)
    cands = build_candidates(int(r["n_candidates"]), int(r["seed"]), r, lsc_bulk=bulk,
                             progress=report)
    buf = io.BytesIO()
    np.savez(buf, lattice=cands.lattice, frac=cands.frac,
             **{f"prop_{k}": v for k, v in cands.properties.items()})
    write_bytes(path, buf.getvalue())
    return cands


# --------------------------------------------------------------------------- build
@dataclass
class InterfaceBuild:
    """Kept structures (properties energy_per_atom, interface_energy, relax_steps,
    candidate_index, interface_thickness), E_ref and bookkeeping."""

    structures: StructureSet
    e_ref: float
    n_train: int
    info: dict = field(default_factory=dict)


def build(recipe: dict, work_dir, energy_model="chgnet", n_workers: int | None = None,
          progress=False, **model_kwargs) -> InterfaceBuild:
    """Construct candidates, relax them (resumable store in work_dir/relax), keep the
    low-energy ones (γ ≤ 0) in candidate order until recipe['n_structures'] (recipe §3.6).

    energy_model: a registered name ('chgnet', 'sevennet') or an EnergyModel.  The full
    recipe needs a GPU (docs/interface.md); on CPU use it only for small tests.
    """
    from dismai.fileio import write_json
    from dismai.relax import relax_structures

    r = {**default_recipe(), **(recipe or {})}
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    n_workers = n_workers or os.cpu_count() or 1
    bulk = None
    if r["relax_lsc_bulk"]:
        cache = work / "lsc_bulk_relaxed.json"
        if cache.exists():
            import json

            d = json.loads(cache.read_text())
            bulk = (np.array(d["lattice"]), d["species"], np.array(d["frac"]))
        else:
            bulk = relax_lsc_bulk(energy_model, **model_kwargs)
            write_json(cache, {"lattice": bulk[0].tolist(), "species": list(bulk[1]),
                               "frac": bulk[2].tolist()})
    with reporter(progress) as report:
        cands = _cached_candidates(work, r, bulk, report)
        run = relax_structures(cands, energy_model, out_dir=work / "relax",
                               fmax=r["relax_fmax"], max_steps=r["relax_steps"],
                               optimizer=r["optimizer"], n_workers=n_workers,
                               model_kwargs=model_kwargs or None, progress=report)
    relaxed = run.structures
    energy = np.asarray(relaxed.properties["energy_per_atom"], dtype=np.float64)
    e_ref = (low_energy_reference(energy, r["window_j_m2"], lattice=cands.lattice)
             if r["e_ref"] is None else float(r["e_ref"]))
    gamma = interface_energy(energy, e_ref, cands.lattice)
    low = np.flatnonzero(gamma <= 0.0)  # relaxed rows are in candidate order
    n_keep = int(r["n_structures"])
    if len(low) < n_keep:
        raise ComputationError(f"only {len(low)} low-energy structures among "
                           f"{len(cands)} candidates ({len(relaxed)} relaxed); need {n_keep}: "
                           "raise n_candidates")
    keep = low[:n_keep]
    out = relaxed[keep]
    frac = out.frac.copy()
    frac[..., :2] %= 1.0
    props = {
        "energy_per_atom": energy[keep],
        "interface_energy": gamma[keep],
        "relax_steps": np.asarray(relaxed.properties["relax_steps"])[keep],
        "candidate_index": np.asarray(relaxed.properties["input_index"])[keep],
        "interface_thickness": np.asarray(relaxed.properties["interface_thickness"])[keep],
    }
    structures = StructureSet(out.lattice, out.species, frac, props)
    info = {
        "n_candidates": len(cands),
        "n_relaxed": len(relaxed),
        "n_failed_relaxation": len(run.failed),
        "n_low_energy": int(len(low)),
        "last_candidate_used": int(props["candidate_index"][-1]) if n_keep else -1,
        "e_min_eV_per_atom": float(np.nanmin(energy)) if len(energy) else None,
        "energy_model": getattr(energy_model, "name", str(energy_model)),
        "lsc_bulk_relaxed": bool(r["relax_lsc_bulk"]),
    }
    n_train = int(round(float(r["train_fraction"]) * n_keep))
    return InterfaceBuild(structures, e_ref, n_train, info)
