"""a-Si coordination-motif fingerprints, ``d_motif``/``cos_motif`` and most-likely motifs.

Spec §6.4-6.5, §6.8.  Every Si atom gets matminer's 61-feature
``CrystalNNFingerprint`` ('ops' preset: wt and wt x order parameter for CN 1..24, pymatgen
CrystalNN defaults, no oxidation states).  The per-structure fingerprint is the mean over its
atoms; the dataset vector is the mean over structures.  d_motif = Euclidean and cos_motif =
cosine distance between the train and generated dataset vectors.

Most-likely motif per atom (§6.4 post-processing, §6.8), reproducing pandas' behaviour:
the CN whose ``wt CN_k`` is largest (first column on ties, so an all-zero row gives CN 1);
then the largest column among those whose label *contains* ``CN_k`` except ``wt CN_k``
(``DataFrame.filter(like=...)`` is a substring match, so CN 1 also sees the CN 10-19 columns
and CN 2 the CN 20-24 ones); ``None CN_k`` when nothing is left (CN >= 13).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from dismai.metrics.bootstrap import cosine_to, euclidean_to
from dismai.metrics.crystalnn import (
    FINGERPRINT_SETTINGS,
    CrystalNNFingerprinter,
    SpeciesTable,
    crystalnn_nn_data,
    voronoi_cells,
)

__all__ = [
    "fingerprinter",
    "fingerprint_labels",
    "motif_labels",
    "MOTIF_SORT_ORDER",
    "site_fingerprints",
    "most_likely_motifs",
    "motif_counts",
    "select_train_motifs",
    "d_motif",
    "cos_motif",
]

#: display order of most-likely motifs (get_most_likely_Si_OP.py)
MOTIF_SORT_ORDER = (
    "cuboctahedral CN_12",
    "hexagonal bipyramidal CN_8", "body-centered cubic CN_8",
    "pentagonal bipyramidal CN_7", "hexagonal pyramidal CN_7",
    "pentagonal pyramidal CN_6", "octahedral CN_6", "hexagonal planar CN_6",
    "trigonal bipyramidal CN_5", "square pyramidal CN_5", "pentagonal planar CN_5",
    "trigonal pyramidal CN_4", "see-saw-like CN_4", "rectangular see-saw-like CN_4",
    "tetrahedral CN_4", "square co-planar CN_4",
    "T-shaped CN_3", "trigonal non-coplanar CN_3", "trigonal planar CN_3",
    "linear CN_2", "bent 150 degrees CN_2", "bent 120 degrees CN_2", "water-like CN_2",
    "L-shaped CN_2",
    "sgl_bd CN_1",
)
OP_PCT_THRESHOLD = 1.0  # §6.8 op_pct_threshold


@lru_cache(maxsize=1)
def fingerprinter() -> CrystalNNFingerprinter:
    """The §6.4 featuriser: 'ops' preset, CrystalNN defaults, cation_anion False."""
    return CrystalNNFingerprinter(settings=FINGERPRINT_SETTINGS)


def fingerprint_labels() -> tuple[str, ...]:
    """The 61 column labels, e.g. 'wt CN_4', 'tetrahedral CN_4'."""
    return fingerprinter().labels


@lru_cache(maxsize=1)
def motif_labels() -> tuple[str, ...]:
    """Codes of :func:`most_likely_motifs`: the 61 feature labels, then 'None CN_k'."""
    fpl = fingerprint_labels()
    return fpl + tuple(f"None CN_{k}" for k in range(1, 25) if f"None CN_{k}" not in fpl)


@lru_cache(maxsize=1)
def _ml_tables():
    labels = fingerprint_labels()
    wt_cols = np.array([labels.index(f"wt CN_{k}") for k in range(1, 25)])
    cand = []
    ml = motif_labels()
    for k in range(1, 25):
        cols = [i for i, lab in enumerate(labels) if f"CN_{k}" in lab and lab != f"wt CN_{k}"]
        cand.append((np.array(cols, dtype=np.int64), ml.index(f"None CN_{k}")))
    return wt_cols, cand


def site_fingerprints(lattice: np.ndarray, frac: np.ndarray, species=None,
                      cells=None) -> np.ndarray:
    """(n, 61) fingerprints of the Si atoms of one structure (all atoms for a-Si)."""
    frac = np.asarray(frac, dtype=np.float64)
    species = ["Si"] * len(frac) if species is None else list(species)
    table = SpeciesTable.from_symbols(species)
    fp = fingerprinter()
    if cells is None:
        cells = voronoi_cells(lattice, frac, FINGERPRINT_SETTINGS.search_cutoff,
                              species=species)
    si = [i for i, s in enumerate(species) if s == "Si"]
    out = np.zeros((len(si), fp.n_features))
    for r, i in enumerate(si):
        fp.site_fingerprint(cells[i], crystalnn_nn_data(cells[i], i, table), table, out=out[r])
    return out


def most_likely_motifs(fps: np.ndarray) -> np.ndarray:
    """Per-atom most-likely motif codes (indices into :func:`motif_labels`), §6.4/§6.8."""
    fps = np.atleast_2d(np.asarray(fps, dtype=np.float64))
    wt_cols, cand = _ml_tables()
    cn_idx = np.argmax(fps[:, wt_cols], axis=1)  # first max, as pandas idxmax
    codes = np.empty(len(fps), dtype=np.int64)
    for k in np.unique(cn_idx):
        rows = np.flatnonzero(cn_idx == k)
        cols, none_code = cand[k]
        if len(cols) == 0:
            codes[rows] = none_code
        else:
            codes[rows] = cols[np.argmax(fps[np.ix_(rows, cols)], axis=1)]
    return codes


def motif_counts(codes: np.ndarray) -> np.ndarray:
    """Counts per motif code (len(motif_labels()),) of one structure's atoms."""
    return np.bincount(np.asarray(codes, dtype=np.int64), minlength=len(motif_labels()))


def select_train_motifs(train_counts: np.ndarray, first_seen: np.ndarray | None = None,
                        threshold: float = OP_PCT_THRESHOLD) -> tuple[list[int], np.ndarray]:
    """Motifs shown in the §6.8 table: train percentage >= threshold, in the fixed order.

    train_counts: (n_codes,) total atoms per code over the training set.  Motifs outside
    the fixed order go last (pandas sorts NaN keys last), by first appearance if given.
    Returns (codes, train percentages).
    """
    train_counts = np.asarray(train_counts, dtype=np.float64)
    pct = 100.0 * train_counts / train_counts.sum()
    labels = motif_labels()
    order = {lab: i for i, lab in enumerate(MOTIF_SORT_ORDER)}
    seen = np.flatnonzero(train_counts > 0)
    if first_seen is not None:
        seen = seen[np.argsort(np.asarray(first_seen)[seen], kind="stable")]
    keyed = sorted(seen.tolist(), key=lambda c: order.get(labels[c], len(order)))
    chosen = [c for c in keyed if pct[c] >= threshold]
    return chosen, pct[chosen]


def d_motif(train_mean: np.ndarray):
    """Statistic: Euclidean distance to the train mean fingerprint (§6.5)."""
    return euclidean_to(train_mean)


def cos_motif(train_mean: np.ndarray):
    """Statistic: cosine distance to the train mean fingerprint (§6.5)."""
    return cosine_to(train_mean)
