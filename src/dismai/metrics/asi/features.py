"""Per-structure a-Si features from one Voronoi tessellation per structure.

For each structure: the 61-feature CrystalNN fingerprint of every Si atom (§6.4), the
most-likely motif of every atom (§6.8), the bond angles from geometric CrystalNN (§6.6)
and g(r) (§6.7).  The fingerprint and bond-angle neighbours share one tessellation
(:func:`dismai.metrics.crystalnn.voronoi_cells`); structures run in parallel processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dismai.metrics.asi.angles import ANGLE_CENTRES, angle_distribution
from dismai.metrics.asi.motifs import (
    fingerprinter,
    most_likely_motifs,
    motif_counts,
    motif_labels,
)
from dismai.metrics.asi.rdf import RDF_R, rdf
from dismai.metrics.crystalnn import (
    GEOMETRIC_SETTINGS,
    SpeciesTable,
    map_structures,
    structure_fingerprints,
)
from dismai.structures import StructureSet

__all__ = ["ASiFeatures", "fingerprints_and_angles", "structure_features", "compute_features"]


@dataclass
class ASiFeatures:
    """Per-structure a-Si features of M structures (rows in input order).

    fingerprint:   (M, 61) mean fingerprint over the structure's Si atoms.
    motif_counts:  (M, len(motif_labels())) atoms per most-likely motif.
    angle_dist:    (M, 360) bond-angle fractions per 0.5 deg bin.
    n_angles:      (M,) number of bond angles pooled per structure.
    rdf:           (M, 500) g(r).
    n_fallback:    (M,) sites recomputed with pymatgen's per-site Voronoi.
    atom_fingerprints: (M, n_si, 61) when requested, else None.
    """

    fingerprint: np.ndarray
    motif_counts: np.ndarray
    angle_dist: np.ndarray
    n_angles: np.ndarray
    rdf: np.ndarray
    n_fallback: np.ndarray
    atom_fingerprints: np.ndarray | None = None
    labels: tuple = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.fingerprint)

    @property
    def n_si(self) -> np.ndarray:
        return self.motif_counts.sum(axis=1)

    @property
    def motif_fraction(self) -> np.ndarray:
        """(M, n_codes) fraction of each structure's atoms per most-likely motif."""
        n = self.n_si.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.motif_counts / n[:, None]

    def subset(self, idx) -> ASiFeatures:
        return ASiFeatures(self.fingerprint[idx], self.motif_counts[idx], self.angle_dist[idx],
                           self.n_angles[idx], self.rdf[idx], self.n_fallback[idx],
                           None if self.atom_fingerprints is None else self.atom_fingerprints[idx],
                           self.labels)


def fingerprints_and_angles(lattice: np.ndarray, frac: np.ndarray, species=None
                            ) -> tuple[np.ndarray, np.ndarray, int]:
    """(Si fingerprints (n_si, 61), pooled bond angles (deg), #fallback sites) of one
    structure from ONE Voronoi tessellation: the §6.4 fingerprint pass and the §6.6
    geometric-CrystalNN bond-angle pass share the faces."""
    frac = np.asarray(frac, dtype=np.float64)
    species = ["Si"] * len(frac) if species is None else list(species)
    si = [i for i, s in enumerate(species) if s == "Si"]
    fps, angles, n_redo = structure_fingerprints(lattice, frac, species, si, fingerprinter(),
                                                 angle_settings=GEOMETRIC_SETTINGS)
    return fps, (np.concatenate(angles) if angles else np.zeros(0)), n_redo


def structure_features(lattice: np.ndarray, frac: np.ndarray, species=None,
                       keep_atoms: bool = False) -> dict:
    """All a-Si features of one structure (fingerprints, motifs, angles, g(r))."""
    fps, angles, n_redo = fingerprints_and_angles(lattice, frac, species)
    out = {
        "fingerprint": fps.mean(axis=0) if len(fps)
        else np.full(fingerprinter().n_features, np.nan),
        "motif_counts": motif_counts(most_likely_motifs(fps)) if len(fps)
        else np.zeros(len(motif_labels()), dtype=np.int64),
        "angle_dist": angle_distribution(angles),
        "n_angles": len(angles),
        "rdf": rdf(lattice, frac),
        "n_fallback": n_redo,
    }
    if keep_atoms:
        out["atom_fingerprints"] = fps
    return out


def _warm_up(species) -> None:
    """Load pymatgen tables and numba kernels once in the parent, before worker processes
    fork, so every worker does not pay for them again."""
    from dismai.metrics._order_params import op_values

    fingerprinter()
    SpeciesTable.from_symbols(species)
    rn = np.eye(3)
    op_values(np.array([1, 19]), np.zeros((2, 12)), rn, np.ones(3), np.empty(2))


def _worker(args):
    lattice, frac, species, keep = args
    return structure_features(lattice, frac, species, keep)


def compute_features(structures: StructureSet, n_workers: int | None = 1,
                     keep_atoms: bool = False) -> ASiFeatures:
    """Features of every structure of a set, over ``n_workers`` processes (None/0: all CPUs)."""
    species = list(structures.species)
    jobs = [(structures.lattice, structures.frac[i], species, keep_atoms)
            for i in range(len(structures))]
    if len(jobs):
        _warm_up(species)
    res = map_structures(_worker, jobs, n_workers)
    m = len(res)
    n_feat = fingerprinter().n_features
    n_codes = len(motif_labels())
    return ASiFeatures(
        fingerprint=np.array([r["fingerprint"] for r in res]).reshape(m, n_feat),
        motif_counts=np.array([r["motif_counts"] for r in res], dtype=np.int64).reshape(m, n_codes),
        angle_dist=np.array([r["angle_dist"] for r in res]).reshape(m, len(ANGLE_CENTRES)),
        n_angles=np.array([r["n_angles"] for r in res], dtype=np.int64),
        rdf=np.array([r["rdf"] for r in res]).reshape(m, len(RDF_R)),
        n_fallback=np.array([r["n_fallback"] for r in res], dtype=np.int64),
        atom_fingerprints=(np.array([r["atom_fingerprints"] for r in res]) if keep_atoms
                           else None),
        labels=fingerprinter().labels,
    )
