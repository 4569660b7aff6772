"""Validity and distribution metrics for generated general crystals (CrystalSet).

The checks the crystal-generation literature uses (CDVAE, Xie et al. 2022, and the models
after it), written here for `dismai.crystals.Crystal`:

* structural validity: every interatomic distance >= 0.5 Å under periodic boundaries
  (including an atom's distance to its own periodic images, which the CDVAE check skips)
  and a cell volume >= 0.1 Å^3;
* compositional validity: the reduced composition can be made charge-neutral with SMACT's
  oxidation states and passes the Pauling electronegativity test; a single element and an
  all-metal composition (an alloy) count as valid;
* two-sample Kolmogorov-Smirnov statistics between generated and reference distributions
  of lattice lengths and angles, density, atom count and (given an energy function)
  energy per atom.
"""

from __future__ import annotations

import itertools
import math
from functools import reduce

import numpy as np

from dismai.crystals import Crystal, CrystalSet

__all__ = ["min_distance", "structure_valid", "charge_neutral", "valid_flags", "validity",
           "crystal_features", "ks_statistics"]


def min_distance(crystal: Crystal) -> float:
    """The shortest distance (Å) between two atoms or an atom and its own image."""
    from ase.geometry import get_distances

    cart = crystal.cart
    _, d = get_distances(cart, cart, cell=crystal.lattice, pbc=True)
    if len(cart) > 1:
        d = d + np.diag(np.full(len(cart), np.inf))
        best = float(d.min())
    else:
        best = math.inf
    # an atom and its own periodic images: the shortest non-zero lattice vector
    shifts = np.array([s for s in itertools.product((-1, 0, 1), repeat=3) if any(s)])
    return min(best, float(np.linalg.norm(shifts @ crystal.lattice, axis=1).min()))


def structure_valid(crystal: Crystal, cutoff: float = 0.5) -> bool:
    return crystal.volume >= 0.1 and min_distance(crystal) >= cutoff


def charge_neutral(crystal: Crystal) -> bool:
    """SMACT charge neutrality and Pauling test of the reduced composition."""
    import smact
    from smact.screening import pauling_test

    numbers, counts = np.unique(crystal.numbers, return_counts=True)
    symbols = [crystal.symbols[list(crystal.numbers).index(z)] for z in numbers]
    if len(symbols) == 1:
        return True
    if all(s in smact.metals for s in symbols):
        return True
    counts = counts // reduce(math.gcd, counts.tolist())
    try:
        elements = [smact.Element(s) for s in symbols]
    except KeyError:  # SMACT has no data for it (a superheavy element): no known oxidation
        return False  # states, so no charge-balanced composition
    electronegativities = [e.pauling_eneg for e in elements]
    threshold = int(counts.max())
    # an element without oxidation states (a noble gas) cannot be charge-balanced
    for ox in itertools.product(*[e.oxidation_states or [] for e in elements]):
        # smact >= 3 returns the list of neutral ratios (empty: none)
        if not smact.neutral_ratios(ox, stoichs=[(int(c),) for c in counts],
                                    threshold=threshold):
            continue
        try:
            if pauling_test(ox, electronegativities):
                return True
        except TypeError:  # an element without a Pauling electronegativity
            return True
    return False


def valid_flags(crystals: CrystalSet) -> tuple[np.ndarray, np.ndarray]:
    """(structurally valid, charge-neutral) per crystal, as two bool arrays."""
    return (np.array([structure_valid(c) for c in crystals], dtype=bool),
            np.array([charge_neutral(c) for c in crystals], dtype=bool))


def validity(crystals: CrystalSet, attempts: int | None = None, flags=None) -> dict:
    """Fractions of `attempts` (default: len(crystals); failed reconstructions count as
    invalid) that are structurally, compositionally and both valid; `flags`: what
    valid_flags(crystals) returned, if the caller already has it."""
    n = attempts if attempts is not None else len(crystals)
    s, c = flags if flags is not None else valid_flags(crystals)
    frac = (lambda v: float(v.sum()) / n) if n else (lambda v: float("nan"))
    return {"structure_valid": frac(s), "composition_valid": frac(c),
            "valid": frac(s & c), "readable": len(crystals) / n if n else float("nan")}


def crystal_features(crystals: CrystalSet) -> dict[str, np.ndarray]:
    """Per-crystal a, b, c (Å), alpha, beta, gamma (degrees), density (g/cm^3), atoms;
    rounded to 1e-4 so that float noise in a constant (90 degree angles) does not decide a
    KS statistic."""
    from ase.data import atomic_masses

    lengths = np.array([c.lengths_angles[0] for c in crystals]).reshape(-1, 3)
    angles = np.array([c.lengths_angles[1] for c in crystals]).reshape(-1, 3)
    amu_per_a3 = 1.66053906660  # g/cm^3 per amu/Å^3
    density = np.array([atomic_masses[c.numbers].sum() / c.volume * amu_per_a3
                        for c in crystals])
    lengths, angles, density = (np.round(v, 4) for v in (lengths, angles, density))
    out = {k: lengths[:, i] for i, k in enumerate("abc")}
    out.update({k: angles[:, i] for i, k in enumerate(("alpha", "beta", "gamma"))})
    out["density"] = density
    out["n_atoms"] = np.array([c.n_atoms for c in crystals], dtype=float)
    return out


def ks_statistics(generated: CrystalSet, reference: CrystalSet, energy=None) -> dict:
    """Two-sample KS statistic per feature (0: same distribution, 1: disjoint);
    `energy`: an optional function CrystalSet -> energy per atom (eV) for both sets."""
    from scipy.stats import ks_2samp

    if not len(generated) or not len(reference):
        return {}
    g, r = crystal_features(generated), crystal_features(reference)
    if energy is not None:
        g["energy_per_atom"], r["energy_per_atom"] = energy(generated), energy(reference)
    out = {}
    for k in g:
        a, b = np.asarray(g[k], float), np.asarray(r[k], float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        out[k] = float(ks_2samp(a, b).statistic) if len(a) and len(b) else float("nan")
    return out
