"""Cation coordination fingerprints of the interface benchmark (§7.3, §7.5).

Every Li, Sc and Co atom gets matminer's 61 'ops' CrystalNNFingerprint features computed
with CrystalNN(cation_anion=True) and oxidation states Li+1, Sc+3, Co+3, Cl-1, O-2, so only
Cl and O can be neighbours, followed by 48 neighbour-species fractions (Cl, O for CN 1..24;
count/CN, not weighted by the CN probability): 109 features per atom.  There is no
spatial "interface region" selection; every cation of the structure counts (§10.1).

Per atom we also keep the most-likely motif (same rule as a-Si, §6.4 on the 61 op
columns), its CN and the rounded Cl / O counts at that CN (§7.3 step 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dismai.errors import InputError
from dismai.interface_cell import CATIONS
from dismai.metrics.asi.motifs import most_likely_motifs
from dismai.metrics.crystalnn import (
    CrystalNNFingerprinter,
    CrystalNNSettings,
    map_structures,
    structure_fingerprints,
)
from dismai.structures import StructureSet

__all__ = ["OXIDATION_STATES", "CATIONS", "N_OP_FEATURES", "N_FEATURES", "SETTINGS",
           "fingerprinter", "fingerprint_labels", "StructureFeatures", "InterfaceFeatures",
           "structure_features", "compute_features"]

OXIDATION_STATES = {"Li": 1, "Sc": 3, "Co": 3, "Cl": -1, "O": -2}  # §7.3 step 1
NN_SPECIES = ("Cl", "O")
N_OP_FEATURES = 61
N_FEATURES = 109
SETTINGS = CrystalNNSettings(cation_anion=True)


@lru_cache(maxsize=1)
def fingerprinter() -> CrystalNNFingerprinter:
    """'ops' preset + Cl/O fractions, CrystalNN(cation_anion=True) defaults otherwise."""
    return CrystalNNFingerprinter(settings=SETTINGS, nn_species=NN_SPECIES)


def fingerprint_labels() -> tuple[str, ...]:
    return fingerprinter().labels


@dataclass
class StructureFeatures:
    """One structure: per cation species, (n_s, 109) fingerprints and per-atom motif data."""

    fingerprints: dict  # species -> (n_s, 109)
    motif: dict  # species -> (n_s,) codes into asi motif_labels()
    cn: dict  # species -> (n_s,) most likely CN
    n_cl: dict  # species -> (n_s,) Cl count at the most likely CN
    n_o: dict  # species -> (n_s,) O count at the most likely CN
    n_fallback: int


def structure_features(lattice, frac, species) -> StructureFeatures:
    """Fingerprints and motif data of every cation of one structure (§7.3)."""
    species = list(species)
    fp = fingerprinter()
    centres = {s: [i for i, t in enumerate(species) if t == s] for s in CATIONS}
    all_c = [i for s in CATIONS for i in centres[s]]
    fps, _, n_fb = structure_fingerprints(lattice, frac, species, all_c, fp,
                                          oxidation_states=OXIDATION_STATES)
    out = {k: {} for k in ("fingerprints", "motif", "cn", "n_cl", "n_o")}
    start = 0
    for s in CATIONS:
        f = fps[start:start + len(centres[s])]
        start += len(centres[s])
        cn = np.argmax(f[:, :N_OP_FEATURES][:, _wt_cols()], axis=1) + 1
        rows = np.arange(len(f))
        cl = N_OP_FEATURES + (cn - 1) * 2
        out["fingerprints"][s] = f
        out["motif"][s] = most_likely_motifs(f[:, :N_OP_FEATURES])
        out["cn"][s] = cn
        out["n_cl"][s] = np.rint(f[rows, cl] * cn).astype(np.int64)
        out["n_o"][s] = np.rint(f[rows, cl + 1] * cn).astype(np.int64)
    return StructureFeatures(n_fallback=int(n_fb), **out)


@lru_cache(maxsize=1)
def _wt_cols() -> np.ndarray:
    labels = fingerprint_labels()
    return np.array([labels.index(f"wt CN_{k}") for k in range(1, 25)])


@dataclass
class InterfaceFeatures:
    """M structures: per species per-structure mean fingerprints (M, 109) and per-atom
    motif arrays (M, n_s); n_atoms: species -> n_s (72 Li, 36 Co, 12 Sc)."""

    mean_fp: dict
    motif: dict
    cn: dict
    n_cl: dict
    n_o: dict
    n_atoms: dict
    n_fallback: np.ndarray

    def __len__(self) -> int:
        return len(self.n_fallback)


def _one(args):
    lattice, frac, species = args
    return structure_features(lattice, frac, species)


def compute_features(structures: StructureSet, n_workers: int | None = 1) -> InterfaceFeatures:
    """Features of every structure (processes when n_workers > 1; same result)."""
    missing = [s for s in CATIONS if s not in structures.composition]
    if missing:
        raise InputError(f"structures lack cation species {missing}")
    items = [(structures.lattice, structures.frac[i], structures.species)
             for i in range(len(structures))]
    res = map_structures(_one, items, n_workers)
    comp = structures.composition
    m = len(res)

    def stack(attr, s, shape_tail, dtype):
        if not m:
            return np.zeros((0,) + shape_tail, dtype=dtype)
        return np.stack([getattr(r, attr)[s] for r in res]).astype(dtype)

    mean_fp = {s: (np.stack([r.fingerprints[s].mean(axis=0) for r in res]) if m
                   else np.zeros((0, N_FEATURES))) for s in CATIONS}
    return InterfaceFeatures(
        mean_fp=mean_fp,
        motif={s: stack("motif", s, (comp[s],), np.int64) for s in CATIONS},
        cn={s: stack("cn", s, (comp[s],), np.int64) for s in CATIONS},
        n_cl={s: stack("n_cl", s, (comp[s],), np.int64) for s in CATIONS},
        n_o={s: stack("n_o", s, (comp[s],), np.int64) for s in CATIONS},
        n_atoms={s: int(comp[s]) for s in CATIONS},
        n_fallback=np.array([r.n_fallback for r in res], dtype=np.int64),
    )
