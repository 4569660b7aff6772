"""Importing data in the published Dismai-Bench layout into the specialised families."""

import numpy as np
import pytest

from dismai.errors import DatasetError
from dismai.testing import requires_dataset


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    d = tmp_path / "userdata"
    monkeypatch.setenv("DISMAI_DATA_DIR", str(d))
    return d


def published_layout(folder, train, val, rotate=False):
    """<folder>/train.extxyz and val.extxyz, as the reference scripts read them."""
    from ase.io import write

    folder.mkdir(parents=True)
    for name, s in (("train", train), ("val", val)):
        frames = s.to_atoms()
        if rotate:  # another program's orientation of the same cell
            for at in frames:
                at.rotate(90, "z", rotate_cell=True)
        write(folder / f"{name}.extxyz", frames, format="extxyz")
    return folder / "train.extxyz", folder / "val.extxyz"


@requires_dataset("alloy-300K-narrow")
def test_alloy_files_in_the_published_layout(user_dir, tmp_path):
    from dismai.datasets import load
    from dismai.metrics.alloy.reference import build_reference
    from dismai.workflows import add_dataset, evaluate

    ds = load("alloy-300K-narrow")
    train, val = ds.train[:150], ds.val[:50]
    tr, va = published_layout(tmp_path / "alloy_300K_narrow", train, val, rotate=True)
    add_dataset("alloy-300K-narrow-published", tr, va, family="alloy")
    mine = load("alloy-300K-narrow-published")
    assert mine.spec.family == "alloy" and np.allclose(mine.train.lattice, ds.train.lattice)
    want = build_reference(train, val)["noise_floor"]
    assert mine.reference["noise_floor"] == want
    assert evaluate(val, mine, progress=False, near_copies=False).metrics == want


@requires_dataset("a-si-64")
def test_asi_files_in_the_published_layout_relax_with_sw_vink(user_dir, tmp_path):
    from dismai.datasets import load
    from dismai.metrics.asi.reference import build_reference
    from dismai.workflows import add_dataset

    ds = load("a-si-64")
    train, val = ds.train[:40], ds.val[:20]
    tr, va = published_layout(tmp_path / "a_Si", train, val)
    add_dataset("a-si-published", tr, va, family="a-si")
    mine = load("a-si-published")
    assert mine.manifest["relax"]["model"] == "sw-vink"  # the family's potential by default
    want = build_reference(train, val)["noise_floor"]
    got = mine.reference["noise_floor"]  # extxyz keeps 8 decimals of Å: equal to ~1e-8
    assert got.keys() == want.keys()
    for k in want:
        for part in ("value", "lower_error", "upper_error"):
            if want[k][part] is None:  # no interval (pct_failed)
                assert got[k][part] is None
            else:
                assert got[k][part] == pytest.approx(want[k][part], rel=1e-6, abs=1e-12)


def test_files_that_do_not_fit_a_family_are_refused(user_dir):
    from dismai.testing import toy_structures
    from dismai.workflows import add_dataset

    s = toy_structures(6)
    with pytest.raises(DatasetError, match="alloy family needs 256 Fe/Ni/Cr atoms"):
        add_dataset("x", s[:3], s[3:], family="alloy")
    with pytest.raises(DatasetError, match="interface family needs"):
        add_dataset("x", s[:3], s[3:], family="interface")
    assert not user_dir.exists() or not list(user_dir.iterdir())


def test_interface_files_in_pymatgen_orientation(user_dir):
    """The triclinic interface cell written the pymatgen way (c along z, a not along x)."""
    pytest.importorskip("chgnet")  # the family's default potential
    from pymatgen.core import Lattice

    from dismai.interface_cell import CELL_A, CELL_B, CELL_C, CELL_GAMMA_DEG, COMPOSITION
    from dismai.structures import StructureSet
    from dismai.workflows import add_dataset

    lat = Lattice.from_parameters(CELL_A, CELL_B, CELL_C, 90, 90, CELL_GAMMA_DEG).matrix
    species = [s for s, n in COMPOSITION.items() for _ in range(n)]
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(4) / 4, np.arange(6) / 6, np.arange(11) / 11,
                                indexing="ij"), -1).reshape(-1, 3)
    frac = np.array([(grid[rng.permutation(264)] + 0.01 * rng.standard_normal((264, 3))) % 1
                     for _ in range(4)])
    s = StructureSet(lat, species, frac)
    paths = add_dataset("interface-own", s[:2], s[2:], family="interface")
    from dismai.datasets import load

    ds = load("interface-own")
    assert np.allclose(ds.train.lattice[0], [CELL_A, 0, 0]) and paths["reference"].is_file()
    assert ds.manifest["relax"]["model"] == "chgnet"
    assert np.allclose(ds.train.frac, s[:2].frac)
