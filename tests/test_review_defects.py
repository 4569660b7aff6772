"""Regression tests for the defects found in the architecture review (issue 10)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from dismai.errors import DatasetError, StructureError
from dismai.testing import requires_dataset


def test_dataset_error_is_not_a_structure_error():
    assert not issubclass(DatasetError, StructureError)


def test_one_cation_order():
    from dismai import interface_cell
    from dismai.datasets import interface_recipe
    from dismai.metrics.interface import motifs

    assert interface_recipe.CATIONS is interface_cell.CATIONS is motifs.CATIONS
    assert interface_cell.CATIONS == ("Li", "Co", "Sc")


def test_training_leaves_the_global_generators_alone(alloy):
    import torch

    from dismai.models import create_model

    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    create_model("cryingan", {"epochs": 1, "batch_size": 8, "gen_channels_1": 4,
                              "gen_channels": [8, 8, 8], "critic_channels": [8, 8, 8],
                              "critic_hidden": [8, 8], "device": "cpu", "seed": 3}
                 ).fit(alloy[:8])
    after = (random.random(), np.random.random(), torch.rand(1).item())
    assert before == after


def test_supercell_constant_is_read_only():
    from dismai.metrics.alloy.lattice_match import _supercell_frac

    with pytest.raises(ValueError):
        _supercell_frac()[0, 0] = 1.0


def test_bench_rows_without_noise_floor():
    from dismai.evaluation import Evaluation
    from dismai.workflows import bench_rows

    ev = Evaluation("x", "alloy", 2, 2, 2, {"d_cluster": {"value": 1.0, "lower_error": 0.1,
                                                         "upper_error": 0.2}}, None)
    header, rows = bench_rows(ev, {})
    assert rows == [["d_cluster", "1 [0.9, 1.2]", "-"]]


@requires_dataset("alloy-300K-narrow")
def test_evaluate_opens_and_checksums_the_dataset_once(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dismai.cli import app
    from dismai.datasets import load, registry
    from dismai.extxyz import write_extxyz

    write_extxyz(load("alloy-300K-narrow").val[:3], tmp_path / "v.extxyz")
    calls = []
    real = registry.sha256_file
    monkeypatch.setattr(registry, "sha256_file", lambda p: calls.append(p) or real(p))
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "v.extxyz"), "--dataset",
                                 "alloy-300K-narrow"])
    assert r.exit_code == 0, r.output
    assert len(calls) == 1


def test_build_defaults_to_user_folders(tmp_path, monkeypatch):
    """Without --out a build goes to the user data folder (never the package) and its work
    files to the user cache folder; the CLI says where."""
    from typer.testing import CliRunner

    from dismai.datasets import registry
    from dismai.datasets.build import build_dataset

    monkeypatch.setenv("DISMAI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DISMAI_CACHE_DIR", str(tmp_path / "cache"))
    small = dict(n_chains=2, n_passes=600, burn_in=100, anneal_passes=50, n_structures=20)
    paths = build_dataset("alloy-1500K-wide", **small)
    assert paths["data"].parent == tmp_path / "data"
    assert paths["work"].is_relative_to(tmp_path / "cache")
    assert list(paths["work"].glob("chains-*.npz"))  # the wide and narrow sets share them
    man = json.loads(paths["manifest"].read_text())
    assert man["n_structures"] == 20 and registry.find_data_dir("alloy-1500K-wide") in (
        registry.DATA_DIR, tmp_path / "data")
    # the CLI reports both folders
    from dismai.cli import app

    monkeypatch.setattr("dismai.workflows.build", lambda *a, **k: build_dataset(
        "alloy-1500K-wide", **small))
    r = CliRunner().invoke(app, ["datasets", "build", "alloy-1500K-wide", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "work files in" in r.output and str(tmp_path / "data") in r.output.replace("\n", "")


def test_internal_errors_keep_their_traceback(monkeypatch, tmp_path):
    """A DismaiError is one line and exit 2; any other exception is a bug: traceback."""
    from typer.testing import CliRunner

    from dismai.cli import app

    def boom(*a, **k):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr("dismai.workflows.evaluate_file", boom)
    r = CliRunner().invoke(app, ["evaluate", "x.extxyz", "--dataset", "a-si"])
    assert r.exit_code == 1 and isinstance(r.exception, ZeroDivisionError)
    assert "internal error" in r.output
    monkeypatch.undo()
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "missing.extxyz"), "--dataset",
                                 "a-si"])
    assert r.exit_code == 2 and r.output.startswith("error: ")
    r = CliRunner().invoke(app, ["--debug", "evaluate", str(tmp_path / "missing.extxyz"),
                                 "--dataset", "a-si"])
    assert r.exit_code == 1 and isinstance(r.exception, StructureError)
