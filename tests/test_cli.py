"""The CLI contract: outputs, exit codes and one-line errors on bad input."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dismai.cli import app
from dismai.datasets import load
from dismai.datasets.registry import is_built

pytestmark = pytest.mark.skipif(not is_built("alloy-300K-narrow"),
                                reason="alloy datasets not built")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def val_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("val") / "val.extxyz"
    r = run("datasets", "export", "alloy-300K-narrow", "--split", "val", "-o", path)
    assert r.exit_code == 0, r.output
    return path


def test_list_and_info():
    r = run("datasets", "list")
    assert r.exit_code == 0
    assert "alloy-1500K-wide" in r.output and "Cr51" in r.output
    r = run("datasets", "info", "alloy-300K-narrow")
    assert r.exit_code == 0
    info = json.loads(r.output)
    assert info["n_train"] == 1200 and info["n_val"] == 300


def test_evaluate_validation_split_is_at_noise_floor(val_file, tmp_path):
    out = tmp_path / "eval"
    r = run("evaluate", val_file, "--dataset", "alloy-300K-narrow", "--out", out)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == "alloy-300K-narrow" and m["n_input"] == 300 == m["n_generated"]
    assert set(m["metrics"]) >= {"d_cluster", "pct_vacancy", "pct_failed"}
    assert m["metrics"]["pct_vacancy"]["value"] == 0
    assert m["metrics"]["pct_failed"]["value"] == 0
    # scoring the validation split is exactly the shipped noise floor
    assert m["metrics"]["d_cluster"]["value"] == pytest.approx(
        m["noise_floor"]["d_cluster"]["value"], abs=1e-12)
    assert m["metrics"]["d_cluster"]["value"] < 0.01
    for key in ("value", "lower_error", "upper_error"):
        assert key in m["metrics"]["d_cluster"]
    assert list(out.glob("*.csv")) and list(out.glob("*.png"))


def test_n_generated_sets_failed_fraction(val_file, tmp_path):
    r = run("evaluate", val_file, "--dataset", "alloy-300K-narrow", "--n-generated", 400,
            "--out", tmp_path)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["metrics"]["pct_failed"]["value"] == pytest.approx(25.0)


def _frames(val_file):
    from ase.io import read

    return read(val_file, index=":4")


def _write(frames, path):
    from ase.io import write

    write(path, frames, format="extxyz")
    return path


def bad_cell(frames):
    frames[1].set_cell(frames[1].cell * 1.02, scale_atoms=True)


def bad_species(frames):
    frames[2].symbols[0] = "Co"


def bad_counts(frames):
    frames[3].symbols[0] = "Ni"  # a Cr becomes Ni: 50/154/52


def missing_atom(frames):
    del frames[0][5]


def nan_coordinate(frames):
    frames[1].positions[3, 0] = np.nan


@pytest.mark.parametrize("mutate, expected", [
    (bad_cell, "structure 1: cell"),
    (bad_species, "structure 2: unexpected species"),
    (bad_counts, "structure 3: species counts"),
    (missing_atom, "structure 0: has 255 atoms"),
    (nan_coordinate, "structure 1"),
])
def test_bad_structures_get_one_line_error(val_file, tmp_path, mutate, expected):
    frames = _frames(val_file)
    mutate(frames)
    path = _write(frames, tmp_path / "bad.extxyz")
    out = tmp_path / "out"
    r = run("evaluate", path, "--dataset", "alloy-300K-narrow", "--out", out)
    assert r.exit_code == 2
    assert expected in r.output
    assert r.output.strip().count("\n") == 0
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("content", ["", "256\nLattice=\"14.4 0 0 0 14.4 0 0 0 14.4\"\nFe 0 0\n",
                                     "this is not an extxyz file\n"])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "gen.extxyz"
    path.write_text(content)
    r = run("evaluate", path, "--dataset", "alloy-300K-narrow", "--out", tmp_path / "o")
    assert r.exit_code == 2
    assert "gen.extxyz" in r.output and r.output.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()


def test_truncated_file(val_file, tmp_path):
    text = val_file.read_text()
    path = tmp_path / "trunc.extxyz"
    path.write_text(text[: len(text) // 3 + 200])  # cut inside the second frame
    r = run("evaluate", path, "--dataset", "alloy-300K-narrow")
    assert r.exit_code == 2 and "trunc.extxyz" in r.output


def test_unknown_dataset(val_file):
    r = run("evaluate", val_file, "--dataset", "alloy-9K")
    assert r.exit_code == 2 and "unknown dataset 'alloy-9K'" in r.output
    r = run("datasets", "info", "nope")
    assert r.exit_code == 2


def test_n_generated_smaller_than_input(val_file):
    r = run("evaluate", val_file, "--dataset", "alloy-300K-narrow", "--n-generated", 10)
    assert r.exit_code == 2 and "n-generated" in r.output.replace("_", "-")


def test_shipped_checksums():
    from dismai.datasets import dataset_names

    for name in dataset_names():
        if name.startswith("alloy"):
            ds = load(name)  # verifies the sha256 against the manifest
            assert len(ds.train) == 1200 and len(ds.val) == 300
            assert ds.train.composition == {"Cr": 51, "Fe": 154, "Ni": 51}
