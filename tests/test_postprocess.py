"""Moving too-close atoms apart: minimum-image default and the reference's raw mode."""

import numpy as np
import pytest

from dismai.postprocess import close_pairs, move_apart_one, move_atoms_apart
from dismai.structures import StructureSet

L10 = np.eye(3) * 10.0


def make(cart, lattice=L10):
    cart = np.asarray(cart, dtype=float)
    return StructureSet(lattice, ("Si",) * cart.shape[-2], cart @ np.linalg.inv(lattice))


def straddling():
    # atoms 0 and 1 are 0.8 Å apart across the x boundary
    return make([[0.3, 5.0, 5.0], [9.5, 5.0, 5.0], [5.0, 1.0, 1.0]])


def test_close_pairs_periodic_and_sorted():
    cart = np.array([[0.3, 5, 5], [9.5, 5, 5], [5, 5, 5], [5.5, 5, 5], [9.9, 5, 5]])
    pairs = close_pairs(cart, L10, 1.5)
    assert pairs.tolist() == [[0, 1], [0, 4], [1, 4], [2, 3]]


def test_clean_structure_untouched():
    s = make([[1.0, 1, 1], [3.5, 1, 1]])
    r = move_atoms_apart(s)
    assert r.ok.tolist() == [True] and r.iterations.tolist() == [1]
    assert r.first_count.tolist() == [0]
    assert np.array_equal(r.structures.frac, s.frac)


def test_minimum_image_moves_straddling_pair_slightly():
    s = straddling()
    r = move_atoms_apart(s)
    x = r.structures.cart()[0]
    assert r.ok.tolist() == [True] and r.iterations.tolist() == [2]
    assert r.first_pairs[0].tolist() == [[0, 1]]
    moved = np.linalg.norm(x - s.cart()[0], axis=1)
    assert moved[:2] == pytest.approx([0.4, 0.4])  # each takes half of 1.6 - 0.8
    assert moved[2] == 0.0
    assert x[0] == pytest.approx([0.7, 5.0, 5.0]) and x[1] == pytest.approx([9.1, 5.0, 5.0])


def test_reference_mode_makes_the_big_jump():
    s = straddling()
    r = move_atoms_apart(s, reference_compatible=True)
    x = r.structures.cart()[0]
    assert r.ok.tolist() == [True] and r.iterations.tolist() == [2]
    assert x[0] == pytest.approx([0.3, 5.0, 5.0])  # lower index never moves
    assert x[1] == pytest.approx([1.9, 5.0, 5.0])  # 1.6 Å from atom 0's in-cell position
    assert np.linalg.norm(x[1] - s.cart()[0, 1]) == pytest.approx(7.6)


def test_reference_mode_pulls_back_already_separated_pair():
    # pairs (0,1) and (1,2): moving atom 1 away from 0 fixes (1,2) too, but the
    # reference still resets |x2 - x1| to 1.6 Å along their raw difference
    cart = [[5.0, 5, 5], [6.0, 5, 5], [7.4, 5, 5]]
    x, ok, it, first = move_apart_one(np.array(cart), L10, reference_compatible=True)
    assert first.tolist() == [[0, 1], [1, 2]]
    assert x[1] == pytest.approx([6.6, 5, 5]) and x[2] == pytest.approx([8.2, 5, 5])
    x2, ok2, _, _ = move_apart_one(np.array(cart), L10)
    assert ok and ok2
    d = np.linalg.norm(np.diff(x2, axis=0), axis=1)
    assert np.all(d >= 1.5)


def test_coincident_atoms_are_separated():
    for ref in (False, True):
        x, ok, _, _ = move_apart_one(np.array([[2.0, 2, 2], [2.0, 2, 2]]), L10,
                                     reference_compatible=ref)
        assert ok and np.all(np.isfinite(x))
        assert np.linalg.norm(x[1] - x[0]) == pytest.approx(1.6)


def test_failure_after_max_iterations():
    # 4 atoms in a 2 Å cube: the best packing (fcc) is 1.41 Å apart, so it cannot succeed
    lat = np.eye(3) * 2.0
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) + 0.01
    bad = StructureSet(lat, ("Si",) * 4, frac)
    for ref in (False, True):
        r = move_atoms_apart(bad, reference_compatible=ref)
        assert r.ok.tolist() == [False] and r.iterations.tolist() == [100]
        assert len(r.structures) == 0 and r.failed == [0]
    r = move_atoms_apart(bad, max_iter=7)
    assert r.iterations.tolist() == [7]


def test_mixed_set_log_and_properties(tmp_path):
    good = straddling()
    lat = np.eye(3) * 10.0
    crowd = np.tile([[5.0, 5.0, 5.0]], (3, 1)) + np.array([[0, 0, 0], [0.5, 0, 0], [1.0, 0, 0]])
    sets = StructureSet(lat, ("Si",) * 3,
                        np.stack([good.frac[0], crowd / 10.0, good.frac[0]]),
                        {"energy": np.array([1.0, 2.0, 3.0])})
    r = move_atoms_apart(sets, max_iter=100)
    assert r.ok.tolist() == [True, True, True]
    assert list(r.structures.properties["input_index"]) == [0, 1, 2]
    assert list(r.structures.properties["energy"]) == [1.0, 2.0, 3.0]
    r.write_log_csv(tmp_path / "too_close_count.csv")
    lines = (tmp_path / "too_close_count.csv").read_text().splitlines()
    assert lines[0] == "No,iterations,count,pair_index"
    assert lines[1] == '1,2,1,"[[0, 1]]"'
