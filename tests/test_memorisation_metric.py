"""The near-copy check: copies under the benchmark's symmetries are found, validation
structures are not copies."""

import numpy as np
import pytest

from dismai.metrics.memorisation import (
    alloy_images,
    alloy_nearest,
    atoms_nearest,
    near_copy_threshold,
    pct_near_copy,
)
from dismai.structures import StructureSet
from dismai.testing import requires_dataset


def test_alloy_images_are_the_12288_symmetries():
    img = alloy_images()
    assert img.shape == (12288, 256)
    assert all(len(np.unique(row)) == 256 for row in img[::97])  # permutations
    assert len({row.tobytes() for row in img}) == 12288  # all distinct
    assert np.array_equal(img[0], np.arange(256))  # identity first


@requires_dataset("alloy-300K-narrow")
def test_alloy_copies_are_found_and_validation_is_not():
    from dismai.datasets import load

    ds = load("alloy-300K-narrow")
    train = ds.train
    rng = np.random.default_rng(0)
    f = train[:6].frac
    f = np.stack([f[..., 1], -f[..., 0], f[..., 2]], -1) + [0.125, 0.125, 0.0]  # 90° + shift
    copies = train[:6].with_frac((f + 0.005 * rng.standard_normal(f.shape)) % 1.0)
    d_copy = alloy_nearest(copies, train)
    d_val = alloy_nearest(ds.val[:20], train)
    assert (d_copy == 0).all()
    assert d_val.min() > 0.05  # 13 or more of 256 sites differ
    thr = near_copy_threshold(d_val)
    assert pct_near_copy(d_copy, thr) == 100.0 and pct_near_copy(d_val, thr) <= 5.0
    # a structure with no atom near any site (found in a DiffCSP quick run: its atoms sat
    # between the sites) is no copy, and must not stop the check
    off = train[:2].with_frac((train[:2].frac + [0.0625, 0.0, 0.0]) % 1.0)
    d_off = alloy_nearest(StructureSet.concat([off, copies[:1]]), train)
    assert d_off.tolist() == [1.0, 1.0, 0.0]


@requires_dataset("a-si-64")
def test_atom_copies_are_found_and_validation_is_not():
    from dismai.datasets import load

    ds = load("a-si-64")
    train = ds.train
    rng = np.random.default_rng(1)
    f = train[:6].frac + [0.3, 0.1, 0.7] + 0.01 / 10.9 * rng.standard_normal(train[:6].frac.shape)
    copies = train[:6].with_frac((f % 1.0)[:, rng.permutation(64)])
    d_copy = atoms_nearest(copies, train)
    d_val = atoms_nearest(ds.val[:20], train)
    assert d_copy.max() < 0.02 and d_val.min() > 0.05
    assert pct_near_copy(d_copy, near_copy_threshold(d_val)) == 100.0


def test_threshold_and_fraction():
    d = np.linspace(0.1, 1.0, 101)
    thr = near_copy_threshold(d)
    assert thr == pytest.approx(0.109)
    assert pct_near_copy(d, thr) == pytest.approx(100 / 101)
    assert np.isnan(pct_near_copy(np.zeros(0), thr))
