"""Batched FIRE (dismai.relax_batch) against the per-structure engine (dismai.relax)."""

from __future__ import annotations

import numpy as np
import pytest

from dismai.relax import relax_atoms
from dismai.relax_batch import fire_relax_batch
from dismai.testing import requires_dataset


@pytest.fixture(scope="module")
def rattled():
    from dismai.datasets import load

    s = load("a-si-64").val[:3]
    rng = np.random.default_rng(0)
    return s.with_frac(s.frac + rng.normal(0, 0.02, s.frac.shape))


@pytest.fixture(scope="module")
def sw():
    from dismai.energy import get_energy_model

    return get_energy_model("sw-vink")


@requires_dataset("a-si-64")
def test_same_trajectories_as_ase_fire_one_at_a_time(rattled, sw):
    recs, pos = fire_relax_batch(rattled, sw)
    for r, atoms in zip(recs, rattled.to_atoms(), strict=True):
        ref, ref_pos = relax_atoms(atoms, sw.calculator(), model=sw, optimizer="fire")
        assert r["status"] == ref["status"] == "converged"
        assert r["steps"] == ref["steps"] > 10  # structures converge at different steps
        assert r["e_final"] == pytest.approx(ref["e_final"], abs=1e-9)
        assert np.abs(pos[r["index"]] - ref_pos).max() < 1e-9


@requires_dataset("a-si-64")
def test_failures_are_accounted_like_the_per_structure_engine(rattled, sw):
    recs, pos = fire_relax_batch(rattled, sw, max_steps=5)
    assert [r["status"] for r in recs] == ["not_converged"] * 3
    assert all(r["steps"] == 5 and "max force" in r["message"] for r in recs)
    assert np.isnan(pos).all()  # nothing converged, nothing kept
    recs, _ = fire_relax_batch(rattled, sw, max_displacement=1e-3)
    assert all(r["status"] == "blowup" and "moved" in r["message"] for r in recs)


@requires_dataset("a-si-64")
def test_relax_structures_runs_it_resumably(rattled, sw, tmp_path):
    from dismai.relax import relax_structures

    ref = relax_structures(rattled, sw, optimizer="fire", n_workers=1, progress=False)
    got = relax_structures(rattled, sw, tmp_path, optimizer="fire-batch", progress=False)
    cols = ("status", "steps")
    assert [{k: r[k] for k in cols} for r in got.table] == \
        [{k: r[k] for k in cols} for r in ref.table]
    np.testing.assert_allclose(got.structures.frac, ref.structures.frac, atol=1e-9)
    new = []  # a rerun on the same folder finds every structure done
    again = relax_structures(rattled, sw, tmp_path, optimizer="fire-batch", progress=False,
                             on_result=new.append)
    assert new == [] and [r["e_final"] for r in again.table] == [r["e_final"] for r in got.table]
