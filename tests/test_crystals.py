"""The general-crystal type: validation, and lossless ASE / pymatgen / CIF round trips."""

from pathlib import Path

import numpy as np
import pytest

from dismai.crystals import Crystal, CrystalSet
from dismai.errors import DatasetError, StructureError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "general-crystals"


def triclinic(seed=0, n=7):
    rng = np.random.default_rng(seed)
    lat = np.diag([4.1, 5.3, 6.7]) + rng.normal(0, 0.6, (3, 3))
    return Crystal(lat, rng.random((n, 3)) * 1.2 - 0.1, rng.integers(1, 90, n),
                   {"energy": -1.5})


def same(a: Crystal, b: Crystal, atol=1e-10):
    assert np.array_equal(a.numbers, b.numbers)
    assert np.allclose(a.lattice, b.lattice, atol=atol, rtol=0)
    assert np.allclose(a.frac, b.frac, atol=atol, rtol=0)


def test_ase_and_pymatgen_round_trips_are_exact():
    c = triclinic()
    same(Crystal.from_ase(c.to_ase()), c, 1e-12)
    same(Crystal.from_pymatgen(c.to_pymatgen()), c, 1e-12)
    assert c.to_pymatgen().volume == pytest.approx(c.volume, rel=1e-12)


def test_cif_round_trip_keeps_lengths_angles_numbers_and_coordinates():
    c = triclinic(seed=1)
    back = Crystal.from_cif(c.to_cif())
    (l0, a0), (l1, a1) = c.lengths_angles, back.lengths_angles
    assert np.allclose(l0, l1, atol=1e-9) and np.allclose(a0, a1, atol=1e-8)
    assert np.array_equal(back.numbers, c.numbers)
    # CIF readers wrap into [0, 1): compare modulo the lattice
    d = (back.frac - c.frac + 0.5) % 1.0 - 0.5
    assert np.abs(d).max() < 1e-9
    # and the interatomic geometry is the same
    dist0 = c.to_ase().get_all_distances(mic=True)
    dist1 = back.to_ase().get_all_distances(mic=True)
    assert np.allclose(dist0, dist1, atol=1e-8)


def test_lengths_angles_match_ase():
    c = triclinic(seed=2)
    par = c.to_ase().cell.cellpar()
    lengths, angles = c.lengths_angles
    assert np.allclose(lengths, par[:3]) and np.allclose(angles, par[3:])


@pytest.mark.parametrize("kwargs, match", [
    (dict(lattice=np.zeros((3, 3))), "singular"),
    (dict(lattice=np.eye(2)), "3x3"),
    (dict(frac=np.zeros((0, 3)), numbers=[]), "at least one atom"),
    (dict(numbers=[1, 2]), "2 atomic numbers for 3 positions"),
    (dict(frac=[[0, 0, np.nan]] * 3), "NaN"),
    (dict(numbers=[0, 1, 2]), "1..118"),
    (dict(numbers=[1.5, 1, 2]), "1..118"),
])
def test_bad_crystals_are_refused_in_one_line(kwargs, match):
    base = dict(lattice=np.eye(3) * 4, frac=np.zeros((3, 3)), numbers=[1, 2, 3])
    with pytest.raises(StructureError, match=match) as info:
        Crystal(**{**base, **kwargs})
    assert "\n" not in str(info.value)


def test_arrays_are_read_only():
    c = triclinic()
    with pytest.raises(ValueError):
        c.frac[0, 0] = 1.0


def test_bad_cif_and_csv(tmp_path):
    with pytest.raises(StructureError, match="CIF"):
        Crystal.from_cif("data_x\n_cell_length_a 3\n")
    p = tmp_path / "t.csv"
    p.write_text("material_id,structure\nm1,xyz\n")
    with pytest.raises(DatasetError, match="no 'cif' column"):
        CrystalSet.from_csv(p)
    p.write_text('material_id,cif\nm1,"not a cif"\n')
    with pytest.raises(DatasetError, match="row 1"):
        CrystalSet.from_csv(p)
    with pytest.raises(DatasetError, match="no such file"):
        CrystalSet.from_csv(tmp_path / "missing.csv")


def test_csv_of_written_cifs(tmp_path):
    import csv

    crystals = [triclinic(seed=s, n=3 + s) for s in range(4)]
    p = tmp_path / "set.csv"
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "cif", "energy"])
        for i, c in enumerate(crystals):
            w.writerow([f"m{i}", c.to_cif(), -i])
    cs = CrystalSet.from_csv(p)
    assert len(cs) == 4 and list(cs.n_atoms) == [3, 4, 5, 6]
    assert cs[2].properties == {"material_id": "m2", "energy": -2.0}
    assert len(cs[1:3]) == 2 and "3-6 atoms" in repr(cs)


@pytest.mark.skipif(not (DATA / "perov_5" / "val.csv").is_file(), reason="shared data absent")
def test_reads_the_shipped_general_crystal_sets():
    perov = CrystalSet.from_csv(DATA / "perov_5" / "val.csv", limit=20)
    assert len(perov) == 20 and set(perov.n_atoms) == {5}
    assert isinstance(perov[0].properties["heat_ref"], float)
    carbon = CrystalSet.from_csv(DATA / "carbon_24" / "val.csv", limit=20)
    assert all(set(c.numbers) == {6} for c in carbon)
    assert 6 <= carbon.n_atoms.min() and carbon.n_atoms.max() <= 24


def test_csv_round_trip_keeps_order_and_properties(tmp_path):
    from dismai.testing import toy_crystals

    s = toy_crystals(5, seed=2)
    s = CrystalSet([Crystal(c.lattice, c.frac % 1.0, c.numbers, {"e": float(i), "tag": f"t{i}"})
                    for i, c in enumerate(s)], "demo")
    s.to_csv(tmp_path / "a.csv")
    back = CrystalSet.from_csv(tmp_path / "a.csv")
    assert len(back) == 5
    for a, b in zip(s, back, strict=True):
        assert np.array_equal(a.numbers, b.numbers)
        assert np.allclose(a.frac, b.frac, atol=1e-10)
        assert np.allclose(a.lengths_angles[0], b.lengths_angles[0], atol=1e-9)
        assert b.properties == a.properties
    assert not list(tmp_path.glob(".*tmp"))
