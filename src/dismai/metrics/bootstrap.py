"""Shared statistical machinery of every Dismai-Bench metric (§0).

The reference recomputes each statistic on 1000 bootstrap resamples of the generated
structures and reports a "pivotal" (basic) interval.  To reproduce its numbers the index
draws must follow the same call sequence: a fresh ``np.random.default_rng(7)`` per bootstrap
loop and exactly one ``rng.choice(np.arange(n), size=n, replace=True)`` per repetition
(§0.2).  The draws stay that literal loop (about 15 ms for 1000 x 1000), so the index
stream equals the reference's by construction rather than by an implementation detail of
numpy's bounded-integer sampler; everything after the draws is batched.

Most statistics are a function of the resampled *mean* vector (distance between mean
fingerprints, fraction of structures with a property).  For those,
:func:`pivotal_bootstrap_of_mean` turns the index draws into a (reps, n) multiplicity
matrix and gets all resampled means with one matrix product, instead of gathering a
(reps, n, d) array.  The result equals the reference up to floating-point summation order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dismai.errors import InputError

__all__ = [
    "N_REPS",
    "CONF_LEVEL",
    "SEED",
    "BootstrapResult",
    "resample_indices",
    "resampled_means",
    "pivotal_errors",
    "pivotal_bootstrap",
    "pivotal_bootstrap_of_mean",
    "euclidean_to",
    "cosine_to",
    "no_ci",
]

N_REPS = 1000  # §0.2
CONF_LEVEL = 0.95  # §0.2
SEED = 7  # §0.2


@dataclass(frozen=True)
class BootstrapResult:
    """A point statistic with the reference's pivotal errors (§0.3).

    The implied interval is [value - lower_error, value + upper_error]; either error can be
    negative when the bootstrap distribution lies on one side of the statistic.
    """

    value: float
    lower_error: float | None
    upper_error: float | None

    def as_dict(self) -> dict:
        """JSON-ready {"value", "lower_error", "upper_error"}; NaN becomes None (null)."""
        return {
            "value": _json_float(self.value),
            "lower_error": _json_float(self.lower_error),
            "upper_error": _json_float(self.upper_error),
        }


def _json_float(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def no_ci(value: float) -> BootstrapResult:
    """A statistic reported without a confidence interval (e.g. % failed, §0.4)."""
    return BootstrapResult(float(value), None, None)


def resample_indices(
    n: int, n_reps: int = N_REPS, seed: int = SEED, sample_size: int | None = None
) -> np.ndarray:
    """(n_reps, sample_size) structure indices drawn exactly as the reference draws them (§0.2).

    sample_size None or -1 means "as many as the data set" (the reference's
    ``n_strucs_boot = -1``).
    """
    if n < 1:
        raise InputError("cannot bootstrap an empty data set")
    size = n if sample_size in (None, -1) else int(sample_size)
    rng = np.random.default_rng(seed)
    population = np.arange(n)
    out = np.empty((n_reps, size), dtype=np.int64)
    for r in range(n_reps):  # one call per repetition, exactly as the reference
        out[r] = rng.choice(population, size=size, replace=True)
    return out


def resampled_means(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Mean of ``values[idx]`` over axis 0 for every row of ``indices``: (reps, *values.shape[1:]).

    Uses a multiplicity matrix (reps, n) @ values (n, d), so memory is O(reps * (n + d)).
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    reps, size = indices.shape
    flat = values.reshape(n, -1)
    codes = (np.arange(reps)[:, None] * n + indices).ravel()
    mult = np.bincount(codes, minlength=reps * n).reshape(reps, n).astype(np.float64)
    means = (mult @ flat) / size
    return means.reshape((reps,) + values.shape[1:])


def pivotal_errors(
    stat, boot: np.ndarray, conf_level: float = CONF_LEVEL
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """(lower_error, upper_error) = (q_hi - stat, stat - q_lo) along axis 0 of ``boot`` (§0.3).

    Works bin by bin for distribution bands (RDF, bond angles): the band is
    [stat - lower_error, stat + upper_error] = [2 stat - q_hi, 2 stat - q_lo].
    """
    alpha = (1.0 - conf_level) / 2.0
    q_lo = np.percentile(boot, 100.0 * alpha, axis=0)  # numpy default: linear
    q_hi = np.percentile(boot, 100.0 * (1.0 - alpha), axis=0)
    return q_hi - stat, stat - q_lo


def pivotal_bootstrap(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    n_reps: int = N_REPS,
    conf_level: float = CONF_LEVEL,
    seed: int = SEED,
    sample_size: int | None = None,
) -> BootstrapResult:
    """Generic pivotal bootstrap: ``statistic(values[sample])`` for an arbitrary statistic.

    values: per-structure data, first axis = structures (resampling is over structures).
    Slower than :func:`pivotal_bootstrap_of_mean` (one statistic call per repetition); use
    that one whenever the statistic depends only on the mean over structures.
    """
    values = np.asarray(values)
    stat = float(statistic(values))
    idx = resample_indices(values.shape[0], n_reps, seed, sample_size)
    boot = np.array([statistic(values[i]) for i in idx], dtype=np.float64)
    lo, hi = pivotal_errors(stat, boot, conf_level)
    return BootstrapResult(stat, float(lo), float(hi))


def pivotal_bootstrap_of_mean(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_reps: int = N_REPS,
    conf_level: float = CONF_LEVEL,
    seed: int = SEED,
    sample_size: int | None = None,
) -> BootstrapResult:
    """Pivotal bootstrap of ``statistic(mean over structures)``, all repetitions batched.

    statistic maps a batch of mean vectors (..., d) to (...) (it is called once on the
    full-data mean and once on the (n_reps, d) resampled means).  Per-atom data (a-Si,
    interface motifs) reduce to per-structure means first: with equal atom counts per
    structure the mean over all atom rows of a sample equals the mean of the per-structure
    means (§0.1-0.2).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] == 0:
        return BootstrapResult(float("nan"), float("nan"), float("nan"))
    stat = float(statistic(values.mean(axis=0)))
    idx = resample_indices(values.shape[0], n_reps, seed, sample_size)
    boot = np.asarray(statistic(resampled_means(values, idx)), dtype=np.float64)
    lo, hi = pivotal_errors(stat, boot, conf_level)
    return BootstrapResult(stat, float(lo), float(hi))


def euclidean_to(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Statistic: Euclidean distance of mean vector(s) to a fixed reference vector (§0.1)."""
    ref = np.asarray(reference, dtype=np.float64)

    def dist(mean: np.ndarray) -> np.ndarray:
        return np.sqrt(np.sum((np.asarray(mean) - ref) ** 2, axis=-1))

    return dist


def cosine_to(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Statistic: cosine distance 1 - u.v/(|u||v|) of mean vector(s) to a reference (§0.1)."""
    ref = np.asarray(reference, dtype=np.float64)
    ref_norm = np.linalg.norm(ref)

    def dist(mean: np.ndarray) -> np.ndarray:
        mean = np.asarray(mean, dtype=np.float64)
        return 1.0 - (mean @ ref) / (np.linalg.norm(mean, axis=-1) * ref_norm)

    return dist
