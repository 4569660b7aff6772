"""Interface benchmark metrics for generated, relaxed structures (§7).

``d_Li``, ``d_Co``, ``d_Sc``  Euclidean distance between the train and generated mean
                              109-feature cation fingerprints (§7.3-7.4);
``d_all``                     the same on the atom-weighted combination
                              (72 v_Li + 36 v_Co + 12 v_Sc) / 120 (§7.4);
``cos_*``                     cosine distances of the same vectors;
``pct_failed``                100 - 100 n_final / n_generated, no CI (§0.4, §7.4);
``mean_relax_steps``          mean steps of converged relaxations (our addition, as a-Si).

Every bootstrap restarts ``default_rng(7)`` (§7.4: a fresh generator per species), so all
species and the combined vector see identical structure resamples; the combined bootstrap
vectors are the weighted combination of the per-species resampled means, which equals
resampling the per-structure combined vectors (the mean is linear).  Interface energies
(eq. 6, §7.2) are a plot: ``energy`` holds γ per structure and the 0.05 J/m^2 histograms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dismai.interface_cell import interface_energy
from dismai.metrics.accounting import (
    checked_features,
    energies_per_atom,
    mean_relax_steps_metric,
    pct_failed_metric,
    relax_accounting,
)
from dismai.metrics.asi.motifs import motif_labels
from dismai.metrics.bootstrap import (
    CONF_LEVEL,
    N_REPS,
    SEED,
    cosine_to,
    euclidean_to,
    no_ci,
    pivotal_bootstrap_of_mean,
    pivotal_errors,
    resample_indices,
    resampled_means,
)
from dismai.metrics.interface.motifs import CATIONS, InterfaceFeatures, compute_features
from dismai.structures import StructureSet

__all__ = ["METRIC_NAMES", "GAMMA_BIN_EDGES", "InterfaceEvaluation", "evaluate",
           "metrics_from_features", "combined_vectors", "motif_breakdown", "gamma_histogram"]

METRIC_NAMES = ("d_Li", "cos_Li", "d_Co", "cos_Co", "d_Sc", "cos_Sc", "d_all", "cos_all",
                "pct_failed", "mean_relax_steps")
#: §7.2: np.arange(-0.5, 0.5 + 0.05, 0.05) J/m^2, 21 edges, right-closed, lowest included
GAMMA_BIN_EDGES = np.arange(-0.5, 0.5 + 0.05, 0.05)


@dataclass
class InterfaceEvaluation:
    """metrics: name -> {"value", "lower_error", "upper_error"}; motifs: per species the
    Fig. 9 breakdown (see :func:`motif_breakdown`); energy: γ and histograms or None."""

    metrics: dict
    n_final: int
    n_generated: int
    features: InterfaceFeatures
    motifs: dict
    energy: dict | None = None
    relax_steps: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    #: the relaxation results given to evaluate (a RelaxRun for relax_results.csv), if any
    relax_results: object = field(default=None, repr=False)


def combined_vectors(vectors: dict, n_atoms: dict) -> np.ndarray:
    """(sum_s n_s v_s) / sum_s n_s over Li, Co, Sc: the mean over all cation rows (§7.4)."""
    total = sum(n_atoms[s] for s in CATIONS)
    return sum(n_atoms[s] * np.asarray(vectors[s], dtype=np.float64) for s in CATIONS) / total


def _stats(gen: np.ndarray, train: np.ndarray, boot: dict) -> dict:
    return {"d": pivotal_bootstrap_of_mean(gen, euclidean_to(train), **boot),
            "cos": pivotal_bootstrap_of_mean(gen, cosine_to(train), **boot)}


def metrics_from_features(feats: InterfaceFeatures, reference: dict, *, n_reps: int = N_REPS,
                          conf_level: float = CONF_LEVEL, seed: int = SEED) -> dict:
    """d_s / cos_s for Li, Co, Sc and all, with pivotal errors (§7.4)."""
    boot = {"n_reps": n_reps, "conf_level": conf_level, "seed": seed}
    train = {s: np.asarray(reference["train_mean_fingerprint"][s]) for s in CATIONS}
    out = {}
    for s in CATIONS:  # order Li, Co, Sc; each call restarts rng(seed)
        st = _stats(feats.mean_fp[s], train[s], boot)
        out[f"d_{s}"], out[f"cos_{s}"] = st["d"].as_dict(), st["cos"].as_dict()
    t_all = combined_vectors(train, reference["n_atoms_per_species"])
    g_all = combined_vectors(feats.mean_fp, feats.n_atoms)
    st = _stats(g_all, t_all, boot)
    out["d_all"], out["cos_all"] = st["d"].as_dict(), st["cos"].as_dict()
    return out


def motif_breakdown(feats: InterfaceFeatures, reference: dict, *, n_reps: int = N_REPS,
                    conf_level: float = CONF_LEVEL, seed: int = SEED) -> dict:
    """Most-likely motifs of each cation split by O neighbours (paper Fig. 9, §7.5).

    Rows are the train-selected motifs (train % ≥ 1, §6.8 order) x n_O = 0..CN; the
    percentage is atoms with that motif and O count over all atoms of the species.
    (§7.5 splits by Cl count; with only Cl and O as neighbours n_Cl = CN - n_O, so the
    rows carry the same information, labelled as the paper's figure.)
    """
    labels = motif_labels()
    out = {}
    for s in CATIONS:
        ref = reference["motifs"][s]
        rows = [(m, int(n)) for m, n in zip(ref["row_motifs"], ref["row_n_o"], strict=True)]
        m = len(feats)
        if m and rows:
            codes = feats.motif[s]
            n_o = feats.n_o[s]
            pct = np.stack([100.0 * ((codes == labels.index(mot)) & (n_o == n)).mean(axis=1)
                            for mot, n in rows], axis=1)
            stat = pct.mean(axis=0)
            idx = resample_indices(m, n_reps, seed)
            lo, hi = pivotal_errors(stat, resampled_means(pct, idx), conf_level)
        else:
            stat = lo = hi = np.full(len(rows), np.nan)
        out[s] = {"rows": [f"{mot} ({n} O)" for mot, n in rows],
                  "row_motifs": [r[0] for r in rows], "row_n_o": [r[1] for r in rows],
                  "train_pct": list(ref["row_train_pct"]),
                  "gen_pct": np.asarray(stat).tolist(), "lower_error": np.asarray(lo).tolist(),
                  "upper_error": np.asarray(hi).tolist()}
    return out


def gamma_histogram(gamma: np.ndarray, edges: np.ndarray = GAMMA_BIN_EDGES
                    ) -> tuple[np.ndarray, int]:
    """(% per bin of in-range values, in-range count), pandas.cut semantics (§7.2)."""
    from dismai.metrics.report_common import binned_percentages

    return binned_percentages(gamma, edges)


def evaluate(gen: StructureSet, reference: dict, n_generated: int | None = None,
             n_failed_postprocess: int = 0, relax_results=None, n_workers: int | None = 1, *,
             features: InterfaceFeatures | None = None, n_reps: int = N_REPS,
             conf_level: float = CONF_LEVEL, seed: int = SEED) -> InterfaceEvaluation:
    """Evaluate relaxed generated interface structures against a reference (§7).

    gen: the structures that survived move-apart and relaxation; energies
    (``energy_per_atom`` or ``energy``) in gen.properties are optional.  reference:
    :func:`dismai.metrics.interface.reference.build_reference`.  n_generated: the
    pct_failed denominator, default len(gen) + n_failed_postprocess + failed relaxations.
    relax_results: a RelaxRun or see :func:`dismai.metrics.asi.evaluate.relax_steps`.
    """
    m = len(gen)
    feats = checked_features(gen, features, compute_features, n_workers)
    steps, conv, n_relax_failed, n_gen = relax_accounting(gen, relax_results, n_generated,
                                                          n_failed_postprocess)
    boot = {"n_reps": n_reps, "conf_level": conf_level, "seed": seed}
    metrics = metrics_from_features(feats, reference, **boot) if m else {
        k: no_ci(float("nan")).as_dict() for k in METRIC_NAMES[:8]}
    metrics["pct_failed"] = pct_failed_metric(m, n_gen)
    if steps is not None:
        metrics["mean_relax_steps"] = mean_relax_steps_metric(steps, conv, **boot)
    energy = None
    e = energies_per_atom(gen)
    e_ref = reference.get("e_ref")
    if e is not None and e_ref is not None and m:
        gamma = interface_energy(e, e_ref, gen.lattice, gen.n_atoms)
        pct, n_in = gamma_histogram(gamma)
        energy = {"energy_per_atom": e, "gamma": gamma, "hist_pct": pct, "n_in_range": n_in,
                  "pct_low_energy": float(100.0 * np.mean(gamma <= 0.0))}
    motifs = motif_breakdown(feats, reference, **boot)
    extra = {"n_failed_postprocess": int(n_failed_postprocess),
             "n_failed_relax": n_relax_failed,
             "n_failed_other": int(n_gen - m - int(n_failed_postprocess) - n_relax_failed),
             "n_fallback_sites": int(feats.n_fallback.sum())}
    return InterfaceEvaluation(metrics=metrics, n_final=m, n_generated=n_gen, features=feats,
                               motifs=motifs, energy=energy, relax_steps=steps, extra=extra,
                               relax_results=relax_results)
