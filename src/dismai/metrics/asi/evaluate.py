"""a-Si benchmark metrics for a set of generated, relaxed structures (§6).

``d_motif``          Euclidean distance between train and generated mean 61-feature
                     CrystalNN fingerprints (§6.4-6.5), pivotal bootstrap (§0.2-0.3).
``cos_motif``        cosine distance between the same vectors (§6.5).
``d_rdf``            Euclidean distance between mean g(r), 500 bins on 0-10 Å (§6.7).
``d_angle``          Euclidean distance between mean bond-angle fraction vectors, 360 bins
                     of 0.5 deg (§6.6).
``pct_failed``       100 - 100 n_final / n_generated, no CI (§0.4, §6.5): every structure
                     lost to move-apart, relaxation failure or anything else.
``mean_relax_steps`` mean relaxation steps of the converged structures (paper ESI Table S3;
                     the reference has no script for it), with a pivotal bootstrap as the
                     other metrics (our addition) - only when relax results are given.

Each bootstrapped metric uses its own fresh ``default_rng(7)`` loop, as each reference script
does; the mean RDF / angle bands come from the same resamples as the distance.  Energies
(``energy_per_atom`` in eV/atom, or total ``energy`` in eV, in ``gen.properties``) are
reported relative to the training mean in meV/atom (§6.3: a plot, no scalar metric).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dismai.errors import DatasetError
from dismai.metrics.accounting import (
    checked_features,
    delta_energy_mev,
    energies_per_atom,
    survivor_metrics,
)
from dismai.metrics.asi.angles import ANGLE_CENTRES, d_angle
from dismai.metrics.asi.features import ASiFeatures, compute_features
from dismai.metrics.asi.motifs import cos_motif, d_motif, motif_labels
from dismai.metrics.asi.rdf import RDF_R
from dismai.metrics.asi.stats import Band, distance_and_band
from dismai.metrics.bootstrap import (
    CONF_LEVEL,
    N_REPS,
    SEED,
    euclidean_to,
)
from dismai.structures import StructureSet

__all__ = ["METRIC_NAMES", "ASiEvaluation", "evaluate", "metrics_from_features"]

METRIC_NAMES = ("d_motif", "cos_motif", "d_rdf", "d_angle", "pct_failed", "mean_relax_steps")


@dataclass
class ASiEvaluation:
    """Metrics plus per-structure results for the M structures that reached the metrics.

    metrics: name -> {"value", "lower_error", "upper_error"} (errors None where no CI).
    features: per-structure fingerprints, g(r), angle fractions, motif counts.
    rdf_band / angle_band: generated mean with per-bin pivotal bands (§0.3).
    motifs: {"labels", "train_pct", "gen_pct", "lower_error", "upper_error"} for the
    train-selected most-likely motifs (§6.8).
    energy_per_atom: (M,) eV/atom or None; delta_energy_mev: (M,) relative to the train mean.
    """

    metrics: dict
    n_final: int
    n_generated: int
    features: ASiFeatures
    rdf_band: Band
    angle_band: Band
    motifs: dict
    energy_per_atom: np.ndarray | None = None
    delta_energy_mev: np.ndarray | None = None
    relax_steps: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    #: the relaxation results given to evaluate (a RelaxRun for relax_results.csv), if any
    relax_results: object = field(default=None, repr=False)


def metrics_from_features(feats: ASiFeatures, reference: dict, *, n_reps: int = N_REPS,
                          conf_level: float = CONF_LEVEL, seed: int = SEED) -> tuple:
    """(metrics dict of the four distances, rdf Band, angle Band, motif table) vs a reference."""
    _check_axes(reference)
    boot = {"n_reps": n_reps, "conf_level": conf_level, "seed": seed}
    fp_mean = np.asarray(reference["train_mean_fingerprint"], dtype=np.float64)
    fp_stats, _ = distance_and_band(feats.fingerprint, {"d_motif": d_motif(fp_mean),
                                                        "cos_motif": cos_motif(fp_mean)}, **boot)
    rdf_stats, rdf_band = distance_and_band(
        feats.rdf, {"d_rdf": euclidean_to(np.asarray(reference["train_mean_rdf"]))}, **boot)
    ang_stats, ang_band = distance_and_band(
        feats.angle_dist, {"d_angle": d_angle(np.asarray(reference["train_mean_angle"]))},
        **boot)
    metrics = {k: v.as_dict() for k, v in {**fp_stats, **rdf_stats, **ang_stats}.items()}
    motifs = motif_table(feats, reference, **boot)
    return metrics, rdf_band, ang_band, motifs


def motif_table(feats: ASiFeatures, reference: dict, **boot) -> dict:
    """§6.8 percentages of the train-selected most-likely motifs, with pivotal errors."""
    ref = reference.get("motifs") or {}
    labels = list(ref.get("labels", []))
    all_labels = motif_labels()
    codes = [all_labels.index(lab) for lab in labels if lab in all_labels]
    frac = 100.0 * feats.motif_fraction[:, codes] if len(feats) else np.zeros((0, len(codes)))
    if len(codes) and len(feats):
        _, band = distance_and_band(frac, {}, **boot)
        gen, lo, hi = band.mean, band.lower_error, band.upper_error
    else:
        gen = lo = hi = np.full(len(codes), np.nan)
    return {"labels": labels, "train_pct": list(ref.get("train_pct", [])),
            "gen_pct": np.asarray(gen).tolist(), "lower_error": np.asarray(lo).tolist(),
            "upper_error": np.asarray(hi).tolist()}


def evaluate(gen: StructureSet, reference: dict, n_generated: int | None = None,
             n_failed_postprocess: int = 0, relax_results=None, *, n_workers: int | None = 1,
             features: ASiFeatures | None = None, n_reps: int = N_REPS,
             conf_level: float = CONF_LEVEL, seed: int = SEED,
             workers: int | None = None) -> ASiEvaluation:
    """Evaluate relaxed generated a-Si structures against a dataset reference (§6).

    gen: the structures that survived post-processing and relaxation (the reference's
    ``gen_relaxed.extxyz``); energies in ``gen.properties`` are optional.
    reference: :func:`dismai.metrics.asi.reference.build_reference` output.
    n_generated: structures originally generated (denominator of pct_failed); default
    len(gen) + n_failed_postprocess + the non-converged entries of relax_results.
    n_failed_postprocess: structures rejected by move-apart (§6.1), for that default and the
    breakdown in ``extra``.  relax_results: a ``dismai.relax.RelaxRun`` or see
    :func:`relax_steps`; its converged entries give mean_relax_steps (without it, a
    ``relax_steps`` property of gen is used).  features: precomputed
    :func:`compute_features` of gen.  n_workers (alias ``workers``, as the alloy suite):
    processes for the features (None/0: all CPUs).
    """
    if workers is not None:
        n_workers = workers
    m = len(gen)
    feats = checked_features(gen, features, compute_features, n_workers)
    boot = {"n_reps": n_reps, "conf_level": conf_level, "seed": seed}
    survival, steps, n_relax_failed, n_gen = survivor_metrics(gen, relax_results, n_generated,
                                                              n_failed_postprocess, **boot)
    metrics, rdf_band, ang_band, motifs = metrics_from_features(feats, reference, **boot)
    metrics.update(survival)
    energy = energies_per_atom(gen)
    delta = delta_energy_mev(energy, reference)  # §6.3
    extra = {
        "n_failed_postprocess": int(n_failed_postprocess),
        "n_failed_relax": n_relax_failed,
        "n_failed_other": int(n_gen - m - int(n_failed_postprocess) - n_relax_failed),
        "n_fallback_sites": int(feats.n_fallback.sum()),
        "structures_without_angles": np.flatnonzero(feats.n_angles == 0).tolist(),
    }
    return ASiEvaluation(metrics=metrics, n_final=m, n_generated=n_gen, features=feats,
                         rdf_band=rdf_band, angle_band=ang_band, motifs=motifs,
                         energy_per_atom=energy, delta_energy_mev=delta, relax_steps=steps,
                         extra=extra, relax_results=relax_results)


def _check_axes(reference: dict) -> None:
    """Sanity check that a reference was built with the same bins."""
    for key, n in (("train_mean_rdf", len(RDF_R)), ("train_mean_angle", len(ANGLE_CENTRES))):
        if len(reference[key]) != n:
            raise DatasetError(f"reference {key} has {len(reference[key])} bins, expected {n}")

