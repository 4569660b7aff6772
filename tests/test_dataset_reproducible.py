"""`dismai datasets build NAME` must reproduce the shipped file bit-identically."""

import json

import pytest

from dismai.datasets.build import build_dataset
from dismai.datasets.registry import is_built, shipped_paths


def _check(name, tmp_path):
    if not is_built(name):
        pytest.skip(f"{name} not shipped")
    paths = build_dataset(name, out_dir=tmp_path)
    shipped = json.loads(shipped_paths(name)["manifest"].read_text())
    rebuilt = json.loads(paths["manifest"].read_text())
    assert rebuilt["sha256"] == shipped["sha256"]
    assert paths["data"].read_bytes() == shipped_paths(name)["data"].read_bytes()
    assert rebuilt["statistics"] == shipped["statistics"]


def test_rebuild_1500K_narrow_is_bit_identical(tmp_path):
    _check("alloy-1500K-narrow", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alloy-300K-narrow", "alloy-300K-wide", "alloy-1500K-wide"])
def test_rebuild_other_alloys(name, tmp_path):
    _check(name, tmp_path)


def test_unknown_recipe_parameter_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown recipe parameter"):
        build_dataset("alloy-1500K-wide", out_dir=tmp_path, n_pases=10)
