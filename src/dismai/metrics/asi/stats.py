"""Bootstrap glue for the a-Si metrics: one resample set per distribution (§0.2-0.3).

Every a-Si statistic is a function of the mean over structures of a per-structure vector
(fingerprint, g(r), angle fractions, motif fractions), so the shared
:mod:`dismai.metrics.bootstrap` draws the reference's indices (fresh ``default_rng(7)``,
one ``rng.choice`` per repetition) and gets all resampled means with one matrix product.
The per-bin bands of §0.3 and the distance of §6.5-6.7 come from the same resamples, as in
the reference scripts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dismai.metrics.bootstrap import (
    CONF_LEVEL,
    N_REPS,
    SEED,
    BootstrapResult,
    pivotal_errors,
    resample_indices,
    resampled_means,
)

__all__ = ["Band", "distance_and_band"]


@dataclass
class Band:
    """Mean per-structure vector with the pivotal per-bin band [mean - lower, mean + upper]."""

    mean: np.ndarray
    lower_error: np.ndarray
    upper_error: np.ndarray

    @property
    def low(self) -> np.ndarray:
        return self.mean - self.lower_error

    @property
    def high(self) -> np.ndarray:
        return self.mean + self.upper_error


def distance_and_band(values: np.ndarray, statistics: dict, *, n_reps: int = N_REPS,
                      conf_level: float = CONF_LEVEL, seed: int = SEED
                      ) -> tuple[dict[str, BootstrapResult], Band]:
    """Pivotal bootstrap of several statistics of the mean vector, plus the per-bin band.

    values: (M, d) per-structure vectors; statistics: name -> f(mean (..., d)) -> (...).
    Returns ({name: BootstrapResult}, Band).  With M = 0 everything is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    d = values.shape[1] if values.ndim == 2 else 0
    if values.shape[0] == 0:
        nan = np.full(d, np.nan)
        return ({k: BootstrapResult(float("nan"), float("nan"), float("nan"))
                 for k in statistics}, Band(nan, nan.copy(), nan.copy()))
    mean = values.mean(axis=0)
    idx = resample_indices(values.shape[0], n_reps, seed)
    boot_means = resampled_means(values, idx)
    out = {}
    for name, f in statistics.items():
        stat = float(f(mean))
        lo, hi = pivotal_errors(stat, np.asarray(f(boot_means), dtype=np.float64), conf_level)
        out[name] = BootstrapResult(stat, float(lo), float(hi))
    lo, hi = pivotal_errors(mean, boot_means, conf_level)
    return out, Band(mean, np.asarray(lo), np.asarray(hi))
