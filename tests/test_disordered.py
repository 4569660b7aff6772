"""The generic `disordered` family and `dismai datasets add/remove`."""

import json

import numpy as np
import pytest

from dismai.errors import DatasetError, InputError
from dismai.structures import StructureSet
from dismai.testing import requires_dataset


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    d = tmp_path / "userdata"
    monkeypatch.setenv("DISMAI_DATA_DIR", str(d))
    return d


def toy_ionic(m=3, seed=0) -> StructureSet:
    """m jittered-grid 28-atom structures with Li, Co, Sc, Cl, O (a tiny interface-like
    composition), so CrystalNN with oxidation states has neighbours of both signs."""
    rng = np.random.default_rng(seed)
    species = ["Li"] * 6 + ["Co"] * 3 + ["Sc"] * 2 + ["Cl"] * 9 + ["O"] * 8
    lat = np.array([[8.0, 0, 0], [1.0, 8.5, 0], [0, 0, 9.0]])
    grid = np.stack(np.meshgrid(*[np.arange(3) / 3] * 3, indexing="ij"), -1).reshape(-1, 3)
    grid = np.concatenate([grid, [[0.5, 0.5, 0.5]]])
    frac = [(grid[rng.permutation(28)] + 0.03 * rng.standard_normal((28, 3))) % 1.0
            for _ in range(m)]
    return StructureSet(lat, species, np.array(frac))


@requires_dataset("a-si-64")
def test_generic_family_equals_the_asi_family_on_asi():
    """Same definitions, so the same numbers, bit for bit."""
    from dismai.datasets import load
    from dismai.metrics.asi.evaluate import metrics_from_features as asi_metrics
    from dismai.metrics.asi.features import compute_features as asi_features
    from dismai.metrics.asi.reference import reference_from_features as asi_reference
    from dismai.metrics.disordered.evaluate import metrics_from_features, reference_from_features
    from dismai.metrics.disordered.features import DisorderedSettings, compute_features

    ds = load("a-si-64")
    tr, va = ds.train[:30], ds.val[:15]
    a_tr, a_va = asi_features(tr), asi_features(va)
    st = DisorderedSettings()
    d_tr, d_va = compute_features(tr, st), compute_features(va, st)
    assert np.array_equal(a_tr.fingerprint, d_tr.fingerprint["Si"])
    assert np.array_equal(a_tr.rdf, d_tr.rdf[:, 0])
    assert np.array_equal(a_tr.angle_dist, d_tr.angle_dist[:, 0])
    want = asi_metrics(a_va, asi_reference(a_tr, a_va, n_atoms=64))[0]
    got = metrics_from_features(d_va, reference_from_features(d_tr, st, d_va))[0]
    assert got == {k: want[k] for k in got}


def test_generic_fingerprints_equal_the_interface_family():
    from dismai.metrics.disordered.features import DisorderedSettings, compute_features
    from dismai.metrics.interface.motifs import OXIDATION_STATES
    from dismai.metrics.interface.motifs import compute_features as interface_features

    s = toy_ionic(3)
    settings = DisorderedSettings.from_dict({"centres": ["Li", "Co", "Sc"],
                                             "nn_species": ["Cl", "O"],
                                             "oxidation_states": OXIDATION_STATES})
    got, want = compute_features(s, settings), interface_features(s)
    for sp in ("Li", "Co", "Sc"):
        assert got.fingerprint[sp].shape == (3, 109)
        assert np.array_equal(got.fingerprint[sp], want.mean_fp[sp])


def test_partial_rdfs_and_triplets_have_the_pair_layout():
    from dismai.metrics.asi.rdf import rdf
    from dismai.metrics.disordered.features import (
        DisorderedSettings,
        angle_triplets,
        compute_features,
        partial_rdfs,
        species_pairs,
    )

    s = toy_ionic(1)
    s = StructureSet(s.lattice * 1.3, s.species, s.frac)  # heights >= 10 Å: rdf() is direct
    pairs = species_pairs(s.species)
    assert len(pairs) == 15 and pairs[0] == ("Li", "Li") and pairs[-1] == ("O", "O")
    g = partial_rdfs(s.lattice, s.frac[0], s.species)
    # the total g(r) is the number-weighted sum of the partials
    n = np.array([s.composition[x] for x in ("Li", "Co", "Sc", "Cl", "O")], dtype=float)
    c = n / n.sum()
    total = np.zeros_like(g[0])
    for k, (a, b) in enumerate(pairs):
        ia, ib = list(s.composition).index(a), list(s.composition).index(b)
        total += (1 if a == b else 2) * c[ia] * c[ib] * g[k]
    assert np.allclose(total, rdf(s.lattice, s.frac[0]))
    f = compute_features(s, DisorderedSettings(centres=("Co",)))
    assert f.triplets == angle_triplets(s.species, ["Co"]) and len(f.triplets) == 15
    sums = f.angle_dist[0].sum(axis=1)
    assert np.isclose(sums.sum(), 1.0) and (sums >= 0).all()


def test_add_evaluate_remove(user_dir):
    from dismai.datasets import dataset_names, load
    from dismai.workflows import add_dataset, evaluate, remove_dataset

    s = toy_ionic(10, seed=1)
    paths = add_dataset("toy-ionic", s[:6], s[6:], fingerprint={"centres": ["Li", "Co"]})
    assert paths["manifest"].parent == user_dir
    assert "toy-ionic" in dataset_names()
    ds = load("toy-ionic")
    assert ds.is_added and ds.spec.family == "disordered"
    assert np.array_equal(ds.val.frac, s[6:].frac) and len(ds.train) == 6
    ev = evaluate(ds.val, ds, progress=False)  # no energy model: scored as given
    assert ev.header["relaxed"] is False
    assert {k: v for k, v in ev.metrics.items() if k != "pct_near_copy"} == \
        ds.reference["noise_floor"]
    assert ev.noise_floor["pct_near_copy"]["value"] == ev.metrics["pct_near_copy"]["value"]
    assert set(ev.header["d_motif_by_species"]) == {"Li", "Co"}
    with pytest.raises(DatasetError, match="taken by an added dataset"):
        add_dataset("toy-ionic", s[:6], s[6:])
    with pytest.raises(InputError, match="names no energy model"):
        evaluate(ds.val, ds, progress=False, relax=True)
    from dismai.workflows import build

    with pytest.raises(DatasetError, match="added from files"):
        build("toy-ionic", progress=False)
    remove_dataset("toy-ionic")
    assert "toy-ionic" not in dataset_names() and not list(user_dir.iterdir())
    with pytest.raises(DatasetError, match="no added dataset"):
        remove_dataset("toy-ionic")


def test_add_refuses_bad_input_and_leaves_nothing(user_dir, monkeypatch):
    from dismai.workflows import add_dataset, remove_dataset

    s = toy_ionic(6)
    with pytest.raises(DatasetError, match="taken by a shipped dataset"):
        add_dataset("a-si", s[:3], s[3:])
    with pytest.raises(InputError, match="dataset name"):
        add_dataset("../evil", s[:3], s[3:])
    with pytest.raises(DatasetError, match="alloy family needs 256 Fe/Ni/Cr atoms"):
        add_dataset("x", s[:3], s[3:], family="alloy")
    with pytest.raises(DatasetError, match="a-si family needs Si-only"):
        add_dataset("x", s[:3], s[3:], family="a-si")
    with pytest.raises(InputError, match="centre species \\['Fe'\\]"):
        add_dataset("x", s[:3], s[3:], fingerprint={"centres": ["Fe"]})
    with pytest.raises(InputError, match="oxidation_states lack"):
        add_dataset("x", s[:3], s[3:], fingerprint={"oxidation_states": {"Li": 1}})
    with pytest.raises(DatasetError, match="a-si.*shipped dataset"):
        remove_dataset("a-si")
    import dismai.datasets.user as user

    real = user.write_json

    def fail_on_manifest(path, obj):
        if path.name == "x.json":
            raise OSError(28, "No space left on device", str(path))
        real(path, obj)

    monkeypatch.setattr(user, "write_json", fail_on_manifest)
    with pytest.raises(OSError):
        add_dataset("x", s[:3], s[3:])
    assert not user_dir.exists() or not list(user_dir.iterdir())


def test_unwritable_user_folder_is_one_line(tmp_path, monkeypatch):
    from dismai.workflows import add_dataset

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("DISMAI_DATA_DIR", str(ro / "sub"))
    try:
        import os

        if os.access(ro, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("permissions are not enforced for this user")
        with pytest.raises(DatasetError, match="cannot be created"):
            add_dataset("x", toy_ionic(4)[:2], toy_ionic(4)[2:])
    finally:
        ro.chmod(0o700)


def test_user_folder_that_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    """A path under a regular file cannot become a folder, even for root."""
    from dismai.workflows import add_dataset

    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("DISMAI_DATA_DIR", str(tmp_path / "a-file" / "data"))
    with pytest.raises(DatasetError, match="cannot be created"):
        add_dataset("x", toy_ionic(4)[:2], toy_ionic(4)[2:])


def test_unknown_element_and_nan_are_one_line(user_dir, tmp_path):
    from dismai.errors import StructureError
    from dismai.workflows import add_dataset

    bad = tmp_path / "bad.extxyz"
    bad.write_text('2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
                   "Qq 0 0 0\nSi 1 1 1\n")
    with pytest.raises(StructureError, match="bad.extxyz") as info:
        add_dataset("x", bad, bad)
    assert "\n" not in str(info.value)
    nan = tmp_path / "nan.extxyz"
    nan.write_text('2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
                   "Si 0 0 0\nSi nan 1 1\n")
    with pytest.raises(StructureError, match="NaN"):
        add_dataset("x", nan, nan)
    assert not user_dir.exists() or not list(user_dir.iterdir())


def test_cli_add_list_evaluate_remove(user_dir, tmp_path):
    from typer.testing import CliRunner

    from dismai.cli import app
    from dismai.extxyz import write_extxyz

    s = toy_ionic(8, seed=2)
    write_extxyz(s[:5], tmp_path / "train.extxyz")
    write_extxyz(s[5:], tmp_path / "val.extxyz")
    runner = CliRunner()
    args = ["datasets", "add", "mine", "--train", str(tmp_path / "train.extxyz"),
            "--val", str(tmp_path / "val.extxyz")]
    r = runner.invoke(app, args + ["--oxidation-states", "Li=one"])
    assert r.exit_code == 2 and "is not SPECIES=CHARGE" in r.output
    r = runner.invoke(app, args + ["--centres", "Li,Sc", "--nn-species", "Cl,O"])
    assert r.exit_code == 0, r.output
    assert json.loads((user_dir / "mine.json").read_text())["fingerprint"] == \
        {"centres": ["Li", "Sc"], "nn_species": ["Cl", "O"]}
    r = runner.invoke(app, ["datasets", "list"])
    assert "mine" in r.output and "added" in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path / "val.extxyz"), "--dataset", "mine",
                            "--out", str(tmp_path / "ev"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ev" / "partial_rdf.png").is_file()
    r = runner.invoke(app, ["datasets", "remove", "mine"])
    assert r.exit_code == 0 and not (user_dir / "mine.json").exists()


def test_family_contract_on_an_added_dataset(user_dir, tmp_path):
    from dismai.testing import check_family
    from dismai.workflows import add_dataset

    s = toy_ionic(8, seed=3)
    add_dataset("contract-toy", s[:5], s[5:])
    check_family("disordered", tmp_path / "contract")


@requires_dataset("a-si-64")
def test_added_dataset_with_an_energy_model_relaxes(user_dir, tmp_path):
    from dismai.datasets import load
    from dismai.workflows import add_dataset, evaluate

    ds64 = load("a-si-64")
    add_dataset("si-own", ds64.train[:20], ds64.val[:10], energy_model="sw-vink")
    ds = load("si-own")
    assert ds.manifest["relax"] == {"model": "sw-vink", "fmax": 0.05, "max_steps": 1000,
                                    "optimizer": "lammps-cg"}
    assert np.allclose(ds.train.properties["energy_per_atom"],
                       ds64.train[:20].properties["energy_per_atom"])
    ev = evaluate(ds.val[:4], ds, progress=False, workers=1, out=tmp_path / "ev")
    assert ev.header["relaxed"] is True and "mean_relax_steps" in ev.metrics


@requires_dataset("a-si-64")
def test_nothing_surviving_is_a_score_not_an_error(tmp_path, monkeypatch):
    """A model whose every structure fails its relaxation scores 100 % failed, with the
    failure records written, rather than stopping the evaluation (or a whole bench)."""
    from dismai.datasets import load
    from dismai.families.relaxed import RelaxedFamily
    from dismai.workflows import evaluate

    ds = load("a-si-64")
    monkeypatch.setattr(RelaxedFamily, "relax_settings_of", lambda self, d: {
        "model": "sw-vink", "fmax": 0.05, "max_steps": 1, "optimizer": "fire"})
    gen = ds.val[:2].with_frac(ds.val[:2].frac + 0.01 * np.random.default_rng(0).normal(
        size=ds.val[:2].frac.shape))
    ev = evaluate(gen, ds, n_generated=3, progress=False, workers=1, out=tmp_path / "ev",
                  as_generated=True)
    assert ev.n_final == 0 and ev.header["n_failed_relaxation"] == 2
    assert ev.metrics["pct_failed"]["value"] == 100.0
    raw = ev.header["metrics_as_generated"]  # the structures as given are still scored
    assert raw["pct_failed"]["value"] == 0.0 and len(raw) > 1
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["metrics"]["pct_failed"]["value"] == 100.0
    rows = (tmp_path / "ev" / "relax_results.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",not_converged," in r for r in rows[1:])
