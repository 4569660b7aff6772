"""The masked-atom paper's reconstruction metrics (dismai.metrics.reconstruction): known
values on hand-made crystals, the corruption strategies, the whole pipeline with an oracle
network and a tiny trained model, and the CLI's one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dismai.crystals import Crystal, CrystalSet
from dismai.errors import InputError, ModelError
from dismai.metrics import reconstruction as rec
from dismai.models import ssl_reconstruction as srec

CUBE = np.eye(3) * 3.9


def perovskite(a: int = 38, b: int = 22, x: int = 8, cell=CUBE) -> Crystal:
    """An ABX3 perovskite (SrTiO3 by default), A at the corner, B at the body centre."""
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Crystal(cell, frac, [a, b, x, x, x])


def moved(c: Crystal, cart_shift, numbers=None) -> Crystal:
    frac = c.frac + np.asarray(cart_shift, dtype=float) @ np.linalg.inv(c.lattice)
    return Crystal(c.lattice, frac, c.numbers if numbers is None else numbers)


# ---------------------------------------------------------------------------- known values
def test_perfect_reconstruction_scores_one():
    o = perovskite()
    sim = rec.structural_similarity([o, o], [o, o], [0.2, 0.3])
    assert rec.composition_similarity([o, o], [o, o]) == 1.0
    for k in ("eqn5", "matched", "all"):
        assert sim[f"structural_similarity_{k}"] == pytest.approx(1.0, abs=1e-12)


def test_known_displacement_gives_known_similarity():
    o = perovskite()
    shift = np.zeros((5, 3))
    shift[0] = [0.3, 0.0, 0.4]  # 0.5 Å for one atom of five: mean deviation 0.1 Å
    r = moved(o, shift)
    assert rec.min_image_deviation(o, r) == pytest.approx([0.5, 0, 0, 0, 0], abs=1e-12)
    sim = rec.structural_similarity([o], [r], [0.4])  # S = 0.4 Å: 1 - 0.1 / 0.4
    assert sim["structural_similarity_matched"] == pytest.approx(0.75)
    assert sim["structural_similarity_eqn5"] == pytest.approx(0.75)


def test_periodic_wrap_is_the_minimum_image():
    o = Crystal(CUBE, [[0.99, 0.5, 0.5], [0.5, 0.01, 0.5]], [8, 8])
    r = Crystal(CUBE, [[0.01, 0.5, 0.5], [0.5, 0.99, 0.5]], [8, 8])  # across the faces
    assert rec.min_image_deviation(o, r) == pytest.approx([0.078, 0.078])
    # a strongly skewed cell: rounding alone is not the nearest image; brute force agrees
    cell = np.array([[4.0, 0, 0], [3.6, 1.2, 0], [0.5, 0.4, 3.0]])
    rng = np.random.default_rng(0)
    a, b = rng.random((40, 3)), rng.random((40, 3))
    got = rec.min_image_deviation(Crystal(cell, a, [1] * 40), Crystal(cell, b, [1] * 40))
    shifts = np.array(np.meshgrid(*[np.arange(-3, 4)] * 3)).reshape(3, -1).T
    brute = np.linalg.norm(((b - a)[:, None] + shifts[None]) @ cell, axis=-1).min(1)
    assert got == pytest.approx(brute, abs=1e-12)
    assert (np.linalg.norm(((b - a) - np.round(b - a)) @ cell, axis=-1) > brute + 1e-6).any()


def test_a_swapped_species_counts_literally_as_similarity_one():
    o = perovskite()
    r = moved(o, np.full((5, 3), 0.1), numbers=[22, 38, 8, 8, 8])  # A and B swapped
    assert rec.composition_similarity([o], [r]) == 0.0
    sim = rec.structural_similarity([o], [r], [0.1 * math.sqrt(3)])
    assert sim["structural_similarity_eqn5"] == 1.0  # Eqn 5 read literally: adds 0
    assert math.isnan(sim["structural_similarity_matched"])  # nothing to average
    assert sim["structural_similarity_all"] == pytest.approx(0.0, abs=1e-12)
    # two samples: matched with d / S = 0.5, changed with d / S = 0.2
    r1 = moved(o, np.tile([0.05, 0, 0], (5, 1)))
    r2 = moved(o, np.tile([0.02, 0, 0], (5, 1)), numbers=[56, 22, 8, 8, 8])
    sim = rec.structural_similarity([o, o], [r1, r2], [0.1, 0.1])
    assert sim["structural_similarity_eqn5"] == pytest.approx(1 - 0.5 / 2)
    assert sim["structural_similarity_matched"] == pytest.approx(0.5)
    assert sim["structural_similarity_all"] == pytest.approx(1 - 0.35)


def test_bad_pairs_are_refused():
    o = perovskite()
    with pytest.raises(InputError, match="noise scale"):
        rec.structural_similarity([o], [o], [0.0])
    with pytest.raises(InputError, match="cell"):
        rec.composition_matches([o], [perovskite(cell=CUBE * 1.01)])


def test_validity_rates():
    o = perovskite()
    squashed = Crystal(CUBE, np.r_[o.frac[:4], [[0.52, 0.5, 0.5]]], o.numbers)  # 0.08 Å
    rates = rec.validity_rates([o, squashed, perovskite(38, 22, 9)])  # SrTiF3 not neutral
    assert rates == pytest.approx({"structure_valid": 2 / 3, "composition_valid": 2 / 3,
                                   "valid": 1 / 3})


def test_replacement_matrix_counts_masked_changed_sites_of_kept_pairs():
    o = perovskite()
    mask = np.array([1, 1, 0, 0, 0], bool)  # A and B masked
    recons = [Crystal(CUBE, o.frac, [56, 22, 8, 8, 8]),   # Sr -> Ba
              Crystal(CUBE, o.frac, [56, 40, 8, 8, 8]),   # Sr -> Ba, Ti -> Zr
              Crystal(CUBE, o.frac, [20, 22, 9, 8, 8]),   # Sr -> Ca; O -> F unmasked: left out
              Crystal(CUBE, o.frac, [12, 22, 8, 8, 8])]   # not kept
    counts = rec.replacement_counts([o] * 4, recons, [mask] * 4,
                                    keep=np.array([1, 1, 1, 0], bool))
    assert counts == {(38, 56): 2, (22, 40): 1, (38, 20): 1}
    rows = {(r["from"], r["to"]): r for r in rec.replacement_records(counts)}
    assert rows[("Sr", "Ba")]["fraction"] == pytest.approx(2 / 3)
    assert rows[("Ti", "Zr")]["fraction"] == 1.0


def test_substitution_table_and_comparison():
    table = rec.substitution_probabilities()
    known = table.sum(1) > 0
    assert np.allclose(table[known].sum(1), 1) and (np.diag(table) == 0).all()
    assert {20, 56} & set(np.argsort(-table[38])[:3].tolist())  # Sr: Ca or Ba among top 3
    # counts that follow the table's own ranking agree perfectly
    counts = {}
    for a in (38, 22, 8):
        for rank, b in enumerate(np.argsort(-table[a])[:4]):
            counts[(a, int(b))] = 10 * (4 - rank)
    cmp = rec.compare_with_substitution(counts)
    assert cmp["top3_overlap"] == 1.0 and cmp["top1_in_table_top3"] == 1.0
    assert cmp["n_pairs"] == 12 and cmp["spearman"] > 0.5
    reverse = {(a, b): 50 - n for (a, b), n in counts.items()}
    assert rec.compare_with_substitution(reverse)["top1_in_table_top3"] < 1


def test_energy_of_crystals_from_a_function():
    o = perovskite()
    e = rec.crystal_energies([o, o], lambda cs: [c.n_atoms * 1.0 for c in cs])
    assert e.tolist() == [5.0, 5.0]


def test_chgnet_energy_per_atom():
    pytest.importorskip("chgnet")
    o = perovskite()
    squeezed = Crystal(CUBE * 0.9, o.frac, o.numbers)
    e = rec.crystal_energies([o, squeezed], "chgnet")
    assert -10 < e[0] < -5 and e[1] > e[0] + 0.1  # SrTiO3 near -8 eV/atom; compressed is higher


# ---------------------------------------------------------------------------- corruption
def test_corruption_strategies():
    crystals = [perovskite(), perovskite(56, 40, 8), Crystal(CUBE, [[0, 0, 0], [0.5, 0.5, 0.5]],
                                                             [6, 6])]
    g = torch.Generator().manual_seed(0)
    sample_of, batch, mask, noisy, noise = srec.corrupt(crystals, "alpha", 5, 0.1, g)
    assert sample_of.tolist() == [0, 0, 0, 1, 1, 1, 2]  # one sample per species
    own = batch.batch
    masked_species = [set(batch.numbers[mask & (own == s)].tolist()) for s in range(7)]
    assert masked_species == [{8}, {22}, {38}, {8}, {40}, {56}, {6}]
    for s in range(7):  # every atom of that species
        sel = own == s
        assert torch.equal(mask[sel], batch.numbers[sel] == next(iter(masked_species[s])))
    for strategy, k in (("beta", 1), ("gamma", 2)):  # ceil(0.15 * 5), ceil(0.3 * 5)
        g = torch.Generator().manual_seed(1)
        sample_of, batch, mask, noisy, noise = srec.corrupt(crystals[:2], strategy, 4, 0.1, g)
        assert len(sample_of) == 8
        per = torch.zeros(8, dtype=torch.long).index_add_(0, batch.batch, mask.long())
        assert (per == k).all()
    # sigma = 0.1 d_min (1.95 Å for the cube): noise of that scale, wrapped positions
    assert noise.std().item() == pytest.approx(0.195, rel=0.3)
    with pytest.raises(InputError, match="masking"):
        srec.corrupt(crystals, "delta", 1, 0.1, g)
    with pytest.raises(InputError, match="noise ratio"):
        srec.corrupt(crystals, "beta", 1, 0.0, g)


class OracleNet(torch.nn.Module):
    """Returns the true species and the true fractional noise of the corrupted samples of
    `corrupt` (in their order), or no noise and hydrogen with `oracle=False`."""

    aggregate = "node"

    def __init__(self, numbers, frac_noise, oracle=True):
        super().__init__()
        self.vector = torch.nn.Identity()
        self.numbers, self.frac_noise, self.oracle, self.at = numbers, frac_noise, oracle, 0

    def forward(self, numbers, pos, cell, natoms):
        a, b = self.at, self.at + len(numbers)
        self.at = b
        z = self.numbers[a:b] if self.oracle else torch.ones(b - a, dtype=torch.long)
        vec = self.frac_noise[a:b] if self.oracle else torch.zeros(b - a, 3)
        return {"node": torch.nn.functional.one_hot(z - 1, 118).float(), "vector": vec}


class FakeModel:
    name = "oracle"
    _dev = torch.device("cpu")

    def __init__(self, net):
        self.net = net

    def _sampler(self):
        return self.net


def off_lattice(crystals):
    """A stand-in energy per atom: squared distance (fractional) off the half-integer grid
    of the perovskites above."""
    return [float(np.mean(np.square(c.frac * 2 - np.round(c.frac * 2)))) for c in crystals]


def test_pipeline_with_an_oracle_and_a_do_nothing_network():
    crystals = [perovskite(), perovskite(56, 40, 8), perovskite(20, 22, 8)]
    g = torch.Generator().manual_seed(3)
    _, batch, _, _, noise = srec.corrupt(crystals, "beta", 2, 0.1, g)
    owner = batch.batch
    frac_noise = torch.einsum("ti,tij->tj", noise, torch.linalg.inv(batch.cell)[owner])
    for oracle in (True, False):
        model = FakeModel(OracleNet(batch.numbers, frac_noise, oracle))
        r = srec.evaluate_reconstruction(model, crystals, masking="beta", repeats=2, seed=3,
                                        batch_size=4, energy=off_lattice)
        assert r["n_samples"] == 6 and r["n_masked"] == 6
        assert r["energy"]["energy_per_atom_original"] == pytest.approx(0, abs=1e-20)
        assert r["energy"]["delta_e_per_atom_noisy_input"] > 1e-4
        if oracle:
            assert r["composition_similarity"] == 1.0 and r["masked_accuracy"] == 1.0
            assert r["structural_similarity_all"] == pytest.approx(1.0, abs=1e-9)
            assert r["valid"] == 1.0 and r["n_valid_changed"] == 0
            assert r["energy"]["delta_e_per_atom_matched"] == pytest.approx(0, abs=1e-15)
        else:  # noisy input returned as is: similarity 0; every atom became hydrogen
            assert r["structural_similarity_all"] == pytest.approx(0.0, abs=1e-9)
            assert r["composition_similarity"] == 0.0 and r["unmasked_changed"] == 1.0
            assert r["structural_similarity_eqn5"] == 1.0


def _rounded(obj) -> str:
    """obj as JSON with every float to 6 significant figures."""
    return json.dumps(_round(obj), sort_keys=True)


def _round(o):
    if isinstance(o, float):
        return float(f"{o:.6g}")
    if isinstance(o, dict):
        return {k: _round(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_round(v) for v in o]
    return o


def test_tiny_trained_model_end_to_end_and_cli(tmp_path):
    from dismai.cli import app
    from dismai.models import create_model
    from dismai.models.baselines import RandomBaseline
    from dismai.testing import toy_crystals, toy_structures

    train = CrystalSet([c for c in toy_crystals(12, seed=5) if c.n_atoms >= 2], "toy")
    tiny = {"epochs": 1, "batch_size": 4, "layers": 1, "channels": 8, "hidden": 8,
            "heads": 2, "alpha_channels": 4, "value_channels": 4, "ffn_hidden": 8, "lmax": 1,
            "mmax": 1, "edge_channels": 8, "n_distance": 8, "activation": "gate",
            "checkpoint_minutes": 0.0, "device": "cpu", "seed": 0}
    m = create_model("ssl-pretrain", tiny)
    m.fit(train, run_dir=tmp_path / "run")
    test = CrystalSet([perovskite(), perovskite(56, 40, 8), perovskite(20, 22, 9)], "abx3")
    a = srec.evaluate_reconstruction(m, test, masking="beta", repeats=2, seed=1)
    assert json.dumps(a) == json.dumps(srec.evaluate_reconstruction(
        m, test, masking="beta", repeats=2, seed=1))  # deterministic under the seed
    b = srec.evaluate_reconstruction(m, test, masking="beta", repeats=2, seed=1, batch_size=2)
    assert _rounded(a) == _rounded(b)  # same corruptions whatever the batch (float32 sums)
    c = srec.evaluate_reconstruction(m, test, masking="beta", repeats=2, seed=2)
    assert c["mean_noise_angstrom"] != a["mean_noise_angstrom"]
    a = srec.evaluate_reconstruction(m, test, masking="alpha", seed=1)
    assert a["n_samples"] == 9 and 0 <= a["composition_similarity"] <= 1
    assert a["originals"]["composition_valid"] == pytest.approx(2 / 3)
    with pytest.raises(ModelError, match="not a masked-atom model"):
        srec.evaluate_reconstruction(FakeModel(torch.nn.Linear(2, 2)), test)

    runner = CliRunner()
    csv = tmp_path / "abx3.csv"
    test.to_csv(csv)
    out = tmp_path / "rec.json"
    r = runner.invoke(app, ["evaluate-reconstruction", str(tmp_path / "run"), "--dataset",
                            str(csv), "--masking", "gamma", "--repeats", "2", "--n", "2",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["n_crystals"] == 2 and res["n_samples"] == 4 and res["masking"] == "gamma"
    assert "structural_similarity_matched" in r.output

    RandomBaseline().fit(toy_structures(3), run_dir=tmp_path / "random")
    create_model("ssl", {**tiny, "sample_steps": 1}).fit(  # an ssl model of one template
        toy_structures(3), run_dir=tmp_path / "template")
    for args, msg in (([tmp_path / "random"], "random is not a masked-atom model"),
                      ([tmp_path / "template"], "learns one fixed template"),
                      ([tmp_path / "run", "--noise", "0"], "--noise must be > 0"),
                      ([tmp_path / "run", "--masking", "delta"], "--masking must be"),
                      ([tmp_path / "run", "--dataset", "a-si-64"],
                       "not a general-crystal dataset")):
        r = runner.invoke(app, ["evaluate-reconstruction", *map(str, args)])
        assert r.exit_code == 2, r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], r.output
