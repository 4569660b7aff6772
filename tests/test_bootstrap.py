"""Bootstrap machinery (spec benchmark-metrics.md §0): determinism and known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import distance

from dismai.metrics.bootstrap import (
    BootstrapResult,
    cosine_to,
    euclidean_to,
    no_ci,
    pivotal_bootstrap,
    pivotal_bootstrap_of_mean,
    pivotal_errors,
    resample_indices,
    resampled_means,
)


def reference_style(values, ref_vec, n_reps=1000, seed=7):
    """Literal transcription of the reference loop (§0.2-0.3) for comparison."""
    n = len(values)
    stat = distance.euclidean(values.mean(axis=0), ref_vec)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_reps):
        idx = rng.choice(np.arange(n), size=n, replace=True)
        boot.append(distance.euclidean(values[idx].mean(axis=0), ref_vec))
    q_lo, q_hi = np.percentile(boot, 2.5), np.percentile(boot, 97.5)
    return stat, q_hi - stat, stat - q_lo


def test_indices_follow_reference_call_sequence():
    idx = resample_indices(37, n_reps=50)
    rng = np.random.default_rng(7)
    for row in idx:
        assert np.array_equal(row, rng.choice(np.arange(37), size=37, replace=True))


def test_determinism_and_sample_size():
    a = resample_indices(10, n_reps=5)
    b = resample_indices(10, n_reps=5)
    assert np.array_equal(a, b)
    assert resample_indices(10, n_reps=3, sample_size=4).shape == (3, 4)
    assert resample_indices(10, n_reps=3, sample_size=-1).shape == (3, 10)
    with pytest.raises(ValueError):
        resample_indices(0)


def test_pivotal_errors_hand_checked():
    # boot = 1..101: 2.5th percentile = 1 + 0.025*100 = 3.5, 97.5th = 98.5 (linear)
    boot = np.arange(1.0, 102.0)
    lo, hi = pivotal_errors(50.0, boot)
    assert lo == pytest.approx(98.5 - 50.0)
    assert hi == pytest.approx(50.0 - 3.5)
    # bootstrap distribution entirely above the statistic: both errors can be negative
    lo, hi = pivotal_errors(0.0, np.array([1.0, 2.0, 3.0]))
    assert lo > 0 and hi < 0
    # per-bin bands
    lo, hi = pivotal_errors(np.array([50.0, 0.0]), np.stack([boot, boot - 50], axis=1))
    assert lo == pytest.approx([48.5, 48.5]) and hi == pytest.approx([46.5, 46.5])


def test_tiny_array_by_hand():
    # values [0, 1], mean statistic; every resample mean is 0, 0.5 or 1
    values = np.array([0.0, 1.0])
    res = pivotal_bootstrap(values, np.mean, n_reps=200)
    idx = resample_indices(2, n_reps=200)
    boot = values[idx].mean(axis=1)
    assert set(np.unique(boot)) <= {0.0, 0.5, 1.0}
    q_lo, q_hi = np.percentile(boot, 2.5), np.percentile(boot, 97.5)
    assert res.value == 0.5
    assert res.lower_error == pytest.approx(q_hi - 0.5)
    assert res.upper_error == pytest.approx(0.5 - q_lo)
    # constant data: no spread at all
    c = pivotal_bootstrap_of_mean(np.full((9, 2), 3.0), euclidean_to([0.0, 0.0]))
    assert c.value == pytest.approx(np.sqrt(18)) and c.lower_error == 0 and c.upper_error == 0


def test_batched_equals_reference_loop():
    rng = np.random.default_rng(1)
    values = rng.random((41, 6))
    ref = rng.random(6)
    stat, lo, hi = reference_style(values, ref)
    fast = pivotal_bootstrap_of_mean(values, euclidean_to(ref))
    generic = pivotal_bootstrap(values, lambda v: distance.euclidean(v.mean(axis=0), ref))
    for r in (fast, generic):
        assert r.value == pytest.approx(stat, rel=1e-12)
        assert r.lower_error == pytest.approx(lo, rel=1e-9, abs=1e-14)
        assert r.upper_error == pytest.approx(hi, rel=1e-9, abs=1e-14)


def test_resampled_means_and_cosine():
    rng = np.random.default_rng(2)
    values = rng.random((7, 3))
    idx = resample_indices(7, n_reps=4)
    assert np.allclose(resampled_means(values, idx), values[idx].mean(axis=1))
    u, v = rng.random(5), rng.random(5)
    assert cosine_to(v)(u) == pytest.approx(distance.cosine(u, v))


def test_result_json():
    assert no_ci(3.0).as_dict() == {"value": 3.0, "lower_error": None, "upper_error": None}
    d = BootstrapResult(float("nan"), 1.0, float("inf")).as_dict()
    assert d == {"value": None, "lower_error": 1.0, "upper_error": None}
