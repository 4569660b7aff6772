"""The distilled potential: graph, network symmetries, teacher data, training, loading."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from dismai.energy.distilled import DistilledModel, PotentialNet, radius_edges
from dismai.energy.teacher_data import load_frames, run_teacher_jobs
from dismai.errors import InputError
from dismai.provenance import file_sha256
from dismai.structures import StructureSet
from dismai.testing import check_energy_model


def _slab(m: int = 2, seed: int = 0) -> StructureSet:
    """A small slab with vacuum along c, like the interface cell: 12 atoms of Li/Cl/O."""
    rng = np.random.default_rng(seed)
    lattice = np.array([[5.0, 0.0, 0.0], [1.2, 5.5, 0.0], [0.0, 0.0, 16.0]])
    grid = np.array([[i / 2, j / 2, 0.35 + 0.1 * k] for i in range(2) for j in range(2)
                     for k in range(3)])
    frac = grid[None] + rng.normal(0, 0.01, (m, 12, 3))
    return StructureSet(lattice, ("Li",) * 4 + ("Cl",) * 4 + ("O",) * 4, frac)


def test_radius_edges_match_ase_neighbor_list():
    from ase.neighborlist import neighbor_list

    s = _slab(2)
    cart = torch.as_tensor(s.cart())
    src, tgt, img = radius_edges(cart, torch.as_tensor(s.lattice), 4.0)
    n = s.n_atoms
    for k, atoms in enumerate(s.to_atoms()):
        i, j, shift = neighbor_list("ijS", atoms, 4.0)
        ref = set(zip(i.tolist(), j.tolist(), map(tuple, shift.tolist()), strict=False))
        sel = (tgt // n) == k
        ours = set(zip((tgt[sel] % n).tolist(), (src[sel] % n).tolist(),
                       map(tuple, img[sel].long().tolist()), strict=False))
        assert ours == ref and len(ref) > 0


def _net(seed=0, **kw) -> PotentialNet:
    torch.manual_seed(seed)
    return PotentialNet(["Cl", "Li", "O"], cutoff=4.0, channels=8, **kw).double()


def test_network_forces_symmetries_and_smooth_cutoff():
    s = _slab(1)
    net = _net()
    lat = torch.as_tensor(s.lattice)
    idx = net.species_index(s.species)
    x = torch.as_tensor(s.cart())
    e, f = net.energy_forces(x, lat, idx)
    # forces are minus the gradient (central difference)
    d = torch.zeros_like(x)
    d[0, 5, 1] = 1e-5
    fd = ((net(x + d, lat, idx) - net(x - d, lat, idx)) / 2e-5).detach()
    assert float(-fd) == pytest.approx(float(f[0, 5, 1]), rel=1e-5, abs=1e-8)
    # rotating cell and atoms together rotates forces and keeps the energy
    from scipy.spatial.transform import Rotation

    rot = torch.as_tensor(Rotation.random(random_state=3).as_matrix())
    e2, f2 = net.energy_forces(x @ rot.T, lat @ rot.T, idx)
    assert float(e2) == pytest.approx(float(e), abs=1e-10)
    assert torch.allclose(f2, f @ rot.T, atol=1e-10)
    # translation and a lattice-vector shift of one atom change nothing
    shifted = x + torch.tensor([0.3, -0.7, 0.2], dtype=x.dtype)
    shifted[0, 3] += lat[0] - lat[1]
    assert float(net(shifted, lat, idx)) == pytest.approx(float(e), abs=1e-10)
    # permuting atoms of one species permutes the forces
    perm = torch.arange(12)
    perm[[4, 6]] = perm[[6, 4]]
    e3, f3 = net.energy_forces(x[:, perm], lat, idx)
    assert float(e3) == pytest.approx(float(e), abs=1e-10)
    assert torch.allclose(f3, f[:, perm], atol=1e-12)
    # a pair crossing the cutoff changes the energy continuously
    two = torch.tensor([[[1.0, 1.0, 8.0], [1.0, 1.0, 8.0 + 4.0 - 1e-7]]], dtype=x.dtype)
    big = torch.diag(torch.tensor([30.0, 30.0, 30.0], dtype=x.dtype))
    pair_idx = net.species_index(["Li", "Cl"])
    inside = net(two, big, pair_idx)
    two[0, 1, 2] += 2e-7
    assert float(net(two, big, pair_idx)) == pytest.approx(float(inside), abs=1e-9)
    # batching is the same as one at a time
    s2 = _slab(3, seed=1)
    xb = torch.as_tensor(s2.cart())
    eb, fb = net.energy_forces(xb, lat, idx)
    for k in range(3):
        ek, fk = net.energy_forces(xb[k:k + 1], lat, idx)
        assert float(ek) == pytest.approx(float(eb[k]), abs=1e-10)
        assert torch.allclose(fk[0], fb[k], atol=1e-12)


def test_pair_floor_wall_is_zero_above_the_floor_and_repels_below():
    from ase.neighborlist import neighbor_list

    from dismai.energy.teacher_data import Frames, closest_pairs

    s = _slab(3, seed=4)
    frames = Frames(s.lattice, s.species, s.cart(), np.zeros(3), np.zeros((3, 12, 3)),
                    np.zeros(3, np.int32), np.zeros(3, np.int8))
    floors = closest_pairs(frames, cutoff=4.0)
    # the closest pair of each species pair, against ASE's neighbour list
    ref = {}
    for atoms in s.to_atoms():
        i, j, d = neighbor_list("ijd", atoms, 4.0)
        sym = np.array(atoms.get_chemical_symbols())
        for a, b, r in zip(sym[i], sym[j], d, strict=True):
            key = "-".join(sorted((a, b)))
            ref[key] = min(ref.get(key, np.inf), r)
    assert floors.keys() == ref.keys()
    assert all(floors[k] == pytest.approx(ref[k], abs=1e-9) for k in ref)
    plain, walled = _net(), _net(pair_floor={k: v - 0.01 for k, v in floors.items()})
    lat = torch.as_tensor(s.lattice)
    idx = plain.species_index(s.species)
    x = torch.as_tensor(s.cart())
    e0, f0 = plain.energy_forces(x, lat, idx)
    e1, f1 = walled.energy_forces(x, lat, idx)
    assert torch.equal(e0, e1) and torch.equal(f0, f1)  # no pair below its floor
    # push one Cl onto an O: the walled network pushes them apart, with its stated energy
    y = x[:1].clone()
    y[0, 4] = y[0, 8] + torch.tensor([1.0, 0.0, 0.0], dtype=y.dtype)
    e0, f0 = plain.energy_forces(y, lat, idx)
    e1, f1 = walled.energy_forces(y, lat, idx)
    r0 = floors["Cl-O"] - 0.01
    assert float((e1 - e0).detach()) == pytest.approx(
        walled.wall_stiffness * (r0 - 1.0) ** 3, rel=1e-9)
    assert float((f1 - f0)[0, 4, 0]) == pytest.approx(
        3 * walled.wall_stiffness * (r0 - 1.0) ** 2, rel=1e-9)
    with pytest.raises(InputError, match="Xe-O"):
        _net(pair_floor={"Xe-O": 2.0})


def _ship(net: PotentialNet, path):
    buf = io.BytesIO()
    torch.save({"config": net.config, "state_dict": net.state_dict()}, buf)
    path.write_bytes(buf.getvalue())
    path.with_suffix(".json").write_text(json.dumps({"weights_sha256": file_sha256(path)}))


def test_model_contract_and_manifest_check(tmp_path):
    path = tmp_path / "toy.pt"
    _ship(_net(), path)
    model = DistilledModel("toy", path=path, dtype="float64")
    check_energy_model(model, _slab(2))
    assert torch.load(path, weights_only=True)["config"]["channels"] == 8
    man = json.loads(path.with_suffix(".json").read_text())
    man["weights_sha256"] = "0" * 64
    path.with_suffix(".json").write_text(json.dumps(man))
    with pytest.raises(InputError, match="does not match its manifest"):
        DistilledModel("toy", path=path).load()
    with pytest.raises(InputError, match="not found"):
        DistilledModel("toy", path=tmp_path / "missing.pt").load()


class _EMTTeacher:
    name = "emt"

    def calculator(self):
        from ase.calculators.emt import EMT

        return EMT()


def _copper(m=2):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
    rng = np.random.default_rng(0)
    frac = atoms.get_scaled_positions()[None] + rng.normal(0, 0.01, (m, len(atoms), 3))
    return StructureSet(atoms.cell.array, tuple(atoms.get_chemical_symbols()), frac)


def test_teacher_jobs_record_every_frame_and_resume(tmp_path):
    s = _copper(2)
    paths = run_teacher_jobs(s, _EMTTeacher(), tmp_path, "train", rattle_sigmas=(0.02, 0.05),
                             seed=4)
    with np.load(paths[0]) as z:
        steps, kind = int(z["steps"]), z["kind"]
        assert bool(z["converged"])
        assert (kind == 0).sum() == steps + 1 and (kind == 1).sum() == 2
        # the last relaxation frame is the minimum, below fmax
        assert np.allclose(z["positions"][kind == 0][-1], z["minimum"])
        assert np.sqrt((z["forces"][kind == 0][-1] ** 2).sum(-1)).max() < 0.05
    frames = load_frames(paths, s.lattice, s.species)
    assert len(frames) == sum(len(np.load(p)["energy"]) for p in paths)
    stamp = [p.stat().st_mtime_ns for p in paths]
    run_teacher_jobs(s, None, tmp_path, "train", rattle_sigmas=(0.02, 0.05), seed=4)
    assert [p.stat().st_mtime_ns for p in paths] == stamp  # nothing recomputed


def test_fit_learns_and_resumes_identically(tmp_path):
    from dismai.energy.distill_training import fit_potential, frame_errors

    s = _copper(3)
    paths = run_teacher_jobs(s, _EMTTeacher(), tmp_path / "t", "j", rattle_sigmas=(0.05,))
    frames = load_frames(paths, s.lattice, s.species)
    train, valid = frames.subset(frames.job < 2), frames.subset(frames.job == 2)
    cfg = {"species": ["Cu"], "cutoff": 4.0, "channels": 8}
    settings = {"epochs": 2, "batch_size": 2, "lr": 1e-2, "dtype": "float64"}
    untrained = PotentialNet(**{**cfg, "energy_shift": float(train.energy.mean() / 16),
                                "energy_scale": 1.0}).double()
    before = frame_errors(untrained, valid)
    net, info = fit_potential(train, valid, cfg, settings, tmp_path / "a", log=lambda m: None)
    assert info["history"][-1]["force_mae_mev_a"] < before["force_mae_mev_a"]
    # the per-frame normalised force loss learns too
    _, info_w = fit_potential(train, valid, cfg, {**settings, "force_floor": 0.05}, None,
                              log=lambda m: None)
    assert info_w["history"][-1]["force_mae_mev_a"] < before["force_mae_mev_a"]
    assert info_w["history"][-1] != info["history"][-1]
    # killed at the end of the first epoch (checkpoints after every step), then resumed:
    # the same weights as the uninterrupted run
    class Killed(Exception):
        pass

    def die(message):
        raise Killed

    every_step = {**settings, "checkpoint_minutes": 0.0}
    with pytest.raises(Killed):
        fit_potential(train, valid, cfg, every_step, tmp_path / "b", log=die)
    net_b, _ = fit_potential(train, valid, cfg, every_step, tmp_path / "b",
                             log=lambda m: None)
    net_a, _ = fit_potential(train, valid, cfg, every_step, tmp_path / "c",
                             log=lambda m: None)
    for (k, a), (_, b) in zip(net_a.state_dict().items(), net_b.state_dict().items(), strict=False):
        assert torch.equal(a, b), k
    with pytest.raises(InputError, match="other settings"):
        fit_potential(train, valid, cfg, {**every_step, "lr": 5e-3}, tmp_path / "b")
    with pytest.raises(InputError, match="other frames"):
        fit_potential(valid, train, cfg, every_step, tmp_path / "b")


def test_strided_frames_keep_each_job_start_and_every_rattle(tmp_path):
    from dismai.energy.distill import _strided

    s = _copper(2)
    paths = run_teacher_jobs(s, _EMTTeacher(), tmp_path, "j", rattle_sigmas=(0.02, 0.05))
    frames = load_frames(paths, s.lattice, s.species)
    sub = _strided(frames, 3)
    assert (sub.kind == 1).sum() == 4
    for j in (0, 1):
        relax = np.flatnonzero((frames.job == j) & (frames.kind == 0))
        kept = np.flatnonzero((sub.job == j) & (sub.kind == 0))
        assert len(kept) == len(relax[::3])
        assert np.array_equal(sub.positions[kept[0]], frames.positions[relax[0]])


def test_cli_potentials(tmp_path):
    from typer.testing import CliRunner

    from dismai.cli import app

    res = CliRunner().invoke(app, ["potentials", "list"])
    assert res.exit_code == 0 and "interface-mlip" in res.output
    res = CliRunner().invoke(app, ["potentials", "build", "nope", "--work", str(tmp_path)])
    assert res.exit_code != 0 and "unknown potential recipe" in res.output


def test_interface_preview_is_shipped_and_consistent():
    from dismai.datasets import load
    from dismai.energy.distill import get_recipe
    from dismai.interface_cell import interface_energy

    ds = load("interface-preview")
    build, pot = ds.manifest["build"], get_recipe("interface-mlip")
    # shipped from every teacher job the recipe names (rebuild it when n_train grows)
    assert build["teacher_candidates"] == {
        w: {"seed": pot[f"{w}_seed"], "n": pot[f"n_{w}"]} for w in ("train", "valid")}
    assert build["n_candidates"] <= pot["n_train"] + pot["n_valid"]
    assert ds.manifest["preview"] is True and ds.manifest["n_structures"] == \
        build["n_low_energy"] == len(ds.train) + len(ds.val) >= 58
    assert ds.manifest["recipe"]["energy_model"] == "chgnet"
    e = np.concatenate([ds.train.properties["energy_per_atom"],
                        ds.val.properties["energy_per_atom"]])
    # every shipped structure is inside the low-energy window of its E_ref
    gamma = interface_energy(e, ds.manifest["build"]["e_ref_eV_per_atom"])
    assert np.all(gamma <= 1e-12) and len(ds.train) == round(0.8 * len(e))


def test_datasets_list_marks_the_preview():
    from typer.testing import CliRunner

    from dismai.cli import app

    res = CliRunner().invoke(app, ["datasets", "list"])
    assert res.exit_code == 0
    line = next(x for x in res.output.splitlines() if "interface-preview" in x)
    assert "preview" in line.split("interface-preview", 1)[1]


@pytest.mark.slow
def test_preview_rebuild_is_bit_identical(tmp_path):
    """Needs the teacher jobs (4.6 CPU-hours with CHGNet, or the potential's work folder
    linked at WORK/interface-preview-seed0/teacher)."""
    from dismai.datasets.build import build_dataset
    from dismai.datasets.registry import shipped_paths

    paths = build_dataset("interface-preview", out_dir=tmp_path, work_dir="runs/preview")
    assert paths["data"].read_bytes() == shipped_paths("interface-preview")["data"].read_bytes()


def test_unshipped_potential_is_a_one_line_error():
    from dismai.energy import get_energy_model

    with pytest.raises(InputError, match="potential file not found"):
        get_energy_model("interface-mlip", path="/nonexistent/interface-mlip.pt")


def test_chgnet_graph_batches_are_capped_by_atoms():
    # the validation scores 20 interface structures with CHGNet in one call: 16 of them in
    # one graph batch went past 24 GB on a CPU (no CHGNet needed for the rule itself)
    from dismai.energy.mlip import CHGNetModel

    m = CHGNetModel()
    assert m.graph_batch_size(264) == 1
    assert m.graph_batch_size(64) == 8
    assert m.graph_batch_size(8) == 16 and CHGNetModel(batch_size=4).graph_batch_size(8) == 4
