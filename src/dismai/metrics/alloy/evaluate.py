"""Alloy benchmark metrics for a set of generated structures (§4-5).

Pipeline: lattice matching (§2, :mod:`lattice_match`) -> 45 cluster counts per accepted
structure (§3; exact integer arithmetic for snapped sites, KD-tree targets for the rotated
variant) -> probabilities, CE formation energy and Warren-Cowley SRO (§4) -> metrics (§5):

``d_cluster``    Euclidean distance between the train and generated mean 45-column
                 probability fingerprints, pivotal bootstrap over accepted structures (§5.2).
``pct_vacancy``  100 x fraction of structures with vac_count > 0, bootstrapped with a fresh
                 rng(7) (§5.3).  Snapped variants: exact empty-site counts of every
                 structure (§2.1 step 4); rotated variant: the §3.5 estimate over accepted
                 structures, as in the reference.
``pct_failed``   100 - 100 n_final / n_generated, no CI (§0.4, §5.1).

The training statistics come from the dataset's precomputed reference
(:func:`dismai.metrics.alloy.reference.build_reference`); nothing here touches the training set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dismai.energy.cluster_expansion import (
    COLUMNS,
    count_vector,
    formation_energy,
    probability_vector,
)
from dismai.errors import DatasetError, InputError
from dismai.metrics.accounting import pct_failed_metric
from dismai.metrics.alloy.clusters import cluster_counts_many
from dismai.metrics.alloy.lattice_match import LatticeMatch, match_lattice
from dismai.metrics.alloy.sro import SRO_COLUMNS, warren_cowley
from dismai.metrics.bootstrap import (
    CONF_LEVEL,
    N_REPS,
    SEED,
    euclidean_to,
    pivotal_bootstrap_of_mean,
)
from dismai.structures import StructureSet

__all__ = ["METRIC_NAMES", "AlloyEvaluation", "evaluate", "counts_from_match"]

METRIC_NAMES = ("d_cluster", "pct_vacancy", "pct_failed")
N_COLS = len(COLUMNS)


@dataclass
class AlloyEvaluation:
    """Metrics plus per-structure results for M input structures.

    Per-structure float arrays are NaN (and vac_count -1) for rejected structures.
    metrics: name -> {"value", "lower_error", "upper_error"} (errors None where no CI).
    """

    lattice_match: str
    metrics: dict
    n_input: int
    n_generated: int
    accepted: np.ndarray  # (M,) bool
    status: np.ndarray  # (M,) str
    n_removed: np.ndarray  # (M,) int
    vac_count: np.ndarray  # (M,) int, -1 where not available
    counts: np.ndarray  # (M, 45)
    probabilities: np.ndarray  # (M, 45)
    formation_energy: np.ndarray  # (M,) eV/atom
    sro: np.ndarray  # (M, 12)
    note: str = ""
    columns: tuple = COLUMNS
    sro_columns: tuple = SRO_COLUMNS
    #: the lattice-matching result: site species (snapped) or accepted positions (rotated)
    match: LatticeMatch | None = field(default=None, repr=False)

    @property
    def n_accepted(self) -> int:
        return int(self.accepted.sum())


def counts_from_match(match: LatticeMatch, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(counts (M, 45) NaN for rejected, vac_count (M,) -1 where unavailable) for a match."""
    m = len(match.accepted)
    counts = np.full((m, N_COLS), np.nan)
    ok = match.accepted
    if match.snapped:
        if ok.any():
            counts[ok] = count_vector(match.site_species[ok])
        vac = match.vac_count.astype(np.int64).copy()  # §2.1 step 4, every structure
    else:
        vac = np.full(m, -1, dtype=np.int64)
        idx = np.flatnonzero(ok)
        if len(idx):
            c, _, v = cluster_counts_many(
                [match.positions[i] for i in idx], [match.species[i] for i in idx],
                fallback_bases=match.basis[idx], workers=workers,
            )
            counts[idx] = c
            vac[idx] = v  # §3.5, accepted structures only
    return counts, vac


def evaluate(gen: StructureSet, reference: dict, n_generated: int | None = None,
             lattice_match: str = "auto", *, self_exclusion: bool = False,
             n_reps: int = N_REPS, conf_level: float = CONF_LEVEL, seed: int = SEED,
             workers: int = 1) -> AlloyEvaluation:
    """Evaluate generated alloy structures against a dataset reference (§2-5).

    gen: structures already validated against the dataset template (14.4 Å cube).
    reference: the dict of :func:`reference.build_reference` (only
    "train_mean_probability" is needed here).
    n_generated: structures originally generated (the denominator of pct_failed); default
    len(gen).  lattice_match: "auto", "as-is", "translated" or "rotated".
    self_exclusion: replicate the pymatgen self-exclusion quirk (§9.6) in snapped variants.
    """
    m = len(gen)
    n_gen = m if n_generated is None else int(n_generated)
    if n_gen < m:
        raise InputError(f"n_generated ({n_gen}) is smaller than the number of structures ({m})")
    match = match_lattice(gen, lattice_match, self_exclusion=self_exclusion)
    counts, vac = counts_from_match(match, workers=workers)
    ok = match.accepted
    probs = np.full_like(counts, np.nan)
    energy = np.full(m, np.nan)
    sro = np.full((m, len(SRO_COLUMNS)), np.nan)
    if ok.any():
        probs[ok] = probability_vector(counts[ok])
        energy[ok] = formation_energy(counts[ok])
        with np.errstate(divide="ignore", invalid="ignore"):
            sro[ok] = warren_cowley(counts[ok])

    train_mean = np.asarray(reference["train_mean_probability"], dtype=np.float64)
    if train_mean.shape != (N_COLS,):
        raise DatasetError(f"reference train_mean_probability must have {N_COLS} entries")
    boot = {"n_reps": n_reps, "conf_level": conf_level, "seed": seed}
    d_cluster = pivotal_bootstrap_of_mean(probs[ok], euclidean_to(train_mean), **boot)
    # §5.3: snapped variants read the §2.1 vac_count of every structure, rotated the §3.5
    # estimate of the accepted ones; a fresh rng(7) either way
    vac_rows = vac[vac >= 0]
    pct_vac = pivotal_bootstrap_of_mean((vac_rows > 0).astype(np.float64)[:, None],
                                        lambda mean: 100.0 * mean[..., 0], **boot)
    n_final = int(ok.sum())
    metrics = {
        "d_cluster": d_cluster.as_dict(),
        "pct_vacancy": pct_vac.as_dict(),
        "pct_failed": pct_failed_metric(n_final, n_gen),
    }
    return AlloyEvaluation(
        lattice_match=match.variant,
        metrics=metrics,
        n_input=m,
        n_generated=n_gen,
        accepted=ok,
        status=match.status.astype(str),
        n_removed=match.n_removed,
        vac_count=vac,
        counts=counts,
        probabilities=probs,
        formation_energy=energy,
        sro=sro,
        note=match.note,
        match=match,
    )

