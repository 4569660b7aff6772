"""Per-structure features of the generic `disordered` family, from one tessellation each.

For any fixed-cell, fixed-composition structure: the CrystalNN fingerprint of every atom of
the chosen centre species (matminer 'ops', 61 features, plus neighbour-species fractions
when ``nn_species`` is set), the bond angles of the geometric-CrystalNN neighbours of every
centre atom labelled by species triplet (neighbour a, centre, neighbour b), and the partial
g_ab(r) of every species pair.  These are the a-Si definitions (§6.4, §6.6, §6.7) with the
species made explicit, so on a one-species set they give the a-Si features exactly, and with
the interface settings (Cl/O neighbour fractions, oxidation states) the interface
fingerprints (§7.3); ``tests/test_disordered.py`` checks both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations_with_replacement

import numpy as np

from dismai.errors import InputError
from dismai.metrics.asi.angles import ANGLE_EDGES
from dismai.metrics.asi.rdf import N_BINS, R_MAX, pair_distances, shell_volumes
from dismai.metrics.crystalnn import (
    FINGERPRINT_SETTINGS,
    GEOMETRIC_SETTINGS,
    CrystalNNFingerprinter,
    CrystalNNSettings,
    map_structures,
    structure_fingerprints,
)
from dismai.structures import StructureSet, species_blocks

__all__ = ["DisorderedSettings", "DisorderedFeatures", "structure_features",
           "compute_features", "species_pairs", "angle_triplets"]

N_ANGLE_BINS = len(ANGLE_EDGES) - 1


@dataclass(frozen=True)
class DisorderedSettings:
    """What the fingerprints look at; stored in the dataset's reference.

    centres: species that get fingerprints (default: every species).
    nn_species: append the fraction of these neighbour species per CN (the interface's
    Cl/O columns); default none.
    oxidation_states: species -> charge; when given, CrystalNN runs with cation_anion=True,
    so only oppositely charged neighbours count (pymatgen's rule); default none.
    """

    centres: tuple[str, ...] | None = None
    nn_species: tuple[str, ...] = ()
    oxidation_states: tuple[tuple[str, float], ...] | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> DisorderedSettings:
        d = d or {}
        unknown = sorted(set(d) - {"centres", "nn_species", "oxidation_states"})
        if unknown:
            raise InputError(f"unknown fingerprint setting {unknown[0]!r} (known: centres, "
                             "nn_species, oxidation_states)")
        oxi = d.get("oxidation_states")
        return cls(centres=None if d.get("centres") is None else tuple(d["centres"]),
                   nn_species=tuple(d.get("nn_species") or ()),
                   oxidation_states=None if not oxi else
                   tuple(sorted((str(k), float(v)) for k, v in oxi.items())))

    def as_dict(self) -> dict:
        return {"centres": None if self.centres is None else list(self.centres),
                "nn_species": list(self.nn_species),
                "oxidation_states": None if self.oxidation_states is None
                else dict(self.oxidation_states)}

    def centre_species(self, species) -> list[str]:
        """The centre species in block order; one-line error for one not in the structure."""
        present = [s for s, _, _ in species_blocks(species)]
        if self.centres is None:
            return present
        missing = [s for s in self.centres if s not in present]
        if missing:
            raise InputError(f"fingerprint centre species {missing} are not in the structures "
                             f"({', '.join(present)})")
        return [s for s in present if s in self.centres]

    def check(self, species) -> None:
        self.centre_species(species)
        if self.oxidation_states is not None:
            missing = sorted(set(species) - set(dict(self.oxidation_states)))
            if missing:
                raise InputError(f"oxidation_states lack species {missing}")


@lru_cache(maxsize=16)
def fingerprinter(settings: DisorderedSettings) -> CrystalNNFingerprinter:
    """'ops' preset; CrystalNN(cation_anion=True) when oxidation states are given."""
    cnn = CrystalNNSettings(cation_anion=True) if settings.oxidation_states is not None \
        else FINGERPRINT_SETTINGS
    return CrystalNNFingerprinter(settings=cnn, nn_species=settings.nn_species or None)


def species_pairs(species) -> list[tuple[str, str]]:
    """Unordered species pairs (a, b), a before b in block order: the partial g(r) rows."""
    return list(combinations_with_replacement([s for s, _, _ in species_blocks(species)], 2))


def angle_triplets(species, centres) -> list[tuple[str, str, str]]:
    """(neighbour a, centre, neighbour b) per centre species and unordered neighbour pair."""
    pairs = species_pairs(species)
    return [(a, c, b) for c in centres for a, b in pairs]


@dataclass
class DisorderedFeatures:
    """M structures.  fingerprint: species -> (M, F) mean over that species' atoms;
    n_centre: species -> atoms per structure; angle_dist: (M, n_triplets, 360) fractions of
    all angles at that centre species; n_angles: (M, n_centres); rdf: (M, n_pairs, 500)."""

    fingerprint: dict
    n_centre: dict
    angle_dist: np.ndarray
    n_angles: np.ndarray
    rdf: np.ndarray
    n_fallback: np.ndarray
    triplets: list = field(default_factory=list)
    pairs: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.n_fallback)

    def combined_fingerprint(self) -> np.ndarray:
        """(M, F) atom-weighted mean over centre species (the interface's v_all, §7.4)."""
        total = sum(self.n_centre.values())
        return sum(self.n_centre[s] * self.fingerprint[s] for s in self.fingerprint) / total

    def subset(self, idx) -> DisorderedFeatures:
        return DisorderedFeatures({s: v[idx] for s, v in self.fingerprint.items()},
                                  dict(self.n_centre), self.angle_dist[idx],
                                  self.n_angles[idx], self.rdf[idx], self.n_fallback[idx],
                                  self.triplets, self.pairs)


def partial_rdfs(lattice: np.ndarray, frac: np.ndarray, species) -> np.ndarray:
    """(n_pairs, 500) g_ab(r) = hist_ab / (rho_b V_shell N_a) over all periodic images within
    10 Å, counting pairs from a to b (g_ab = g_ba: each a-b distance appears once from
    each side, and rho_b N_a = rho_a N_b).  With one species this is
    the a-Si g(r) (§6.7), which for cells thinner than 10 Å the reference computes on a
    2x2x2 minimum-image supercell instead (a truncated g(r); docs/own-data.md)."""
    lattice = np.asarray(lattice, dtype=np.float64)
    species = np.asarray(list(species))
    d, i, j = pair_distances(lattice, frac, R_MAX, return_atoms=True)
    vol = abs(np.linalg.det(lattice))
    shells = shell_volumes()
    out = []
    for a, b in species_pairs(species):
        na, nb = int((species == a).sum()), int((species == b).sum())
        sel = (species[i] == a) & (species[j] == b)
        hist = np.histogram(d[sel], bins=N_BINS, range=(0.0, R_MAX))[0]
        out.append(hist / (float(nb) / vol) / (shells * float(na)))
    return np.array(out)


def structure_features(lattice, frac, species, settings: DisorderedSettings) -> dict:
    """All features of one structure (see the module docstring)."""
    species = list(species)
    centres = settings.centre_species(species)
    idx = {s: [k for k, t in enumerate(species) if t == s] for s in centres}
    all_c = [k for s in centres for k in idx[s]]
    fp = fingerprinter(settings)
    oxi = None if settings.oxidation_states is None else dict(settings.oxidation_states)
    fps, angles, n_fb = structure_fingerprints(lattice, frac, species, all_c, fp,
                                               oxidation_states=oxi,
                                               angle_settings=GEOMETRIC_SETTINGS,
                                               angle_partners=True)
    sp = np.asarray(species)
    triplets = angle_triplets(species, centres)
    hist = np.zeros((len(triplets), N_ANGLE_BINS))
    n_angles = np.zeros(len(centres), dtype=np.int64)
    fingerprint, start = {}, 0
    row = {t: r for r, t in enumerate(triplets)}
    order = {t: k for k, (t, _, _) in enumerate(species_blocks(species))}
    for ci, s in enumerate(centres):
        rows = slice(start, start + len(idx[s]))
        fingerprint[s] = fps[rows].mean(axis=0)
        for a, p, q in angles[rows]:
            if len(a) == 0:
                continue
            n_angles[ci] += len(a)
            b = np.searchsorted(ANGLE_EDGES, a, side="left") - 1
            b[b < 0] = 0  # include_lowest, as angle_distribution (§6.6)
            for sa, sb, bb in zip(sp[p], sp[q], b, strict=True):
                first, second = sorted((sa, sb), key=order.__getitem__)
                hist[row[(first, s, second)], bb] += 1.0
        start += len(idx[s])
    for ci, s in enumerate(centres):
        if n_angles[ci]:
            for r, t in enumerate(triplets):
                if t[1] == s:
                    hist[r] /= n_angles[ci]
    return {"fingerprint": fingerprint, "angle_dist": hist, "n_angles": n_angles,
            "rdf": partial_rdfs(lattice, frac, species), "n_fallback": int(n_fb)}


def _worker(args):
    lattice, frac, species, settings = args
    return structure_features(lattice, frac, species, settings)


def compute_features(structures: StructureSet, settings: DisorderedSettings,
                     n_workers: int | None = 1) -> DisorderedFeatures:
    """Features of every structure, over ``n_workers`` processes (same result for any)."""
    species = list(structures.species)
    settings.check(species)
    centres = settings.centre_species(species)
    jobs = [(structures.lattice, structures.frac[i], species, settings)
            for i in range(len(structures))]
    res = map_structures(_worker, jobs, n_workers)
    m, f = len(res), fingerprinter(settings).n_features
    triplets, pairs = angle_triplets(species, centres), species_pairs(species)
    comp = structures.composition
    return DisorderedFeatures(
        fingerprint={s: np.array([r["fingerprint"][s] for r in res]).reshape(m, f)
                     for s in centres},
        n_centre={s: int(comp[s]) for s in centres},
        angle_dist=np.array([r["angle_dist"] for r in res]).reshape(m, len(triplets),
                                                                     N_ANGLE_BINS),
        n_angles=np.array([r["n_angles"] for r in res], dtype=np.int64).reshape(m, len(centres)),
        rdf=np.array([r["rdf"] for r in res]).reshape(m, len(pairs), N_BINS),
        n_fallback=np.array([r["n_fallback"] for r in res], dtype=np.int64),
        triplets=triplets, pairs=pairs)
