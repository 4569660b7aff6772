"""Training-set reference for the interface benchmark (§7.2-7.5).

Layout (JSON-able):

* ``dataset`` "interface", ``version`` 1, ``n_atoms`` (264), ``n_train``, ``n_val``,
  ``n_atoms_per_species`` {Li: 72, Co: 36, Sc: 12}
* ``fingerprint_labels`` (109), ``train_mean_fingerprint`` {species: 109 floats}
* ``motifs`` {species: {``labels``/``train_pct`` (motifs with train % ≥ 1, §6.8 order),
  ``row_motifs``/``row_n_o``/``row_train_pct`` (those motifs split by O neighbours, rows
  present in train)}}
* ``e_ref`` (eV/atom, eq. 6) or None, ``train_energy_per_atom``, ``train_gamma``
  (J/m^2), ``train_gamma_hist_pct`` (§7.2 bins)
* ``noise_floor``: d_*/cos_* of the validation split against the training split
* ``settings``: CrystalNN settings, oxidation states, bootstrap, bins
"""

from __future__ import annotations

import re

import numpy as np

from dismai.errors import InputError
from dismai.interface_cell import interface_energy, low_energy_reference
from dismai.metrics.accounting import energies_per_atom, pct_failed_metric
from dismai.metrics.asi.motifs import OP_PCT_THRESHOLD, motif_labels, select_train_motifs
from dismai.metrics.asi.reference import vars_of
from dismai.metrics.bootstrap import CONF_LEVEL, N_REPS, SEED
from dismai.metrics.interface.evaluate import (
    GAMMA_BIN_EDGES,
    gamma_histogram,
    metrics_from_features,
)
from dismai.metrics.interface.motifs import (
    CATIONS,
    OXIDATION_STATES,
    SETTINGS,
    InterfaceFeatures,
    compute_features,
    fingerprint_labels,
)
from dismai.structures import StructureSet

__all__ = ["build_reference", "reference_from_features"]


def _cn_of(label: str) -> int:
    return int(re.search(r"CN_(\d+)", label).group(1))


def _train_motifs(feats: InterfaceFeatures, s: str) -> dict:
    labels = motif_labels()
    codes = feats.motif[s]
    n_o = feats.n_o[s]
    counts = np.bincount(codes.ravel(), minlength=len(labels))
    m = codes.shape[0]
    first = np.where(np.stack([np.bincount(c, minlength=len(labels)) for c in codes]) > 0,
                     np.arange(m)[:, None], m).min(axis=0)
    chosen, pct = select_train_motifs(counts, first)
    n_total = codes.size
    rows, row_n, row_pct = [], [], []
    for c in chosen:
        for n in range(_cn_of(labels[c]) + 1):
            p = 100.0 * np.count_nonzero((codes == c) & (n_o == n)) / n_total
            if p > 0:
                rows.append(labels[c])
                row_n.append(n)
                row_pct.append(p)
    return {"labels": [labels[c] for c in chosen],
            "train_pct": np.asarray(pct, dtype=np.float64).tolist(),
            "threshold": OP_PCT_THRESHOLD,
            "row_motifs": rows, "row_n_o": row_n, "row_train_pct": row_pct}


def reference_from_features(train: InterfaceFeatures, val: InterfaceFeatures | None = None,
                            train_energy: np.ndarray | None = None, e_ref: float | None = None,
                            *, n_atoms: int = 264, n_reps: int = N_REPS,
                            conf_level: float = CONF_LEVEL, seed: int = SEED) -> dict:
    """The reference dict from precomputed features (layout in the module docstring).

    e_ref: the dataset build's E_ref (eV/atom).  If None and train energies exist it is
    recomputed as E_min(train) + 0.4 J/m^2 (recipe §3.1); pass the build's value when known,
    because the training split need not contain the lowest candidate.
    """
    if len(train) == 0:
        raise InputError("empty training set")
    if e_ref is None and train_energy is not None:
        e_ref = low_energy_reference(train_energy, n_atoms=n_atoms)
    gamma = None if train_energy is None or e_ref is None else interface_energy(
        train_energy, e_ref, n_atoms=n_atoms)
    ref = {
        "n_atoms": int(n_atoms),
        "n_train": len(train),
        "n_val": 0 if val is None else len(val),
        "n_atoms_per_species": {s: int(train.n_atoms[s]) for s in CATIONS},
        "fingerprint_labels": list(fingerprint_labels()),
        "train_mean_fingerprint": {s: train.mean_fp[s].mean(axis=0).tolist() for s in CATIONS},
        "motifs": {s: _train_motifs(train, s) for s in CATIONS},
        "e_ref": None if e_ref is None else float(e_ref),
        "train_energy_per_atom": None if train_energy is None
        else np.asarray(train_energy, dtype=np.float64).tolist(),
        "train_gamma": None if gamma is None else gamma.tolist(),
        "train_gamma_hist_pct": None if gamma is None else gamma_histogram(gamma)[0].tolist(),
        "noise_floor": {},
        "settings": {
            "crystalnn": vars_of(SETTINGS),
            "oxidation_states": dict(OXIDATION_STATES),
            "gamma_bin_edges": GAMMA_BIN_EDGES.tolist(),
            "bootstrap": {"n_reps": n_reps, "conf_level": conf_level, "seed": seed},
        },
    }
    if val is not None and len(val):
        ref["noise_floor"] = {**metrics_from_features(val, ref, n_reps=n_reps,
                                                      conf_level=conf_level, seed=seed),
                              "pct_failed": pct_failed_metric(len(val), len(val))}
    return ref


def build_reference(train: StructureSet, val: StructureSet | None = None, *,
                    e_ref: float | None = None, n_workers: int | None = 1,
                    n_reps: int = N_REPS, conf_level: float = CONF_LEVEL,
                    seed: int = SEED) -> dict:
    """Train statistics of the interface benchmark plus the val-vs-train noise floor."""
    ft = compute_features(train, n_workers)
    fv = compute_features(val, n_workers) if val is not None and len(val) else None
    return reference_from_features(ft, fv, energies_per_atom(train), e_ref,
                                   n_atoms=train.n_atoms, n_reps=n_reps,
                                   conf_level=conf_level, seed=seed)
