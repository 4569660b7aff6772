"""a-Si benchmark metrics: agreement with the reference libraries and sanity checks."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

pytest.importorskip("pymatgen.core")

from dismai.evaluation import format_table  # noqa: E402
from dismai.metrics.asi.angles import angle_distribution, structure_bond_angles  # noqa: E402
from dismai.metrics.asi.evaluate import evaluate  # noqa: E402
from dismai.metrics.asi.features import fingerprints_and_angles  # noqa: E402
from dismai.metrics.asi.motifs import (  # noqa: E402
    cos_motif,
    fingerprint_labels,
    most_likely_motifs,
    motif_labels,
)
from dismai.metrics.asi.rdf import RDF_R, rdf, rdf_supercell_bruteforce  # noqa: E402
from dismai.metrics.asi.reference import build_reference  # noqa: E402
from dismai.metrics.asi.report import energy_histogram, write_outputs  # noqa: E402
from dismai.metrics.crystalnn import voronoi_cells, voronoi_cells_pymatgen  # noqa: E402
from dismai.structures import StructureSet  # noqa: E402

A_SI = 5.431
TETRA = float(np.degrees(np.arccos(-1.0 / 3.0)))


def diamond(reps=(2, 2, 2), a=A_SI):
    base = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]], dtype=float)
    base = np.concatenate([base, base + 0.25])
    cells = np.array([[i, j, k] for i in range(reps[0]) for j in range(reps[1])
                      for k in range(reps[2])], dtype=float)
    frac = ((cells[:, None, :] + base[None]).reshape(-1, 3)) / np.array(reps, dtype=float)
    return np.diag(np.array(reps, dtype=float) * a), frac


def rattled(sigma, seed, reps=(2, 2, 2)):
    lat, frac = diamond(reps)
    cart = frac @ lat + np.random.default_rng(seed).normal(0.0, sigma, frac.shape)
    return lat, (cart @ np.linalg.inv(lat)) % 1.0


def random_frac(lat, n, seed, dmin=2.0):
    rng = np.random.default_rng(seed)
    pts: list[np.ndarray] = []
    while len(pts) < n:
        p = rng.random(3)
        if pts:
            d = np.array(pts) - p
            d -= np.round(d)
            if (np.linalg.norm(d @ lat, axis=1) < dmin).any():
                continue
        pts.append(p)
    return np.array(pts)


# ------------------------------------------------------------------ RDF
def test_rdf_diamond_peaks():
    lat, frac = diamond()
    g = rdf(lat, frac)
    nonzero = np.flatnonzero(g > 0)
    first, second = RDF_R[nonzero[0]], RDF_R[nonzero[1]]
    assert abs(first - A_SI * np.sqrt(3) / 4) <= 0.01  # 2.352 Å
    assert abs(second - A_SI / np.sqrt(2)) <= 0.01  # 3.840 Å
    assert g[nonzero[0]] > 10 and g[nonzero[1]] > 10


@pytest.mark.parametrize("shear", [0.0, 0.08])
def test_rdf_matches_supercell_bruteforce(shear):
    lat, frac = rattled(0.2, 1)
    lat = lat.copy()
    lat[1, 0] = shear * lat[0, 0]  # mildly triclinic, every height still > 10 Å
    g = rdf(lat, frac)
    gb = rdf_supercell_bruteforce(lat, frac)
    assert np.allclose(g, gb, rtol=1e-12, atol=1e-12)
    assert g.shape == (500,)


def test_rdf_matches_vasppy_formula_on_pymatgen_supercell():
    """vasppy RadialDistributionFunction as get_rdf_Si-Si.py calls it (§6.7), written out
    with the same pymatgen calls: make_supercell(2), get_all_distances, i == j masked."""
    from pymatgen.core import Lattice, Structure

    lat, frac = rattled(0.25, 7)
    s = Structure(Lattice(lat), ["Si"] * len(frac), frac)
    s.make_supercell(2)
    d = s.lattice.get_all_distances(s.frac_coords, s.frac_coords)
    d = d[~np.eye(len(s), dtype=bool)]
    hist = np.histogram(d, bins=500, range=(0.0, 10.0))[0]
    edges = np.linspace(0.0, 10.0, 501)
    ff = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    ref = hist * 1.0 / (float(len(s)) / s.lattice.volume) / (ff * 1.0 * float(len(s)))
    assert np.allclose(rdf(lat, frac), ref, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ bond angles
def test_bond_angles_of_diamond_are_tetrahedral():
    lat, frac = diamond()
    ang = structure_bond_angles(lat, frac)
    assert len(ang) == 64 * 6
    assert np.allclose(ang, TETRA, atol=1e-9)
    dist = angle_distribution(ang)
    assert dist.sum() == pytest.approx(1.0)
    assert dist[int(TETRA // 0.5)] == pytest.approx(1.0)


def test_angle_bins_follow_pandas_cut():
    d = angle_distribution(np.array([0.0, 0.5, 0.5000001, 109.5, 180.0]))
    assert d[0] == pytest.approx(0.4)  # [0, 0.5]
    assert d[1] == pytest.approx(0.2)  # (0.5, 1.0]
    assert d[218] == pytest.approx(0.2)  # (109, 109.5]
    assert d[359] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        angle_distribution(np.array([180.5]))


# ------------------------------------------------------------------ fingerprints
def test_fingerprint_of_diamond_is_tetrahedral():
    lat, frac = diamond()
    fps, _, _ = fingerprints_and_angles(lat, frac)
    lab = fingerprint_labels()
    assert fps.shape == (64, 61)
    assert np.allclose(fps[:, lab.index("wt CN_4")], 1.0)
    assert np.all(fps[:, lab.index("tetrahedral CN_4")] > 0.999)
    assert np.allclose(np.delete(fps, [lab.index("wt CN_4"), lab.index("tetrahedral CN_4")],
                                 axis=1).max(axis=1) <= 1.0, True)


def test_fingerprints_and_angles_match_matminer_and_pymatgen():
    pytest.importorskip("matminer")
    from matminer.featurizers.site import CrystalNNFingerprint
    from pymatgen.analysis.local_env import CrystalNN
    from pymatgen.core import Lattice, Structure

    lat, frac = rattled(0.25, 3)
    s = Structure(Lattice(lat), ["Si"] * len(frac), frac)
    fpz = CrystalNNFingerprint.from_preset("ops")
    assert tuple(fpz.feature_labels()) == fingerprint_labels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.array([fpz.featurize(s, i) for i in range(len(s))])
        cnn = CrystalNN(distance_cutoffs=None, x_diff_weight=0, porous_adjustment=False)
        ref_ang = []
        for i in range(len(s)):
            nn = [x["site"].coords - s[i].coords for x in cnn.get_nn_info(s, i)]
            for a in range(len(nn)):
                for b in range(a + 1, len(nn)):
                    c = np.dot(nn[a], nn[b]) / (np.linalg.norm(nn[a]) * np.linalg.norm(nn[b]))
                    ref_ang.append(np.arccos(c) * 180 / np.pi)
    fps, ang, n_fallback = fingerprints_and_angles(lat, frac)
    assert n_fallback == 0
    assert np.allclose(fps, ref, rtol=0, atol=1e-12)
    assert len(ang) == len(ref_ang)
    assert np.allclose(np.sort(ang), np.sort(ref_ang), rtol=0, atol=1e-10)


def test_one_tessellation_equals_per_site_voronoi():
    lat, frac = rattled(0.3, 4)
    sites = [0, 5, 17, 40, 63]
    ours = voronoi_cells(lat, frac, sites=sites)
    theirs = voronoi_cells_pymatgen(lat, frac, sites=sites)
    for a, b in zip(ours, theirs, strict=True):
        oa, ob = np.lexsort(a.nbr_cart.T), np.lexsort(b.nbr_cart.T)
        assert np.array_equal(a.nbr_index[oa], b.nbr_index[ob])
        assert np.allclose(a.nbr_cart[oa], b.nbr_cart[ob], atol=1e-12)
        assert np.allclose(a.solid_angle[oa], b.solid_angle[ob], atol=1e-12)
        assert np.allclose(a.area[oa], b.area[ob], atol=1e-11)


def test_large_voids_use_the_per_site_fallback():
    lat = np.eye(3) * 14.0
    frac = random_frac(lat, 40, seed=5, dmin=2.5)  # 0.015 atoms/Å^3: cells reach > 3.5 Å
    cells, redo = voronoi_cells(lat, frac, return_fallback=True)
    assert len(redo) > 0
    theirs = voronoi_cells_pymatgen(lat, frac, sites=redo[:3])
    for s, b in zip(redo[:3], theirs, strict=True):
        a = cells[s]
        assert np.array_equal(a.solid_angle, b.solid_angle)


def test_order_parameters_match_pymatgen():
    from pymatgen.core import Site
    from pymatgen.core.local_env import DEFAULT_OP_PARAMS, LocalStructOrderParams

    from dismai.metrics._order_params import OP_CODES, op_param_vector, op_value
    from dismai.metrics.crystalnn import OPS_PRESET_MOTIFS

    kinds = {(typ, json.dumps(p, sort_keys=True)) for m in OPS_PRESET_MOTIFS.values()
             for _, typ, p in m}
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(1, 13))
        c = rng.normal(size=3)
        nb = c + rng.normal(size=(n, 3)) * 1.5
        if trial == 0:  # an exactly linear pair and a degenerate azimuth
            n, nb = 3, c + np.array([[1.0, 0, 0], [-2.0, 0, 0], [0, 0, 1.5]])
        sites = [Site("Si", c)] + [Site("Si", x) for x in nb]
        rij = nb - c
        dist = np.sqrt((rij * rij).sum(axis=1))
        for typ, pj in kinds:
            p = json.loads(pj)
            ref = LocalStructOrderParams([typ], parameters=[p]).get_order_parameters(
                sites, 0, indices_neighs=list(range(1, n + 1)))[0]
            mine = op_value(OP_CODES[typ], op_param_vector(p or DEFAULT_OP_PARAMS[typ]),
                            rij / dist[:, None], dist)
            if ref is None:
                assert np.isnan(mine), typ
            else:
                assert mine == pytest.approx(ref, abs=1e-12), (typ, n)


# ------------------------------------------------------------------ most-likely motifs
def test_most_likely_motif_reproduces_pandas_substring_filter():
    pd = pytest.importorskip("pandas")
    lab = list(fingerprint_labels())
    rng = np.random.default_rng(1)
    rows = np.zeros((6, 61))
    rows[1, lab.index("wt CN_1")] = 0.6  # CN 1, sgl_bd 0.6 vs wt CN_10 0.3
    rows[1, lab.index("sgl_bd CN_1")] = 0.6
    rows[1, lab.index("wt CN_10")] = 0.3
    rows[2, lab.index("wt CN_2")] = 0.5  # CN 2 with weak OPs: 'wt CN_20' wins
    rows[2, lab.index("linear CN_2")] = 0.05
    rows[2, lab.index("wt CN_20")] = 0.4
    rows[3, lab.index("wt CN_14")] = 0.9  # CN >= 13: 'None CN_14'
    rows[4] = rng.random(61)
    rows[5, lab.index("wt CN_4")] = 0.7
    rows[5, lab.index("tetrahedral CN_4")] = 0.65
    df = pd.DataFrame(rows, columns=lab)
    cn = df.filter(like="wt CN").idxmax(axis=1).str.split("_").str[-1].astype(int)
    expected = []
    for i in range(len(df)):
        op = df.iloc[i].filter(like=f"CN_{cn[i]}").drop(labels=[f"wt CN_{cn[i]}"])
        expected.append(op.idxmax() if len(op) else f"None CN_{cn[i]}")
    got = [motif_labels()[c] for c in most_likely_motifs(rows)]
    assert got == expected
    assert got[0] == "sgl_bd CN_1" and got[2] == "wt CN_20" and got[3] == "None CN_14"


def test_cosine_distance_of_identical_vectors_is_zero():
    v = np.random.default_rng(2).random(61)
    assert abs(float(cos_motif(v)(v))) < 1e-12


def test_energy_histogram_bins():
    pct, n_in = energy_histogram(np.array([-50.0, -45.0, -44.9, 100.0, 100.1, np.nan]))
    assert n_in == 4
    assert pct[0] == pytest.approx(50.0) and pct[1] == pytest.approx(25.0)
    assert pct[-1] == pytest.approx(25.0) and len(pct) == 30


# ------------------------------------------------------------------ metrics end to end
def _set(fracs, lat, energy=None):
    props = {} if energy is None else {"energy_per_atom": np.asarray(energy)}
    return StructureSet(lat, ["Si"] * fracs.shape[1], fracs, props)


def test_noise_floor_and_metrics(tmp_path):
    lat, _ = diamond()
    rattle = lambda seeds: np.stack([rattled(0.2, s)[1] for s in seeds])  # noqa: E731
    train = _set(rattle(range(4)), lat, energy=[-4.60, -4.61, -4.59, -4.60])
    val = _set(rattle(range(10, 13)), lat)
    same = _set(rattle(range(20, 23)), lat, energy=[-4.58, -4.60, -4.62])
    rand = _set(np.stack([random_frac(lat, 64, s) for s in range(3)]), lat)

    ref = build_reference(train, val, n_workers=2)
    json.dumps(ref)  # JSON-able
    assert len(ref["train_mean_fingerprint"]) == 61 and len(ref["train_mean_rdf"]) == 500
    assert "tetrahedral CN_4" in ref["motifs"]["labels"]
    nf = ref["noise_floor"]
    for k in ("d_motif", "cos_motif", "d_rdf", "d_angle"):
        assert nf[k]["lower_error"] is not None and nf[k]["upper_error"] is not None

    ev_same = evaluate(same, ref, n_generated=4, n_failed_postprocess=1,
                       relax_results={"n_steps": [10, 20, 30], "converged": ["yes"] * 3})
    ev_rand = evaluate(rand, ref)
    # same distribution: about the val-vs-train noise floor; random packing: far above it.
    # (g(r) of 3 x 64 atoms in 500 unsmoothed bins is Poisson-noisy, hence the lower factor)
    for k, factor in (("d_motif", 5.0), ("d_angle", 2.0), ("d_rdf", 1.5)):
        assert ev_same.metrics[k]["value"] < 1.5 * nf[k]["value"], k
        assert ev_rand.metrics[k]["value"] > factor * ev_same.metrics[k]["value"], k
    assert ev_same.metrics["d_motif"]["value"] < 0.1
    for k in ("d_motif", "cos_motif", "d_rdf", "d_angle", "mean_relax_steps"):
        m = ev_same.metrics[k]
        assert np.isfinite(m["value"]) and m["lower_error"] is not None
        assert m["upper_error"] is not None
    assert ev_same.metrics["pct_failed"] == {"value": 25.0, "lower_error": None,
                                             "upper_error": None}
    assert ev_same.metrics["mean_relax_steps"]["value"] == pytest.approx(20.0)
    assert ev_rand.metrics["pct_failed"]["value"] == 0.0
    assert ev_same.delta_energy_mev == pytest.approx([20.0, 0.0, -20.0])
    assert ev_same.rdf_band.mean.shape == (500,) and ev_same.angle_band.low.shape == (360,)

    table = format_table(ev_same.metrics, nf)
    assert "d_motif" in table and "noise floor" in table
    paths = write_outputs(ev_same, ref, tmp_path)
    for key in ("rdf", "angles", "motifs", "energy", "csv", "npz"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    assert paths["rdf"].read_bytes()[:4] == b"\x89PNG"
    assert len(paths["csv"].read_text().splitlines()) == 4


def test_cation_anion_fingerprints_match_matminer():
    """The interface variant (§7.3) through the same shared-tessellation API."""
    pytest.importorskip("matminer")
    from matminer.featurizers.site import CrystalNNFingerprint
    from pymatgen.core import Lattice, Structure

    from dismai.metrics.crystalnn import (
        CrystalNNFingerprinter,
        CrystalNNSettings,
        structure_fingerprints,
    )

    a = 5.13  # rattled rocksalt, cations Li/Co, anions Cl/O
    base_c = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    cells = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)])
    fc = ((cells[:, None] + base_c[None]).reshape(-1, 3)) / 2
    fa = ((cells[:, None] + (base_c + [.5, 0, 0])[None]).reshape(-1, 3)) / 2
    lat = np.eye(3) * 2 * a
    rng = np.random.default_rng(0)
    frac = ((np.concatenate([fc, fa]) @ lat + rng.normal(0, 0.25, (64, 3)))
            @ np.linalg.inv(lat)) % 1.0
    sym = ["Li"] * 32 + ["Cl"] * 32
    for i in rng.choice(32, 8, replace=False):
        sym[i] = "Co"
    for i in rng.choice(32, 10, replace=False):
        sym[32 + i] = "O"
    oxi = {"Li": 1, "Co": 3, "Cl": -1, "O": -2}
    s = Structure(Lattice(lat), sym, frac)
    s.add_oxidation_state_by_element(oxi)
    cations = [i for i in range(64) if sym[i] in ("Li", "Co")]
    fpz = CrystalNNFingerprint.from_preset("ops", cation_anion=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.array([fpz.featurize(s, i) for i in cations])
    fp = CrystalNNFingerprinter(settings=CrystalNNSettings(cation_anion=True),
                                nn_species=("Cl", "O"))
    mine, angles, _ = structure_fingerprints(lat, frac, sym, cations, fp, oxidation_states=oxi)
    assert angles is None and mine.shape == (32, 61 + 48)
    assert np.allclose(mine[:, :61], ref, rtol=0, atol=1e-12)
    frac_cl_o = mine[:, 61:].reshape(32, 24, 2).sum(axis=2)
    wt = mine[:, [fp.labels.index(f"wt CN_{k}") for k in range(1, 25)]]
    assert np.allclose(frac_cl_o[wt > 0], 1.0) and np.all(frac_cl_o[wt == 0] == 0)
