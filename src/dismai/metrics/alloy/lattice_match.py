"""Putting generated alloy atoms on FCC lattice sites (§2).

Three reference variants plus an automatic choice:

``as-is`` (CryinGAN, §2.1)
    Every reference site takes the species of the closest generated atom within 0.8 Å;
    vac_count = 256 - filled sites; nothing is rejected.
``translated`` (DiffCSP, §2.2)
    As ``as-is`` after shifting the reference lattice onto the generated atom closest to
    the origin.
``rotated`` (CDVAE, §2.3)
    Local axes from a 2NN octahedron, a rotated and cropped reference point set pinned to
    that atom, greedy acceptance of on-lattice atoms in index order, 2NN rescue passes, and
    rejection when more than 50 atoms are removed.  Atoms keep their own positions.
``auto``
    See :func:`match_lattice`.

The snapped variants are done with integer site arithmetic: because 0.8 Å is less than
half the 1NN distance (2.55 Å), an atom can be within 0.8 Å of at most one site, so
"closest atom within 0.8 Å of each site" equals "round every atom to its nearest FCC (D3)
lattice point, keep those closer than 0.8 Å, and per site keep the closest", which is
vectorised over all structures at once.  The rotated variant uses periodic KD-trees.

Deliberate differences from the reference (also in docs/alloy-benchmark.md):

* pymatgen self-exclusion (§8.2, §9.6): the reference's per-site queries ignore generated
  atom 0 whenever it lies within 1e-8 Å of the queried site, so an exactly on-site atom 0
  leaves its site empty (a spurious vacancy).  That is an artefact of the neighbour
  search, not of the benchmark's definition, so it is NOT replicated by default;
  ``self_exclusion=True`` replicates it.  "Atom 0" is then the first atom in our
  species-block order, which is the file's atom 0 only for block-ordered files.
* Atoms are processed in species-block order (the StructureSet layout: Cr, Fe, Ni, each
  in file order), which is the reference's index order for block-ordered input files.
* §2.2 raises and aborts the whole run when no atom lies within 5 Å of the origin; here
  that structure falls back to the untranslated lattice (status "no-translation-atom").
* §2.3: when the pin site has no rotated reference point within 5 Å the reference raises;
  here the structure is rejected (status "no-pin-match").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from dismai import fcc
from dismai.errors import InputError
from dismai.metrics.alloy.geometry import (
    HALF,
    L,
    check_alloy_cell,
    find_basis,
    min_image,
    species_indices,
    strictly_within,
    wrap_cart,
    wrapped_cartesian,
)
from dismai.structures import StructureSet

__all__ = [
    "MARGIN",
    "MAX_REMOVED",
    "VARIANTS",
    "LatticeMatch",
    "nearest_fcc_point",
    "snap_to_sites",
    "match_as_is",
    "match_translated",
    "match_rotated",
    "match_rotated_one",
    "misalignment_deg",
    "match_lattice",
]

MARGIN = 0.8  # Å, on-lattice tolerance of every variant (§2)
TRANSLATION_RADIUS = 5.0  # Å, §2.2 step 2 and §2.3 step C
TRANSLATION_PROBE = 1e-6  # fractional, §2.2 step 1
BASIS_MARGIN = 0.4  # Å, §2.3 step A
MAX_REMOVED = 50  # §2.3 step F
SELF_EXCLUSION_TOL = 1e-8  # Å, pymatgen's exclude_self distance (§8.2)
VARIANTS = ("as-is", "translated", "rotated", "auto")
#: auto: a structure counts as rotated when its local axes are this far from every cube axis
AUTO_ROTATION_DEG = 5.0


@dataclass
class LatticeMatch:
    """Result of lattice matching for M structures.

    variant:      the variant actually applied ("as-is", "translated" or "rotated").
    accepted:     (M,) structures that survive post-processing (all, for snapped variants,
                  except structures left with no atom at all).
    status:       (M,) "ok" or why a structure was rejected / treated specially.
    n_removed:    (M,) generated atoms dropped (snapped: N - filled sites; rotated:
                  256 - accepted atoms as in §2.3 F; -1 where no basis was found).
    site_species: (M, 256) species index per reference site, -1 empty (snapped only).
    vac_count:    (M,) empty sites, §2.1 step 4 (snapped only; rotated: see clusters.py).
    positions/species: per structure, the accepted atoms' own Cartesian positions in the
                  reference cube and species indices, in the cleaned structure's order
                  (rotated only; None for rejected structures).
    basis:        (M, 3, 3) local axes found in step A (rotated only; NaN if none).
    shift:        (M, 3) fractional lattice shift (translated only).
    note:         why `auto` chose this variant ("" otherwise).
    """

    variant: str
    accepted: np.ndarray
    status: np.ndarray
    n_removed: np.ndarray
    site_species: np.ndarray | None = None
    vac_count: np.ndarray | None = None
    positions: list | None = None
    species: list | None = None
    basis: np.ndarray | None = None
    shift: np.ndarray | None = None
    note: str = ""

    @property
    def snapped(self) -> bool:
        return self.site_species is not None


# ----------------------------------------------------------------------------- snapping
def nearest_fcc_point(x: np.ndarray) -> np.ndarray:
    """Nearest point of the FCC (D3) lattice {integer, even coordinate sum} to x (..., 3).

    Conway & Sloane's rule: round every coordinate; if the sum is odd, re-round the
    coordinate with the largest rounding error the other way.
    """
    x = np.asarray(x, dtype=np.float64)
    r = np.rint(x)
    odd = (r.sum(axis=-1) % 2) != 0
    if odd.any():
        xo, ro = x[odd], r[odd]
        diff = xo - ro
        k = np.argmax(np.abs(diff), axis=-1)
        dk = np.take_along_axis(diff, k[:, None], axis=-1)[:, 0]
        ro[np.arange(len(ro)), k] += np.where(dk >= 0, 1.0, -1.0)
        r[odd] = ro
    return r


def snap_to_sites(cart: np.ndarray, species: np.ndarray, shift_cart: np.ndarray | None = None,
                  self_exclusion: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Site species for the (shifted) reference lattice (§2.1 steps 1-3).

    cart: (M, N, 3) positions in the cube; species: (N,) indices; shift_cart: (M, 3)
    Cartesian shift of the reference lattice (§2.2), None for §2.1.
    Returns (site_species (M, 256) int8 with -1 = empty, n_on (M,) atoms within 0.8 Å of a site).
    """
    m, n, _ = cart.shape
    rel = cart if shift_cart is None else cart - shift_cart[:, None, :]
    x = rel / HALF
    r = nearest_fcc_point(x)
    delta = (x - r) * HALF
    d = np.sqrt(np.einsum("mni,mni->mn", delta, delta))
    site = fcc.grid_to_index(r.astype(np.int64))
    ok = d < MARGIN  # pymatgen's neighbour search is strict (d < r)
    if self_exclusion:
        # §9.6: the query site's list index is 0, so atom 0 is invisible when it coincides
        ok[:, 0] &= d[:, 0] > SELF_EXCLUSION_TOL
    key = (np.arange(m)[:, None] * fcc.N_SITES + site)[ok]
    dist = d[ok]
    spec = np.broadcast_to(species[None, :], (m, n))[ok]
    order = np.lexsort((dist, key))  # per site: closest first (ties: lowest atom index)
    key, spec = key[order], spec[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    out = np.full(m * fcc.N_SITES, -1, dtype=np.int8)
    out[key[first]] = spec[first]
    return out.reshape(m, fcc.N_SITES), ok.sum(axis=1)


def _snapped_result(variant: str, site_species: np.ndarray, n_atoms: int, **kw) -> LatticeMatch:
    filled = (site_species >= 0).sum(axis=1)
    accepted = filled > 0  # a structure with no atom left cannot be counted at all
    status = np.where(accepted, "ok", "empty").astype(object)
    return LatticeMatch(
        variant=variant,
        accepted=accepted,
        status=status,
        n_removed=(n_atoms - filled).astype(np.int64),
        site_species=site_species,
        vac_count=(fcc.N_SITES - filled).astype(np.int64),  # §2.1 step 4
        **kw,
    )


def match_as_is(structures: StructureSet, self_exclusion: bool = False) -> LatticeMatch:
    """CryinGAN variant (§2.1): snap to the untranslated reference lattice, never reject."""
    check_alloy_cell(structures)
    spec = species_indices(structures.species)
    site_species, _ = snap_to_sites(wrapped_cartesian(structures), spec,
                                    self_exclusion=self_exclusion)
    return _snapped_result("as-is", site_species, structures.n_atoms)


def translation_shift(structures: StructureSet) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) fractional shift frac(G) - 1e-6 of §2.2, and (M,) whether G exists within 5 Å."""
    cart = wrapped_cartesian(structures)
    probe = TRANSLATION_PROBE * L
    delta = min_image(cart - probe)
    d = np.sqrt(np.einsum("mni,mni->mn", delta, delta))
    g = np.argmin(d, axis=1)  # ties: lowest index
    rows = np.arange(len(structures))
    found = d[rows, g] < TRANSLATION_RADIUS
    shift = structures.frac[rows, g] - TRANSLATION_PROBE
    shift = np.where(found[:, None], shift, 0.0)
    return np.mod(shift, 1.0), found


def match_translated(structures: StructureSet, self_exclusion: bool = False) -> LatticeMatch:
    """DiffCSP variant (§2.2): shift the lattice onto the atom nearest the origin, then §2.1."""
    check_alloy_cell(structures)
    spec = species_indices(structures.species)
    shift, found = translation_shift(structures)
    site_species, _ = snap_to_sites(wrapped_cartesian(structures), spec, shift * L,
                                    self_exclusion=self_exclusion)
    res = _snapped_result("translated", site_species, structures.n_atoms, shift=shift)
    res.status[~found & res.accepted] = "no-translation-atom"
    return res


# ----------------------------------------------------------------------------- rotated
@functools.lru_cache(maxsize=1)
def _supercell_frac() -> np.ndarray:
    """Fractional coordinates of the 3x3x3 reference supercell, shifted by -0.5 (§2.3 B1).

    A constant, computed once; returned read-only so no caller can change it."""
    offs = np.array(np.meshgrid(range(3), range(3), range(3), indexing="ij")).reshape(3, -1).T
    pts = (fcc.site_frac()[None, :, :] + offs[:, None, :]) / 3.0
    out = pts.reshape(-1, 3) - 0.5
    out.setflags(write=False)
    return out


def rotated_reference(basis: np.ndarray) -> np.ndarray:
    """§2.3 B: the ideal lattice rotated about a lattice point, cropped to one cube (frac)."""
    q = _supercell_frac() @ basis  # p_x a + p_y b + p_z c
    keep = np.all((q > -1.0 / 6.0) & (q <= 1.0 / 6.0), axis=1)
    return q[keep] * 3.0 + 0.5


def _greedy_in_order(n: int, candidates: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Accept candidates in index order unless an already-accepted candidate is paired with it.

    pairs: (P, 2) index pairs (i < j) that conflict.  Candidates without conflicts are
    accepted without a Python loop.
    """
    accepted = candidates.copy()
    if len(pairs) == 0:
        return accepted
    pairs = pairs[candidates[pairs[:, 0]] & candidates[pairs[:, 1]]]
    if len(pairs) == 0:
        return accepted
    lower: dict[int, list[int]] = {}
    for i, j in pairs:
        i, j = (int(i), int(j)) if i < j else (int(j), int(i))
        lower.setdefault(j, []).append(i)
    for j in sorted(lower):
        if any(accepted[i] for i in lower[j]):
            accepted[j] = False
    return accepted


def match_rotated_one(cart: np.ndarray, frac: np.ndarray, species: np.ndarray) -> dict:
    """§2.3 for one structure.  cart: (N, 3) wrapped positions; frac: raw fractional coords."""
    n = len(cart)
    tree = cKDTree(cart, boxsize=L)
    basis, pin = find_basis(cart, BASIS_MARGIN, normalise_c=True, tree=tree)  # step A
    if basis is None:
        return {"status": "no-basis", "n_removed": -1, "basis": None}
    # step B + C: rotated reference, translated so its point nearest the pin lands on it
    ref = rotated_reference(basis)
    ref_tree = cKDTree(wrap_cart(ref * L), boxsize=L)
    pin_frac = np.mod(frac[pin], 1.0)
    d, i = ref_tree.query(wrap_cart(pin_frac * L), distance_upper_bound=TRANSLATION_RADIUS)
    if not np.isfinite(d):
        return {"status": "no-pin-match", "n_removed": -1, "basis": basis}
    ref = np.mod(ref + (pin_frac - ref[i]), 1.0)
    ref_tree = cKDTree(wrap_cart(ref * L), boxsize=L)
    # step D: on-lattice atoms, accepted in index order unless a duplicate
    d_ref, _ = ref_tree.query(cart, distance_upper_bound=MARGIN)
    on = np.isfinite(d_ref)
    r08 = strictly_within(MARGIN)
    pairs = tree.query_pairs(r08, output_type="ndarray")
    accepted = _greedy_in_order(n, on, pairs)
    rank = np.where(accepted, np.arange(n), -1)
    # step E: rescue off-lattice atoms next to an accepted atom one 2NN step away
    check = list(np.flatnonzero(~on))
    if check:
        chk = np.array(check)
        dup = tree.query_ball_point(cart[chk], r08)
        dirs = np.concatenate([basis, -basis])[[0, 3, 1, 4, 2, 5]] * (0.25 * L)
        probes = wrap_cart(cart[chk][:, None, :] + dirs[None, :, :])
        sup = tree.query_ball_point(probes.reshape(-1, 3), r08).reshape(len(chk), 6)
        dup_of = {int(j): np.asarray(dup[k], dtype=np.int64) for k, j in enumerate(chk)}
        sup_of = {int(j): np.unique(np.concatenate([np.asarray(s, dtype=np.int64)
                                                    for s in sup[k]]))
                  for k, j in enumerate(chk)}
        next_rank = n
        added = True
        while added:
            added = False
            for pos in range(len(check) - 1, -1, -1):  # from the end to the start
                j = int(check[pos])
                if accepted[dup_of[j]].any():
                    check.pop(pos)  # duplicate of an accepted atom
                elif accepted[sup_of[j]].any():
                    accepted[j] = True
                    rank[j] = next_rank
                    next_rank += 1
                    check.pop(pos)
                    added = True
    n_acc = int(accepted.sum())
    n_removed = fcc.N_SITES - n_acc  # §2.3 F: relative to 256 sites, can be negative
    if n_removed > MAX_REMOVED:
        return {"status": "too-many-removed", "n_removed": n_removed, "basis": basis}
    # cleaned structure order: pymatgen's stable species sort of the insertion order
    idx = np.flatnonzero(accepted)
    idx = idx[np.lexsort((rank[idx], species[idx]))]
    return {"status": "ok", "n_removed": n_removed, "basis": basis,
            "positions": cart[idx], "species": species[idx], "index": idx}


def match_rotated(structures: StructureSet) -> LatticeMatch:
    """CDVAE variant (§2.3): rotated reference, own positions kept, >50 removed rejected."""
    check_alloy_cell(structures)
    spec = species_indices(structures.species)
    cart = wrapped_cartesian(structures)
    m = len(structures)
    status = np.empty(m, dtype=object)
    n_removed = np.empty(m, dtype=np.int64)
    basis = np.full((m, 3, 3), np.nan)
    positions: list = [None] * m
    species: list = [None] * m
    for k in range(m):
        r = match_rotated_one(cart[k], structures.frac[k], spec)
        status[k] = r["status"]
        n_removed[k] = r["n_removed"]
        if r["basis"] is not None:
            basis[k] = r["basis"]
        if r["status"] == "ok":
            positions[k] = r["positions"]
            species[k] = r["species"]
    return LatticeMatch(
        variant="rotated",
        accepted=status == "ok",
        status=status,
        n_removed=n_removed,
        positions=positions,
        species=species,
        basis=basis,
    )


# ----------------------------------------------------------------------------- auto
def misalignment_deg(basis: np.ndarray) -> float:
    """Largest angle (degrees) between a basis row and its nearest cube axis; NaN if no basis."""
    b = np.asarray(basis, dtype=np.float64)
    if not np.all(np.isfinite(b)):
        return float("nan")
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cosines = np.clip(np.abs(b).max(axis=1), -1.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())


def _structure_misalignment(structures: StructureSet) -> np.ndarray:
    cart = wrapped_cartesian(structures)
    out = np.full(len(structures), np.nan)
    for k in range(len(structures)):
        b, _ = find_basis(cart[k], BASIS_MARGIN, normalise_c=True)
        if b is not None:
            out[k] = misalignment_deg(b)
    return out


def match_lattice(structures: StructureSet, variant: str = "auto",
                  self_exclusion: bool = False) -> LatticeMatch:
    """Apply one lattice-matching variant; ``auto`` chooses one for the whole set.

    ``auto`` (one variant for the whole set, so its metrics stay comparable with the
    reference run of that variant):

    1. Snap with ``as-is`` and ``translated``.  Take ``translated`` only if it fills
       strictly more sites in total; a translation by one atom's noise otherwise only adds
       noise, and ``as-is`` is the reference treatment of lattice-fixed generators.
    2. If that still leaves more than 50 sites empty (the reference's failure threshold)
       in a majority of structures, the axis-aligned lattice does not describe them; then
       measure each structure's local axes (§2.3 step A) and take ``rotated`` when a
       majority of structures are misaligned by more than 5° from the cube axes
       (thermal-like noise of 0.1-0.2 Å tilts the measured axes by only ~2-4°).
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown lattice_match {variant!r}; use one of {', '.join(VARIANTS)}")
    if variant == "as-is":
        return match_as_is(structures, self_exclusion)
    if variant == "translated":
        return match_translated(structures, self_exclusion)
    if variant == "rotated":
        return match_rotated(structures)
    as_is = match_as_is(structures, self_exclusion)
    trans = match_translated(structures, self_exclusion)
    f_a = int((as_is.site_species >= 0).sum())
    f_t = int((trans.site_species >= 0).sum())
    best = trans if f_t > f_a else as_is
    note = (f"{best.variant}: filled sites as-is {f_a}, translated {f_t}")
    failing = (best.vac_count > MAX_REMOVED).mean()
    if failing > 0.5:
        mis = _structure_misalignment(structures)
        frac_rot = float(np.mean(mis > AUTO_ROTATION_DEG))  # NaN (no basis) counts as no
        if frac_rot > 0.5:
            res = match_rotated(structures)
            res.note = (f"rotated: {100 * failing:.0f}% of structures have >50 empty sites "
                        f"after {best.variant} snapping and {100 * frac_rot:.0f}% are "
                        f"misaligned by >{AUTO_ROTATION_DEG:g} deg")
            return res
        note += (f"; {100 * failing:.0f}% have >50 empty sites but only "
                 f"{100 * frac_rot:.0f}% are misaligned, so not rotated")
    best.note = note
    return best
