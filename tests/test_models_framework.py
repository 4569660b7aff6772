"""The model interface, registry, configs, baselines, run directories and the model CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dismai import fcc
from dismai.errors import DismaiError
from dismai.extxyz import read_extxyz, write_extxyz
from dismai.models import (
    CheckpointError,
    ConfigError,
    GenerativeModel,
    ModelError,
    TrainingDataError,
    UnknownModelError,
    available_models,
    create_model,
    get_model_class,
    resolve_config,
)
from dismai.models.base import check_training_data
from dismai.models.cryingan import CryinGANConfig
from dismai.models.training import RunDirError
from dismai.structures import StructureSet
from dismai.testing import requires_dataset

TINY = {"epochs": 1, "batch_size": 8, "gen_channels_1": 4, "gen_channels": [8, 8, 8],
        "critic_channels": [8, 8, 8], "critic_hidden": [8, 8], "device": "cpu",
        "n_sample_dump": 2, "checkpoint_minutes": 0.0}


def test_registry_names_and_unknown_model():
    assert {"cryingan", "random", "shuffled-lattice"} <= set(available_models())
    assert get_model_class("cryingan").name == "cryingan"
    with pytest.raises(UnknownModelError, match="unknown model 'foo'; known: "):
        get_model_class("foo")
    assert issubclass(UnknownModelError, DismaiError)


# ---------------------------------------------------------------------------- configs
def test_unknown_config_key_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'weight_dst' \(did you mean 'weight_dist'"):
        create_model("cryingan", {"weight_dst": 0.1})
    f = tmp_path / "c.yaml"
    f.write_text("gen_int: 2\nlearning_rate: 1.0e-4\n")
    with pytest.raises(ConfigError, match="c.yaml: unknown key 'learning_rate'"):
        resolve_config("cryingan", CryinGANConfig, preset="quick", config_file=f)


@pytest.mark.parametrize("data, message", [
    ({"epochs": "10"}, "must be an integer"),
    ({"epochs": True}, "must be an integer"),
    ({"g_lr": "fast"}, "must be a number"),
    ({"g_lr": "nan"}, "must be a number"),
    ({"gen_channels": 3}, "must be a list"),
    ({"critic": "single"}, "critic must be one of"),
    ({"coord_pooling": "sum"}, "coord_pooling must be one of"),
    ({"translation_grid": [4, 4]}, "translation_grid"),
    ({"translation_grid": [2, 2, 2], "augment_copies": 9}, "augment_copies"),
    ({"epochs": 0}, "epochs must be positive"),
])
def test_config_type_and_value_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        create_model("cryingan", data)


def test_yaml_exponent_without_a_dot_is_a_number(tmp_path):
    # YAML 1.1 (PyYAML) reads 5e-3 as the string "5e-3"; a user means the number
    f = tmp_path / "c.yaml"
    f.write_text("g_lr: 5e-3\n")
    cfg = resolve_config("cryingan", CryinGANConfig, preset="quick", config_file=f)
    assert cfg.g_lr == 5e-3


def test_presets_resolve_per_family(tmp_path):
    alloy = resolve_config("cryingan", CryinGANConfig, preset="paper", family="alloy")
    interface = resolve_config("cryingan", CryinGANConfig, preset="paper", family="interface")
    assert (alloy.weight_dist, alloy.epochs, alloy.translation_grid) == (0.1, 1500, [4, 4, 4])
    assert (interface.weight_dist, interface.translation_grid) == (0.05, [])
    assert alloy.batch_size == 32 and alloy.bn_eps == 0.8 and alloy.g_lr == 5e-5
    assert alloy.gen_int == 5 and alloy.gp_weight == 10.0 and alloy.n_neighbors == 6
    f = tmp_path / "over.yaml"
    f.write_text("weight_dist: 0.0\n")
    over = resolve_config("cryingan", CryinGANConfig, preset="paper", family="alloy",
                          config_file=f)
    assert over.weight_dist == 0.0 and over.epochs == 1500
    with pytest.raises(ConfigError, match="no preset 'fast' for model 'cryingan'; available: "
                                          "cpu, paper, quick"):
        resolve_config("cryingan", CryinGANConfig, preset="fast")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        resolve_config("cryingan", CryinGANConfig, config_file=bad)


# ---------------------------------------------------------------------------- data checks
def test_training_data_errors(alloy):
    one = StructureSet(np.eye(3) * 5, ["Si"], np.zeros((3, 1, 3)))
    with pytest.raises(TrainingDataError, match="1 atom"):
        check_training_data(one, min_atoms=2)
    other_cell = StructureSet(np.eye(3) * 14.5, alloy.species, alloy.frac[:2])
    with pytest.raises(TrainingDataError, match="different cell"):
        check_training_data(alloy, other_cell)
    reordered = StructureSet(alloy.lattice, alloy.species[::-1], alloy.frac[:2])
    with pytest.raises(TrainingDataError, match="different species order"):
        check_training_data(alloy, reordered)
    with pytest.raises(TrainingDataError):
        create_model("cryingan", TINY).fit(one)


def test_extxyz_with_two_cells_is_one_line_error(tmp_path, alloy):
    from dismai.workflows import load_training_data

    atoms = alloy[:2].to_atoms()
    atoms[1].set_cell(np.eye(3) * 15.0, scale_atoms=False)
    from ase.io import write

    path = tmp_path / "two_cells.extxyz"
    write(path, atoms, format="extxyz")
    with pytest.raises(ValueError, match="structure 1: cell lengths .* differ") as exc:
        load_training_data(str(path))
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------- baselines
def test_random_baseline(alloy):
    m = create_model("random")
    with pytest.raises(ModelError, match="before sample"):
        m.sample(3)
    m.fit(alloy)
    a, b = m.sample(5, seed=1), m.sample(5, seed=1)
    assert np.array_equal(a.frac, b.frac) and not np.array_equal(a.frac, m.sample(5, 2).frac)
    assert a.species == alloy.species and np.allclose(a.lattice, alloy.lattice)
    assert a.frac.min() >= 0 and a.frac.max() < 1


def test_shuffled_lattice_baseline(alloy):
    m = create_model("shuffled-lattice")
    m.fit(alloy)
    s = m.sample(4, seed=0)
    sites = {tuple(r) for r in np.round(fcc.site_frac() * 8).astype(int)}
    for frac in s.frac:
        assert {tuple(r) for r in np.round(frac * 8).astype(int)} == sites  # a permutation
    assert s.composition == alloy.composition
    assert not np.array_equal(s.frac[0], s.frac[1])
    small = StructureSet(np.eye(3) * 5, ["Si", "Si"], np.random.default_rng(0).random((2, 2, 3)))
    with pytest.raises(TrainingDataError, match="4x4x4 FCC"):
        create_model("shuffled-lattice").fit(small)


# ---------------------------------------------------------------------------- files
def test_save_load_roundtrip(tmp_path, alloy):
    for name, cfg in (("random", None), ("cryingan", TINY)):
        m = create_model(name, cfg)
        m.fit(alloy[:8])
        m.save(tmp_path / f"{name}.pt")
        back = GenerativeModel.load(tmp_path / f"{name}.pt", device="cpu")
        assert type(back) is type(m) and back.config == m.config
        assert np.array_equal(back.sample(3, seed=4).frac, m.sample(3, seed=4).frac)


def test_corrupted_and_foreign_checkpoints(tmp_path, alloy):
    import torch

    m = create_model("cryingan", TINY)
    m.fit(alloy[:8])
    good = tmp_path / "good.pt"
    m.save(good)
    raw = good.read_bytes()
    cases = {
        "truncated.pt": raw[: len(raw) // 2],
        "garbage.pt": b"\x00\x01not a checkpoint" * 10,
        "empty.pt": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save({"format": "dismai-model", "version": 99}, tmp_path / "future.pt")
    for name in [*cases, "foreign.pt", "future.pt", "missing.pt"]:
        with pytest.raises(CheckpointError) as exc:
            GenerativeModel.load(tmp_path / name)
        assert "\n" not in str(exc.value) and name in str(exc.value)
    # right header, wrong weights
    payload = torch.load(good, weights_only=True)
    payload["state"] = {"generator.l1.weight": torch.zeros(2, 2)}
    torch.save(payload, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="do not fit|unknown part|Missing|size"):
        GenerativeModel.load(tmp_path / "wrong.pt")


def test_run_dir_is_never_overwritten(tmp_path, alloy):
    run = tmp_path / "run"
    create_model("cryingan", TINY).fit(alloy[:8], run_dir=run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(RunDirError, match="already holds a training run; pass --resume"):
        create_model("cryingan", TINY).fit(alloy[:8], run_dir=run)
    with pytest.raises(RunDirError, match=r"different config .*weight_dist: 0.05 -> 0.2"):
        create_model("cryingan", {**TINY, "weight_dist": 0.2}).fit(alloy[:8], run_dir=run,
                                                                   resume=True)
    with pytest.raises(RunDirError, match="different structures"):
        create_model("cryingan", TINY).fit(alloy[8:16], run_dir=run, resume=True)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert before == after
    # a bookkeeping key (epochs) may change on resume: training continues
    create_model("cryingan", {**TINY, "epochs": 2}).fit(alloy[:8], run_dir=run, resume=True)
    assert len((run / "losses.csv").read_text().splitlines()) == 3


# ---------------------------------------------------------------------------- CLI
def _app():
    from dismai.cli import app

    return app


def test_cli_train_sample_and_errors(tmp_path, alloy):
    app, runner = _app(), CliRunner()
    data = tmp_path / "train.extxyz"
    write_extxyz(alloy[:8], data)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in TINY.items()) + "\n")
    run = tmp_path / "run"

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    r = invoke("train", "cryingan", "--dataset", data, "--preset", "quick", "--config", cfg,
               "--out", run, "--quiet")
    assert r.exit_code == 0, r.output
    assert (run / "model.pt").exists() and (run / "losses.csv").exists()
    r = invoke("sample", run, "-n", 5, "--seed", 2, "-o", tmp_path / "gen.extxyz")
    assert r.exit_code == 0, r.output
    gen = read_extxyz(tmp_path / "gen.extxyz")
    assert len(gen) == 5 and gen.species == alloy.species
    r2 = invoke("sample", run, "-n", 5, "--seed", 2, "-o", tmp_path / "gen2.extxyz")
    assert r2.exit_code == 0
    assert np.allclose(read_extxyz(tmp_path / "gen2.extxyz").frac, gen.frac)

    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("epochz: 3\n")
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04 broken")
    for args in (
        ("train", "nomodel", "--dataset", data),
        ("train", "cryingan", "--dataset", data, "--config", bad_cfg, "--out", tmp_path / "x"),
        ("train", "cryingan", "--dataset", data, "--preset", "quick", "--config", cfg,
         "--out", run),  # exists, no --resume
        ("train", "cryingan", "--dataset", data, "--preset", "paper", "--out", run, "--resume"),
        ("sample", tmp_path / "broken.pt", "-n", 2, "-o", tmp_path / "y.extxyz"),
        ("sample", tmp_path / "nothing", "-n", 2, "-o", tmp_path / "y.extxyz"),
        ("bench", "cryingan", "--dataset", "no-such-dataset"),
    ):
        r = invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y.extxyz").exists()


class _FakeDataset:
    """Dataset-like object for the bench plumbing (no shipped data needed)."""

    def __init__(self, structures):
        from types import SimpleNamespace

        from dismai.families import get_family

        self.name, self.spec = "fake-alloy", SimpleNamespace(family="alloy")
        self.family = get_family("alloy")
        self.train, self.val = structures[:12], structures[12:]
        self.template = self.train[0]


def test_bench_plumbing_with_stub_evaluation(tmp_path, alloy, monkeypatch):
    import dismai.workflows as cm
    from dismai.evaluation import Evaluation
    from dismai.fileio import write_json

    calls = []

    def fake_evaluate(gen, dataset, n_generated, out, progress=True, **options):
        assert progress is False  # bench(progress=False) reaches every evaluation
        calls.append((len(gen), n_generated, out))
        res = Evaluation(dataset=dataset.name, family="alloy", n_input=len(gen),
                         n_final=len(gen), n_generated=n_generated,
                         metrics={"d_cluster": {"value": float(gen.frac.std()),
                                                "lower_error": 0.01, "upper_error": 0.02}},
                         noise_floor={"d_cluster": {"value": 0.001, "lower_error": None,
                                                    "upper_error": None}})
        write_json(out / "metrics.json", res.to_json())
        return res

    monkeypatch.setattr(cm, "evaluate", fake_evaluate)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in TINY.items()) + "\n")
    out = tmp_path / "bench"
    res = cm.bench("cryingan", _FakeDataset(alloy), preset="quick", config_file=cfg, n=6,
                       out=out, progress=False)
    assert [c[:2] for c in calls] == [(6, 6)] * 3
    for p in ("run/model.pt", "samples.extxyz", "metrics.json", "report.md",
              "baselines/random/metrics.json", "baselines/shuffled-lattice/metrics.json"):
        assert (out / p).exists(), p
    assert res["header"] == ["metric", "model", "noise floor (val vs train)", "random",
                             "shuffled-lattice"]
    report = (out / "report.md").read_text()
    assert "| d_cluster |" in report and "smoke configuration" in report
    # a second bench in the same folder reuses the finished run
    cm.bench("cryingan", _FakeDataset(alloy), preset="quick", config_file=cfg, n=6,
                 out=out, progress=False)


@requires_dataset("alloy-1500K-narrow")
def test_bench_cryingan_end_to_end(tmp_path):
    """CI-sized `dismai bench cryingan` on the shipped alloy dataset with real metrics."""
    app, runner = _app(), CliRunner()
    cfg = tmp_path / "ci.yaml"
    cfg.write_text("epochs: 1\nn_sample_dump: 2\n")
    out = tmp_path / "bench"
    r = runner.invoke(app, ["bench", "cryingan", "--dataset", "alloy-1500K-narrow", "--preset",
                            "quick", "--config", str(cfg), "--n", "40", "--out", str(out),
                            "--quiet"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_generated"] == 40 and "d_cluster" in m["metrics"]
    for b in ("random", "shuffled-lattice"):
        assert (out / "baselines" / b / "samples.extxyz").exists()
    assert "noise floor" in r.output and "shuffled-lattice" in r.output
    assert (out / "report.md").read_text().startswith("# dismai bench: cryingan")
