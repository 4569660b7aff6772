"""The shipped general-crystal datasets (dismai.datasets.crystal_sets) and the validity and
distribution metrics of generated crystals (dismai.metrics.crystals)."""

import gzip
import shutil

import numpy as np
import pytest

from dismai.crystals import Crystal, CrystalSet
from dismai.errors import DatasetError


def test_perov5_loads_with_its_checksum():
    from dismai.datasets.crystal_sets import CRYSTAL_DATASETS, load_crystals

    s = load_crystals("perov-5", "train", limit=3)
    assert len(s) == 3 and s.name == "perov-5-train"
    assert all(c.n_atoms == 5 for c in s) and "heat_ref" in s[0].properties
    assert CRYSTAL_DATASETS["perov-5"].source_split == {"train": "val", "test": "test"}


def test_a_changed_file_is_refused(tmp_path, monkeypatch):
    from dismai.datasets import crystal_sets

    src = crystal_sets.crystals_path("carbon-24", "test")
    shutil.copy(src, tmp_path / src.name)
    text = gzip.decompress((tmp_path / src.name).read_bytes()) + b"\n"
    (tmp_path / src.name).write_bytes(gzip.compress(text))
    monkeypatch.setattr(crystal_sets, "FOLDER", tmp_path)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        crystal_sets.load_crystals("carbon-24", "test")
    with pytest.raises(DatasetError, match="unknown general-crystal dataset 'mp-20'"):
        crystal_sets.load_crystals("mp-20")
    with pytest.raises(DatasetError, match="splits train, test, not 'val'"):
        crystal_sets.load_crystals("perov-5", "val")


def test_structure_validity_counts_close_pairs_and_periodic_images():
    from dismai.metrics.crystals import min_distance, structure_valid

    close = Crystal(np.eye(3) * 5, [[0, 0, 0], [0.06, 0, 0]], [6, 6])
    assert min_distance(close) == pytest.approx(0.3)
    assert not structure_valid(close)
    across = Crystal(np.eye(3) * 5, [[0.01, 0, 0], [0.97, 0, 0]], [6, 6])  # 0.2 Å apart
    assert min_distance(across) == pytest.approx(0.2)
    tiny = Crystal(np.eye(3) * 0.4, [[0, 0, 0]], [6])  # one atom, its image 0.4 Å away
    assert min_distance(tiny) == pytest.approx(0.4) and not structure_valid(tiny)
    assert structure_valid(Crystal(np.eye(3) * 3, [[0, 0, 0]], [6]))


def test_charge_neutrality():
    from dismai.metrics.crystals import charge_neutral

    def crystal(numbers):
        n = len(numbers)
        return Crystal(np.eye(3) * 6, np.linspace(0, 0.9, 3 * n).reshape(n, 3), numbers)

    assert charge_neutral(crystal([11, 17]))  # NaCl
    assert charge_neutral(crystal([38, 22, 8, 8, 8]))  # SrTiO3
    assert not charge_neutral(crystal([11, 17, 17]))  # NaCl2
    assert charge_neutral(crystal([26, 28, 24]))  # an all-metal alloy counts
    assert charge_neutral(crystal([6, 6, 6]))  # one element
    assert not charge_neutral(crystal([11, 11, 8, 8, 8]))  # Na2O3
    assert not charge_neutral(crystal([116, 8]))  # Lv: no SMACT data (was a KeyError)


def test_ks_statistics_separate_shifted_cells():
    from dismai.metrics.crystals import ks_statistics, validity
    from dismai.testing import toy_crystals

    a = toy_crystals(40, seed=0)
    assert all(v == 0 for v in ks_statistics(a, a).values())
    big = CrystalSet([Crystal(c.lattice * 3, c.frac, c.numbers) for c in a])
    ks = ks_statistics(big, a)
    assert ks["a"] == 1.0 and ks["density"] > 0.8 and ks["n_atoms"] == 0.0
    v = validity(a[:10], attempts=20)
    assert v["readable"] == 0.5 and v["valid"] <= v["structure_valid"] <= 0.5
