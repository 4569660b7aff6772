"""Training-set reference for the a-Si benchmark (the reference's precomputed train CSVs).

The reference metric scripts read precomputed train statistics (§6.5-6.8: mean
fingerprint, mean g(r), mean angle fractions, most-likely-motif percentages, train
energies).  :func:`build_reference` computes the same from our training split and adds a
``noise_floor``: the metrics of the validation split against the training split, i.e. the
distance two samples of the true distribution already show at this sample size.

Layout (JSON-able; lists of floats):

* ``dataset`` "a-si", ``version`` 1, ``n_atoms``, ``n_train``, ``n_val``
* ``fingerprint_labels`` (61), ``train_mean_fingerprint`` (61)
* ``rdf_r`` (500, Å), ``train_mean_rdf`` (500)
* ``angle_centres`` (360, deg), ``train_mean_angle`` (360, fractions)
* ``motifs``: {``labels``, ``train_pct`` (selected, >= 1 %, §6.8 order), ``threshold``,
  ``all_labels``, ``all_train_pct`` (every motif seen in train)}
* ``train_energy_per_atom`` (list, eV/atom) and ``train_mean_energy_per_atom`` or None
* ``noise_floor``: {metric: {"value", "lower_error", "upper_error"}} for d_motif, cos_motif,
  d_rdf, d_angle of val vs train
* ``settings``: CrystalNN settings, bins, library versions used
"""

from __future__ import annotations

import numpy as np

from dismai.errors import InputError
from dismai.metrics.accounting import energies_per_atom, pct_failed_metric
from dismai.metrics.asi.angles import ANGLE_CENTRES
from dismai.metrics.asi.evaluate import metrics_from_features
from dismai.metrics.asi.features import ASiFeatures, compute_features
from dismai.metrics.asi.motifs import (
    OP_PCT_THRESHOLD,
    fingerprint_labels,
    motif_labels,
    select_train_motifs,
)
from dismai.metrics.asi.rdf import N_BINS, R_MAX, RDF_R
from dismai.metrics.bootstrap import CONF_LEVEL, N_REPS, SEED
from dismai.metrics.crystalnn import FINGERPRINT_SETTINGS, GEOMETRIC_SETTINGS
from dismai.structures import StructureSet

__all__ = ["build_reference", "reference_from_features"]


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("pymatgen", "pymatgen-core", "numpy", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def reference_from_features(train: ASiFeatures, val: ASiFeatures | None = None,
                            train_energy: np.ndarray | None = None, *, n_atoms: int = 256,
                            n_reps: int = N_REPS, conf_level: float = CONF_LEVEL,
                            seed: int = SEED) -> dict:
    """The reference dict from precomputed features (see module docstring for the layout)."""
    if len(train) == 0:
        raise InputError("empty training set")
    counts = train.motif_counts.sum(axis=0)
    # first appearance over train atoms orders motifs outside the fixed list (§6.8)
    first_struct = np.where(train.motif_counts > 0, np.arange(len(train))[:, None], len(train))
    chosen, pct = select_train_motifs(counts, first_struct.min(axis=0))
    labels = motif_labels()
    seen = np.flatnonzero(counts > 0)
    ref = {
        "n_atoms": int(n_atoms),
        "n_train": len(train),
        "n_val": 0 if val is None else len(val),
        "fingerprint_labels": list(fingerprint_labels()),
        "train_mean_fingerprint": train.fingerprint.mean(axis=0).tolist(),
        "rdf_r": RDF_R.tolist(),
        "train_mean_rdf": train.rdf.mean(axis=0).tolist(),
        "angle_centres": ANGLE_CENTRES.tolist(),
        "train_mean_angle": train.angle_dist.mean(axis=0).tolist(),
        "motifs": {
            "labels": [labels[c] for c in chosen],
            "train_pct": np.asarray(pct, dtype=np.float64).tolist(),
            "threshold": OP_PCT_THRESHOLD,
            "all_labels": [labels[c] for c in seen],
            "all_train_pct": (100.0 * counts[seen] / counts.sum()).tolist(),
        },
        "train_energy_per_atom": None if train_energy is None
        else np.asarray(train_energy, dtype=np.float64).tolist(),
        "train_mean_energy_per_atom": None if train_energy is None
        else float(np.mean(train_energy)),
        "noise_floor": {},
        "settings": {
            "fingerprint_crystalnn": vars_of(FINGERPRINT_SETTINGS),
            "angle_crystalnn": vars_of(GEOMETRIC_SETTINGS),
            "rdf": {"r_max": R_MAX, "n_bins": N_BINS},
            "angle_bin_width_deg": 0.5,
            "bootstrap": {"n_reps": n_reps, "conf_level": conf_level, "seed": seed},
            "versions": _versions(),
        },
    }
    if val is not None and len(val):
        metrics, _, _, _ = metrics_from_features(val, ref, n_reps=n_reps,
                                                 conf_level=conf_level, seed=seed)
        ref["noise_floor"] = {**metrics, "pct_failed": pct_failed_metric(len(val), len(val))}
    return ref


def vars_of(settings) -> dict:
    d = dict(vars(settings))
    if d.get("distance_cutoffs") is not None:
        d["distance_cutoffs"] = list(d["distance_cutoffs"])
    return d


def build_reference(train: StructureSet, val: StructureSet | None = None, *,
                    n_workers: int | None = 1, n_reps: int = N_REPS,
                    conf_level: float = CONF_LEVEL, seed: int = SEED) -> dict:
    """Train statistics of the a-Si benchmark plus the val-vs-train noise floor."""
    ft = compute_features(train, n_workers)
    fv = compute_features(val, n_workers) if val is not None and len(val) else None
    return reference_from_features(ft, fv, energies_per_atom(train), n_atoms=train.n_atoms,
                                   n_reps=n_reps, conf_level=conf_level, seed=seed)
