"""Interface dataset recipe (spec datasets.md §3) and benchmark metrics (metrics §7)."""

from __future__ import annotations

import numpy as np
import pytest

from dismai.datasets import interface_recipe as ir
from dismai.evaluation import format_table
from dismai.metrics.interface.evaluate import (
    combined_vectors,
    evaluate,
    metrics_from_features,
)
from dismai.metrics.interface.motifs import (
    CATIONS,
    N_FEATURES,
    InterfaceFeatures,
    compute_features,
    fingerprint_labels,
)
from dismai.metrics.interface.reference import reference_from_features
from dismai.metrics.interface.report import write_outputs

SEED = 11


@pytest.fixture(scope="module")
def cands():
    return ir.build_candidates(2, SEED)


@pytest.fixture(scope="module")
def feats(cands):
    return compute_features(cands[:1])


# ------------------------------------------------------------------ construction
def test_lco_slab_planes_stoichiometric():
    s = ir.lco_slab()
    sp = np.array(s.species)
    assert len(sp) == 144
    for p in range(4):
        m = s.plane == p
        assert [int((sp[m] == x).sum()) for x in ("Li", "Co", "O")] == [9, 9, 18]
        assert np.ptp(s.h[m]) < 1e-8  # flat (110) planes
    assert s.thickness == pytest.approx(3 * ir.LCO_A / 2, abs=1e-6)


def test_lsc_slab_tasker_2b():
    s = ir.lsc_slab()
    sp = np.array(s.species)
    assert len(sp) == 90
    assert {x: int((sp == x).sum()) for x in ("Li", "Sc", "Cl")} == {"Li": 27, "Sc": 9,
                                                                      "Cl": 54}
    cl = [int(((s.plane == p) & (sp == "Cl")).sum()) for p in (0, 2, 4, 6)]
    assert cl == [9, 18, 18, 9]
    for p in (1, 3, 5):  # cation planes: 3 Sc + 9 Li each, no Cl
        m = s.plane == p
        assert [int((sp[m] == x).sum()) for x in ("Li", "Sc", "Cl")] == [9, 3, 0]
    # charge neutral: +1 Li, +3 Sc, -1 Cl
    assert 27 + 3 * 9 - 54 == 0


def test_candidates_counts_order_and_cell(cands):
    assert cands.composition == {"Li": 72, "Sc": 12, "Co": 36, "Cl": 72, "O": 72}
    assert [b[0] for b in cands.blocks] == ["Li", "Sc", "Co", "Cl", "O"]
    assert cands.n_atoms == 264
    a, b, c = cands.lattice
    assert np.linalg.norm(a) == pytest.approx(12.46997)
    assert np.linalg.norm(b) == pytest.approx(17.19967)
    assert np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b))) == \
        pytest.approx(75.6674)
    t = cands.properties["interface_thickness"]
    assert np.all((t >= 4.0) & (t <= 6.0))
    # interface atoms first in each block: Li rows 0..8 and Sc rows 0..2 lie in the gap,
    # the slab atoms follow by ascending height
    z = cands.frac[..., 2] * c[2]
    for k in range(len(cands)):
        lco_top = z[k, 72 + 12:72 + 12 + 36].max()  # Co (all slab)
        li = z[k, :72]
        assert np.all(li[:9] >= lco_top - 1e-9)
        assert np.all(li[:9] <= lco_top + t[k] + 1e-9)
        assert np.all(np.diff(li[9:]) >= -1e-9)


def test_min_distances_and_vacuum(cands):
    lat2 = cands.lattice[:2, :2]
    md = ir.MIN_DISTANCES
    inter = np.concatenate([np.arange(0, 9), 72 + np.arange(0, 3), 120 + np.arange(0, 18)])
    sp = np.array(cands.species)
    for k in range(len(cands)):
        uv, z = cands.frac[k, :, :2], cands.frac[k, :, 2] * cands.lattice[2, 2]
        d = ir._inplane_dist(uv[inter], uv, z[inter], z, lat2)
        for r, i in enumerate(inter):
            for j in range(264):
                if j == i:
                    continue
                assert d[r, j] >= ir._pair_cutoff(sp[i], sp[j], md) - 1e-9
        span = z.max() - z.min()
        assert cands.lattice[2, 2] - span >= 14.0
    thick = ir.build_candidates(1, SEED, {"thickness_range": [6.0, 6.0]})
    z = thick.frac[0, :, 2] * thick.lattice[2, 2]
    assert thick.lattice[2, 2] - (z.max() - z.min()) >= 14.0
    assert np.all((thick.frac[0, :, 2] > 0) & (thick.frac[0, :, 2] < 1))


def test_candidates_reproducible(cands):
    again = ir.build_candidates(1, SEED)  # candidate 0 does not depend on n
    np.testing.assert_array_equal(again.frac[0], cands.frac[0])
    assert not np.allclose(cands.frac[0], cands.frac[1])


def test_too_small_c_refused():
    with pytest.raises(ValueError, match="vacuum"):
        ir.build_candidates(1, 0, {"cell_c": 30.0})


# ------------------------------------------------------------------ energies
def test_interface_energy_hand_value():
    # (-4.76 + 4.78) eV/atom * 264 * 1.602176634e-19 J/eV / 207.8037e-20 m^2
    expected = 0.02 * 264 * 1.602176634e-19 / 207.8037e-20
    assert expected == pytest.approx(0.40709, abs=1e-4)
    g = ir.interface_energy([-4.76], -4.78, ir.cell_lattice())
    assert g[0] == pytest.approx(expected, rel=1e-6)
    assert ir.energy_scale() == pytest.approx(20.3545, abs=1e-3)


def test_low_energy_reference():
    e = np.array([-4.79, -4.80, np.nan, -4.70])
    e_ref = ir.low_energy_reference(e)
    assert e_ref == pytest.approx(-4.80 + 0.4 / 20.35453, abs=1e-6)
    g = ir.interface_energy(e[np.isfinite(e)], e_ref)
    assert g.min() == pytest.approx(-0.4, abs=1e-9)
    assert (g <= 0).tolist() == [True, True, False]


def test_area_mismatch_refused():
    lat = ir.cell_lattice()
    lat[0] *= 1.01
    with pytest.raises(ValueError, match="area"):
        ir.interface_energy([-4.7], -4.78, lat)
    lat = ir.cell_lattice(50.0)  # a different c is fine: only the in-plane area counts
    assert np.isfinite(ir.interface_energy([-4.7], -4.78, lat)[0])


# ------------------------------------------------------------------ build with a fake model
class _SpanModel:
    """Fake potential: E/N = -4.8 + 0.02 * (height span in Å), zero forces (relaxation
    converges at once), so thinner interfaces are 'lower in energy'."""

    name = "fake-span"

    def calculator(self):
        from ase.calculators.calculator import Calculator, all_changes

        class _Calc(Calculator):
            implemented_properties = ["energy", "free_energy", "forces"]

            def calculate(self, atoms=None, properties=("energy",),
                          system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                z = self.atoms.positions[:, 2]
                e = len(z) * (-4.8 + 0.02 * float(np.ptp(z)))
                self.results = {"energy": e, "free_energy": e,
                                "forces": np.zeros((len(z), 3))}

        return _Calc()


def test_build_keeps_low_energy_in_candidate_order(tmp_path, cands):
    recipe = {"n_candidates": 2, "n_structures": 1, "seed": SEED}
    out = ir.build(recipe, tmp_path, energy_model=_SpanModel(), n_workers=1)
    t = cands.properties["interface_thickness"]
    span = [np.ptp(cands.frac[k, :, 2]) * cands.lattice[2, 2] for k in range(2)]
    e = -4.8 + 0.02 * np.array(span)
    assert out.e_ref == pytest.approx(e.min() + 0.4 / ir.energy_scale())
    gamma = ir.interface_energy(e, out.e_ref)
    first = int(np.flatnonzero(gamma <= 0)[0])
    assert out.structures.properties["candidate_index"].tolist() == [first]
    assert out.structures.properties["interface_thickness"][0] == pytest.approx(t[first])
    assert out.structures.properties["interface_energy"][0] <= 0
    assert (tmp_path / "relax" / "results.jsonl").exists()
    again = ir.build(recipe, tmp_path, energy_model=_SpanModel(), n_workers=1)  # resumes
    np.testing.assert_allclose(again.structures.frac, out.structures.frac)
    with pytest.raises(RuntimeError, match="low-energy"):
        ir.build({**recipe, "n_structures": 3}, tmp_path, energy_model=_SpanModel(),
                 n_workers=1)


# ------------------------------------------------------------------ fingerprints
def test_fingerprint_layout(feats):
    labels = fingerprint_labels()
    assert len(labels) == N_FEATURES == 109
    assert labels[60] == "wt CN_24"
    assert labels[61:65] == ("Cl fraction coord num 1", "O fraction coord num 1",
                             "Cl fraction coord num 2", "O fraction coord num 2")
    assert feats.n_atoms == {"Li": 72, "Co": 36, "Sc": 12}
    for s in CATIONS:
        assert feats.mean_fp[s].shape == (1, 109)
        # at the most likely CN the Cl + O counts make up the whole shell (only Cl and O
        # can be neighbours); an atom with no anion neighbour at all has an all-zero
        # fingerprint, CN 1 (pandas idxmax) and zero counts
        cn = feats.cn[s][0]
        assert np.all((feats.n_cl[s][0] + feats.n_o[s][0] == cn)
                      | ((cn == 1) & (feats.n_cl[s][0] + feats.n_o[s][0] == 0)))
    # Co below the top LCO plane (block order: 9 per plane, bottom first) sees O only;
    # top-plane Co may bond to interface Cl
    assert np.all(feats.n_cl["Co"][0][:27] == 0)


def test_fraction_features_not_weighted():
    from dismai.metrics.interface.motifs import structure_features

    lat, sp, frac = ir.lco_bulk()
    f = structure_features(lat, frac, sp)
    fp = f.fingerprints["Co"]
    labels = fingerprint_labels()
    wt6 = fp[:, labels.index("wt CN_6")]
    o6 = fp[:, labels.index("O fraction coord num 6")]
    assert np.all(wt6 > 0)
    np.testing.assert_allclose(o6, 1.0)  # not multiplied by wt
    assert np.all(f.cn["Co"] == 6) and np.all(f.n_o["Co"] == 6)


# ------------------------------------------------------------------ metrics
def _fake_features(mean_fp: dict, m: int) -> InterfaceFeatures:
    n = {"Li": 72, "Co": 36, "Sc": 12}
    z = {s: np.zeros((m, n[s]), dtype=np.int64) for s in CATIONS}
    return InterfaceFeatures(mean_fp={s: np.asarray(mean_fp[s], dtype=float) for s in CATIONS},
                             motif=z, cn=z, n_cl=z, n_o=z, n_atoms=n,
                             n_fallback=np.zeros(m, dtype=np.int64))


def test_metrics_zero_for_identical_and_weighting():
    rng = np.random.default_rng(0)
    base = {s: rng.random((4, 109)) for s in CATIONS}
    ref = reference_from_features(_fake_features(base, 4))
    met = metrics_from_features(_fake_features(base, 4), ref, n_reps=50)
    for s in (*CATIONS, "all"):
        assert met[f"d_{s}"]["value"] == pytest.approx(0.0, abs=1e-12)
        assert met[f"cos_{s}"]["value"] == pytest.approx(0.0, abs=1e-12)
        assert met[f"d_{s}"]["lower_error"] is not None
        assert met[f"d_{s}"]["upper_error"] is not None
    # shift only Sc by a constant vector: d_Sc = |delta|, d_all = 12/120 |delta|
    delta = np.zeros(109)
    delta[[3, 70]] = [0.3, 0.4]
    shifted = dict(base, Sc=base["Sc"] + delta)
    met = metrics_from_features(_fake_features(shifted, 4), ref, n_reps=50)
    assert met["d_Sc"]["value"] == pytest.approx(0.5)
    assert met["d_Li"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert met["d_all"]["value"] == pytest.approx(0.5 * 12 / 120)
    v = combined_vectors({s: np.ones(3) * k for k, s in enumerate(CATIONS)},
                         {"Li": 72, "Co": 36, "Sc": 12})
    np.testing.assert_allclose(v, (72 * 0 + 36 * 1 + 12 * 2) / 120)
    # bootstrap errors: nonzero spread for varying structures
    noisy = {s: base[s] + rng.normal(0, 0.1, base[s].shape) for s in CATIONS}
    met = metrics_from_features(_fake_features(noisy, 4), ref, n_reps=200)
    assert met["d_all"]["lower_error"] != 0 or met["d_all"]["upper_error"] != 0


def test_evaluate_end_to_end(tmp_path, cands, feats):
    two = cands[[0, 0]]
    two = two.with_frac(two.frac, {"energy_per_atom": np.array([-4.80, -4.79]),
                                   "relax_steps": np.array([10, 20])})
    f2 = InterfaceFeatures(**{k: ({s: np.concatenate([v[s], v[s]]) for s in v}
                                  if k not in ("n_atoms", "n_fallback") else v)
                              for k, v in vars(feats).items() if k != "n_fallback"},
                           n_fallback=np.concatenate([feats.n_fallback] * 2))
    ref = reference_from_features(f2, f2, np.array([-4.80, -4.79]), n_reps=100)
    assert ref["noise_floor"]["d_all"]["value"] == pytest.approx(0.0, abs=1e-12)
    ev = evaluate(two, ref, n_generated=4, features=f2, n_reps=100)
    assert ev.metrics["d_all"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert ev.metrics["pct_failed"]["value"] == pytest.approx(50.0)
    assert ev.metrics["mean_relax_steps"]["value"] == pytest.approx(15.0)
    assert ev.energy["gamma"][0] == pytest.approx(-0.4)
    sc = ev.motifs["Sc"]
    np.testing.assert_allclose(sc["gen_pct"], sc["train_pct"])
    table = format_table(ev.metrics, ref["noise_floor"])
    assert "d_all" in table and "noise floor" in table
    paths = write_outputs(ev, ref, tmp_path)
    for p in paths.values():
        assert p.exists() and p.stat().st_size > 0
    assert len(paths["csv"].read_text().splitlines()) == 3


def test_lsc_slab_from_other_bulk_and_relax_option():
    lat, sp, frac = ir.lsc_bulk_ideal()
    s = ir.lsc_slab((lat * 0.98, sp, frac))  # e.g. a relaxed (smaller) cell
    assert len(s.species) == 90
    cl = [int(((s.plane == p) & (np.array(s.species) == "Cl")).sum()) for p in (0, 2, 4, 6)]
    assert cl == [9, 18, 18, 9]
    assert s.thickness == pytest.approx(0.98 * ir.lsc_slab().thickness)

    class _Flat:  # zero energy, forces and stress: the relaxation keeps the ideal cell
        name = "flat"

        def calculator(self):
            from ase.calculators.calculator import Calculator, all_changes

            class _C(Calculator):
                implemented_properties = ["energy", "free_energy", "forces", "stress"]

                def calculate(self, atoms=None, properties=("energy",),
                              system_changes=all_changes):
                    super().calculate(atoms, properties, system_changes)
                    n = len(self.atoms)
                    self.results = {"energy": 0.0, "free_energy": 0.0,
                                    "forces": np.zeros((n, 3)), "stress": np.zeros(6)}

            return _C()

    lat2, sp2, frac2 = ir.relax_lsc_bulk(_Flat())
    np.testing.assert_allclose(lat2, lat, atol=1e-8)
    assert sp2 == sp
