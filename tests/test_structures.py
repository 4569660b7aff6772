import numpy as np
import pytest
from ase import Atoms

from dismai import StructureError, StructureSet
from dismai.extxyz import read_extxyz, write_extxyz


def make_set(m=3, seed=0):
    rng = np.random.default_rng(seed)
    lattice = np.array([[5.0, 0, 0], [1.0, 6.0, 0], [0.5, 0.3, 7.0]])
    return StructureSet(lattice, ["Cr", "Cr", "Fe", "Ni", "Ni"], rng.random((m, 5, 3)),
                        {"energy": rng.normal(size=m)})


def test_basic_properties():
    s = make_set()
    assert len(s) == 3 and s.n_atoms == 5
    assert s.composition == {"Cr": 2, "Fe": 1, "Ni": 2}
    assert s.blocks == [("Cr", 0, 2), ("Fe", 2, 3), ("Ni", 3, 5)]
    assert np.allclose(s.cart()[1], s.frac[1] @ s.lattice)
    sub = s[[0, 2]]
    assert len(sub) == 2
    assert np.array_equal(sub.properties["energy"], s.properties["energy"][[0, 2]])


def test_atoms_roundtrip_is_lossless():
    s = make_set()
    back = StructureSet.from_atoms(s.to_atoms())
    assert back.species == s.species
    assert np.allclose(back.frac, s.frac, atol=1e-13, rtol=0)
    assert np.allclose(back.properties["energy"], s.properties["energy"])


def test_extxyz_roundtrip(tmp_path):
    s = make_set()
    p = tmp_path / "x.extxyz"
    write_extxyz(s, p)
    back = read_extxyz(p)
    assert back.species == s.species
    # ASE writes positions with 8 decimals (Å)
    assert np.abs(back.cart() - s.cart()).max() < 1e-7
    assert np.allclose(back.lattice, s.lattice)
    assert not list(tmp_path.glob(".*tmp"))


def test_reading_sorts_into_species_blocks():
    s = make_set(1)
    at = s.to_atoms()[0]
    perm = [4, 2, 0, 3, 1]
    shuffled = Atoms([at.get_chemical_symbols()[i] for i in perm], positions=at.positions[perm],
                     cell=at.cell, pbc=True)
    back = StructureSet.from_atoms([shuffled], template=s)
    assert back.species == s.species
    # within a species block the original relative order is kept (stable sort)
    assert np.allclose(back.frac[0, 2], s.frac[0, 2])
    assert np.allclose(back.frac[0, [0, 1]], s.frac[0, [0, 1]])
    assert np.allclose(back.frac[0, [3, 4]], s.frac[0, [4, 3]])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a.set_cell(a.cell * 1.1, scale_atoms=True), "cell"),
        (lambda a: a.pop(), "has 4 atoms, expected 5"),
        (lambda a: a.symbols.__setitem__(0, "Co"), "unexpected species"),
        (lambda a: a.positions.__setitem__((1, 1), np.nan), "NaN"),
    ],
)
def test_refuses_mismatched_structures_with_index(mutate, message):
    s = make_set(3)
    frames = s.to_atoms()
    mutate(frames[2])
    with pytest.raises(StructureError, match="structure 2") as info:
        StructureSet.from_atoms(frames, template=s)
    assert message in str(info.value)


def test_wrong_counts_same_total():
    s = make_set(1)
    at = s.to_atoms()[0]
    at.symbols[0] = "Fe"
    with pytest.raises(StructureError, match="species counts"):
        StructureSet.from_atoms([at], template=s)


def test_invalid_construction():
    with pytest.raises(StructureError, match="more than one block"):
        StructureSet(np.eye(3), ["A", "B", "A"], np.zeros((1, 3, 3)))
    with pytest.raises(StructureError, match="NaN"):
        StructureSet(np.eye(3), ["A"], np.full((1, 1, 3), np.nan))
    with pytest.raises(StructureError, match="singular"):
        StructureSet(np.zeros((3, 3)), ["A"], np.zeros((1, 1, 3)))


@pytest.mark.parametrize("content", ["", "3\nnot a header\nH 0 0\n", "garbage\n"])
def test_bad_files(tmp_path, content):
    p = tmp_path / "bad.extxyz"
    p.write_text(content)
    with pytest.raises(StructureError, match="bad.extxyz"):
        read_extxyz(p)


def test_missing_file(tmp_path):
    with pytest.raises(StructureError, match="no such file"):
        read_extxyz(tmp_path / "nope.extxyz")
