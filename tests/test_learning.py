"""The learning gate and the memorisation helpers (docs/learning.md)."""

from __future__ import annotations

import numpy as np

from dismai.evaluation import Evaluation
from dismai.learning import learning_gate
from dismai.testing import requires_dataset, rms_to_nearest, toy_structures


def _ev(values: dict, relaxed_steps: float, rel: float = 0.1) -> Evaluation:
    entry = lambda v: {"value": v, "lower_error": rel * v, "upper_error": rel * v}  # noqa: E731
    return Evaluation("x", "a-si", 10, 10, 10,
                      metrics={"mean_relax_steps": entry(relaxed_steps)}, noise_floor={},
                      header={"metrics_as_generated": {k: entry(v) for k, v in values.items()}})


def test_gate_needs_every_metric_below_with_disjoint_intervals():
    random = _ev({"d_motif": 1.0, "d_rdf": 16.0, "d_angle": 0.06}, 127.0)
    good = _ev({"d_motif": 0.1, "d_rdf": 2.0, "d_angle": 0.01}, 10.0)
    assert learning_gate(good, random).passed
    close = _ev({"d_motif": 0.85, "d_rdf": 2.0, "d_angle": 0.01}, 10.0)  # intervals overlap
    res = learning_gate(close, random)
    assert not res.passed and res.summary() == "failed on d_motif"
    missing = Evaluation("x", "a-si", 1, 1, 1, {}, {})
    assert not learning_gate(missing, random).passed


def test_rms_to_nearest_ignores_order_translation_and_images():
    pair = toy_structures(2, seed=3)
    moved = pair.with_frac((pair.frac[:, [2, 1, 0] + list(range(3, 12))] + [0.3, 0.1, 0.7]) % 1)
    assert np.allclose(rms_to_nearest(moved, pair), 0.0, atol=1e-12)
    rng = np.random.default_rng(0)
    noisy = pair.with_frac(pair.frac + 0.002 * rng.standard_normal(pair.frac.shape))
    assert (rms_to_nearest(noisy, pair) < 0.03).all()
    assert (rms_to_nearest(toy_structures(4, seed=9), pair) > 1.0).all()
    assert rms_to_nearest(moved, pair, translate=False).min() > 0.5


@requires_dataset("a-si-64")
def test_noise_floor_passes_the_gate_on_a_si_64(tmp_path):
    """The validation split (what a perfect generator gives) must beat `random` clearly."""
    from dismai.datasets import load
    from dismai.models import create_model
    from dismai.workflows import evaluate

    ds = load("a-si-64")
    n = 150
    val = ds.val[np.arange(n)]
    rnd = create_model("random")
    rnd.fit(ds.train)
    opts = {"as_generated": True, "progress": False, "workers": 2}
    floor = evaluate(val, ds, n, tmp_path / "val", **opts)
    random = evaluate(rnd.sample(n, seed=0), ds, n, tmp_path / "random", **opts)
    res = learning_gate(floor, random)
    assert res.passed, res.checks
    for name, c in res.checks.items():  # clear margins: the intervals are far apart
        assert c["model"][1] < 0.5 * c["random"][0], (name, c)
