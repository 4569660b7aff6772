"""Metrics and reference of the generic `disordered` family (docs/own-data.md).

``d_motif`` / ``cos_motif``  Euclidean / cosine distance between the train and generated
                             mean fingerprints, combined over centre species atom-weighted
                             (the interface's d_all rule, §7.4; one species: a-Si §6.5);
``d_rdf``                    Euclidean distance between the mean partial g_ab(r), all pairs
                             concatenated (one species: a-Si §6.7);
``d_angle``                  Euclidean distance between the mean bond-angle fractions per
                             species triplet, concatenated (one species: a-Si §6.6);
``pct_failed``               100 - 100 n_final / n_generated, no interval (§0.4);
``mean_relax_steps``         mean steps of converged relaxations, when relaxed.

Every statistic is the a-Si pivotal bootstrap of a mean per-structure vector (fresh
``default_rng(7)`` per distribution, §0.2-0.3).  Per-species d_motif values are kept in
``by_species`` (they are a breakdown, not extra table rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dismai.errors import DatasetError, InputError
from dismai.metrics.accounting import (
    checked_features,
    delta_energy_mev,
    energies_per_atom,
    pct_failed_metric,
    survivor_metrics,
)
from dismai.metrics.asi.angles import ANGLE_CENTRES
from dismai.metrics.asi.motifs import cos_motif, d_motif
from dismai.metrics.asi.rdf import N_BINS, R_MAX, RDF_R
from dismai.metrics.asi.stats import Band, distance_and_band
from dismai.metrics.bootstrap import CONF_LEVEL, N_REPS, SEED, euclidean_to
from dismai.metrics.disordered.features import (
    DisorderedFeatures,
    DisorderedSettings,
    compute_features,
)
from dismai.structures import StructureSet

__all__ = ["METRIC_NAMES", "DisorderedEvaluation", "evaluate", "metrics_from_features",
           "build_reference", "reference_from_features"]

METRIC_NAMES = ("d_motif", "cos_motif", "d_rdf", "d_angle", "pct_failed", "mean_relax_steps")


@dataclass
class DisorderedEvaluation:
    """metrics: name -> {"value", "lower_error", "upper_error"}; by_species: centre species
    -> its own d_motif; rdf_band / angle_band: generated means with per-bin bands."""

    metrics: dict
    n_final: int
    n_generated: int
    features: DisorderedFeatures
    by_species: dict
    rdf_band: Band
    angle_band: Band
    energy_per_atom: np.ndarray | None = None
    delta_energy_mev: np.ndarray | None = None
    relax_steps: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    relax_results: object = field(default=None, repr=False)


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def metrics_from_features(feats: DisorderedFeatures, reference: dict, *, n_reps: int = N_REPS,
                          conf_level: float = CONF_LEVEL, seed: int = SEED) -> tuple:
    """(metrics of the four distances, per-species d_motif, rdf Band, angle Band)."""
    _check_layout(feats, reference)
    boot = {"n_reps": n_reps, "conf_level": conf_level, "seed": seed}
    fp_mean = np.asarray(reference["train_mean_fingerprint"], dtype=np.float64)
    fp_stats, _ = distance_and_band(feats.combined_fingerprint(),
                                    {"d_motif": d_motif(fp_mean),
                                     "cos_motif": cos_motif(fp_mean)}, **boot)
    rdf_stats, rdf_band = distance_and_band(
        _flat(feats.rdf), {"d_rdf": euclidean_to(np.ravel(reference["train_mean_rdf"]))}, **boot)
    ang_stats, ang_band = distance_and_band(
        _flat(feats.angle_dist),
        {"d_angle": euclidean_to(np.ravel(reference["train_mean_angle"]))}, **boot)
    by_species = {}
    for s, v in feats.fingerprint.items():
        ref_s = np.asarray(reference["train_mean_fingerprint_by_species"][s])
        st, _ = distance_and_band(v, {"d_motif": d_motif(ref_s)}, **boot)
        by_species[s] = st["d_motif"].as_dict()
    metrics = {k: v.as_dict() for k, v in {**fp_stats, **rdf_stats, **ang_stats}.items()}
    return metrics, by_species, rdf_band, ang_band


def _check_layout(feats: DisorderedFeatures, reference: dict) -> None:
    """The generated features must have the reference's species pairs and triplets."""
    pairs = [list(p) for p in feats.pairs]
    triplets = [list(t) for t in feats.triplets]
    if reference.get("rdf_pairs") != pairs or reference.get("angle_triplets") != triplets:
        raise DatasetError("reference was built for other species pairs or centre species; "
                           "rebuild it with the dataset's settings")


def evaluate(gen: StructureSet, reference: dict, n_generated: int | None = None,
             n_failed_postprocess: int = 0, relax_results=None, *, n_workers: int | None = 1,
             features: DisorderedFeatures | None = None, n_reps: int = N_REPS,
             conf_level: float = CONF_LEVEL, seed: int = SEED) -> DisorderedEvaluation:
    """Score structures (relaxed or as generated) against a :func:`build_reference` dict."""
    settings = DisorderedSettings.from_dict(reference.get("fingerprint_settings"))
    feats = checked_features(gen, features,
                             lambda s, w: compute_features(s, settings, w), n_workers)
    m = len(gen)
    boot = {"n_reps": n_reps, "conf_level": conf_level, "seed": seed}
    survival, steps, n_relax_failed, n_gen = survivor_metrics(gen, relax_results, n_generated,
                                                              n_failed_postprocess, **boot)
    metrics, by_species, rdf_band, ang_band = metrics_from_features(feats, reference, **boot)
    metrics.update(survival)
    energy = energies_per_atom(gen)
    delta = delta_energy_mev(energy, reference)  # §6.3
    extra = {"n_failed_postprocess": int(n_failed_postprocess),
             "n_failed_relax": n_relax_failed,
             "n_fallback_sites": int(feats.n_fallback.sum())}
    return DisorderedEvaluation(metrics=metrics, n_final=m, n_generated=n_gen, features=feats,
                                by_species=by_species, rdf_band=rdf_band, angle_band=ang_band,
                                energy_per_atom=energy, delta_energy_mev=delta,
                                relax_steps=steps, extra=extra, relax_results=relax_results)


def reference_from_features(train: DisorderedFeatures, settings: DisorderedSettings,
                            val: DisorderedFeatures | None = None,
                            train_energy: np.ndarray | None = None, *, n_reps: int = N_REPS,
                            conf_level: float = CONF_LEVEL, seed: int = SEED) -> dict:
    """Train means, axes, settings and the val-vs-train noise floor (JSON-able)."""
    if len(train) == 0:
        raise InputError("empty training set")
    ref = {
        "fingerprint_settings": settings.as_dict(),
        "train_mean_fingerprint": train.combined_fingerprint().mean(axis=0).tolist(),
        "train_mean_fingerprint_by_species": {s: v.mean(axis=0).tolist()
                                              for s, v in train.fingerprint.items()},
        "rdf_r": RDF_R.tolist(),
        "rdf_pairs": [list(p) for p in train.pairs],
        "train_mean_rdf": train.rdf.mean(axis=0).tolist(),
        "angle_centres": ANGLE_CENTRES.tolist(),
        "angle_triplets": [list(t) for t in train.triplets],
        "train_mean_angle": train.angle_dist.mean(axis=0).tolist(),
        "train_energy_per_atom": None if train_energy is None
        else np.asarray(train_energy, dtype=np.float64).tolist(),
        "train_mean_energy_per_atom": None if train_energy is None
        else float(np.mean(train_energy)),
        "noise_floor": {},
        "settings": {"rdf": {"r_max": R_MAX, "n_bins": N_BINS}, "angle_bin_width_deg": 0.5,
                     "bootstrap": {"n_reps": n_reps, "conf_level": conf_level, "seed": seed}},
    }
    if val is not None and len(val):
        metrics, _, _, _ = metrics_from_features(val, ref, n_reps=n_reps,
                                                 conf_level=conf_level, seed=seed)
        ref["noise_floor"] = {**metrics, "pct_failed": pct_failed_metric(len(val), len(val))}
    return ref


def build_reference(train: StructureSet, val: StructureSet | None,
                    settings: DisorderedSettings, *, n_workers: int | None = 1) -> dict:
    """Train statistics plus the val-vs-train noise floor."""
    ft = compute_features(train, settings, n_workers)
    fv = compute_features(val, settings, n_workers) if val is not None and len(val) else None
    return reference_from_features(ft, settings, fv, energies_per_atom(train))
