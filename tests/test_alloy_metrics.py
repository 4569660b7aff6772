"""Alloy benchmark evaluation (spec benchmark-metrics.md §2-5): known-answer cases."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dismai import fcc
from dismai.datasets.alloy_recipe import random_site_species, structures_from_site_species
from dismai.energy.cluster_expansion import (
    COLUMNS,
    ECI,
    PAIR_INDEX,
    SPECIES,
    count_vector,
    formation_energy,
)
from dismai.extxyz import write_extxyz
from dismai.metrics.alloy.clusters import cluster_counts, rotated_star, star_vectors
from dismai.metrics.alloy.evaluate import evaluate
from dismai.metrics.alloy.lattice_match import (
    match_as_is,
    match_lattice,
    match_rotated,
    match_translated,
    misalignment_deg,
    nearest_fcc_point,
    rotated_reference,
)
from dismai.metrics.alloy.reference import build_reference
from dismai.metrics.alloy.report import (
    binned_percentages,
    energy_histogram,
    per_structure_csv,
)
from dismai.metrics.alloy.sro import warren_cowley
from dismai.structures import StructureError, StructureSet

L = fcc.CELL_LENGTH
N = fcc.N_SITES
SYMBOLS = np.array(SPECIES)


def lattice_set(site_species, noise: float = 0.0, seed: int = 0) -> StructureSet:
    """Structures with atoms on the sites of `site_species` rows (-1 = no atom), block order.

    Works for any composition (shared by all rows) and for structures with fewer atoms.
    """
    s = np.atleast_2d(np.asarray(site_species))
    comp = [np.sort(row[row >= 0]) for row in s]
    assert all(np.array_equal(comp[0], c) for c in comp), "rows need one composition"
    frac = []
    for row in s:
        sites = np.flatnonzero(row >= 0)
        sites = sites[np.argsort(row[sites], kind="stable")]
        frac.append(fcc.site_frac()[sites])
    frac = np.array(frac)
    if noise:
        frac = frac + np.random.default_rng(seed).normal(0, noise / L, frac.shape)
    return StructureSet(fcc.lattice_matrix(), tuple(SYMBOLS[comp[0]]), frac)


def site_species_of(structures: StructureSet) -> np.ndarray:
    return match_as_is(structures).site_species.astype(np.int64)


@pytest.fixture(scope="module")
def reference():
    s = random_site_species(60, seed=42)
    return build_reference(structures_from_site_species(s[:40]),
                           structures_from_site_species(s[40:]))


# ----------------------------------------------------------------------------- geometry
def test_nearest_fcc_point_is_nearest():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 11, (400, 3))
    r = nearest_fcc_point(x)
    assert (r.sum(axis=1) % 2 == 0).all()
    g = np.arange(-5, 14)
    cand = np.array(np.meshgrid(g, g, g, indexing="ij")).reshape(3, -1).T
    cand = cand[cand.sum(axis=1) % 2 == 0]  # every D3 point around the sampled box
    best = np.min(np.linalg.norm(x[:, None, :] - cand[None, :, :], axis=2), axis=1)
    assert np.allclose(np.linalg.norm(x - r, axis=1), best, atol=1e-12)


# ----------------------------------------------------------------------------- counts
def test_random_alloy_pair_counts_match_hypergeometric():
    """Mean counts over random arrangements = exact fixed-composition expectation (§3.3)."""
    s = random_site_species(600, seed=1).astype(np.int64)
    counts = count_vector(s)
    n_x = np.array([51, 154, 51])
    expected = list(n_x / N)
    for m_k in fcc.MULTIPLICITY:
        for a, b in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)):
            if a == b:
                expected.append(m_k * n_x[a] * (n_x[a] - 1) / (N * (N - 1)))
            else:
                expected.append(m_k * 2 * n_x[a] * n_x[b] / (N * (N - 1)))
    expected = np.array(expected)
    err = counts.std(axis=0) / np.sqrt(len(counts))
    assert np.all(np.abs(counts.mean(axis=0) - expected) <= 5 * err + 1e-5)
    # per-shell probabilities sum to one on a perfect lattice (§4.1)
    probs = counts[:, 3:].reshape(-1, 7, 6).sum(axis=2) / np.array(fcc.MULTIPLICITY)
    assert np.allclose(probs, 1.0, atol=5e-5)
    # the ideal-random-alloy sanity value of the spec (§4.2): E_f ~ -0.0600 eV/atom
    assert formation_energy(expected) == pytest.approx(-0.0600, abs=5e-4)


def test_random_alloy_sro_near_zero():
    s = random_site_species(600, seed=2).astype(np.int64)
    sro = warren_cowley(count_vector(s))
    # fixed composition: p(Y|X) = n_Y/(N-1), p(X|X) = (n_X-1)/(N-1) in expectation, and
    # alpha is linear in the counts here, so E[alpha] is exact
    n = {"Cr": 51, "Fe": 154, "Ni": 51}
    exp = []
    for pair in ("Fe-Ni", "Cr-Fe", "Cr-Ni", "Fe-Fe", "Cr-Cr", "Ni-Ni"):
        x, y = pair.split("-")
        exp.append(1 - N / (N - 1) if x != y else 1 - N * (n[x] - 1) / ((N - 1) * n[x]))
    exp = np.array(exp * 2)
    err = sro.std(axis=0) / np.sqrt(len(sro))
    assert np.all(np.abs(sro.mean(axis=0)) < 0.03)
    assert np.all(np.abs(sro.mean(axis=0) - exp) <= 5 * err + 1e-6)


def l12_sites() -> np.ndarray:
    """L1_2 (Cu3Au-type): Cr on cube corners (all grid coordinates even), Fe on face centres."""
    g = fcc.site_grid()
    return np.where((g % 2 == 0).all(axis=1), 0, 1)


def test_l12_counts_by_hand():
    c = count_vector(l12_sites())[0]
    col = dict(zip(COLUMNS, c, strict=True))
    # corners (64) have only face-centre 1NN, 3NN, 5NN, 7NN neighbours; parity-preserving
    # shells (2NN, 4NN, 6NN) connect like sites only.  Face centres have 4/12, 8/24, 8/24,
    # 16/48 corner neighbours in shells 1, 3, 5, 7 (see the test docstring arithmetic).
    hand = {
        "0NN_Cr": 0.25, "0NN_Fe": 0.75,
        "1NN_Cr-Fe": 64 * 12 / 256, "1NN_Fe-Fe": 192 * 8 / 2 / 256,
        "2NN_Cr-Cr": 64 * 6 / 2 / 256, "2NN_Fe-Fe": 192 * 6 / 2 / 256,
        "3NN_Cr-Fe": 64 * 24 / 256, "3NN_Fe-Fe": 192 * 16 / 2 / 256,
        "4NN_Cr-Cr": 64 * 12 / 2 / 256, "4NN_Fe-Fe": 192 * 12 / 2 / 256,
        "5NN_Cr-Fe": 64 * 24 / 256, "5NN_Fe-Fe": 192 * 16 / 2 / 256,
        "6NN_Cr-Cr": 64 * 8 / 2 / 256, "6NN_Fe-Fe": 192 * 8 / 2 / 256,
        "7NN_Cr-Fe": 64 * 48 / 256, "7NN_Fe-Fe": 192 * 32 / 2 / 256,
    }
    for name, value in col.items():
        assert value == pytest.approx(hand.get(name, 0.0)), name
    assert (hand["1NN_Cr-Fe"], hand["1NN_Fe-Fe"], hand["2NN_Cr-Cr"]) == (3.0, 3.0, 0.75)


def test_l12_energy_by_hand():
    """E_f = eci0 + sum eci_i count_i (§4.2), with the ECIs read off the spec table."""
    e_hand = (
        -0.00932958469464057
        + 3.0 * -0.006093130106866821  # 1NN Cr-Fe (1NN Fe-Fe ECI is 0)
        + 0.75 * -0.03477817417403486  # 2NN Cr-Cr
        + 2.25 * -0.0006455514901675906  # 2NN Fe-Fe
        + 6.0 * -0.005292076441853677  # 3NN Cr-Fe
        + 6.0 * 0.0005925701791865664  # 5NN Cr-Fe
        + 6.0 * -0.0005707393430416303  # 5NN Fe-Fe
        + 12.0 * -0.0018490697130025958  # 7NN Cr-Fe
        + 12.0 * 0.0003351340012252481  # 7NN Fe-Fe
    )  # 3NN Fe-Fe, 4NN, 6NN like pairs: ECI 0
    e = formation_energy(count_vector(l12_sites()))[0]
    assert e == pytest.approx(e_hand, abs=1e-15)
    assert e == pytest.approx(-0.104934, abs=1e-6)  # summed on paper
    assert len(ECI) == 46


# ----------------------------------------------------------------------------- off-lattice
def brute_force_counts(pos: np.ndarray, spec: np.ndarray, basis=None) -> np.ndarray:
    """§3.3 by brute force: every target against every atom, minimum image."""
    vecs = rotated_star(basis)
    _, shell = star_vectors()
    n = len(pos)
    raw = np.zeros((7, 6))
    for j in range(n):
        t = np.mod(np.round((pos[j] + vecs) / L, 3), 1.0) * L + 1e-6
        delta = pos[None, :, :] - t[:, None, :]
        delta -= L * np.rint(delta / L)
        d = np.linalg.norm(delta, axis=2)
        best = np.argmin(d, axis=1)
        ok = d[np.arange(len(t)), best] < 0.8
        np.add.at(raw, (shell[ok], PAIR_INDEX[spec[j], spec[best[ok]]]), 1)
    return np.round(np.concatenate([np.bincount(spec, minlength=3) / n,
                                    (raw / (2 * n)).ravel()]), 5)


def test_kdtree_counts_match_brute_force_on_noisy_structure():
    s = random_site_species(1, seed=3)[0].astype(np.int64)
    s[[5, 77, 130]] = -1
    st = lattice_set(s, noise=0.28, seed=1)  # large noise: some targets miss (>0.8 Å)
    pos = np.mod(st.frac[0] * L, L)
    spec = np.searchsorted(SPECIES, np.array(st.species))
    basis = np.eye(3)
    counts, has_vac, vac, _ = cluster_counts(pos, spec, basis=basis)
    assert np.array_equal(counts, brute_force_counts(pos, spec, basis))
    assert has_vac and vac >= 3
    assert counts[3:].reshape(7, 6).sum() < sum(fcc.MULTIPLICITY)  # some pairs missed


def test_both_count_paths_agree_on_snapped_structures():
    s = random_site_species(4, seed=4).astype(np.int64)
    s[1, :20] = -1  # vacancies, some adjacent
    s[2, ::9] = -1
    exact = count_vector(s)
    for k in range(len(s)):
        ok = s[k] >= 0
        c, has_vac, vac, basis = cluster_counts(fcc.site_frac()[ok] * L, s[k][ok])
        assert np.array_equal(c, exact[k])
        assert vac == int((~ok).sum()) and has_vac == bool((~ok).any())
        assert misalignment_deg(basis) == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------------------- lattice matching
def test_vacancies_counted_exactly():
    s = random_site_species(1, seed=5)[0].astype(np.int64)
    removed = np.random.default_rng(0).choice(N, 7, replace=False)
    s[removed] = -1
    st = lattice_set(s, noise=0.05)
    assert st.n_atoms == 249  # built directly: not a dataset template
    exact = count_vector(s)[0]
    for m in (match_as_is(st), match_translated(st)):
        assert m.vac_count[0] == 7 and m.accepted[0]
        assert np.array_equal(m.site_species[0], s)
    rot = match_rotated(st)
    assert rot.accepted[0] and rot.n_removed[0] == 7
    c, has_vac, vac, _ = cluster_counts(rot.positions[0], rot.species[0])
    assert has_vac and vac == 7
    assert np.array_equal(c, exact)
    ev = evaluate(st, {"train_mean_probability": [0.0] * 45}, lattice_match="as-is")
    assert ev.vac_count[0] == 7 and ev.metrics["pct_vacancy"]["value"] == 100.0


def test_translation_recovered_by_translated_variant():
    s = random_site_species(3, seed=6).astype(np.int64)
    st = lattice_set(s)
    moved = st.with_frac(st.frac + np.array([0.9, 0.9, 0.3]) / L)  # 1.3 Å off every site
    assert (match_as_is(moved).vac_count == N).all()
    tr = match_translated(moved)
    assert (tr.vac_count == 0).all()
    assert np.array_equal(count_vector(tr.site_species), count_vector(s))
    auto = match_lattice(moved, "auto")
    assert auto.variant == "translated" and "translated" in auto.note


def test_rotated_variant_recovers_symmetric_rotation():
    """90° about z + translation + 0.02 Å noise: every atom accepted, counts unchanged."""
    s = random_site_species(2, seed=7).astype(np.int64)
    st = lattice_set(s, noise=0.02, seed=3)
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    frac = (st.frac - 0.5) @ rot.T + 0.5 + np.array([0.031, -0.017, 0.052])
    m = match_rotated(st.with_frac(frac))
    assert m.accepted.all() and (m.n_removed == 0).all()
    for k in range(2):
        c, has_vac, vac, _ = cluster_counts(m.positions[k], m.species[k])
        assert not has_vac and vac == 0
        assert np.array_equal(c, count_vector(s[k])[0])


def test_rotated_variant_on_generic_rotation():
    """A 17° rotated crop of the lattice: the axes are found and every atom is kept."""
    r = Rotation.from_rotvec(np.radians(17) * np.array([1, 2, 3]) / np.sqrt(14)).as_matrix()
    pts = rotated_reference(r)
    n = len(pts)
    rng = np.random.default_rng(8)
    base = np.repeat([0, 1, 2], [n // 5, n - 2 * (n // 5), n // 5])
    sp = np.stack([rng.permutation(base) for _ in range(3)])
    frac = np.stack([pts[np.argsort(row, kind="stable")] for row in sp])
    frac = frac + rng.normal(0, 0.01 / L, frac.shape)
    st = StructureSet(fcc.lattice_matrix(), tuple(SYMBOLS[np.sort(base)]), frac)
    m = match_rotated(st)
    assert m.accepted.all()
    assert all(len(p) == n for p in m.positions)  # n_removed may be negative (§2.3 F)
    assert (m.n_removed == N - n).all()
    for b in m.basis:
        assert misalignment_deg(b) > 5
        perm = b @ r.T  # rows of b are rows of r up to a signed permutation
        assert np.allclose(np.abs(perm).max(axis=1), 1.0, atol=1e-3)
    auto = match_lattice(st, "auto")
    assert auto.variant == "rotated", auto.note


def test_more_than_50_off_lattice_atoms():
    s = random_site_species(2, seed=9).astype(np.int64)
    st = lattice_set(s)
    frac = st.frac.copy()
    frac[0, -60:, 0] += 0.125  # 60 atoms to octahedral interstitials, 1.8 Å from any site
    frac[1, -40:, 0] += 0.125  # 40 atoms
    st = st.with_frac(frac)
    m = match_rotated(st)
    assert m.status.tolist() == ["too-many-removed", "ok"]
    assert m.n_removed.tolist() == [60, 40]
    asis = match_as_is(st)
    assert asis.vac_count.tolist() == [60, 40] and asis.accepted.all()
    ev = evaluate(st, {"train_mean_probability": [0.0] * 45}, lattice_match="rotated",
                  n_generated=4)
    assert ev.metrics["pct_failed"]["value"] == pytest.approx(75.0)  # 1 of 4 survives
    assert ev.vac_count.tolist() == [-1, 40]  # §3.5 estimate on the accepted structure
    assert ev.metrics["pct_vacancy"]["value"] == 100.0
    assert np.isnan(ev.counts[0]).all()
    ev2 = evaluate(st, {"train_mean_probability": [0.0] * 45}, lattice_match="as-is")
    assert ev2.metrics["pct_failed"]["value"] == 0.0


def test_self_exclusion_switch():
    st = structures_from_site_species(random_site_species(1, seed=10))
    assert match_as_is(st).vac_count[0] == 0
    # reference quirk §9.6: atom 0 exactly on its site is invisible to that site's query
    assert match_as_is(st, self_exclusion=True).vac_count[0] == 1
    moved = st.with_frac(st.frac + 0.01 / L)
    assert match_as_is(moved, self_exclusion=True).vac_count[0] == 0


def test_bad_inputs():
    st = structures_from_site_species(random_site_species(1, seed=11))
    with pytest.raises(ValueError, match="lattice_match"):
        match_lattice(st, "sideways")
    other = StructureSet(np.eye(3) * 10.0, st.species, st.frac)
    with pytest.raises(ValueError, match="14.4"):
        match_as_is(other)
    al = StructureSet(st.lattice, ("Al",) * 256, st.frac)
    with pytest.raises(ValueError, match="Al"):
        match_as_is(al)
    with pytest.raises(ValueError, match="n_generated"):
        evaluate(st, {"train_mean_probability": [0.0] * 45}, n_generated=0)


# ----------------------------------------------------------------------------- metrics
def test_evaluate_metrics_and_reference(reference):
    assert json.loads(json.dumps(reference)) == reference
    assert len(reference["train_mean_probability"]) == 45
    assert len(reference["train_sro"]) == 40 and len(reference["train_sro"][0]) == 12
    assert reference["noise_floor"]["pct_failed"]["value"] == 0.0
    gen = structures_from_site_species(random_site_species(30, seed=12))
    noisy = gen.with_frac(gen.frac + np.random.default_rng(1).normal(0, 0.1 / L, gen.frac.shape))
    ev = evaluate(noisy, reference, n_generated=60)
    assert ev.lattice_match == "as-is"
    assert ev.metrics["pct_failed"] == {"value": 50.0, "lower_error": None, "upper_error": None}
    assert ev.metrics["pct_vacancy"]["value"] == 0.0
    d = ev.metrics["d_cluster"]
    expect = np.linalg.norm(ev.probabilities.mean(axis=0)
                            - np.array(reference["train_mean_probability"]))
    assert d["value"] == pytest.approx(expect, rel=1e-12)
    assert d["lower_error"] is not None and d["upper_error"] is not None
    assert np.array_equal(ev.counts, count_vector(random_site_species(30, seed=12)))
    assert ev.sro.shape == (30, 12) and ev.formation_energy.shape == (30,)
    csv = per_structure_csv(ev).splitlines()
    assert len(csv) == 31 and len(csv[0].split(",")) == 6 + 12 + 45
    from dismai.evaluation import format_table

    table = format_table(ev.metrics, reference["noise_floor"], {"pct_failed": "% failed"})
    assert "d_cluster" in table and "% failed" in table and "noise floor" in table


def test_energy_histogram_binning():
    pct, n_in = binned_percentages(np.array([-5.0, -4.5, -4.4, 15.0, 15.1, -6.0, 0.0, np.nan]))
    assert n_in == 5 and len(pct) == 40
    assert pct[0] == pytest.approx(40.0)  # -5 (include_lowest) and -4.5 (right-closed)
    assert pct[1] == pytest.approx(20.0)  # -4.4
    assert pct[-1] == pytest.approx(20.0)  # 15.0
    assert pct[9] == pytest.approx(20.0)  # 0.0 falls in (-0.5, 0]
    assert pct.sum() == pytest.approx(100.0)
    pct, n_in = energy_histogram(np.array([-0.06, -0.0598]), -0.06)  # 0 and +0.2 meV/atom
    assert n_in == 2 and pct[9] == pct[10] == 50.0


# ----------------------------------------------------------------------------- dispatcher
def test_evaluate_structures_writes_outputs(tmp_path, reference):
    from dismai.evaluation import evaluate_structures
    from dismai.families import get_family

    gen = structures_from_site_species(random_site_species(12, seed=13))
    ds = SimpleNamespace(name="alloy-test", family=get_family("alloy"),
                         reference=reference, template=gen[0])
    out = evaluate_structures(gen, ds, n_generated=15, out_dir=tmp_path).to_json()
    assert list(out) == ["schema_version", "dataset", "label", "n_input", "n_generated",
                         "lattice_match", "metrics", "noise_floor", "provenance"]
    assert out["schema_version"] == 2 and out["provenance"]["dataset"]["name"] == "alloy-test"
    assert (out["dataset"], out["n_input"], out["n_generated"]) == ("alloy-test", 12, 15)
    assert set(out["metrics"]) == {"d_cluster", "pct_vacancy", "pct_failed"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == out
    for name in ("per_structure.csv", "sro_1NN.png", "sro_2NN.png", "energy_histogram.png",
                 "metrics.txt", "plot_data.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporaries
    with pytest.raises(ValueError, match="at least"):
        evaluate_structures(gen, ds, n_generated=5)


def test_evaluate_file_against_built_dataset(tmp_path, monkeypatch, reference):
    from dismai.datasets import registry
    from dismai.families.base import reference_header
    from dismai.workflows import evaluate_file

    name = "alloy-300K-narrow"
    data = tmp_path / "data"
    data.mkdir()
    raw = random_site_species(60, seed=42)
    np.save(data / f"{name}.npy", raw)
    sha = hashlib.sha256((data / f"{name}.npy").read_bytes()).hexdigest()
    (data / f"{name}.json").write_text(json.dumps({"sha256": sha, "n_train": 40}))
    ref = {**reference_header("alloy", name, 256, 40, 20), **reference}
    (data / f"{name}.reference.json").write_text(json.dumps(ref))
    monkeypatch.setattr(registry, "DATA_DIR", data)
    gen = structures_from_site_species(random_site_species(5, seed=14))
    path = tmp_path / "gen.extxyz"
    write_extxyz(gen, path)
    out = evaluate_file(path, name, out=tmp_path / "out").to_json()
    assert out["n_input"] == 5 and out["metrics"]["pct_failed"]["value"] == 0.0
    assert (tmp_path / "out" / "metrics.json").is_file()
    bad = tmp_path / "bad.extxyz"
    bad.write_text("2\nLattice=\"1 0 0 0 1 0 0 0 1\" Properties=species:S:1:pos:R:3\nFe 0 0 0\n")
    with pytest.raises(StructureError):
        evaluate_file(bad, name)


def test_everything_rejected_gives_null_metrics():
    rng = np.random.default_rng(15)
    st = structures_from_site_species(random_site_species(2, seed=15))
    gas = st.with_frac(rng.random(st.frac.shape))  # no FCC order at all
    ev = evaluate(gas, {"train_mean_probability": [0.0] * 45}, lattice_match="rotated")
    assert not ev.accepted.any()
    assert set(ev.status) <= {"no-basis", "too-many-removed", "no-pin-match"}
    assert ev.metrics["pct_failed"]["value"] == 100.0
    assert ev.metrics["d_cluster"] == {"value": None, "lower_error": None, "upper_error": None}
    assert ev.metrics["pct_vacancy"]["value"] is None
    assert "," * 10 in per_structure_csv(ev).splitlines()[1]  # empty cells, no "nan"


def test_rotated_variant_matches_per_atom_transcription():
    """Vectorised §2.3 + §3.3-3.5 == the benchmark's per-query transcription of the loops."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "alloy_eval_speed.py"
    spec = importlib.util.spec_from_file_location("alloy_eval_speed", path)
    slow = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(slow)
    st = lattice_set(random_site_species(1, seed=16), noise=0.12, seed=4)
    frac = st.frac.copy()
    frac[0, :3, 1] += 0.125  # three interstitials
    st = st.with_frac(frac)
    cart = np.mod(st.frac[0] * L, L)
    spec_idx = np.searchsorted(SPECIES, np.array(st.species))
    fast = match_rotated(st)
    clean = slow.slow_rotated(cart, spec_idx)
    assert np.array_equal(cart[clean], fast.positions[0])
    assert len(clean) < 256  # the rescue passes and rejections were exercised
    counts, has_vac, vac = slow.slow_counts(cart[clean], spec_idx[clean], "numpy")
    c, hv, v, _ = cluster_counts(fast.positions[0], fast.species[0])
    assert np.array_equal(counts, c) and (has_vac, vac) == (hv, v)


@pytest.mark.parametrize("r", [0.8, 1.2, 3.0, 7.3, 14.4])  # 18 down to 1 cell per side
def test_cell_list_equals_brute_force_minimum_image(r):
    """closest_within: the closest periodic image within r (strict), ties to the lower index,
    including points on the cube faces and atoms given outside the cube."""
    from dismai.metrics.alloy.cell_list import closest_within

    rng = np.random.default_rng(int(r * 10))
    atoms = rng.random((60, 3)) * L
    atoms[5] = atoms[4]  # an exact tie: index 4 wins
    pts = np.concatenate([rng.random((400, 3)) * L, [[0.0, 0.0, 0.0], [L - 1e-12, 3.0, 0.0]],
                          atoms[:10] + 0.3])
    pts = np.mod(pts, L)
    d, i = closest_within(pts, atoms + np.array([L, -L, 0.0]), r, L)
    delta = pts[:, None, :] - atoms[None, :, :]
    delta -= L * np.round(delta / L)
    dist = np.sqrt((delta ** 2).sum(-1))
    best = dist.argmin(1)
    dmin = dist[np.arange(len(pts)), best]
    inside = dmin < r
    assert np.array_equal(i >= 0, inside)
    assert np.array_equal(i[inside], best[inside])
    assert np.allclose(d[inside], dmin[inside], rtol=0, atol=1e-12)
    assert np.isinf(d[~inside]).all()
    with pytest.raises(ValueError, match="radius"):
        closest_within(pts, atoms, 0.0, L)
