"""Fixtures shared by the test modules (factories live in dismai.testing)."""

from __future__ import annotations

import pytest

from dismai.datasets.alloy_recipe import random_site_species, structures_from_site_species
from dismai.testing import toy_structures


@pytest.fixture(scope="module")
def alloy():
    """16 random Fe60Ni20Cr20 structures on the 256-site FCC lattice."""
    return structures_from_site_species(random_site_species(16, seed=1))


@pytest.fixture(scope="module")
def toy():
    """14 random 12-atom structures (3 Fe, 5 Ni, 4 Cr) in a triclinic cell."""
    return toy_structures()


@pytest.fixture(autouse=True)
def _user_folders(tmp_path_factory, monkeypatch):
    """Builds and work files of tests go to scratch folders, never the user's home."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("DISMAI_DATA_DIR", str(root / "user-data"))
    monkeypatch.setenv("DISMAI_CACHE_DIR", str(root / "user-cache"))
