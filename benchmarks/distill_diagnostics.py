"""Diagnostics of the interface-mlip distillation (docs/interface.md, "Result so far").

``heldout``: errors of the weights in a training checkpoint (its best epoch) on the held-out
candidates' teacher frames (every 4th frame), beside the MAE of predicting zero forces.

``linear``: how much of CHGNet's forces a linear species-pair force model explains: 25
ordered species pairs x 8 Gaussian radial functions (cutoff 5 Å), least squares on 30
relaxation frames of 3 held-in candidates, tested on 10 frames of a fourth.

``fit``: can the network fit 20 relaxation frames of 3 held-in candidates?  Squared force
loss, Adam, batches of 2; the target is CHGNet's forces or (``--target pair``) the forces
of a made-up species-blind pair potential on the same frames, a target known to be easy.
``--layers``, ``--channels`` and ``--cosine`` (the lr decayed to 0) vary the capacity and
the schedule: a network that cannot memorise 20 frames cannot learn the teacher.

``breakdown``: force MAE of the checkpoint's best weights on fitted, selection and held-out
frames (every 8th), split by species, by stage of the relaxation (first and last third of
each trajectory) and by slab versus interface atoms (the 30 interface atoms come first in
each species block), each beside the zero-force MAE: underfitting or overfitting, and where.

``loss``: which force loss learns near-minimum forces, and does more data help?  Fits the
first ``--fit-jobs`` held-in jobs (every 2nd relaxation frame plus the rattles) for
``--steps`` steps with the squared loss (``--floor 0``) or the per-frame normalised one
(each frame's squared error divided by max(its RMS teacher force, floor)^2), then reports
the errors on held-in job ``--test-job`` (default 15, never fitted) by relaxation stage.

``locality``: is a 10 Å receptive field (2 layers x 5 Å) enough for CHGNet's forces here?
Rattles (0.05 Å) every atom below a plane in a held-out CHGNet minimum and reports the
change of CHGNet's force on the other atoms by their distance to the nearest rattled one.

``validate``: `dismai.energy.distill.validate_potential` on a weights file (with its
manifest beside it), writing the numbers as JSON next to it.

``wall``: writes a copy of a weights file with the recipe's repulsive pair walls added
(`PotentialNet`'s pair_floor: the closest distance of each species pair in the first
``--fit-jobs`` held-in jobs, minus the recipe's margin), to ``--out``, with a manifest.
The wall is zero on those frames, so the fit is unchanged.

``prerelax``: relaxes the first ``--n`` held-out candidates with CHGNet after a
pre-relaxation on the distilled potential ``--weights`` (optimizer 'surrogate'; a
resumable store in ``--out``) and compares the CHGNet minima with the teacher jobs' plain
CHGNet FIRE minima: steps, fingerprint distances d_Li/d_Co/d_Sc, energies.

``teacher-cg``: the same comparison for CHGNet with SciPy CG from the raw candidates (store
in ``--out``): the teacher's own optimiser noise, against which the other numbers are read.

    python benchmarks/distill_diagnostics.py validate --weights DIR/interface-mlip.pt
    python benchmarks/distill_diagnostics.py wall --weights RUN1/interface-mlip.pt \
        --fit-jobs 14 --out runs/potentials/wall-run1
    python benchmarks/distill_diagnostics.py prerelax \
        --weights runs/potentials/wall-run1/interface-mlip.pt \
        --n 10 --out runs/hybrid-wall
    python benchmarks/distill_diagnostics.py teacher-cg --out runs/teacher-cg-valid
    python benchmarks/distill_diagnostics.py heldout
    python benchmarks/distill_diagnostics.py breakdown
    python benchmarks/distill_diagnostics.py linear
    python benchmarks/distill_diagnostics.py fit --lr 3e-3 --steps 1200
    python benchmarks/distill_diagnostics.py fit --target pair --lr 1e-2 --steps 300
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

WORK = Path("runs/potentials/interface-mlip")


def heldout(args) -> None:
    from dismai.energy.distill import get_recipe, template
    from dismai.energy.distill_training import frame_errors
    from dismai.energy.distilled import PotentialNet
    from dismai.energy.teacher_data import job_path, load_frames

    ck = torch.load(args.work / "training" / "checkpoint.pt", weights_only=True)
    net = PotentialNet(**ck["config"])
    net.load_state_dict(ck["state"]["best_state"])
    net.eval()
    r = get_recipe("interface-mlip")
    lattice, species = template()
    frames = load_frames([job_path(args.work / "teacher", "valid", k)
                          for k in range(r["n_valid"])], lattice, species)
    k = int(r["holdout_jobs"])
    sel = load_frames([job_path(args.work / "teacher", "train", j)
                       for j in range(r["n_train"] - k, r["n_train"])], lattice, species)
    print(f"selection frames: zero-force MAE {1000 * np.abs(sel.forces).mean():.1f} meV/A, "
          f"{1000 * np.abs(sel.forces[sel.kind == 0]).mean():.1f} on their relaxation frames")
    sub = frames.subset(np.arange(len(frames)) % 4 == 0)
    print(f"checkpoint after {ck['state']['epoch']} epochs; {len(sub)} held-out frames; "
          f"zero-force MAE {1000 * np.abs(sub.forces).mean():.1f} meV/A")
    print(frame_errors(net, sub))


def _best_net(work: Path):
    from dismai.energy.distilled import PotentialNet

    ck = torch.load(work / "training" / "checkpoint.pt", weights_only=True)
    net = PotentialNet(**ck["config"])
    net.load_state_dict(ck["state"]["best_state"])
    net.eval()
    return net, ck


def breakdown(args) -> None:
    from dismai.energy.distill import get_recipe, template
    from dismai.energy.teacher_data import job_path, load_frames
    from dismai.interface_cell import COMPOSITION, INTERFACE_COMPOSITION, SPECIES_ORDER

    net, ck = _best_net(args.work)
    r = get_recipe("interface-mlip")
    lattice, species = template()
    k = int(r["holdout_jobs"])
    sets = {"fitted": [job_path(args.work / "teacher", "train", j)
                       for j in range(r["n_train"] - k)],
            "selection": [job_path(args.work / "teacher", "train", j)
                          for j in range(r["n_train"] - k, r["n_train"])],
            "held-out": [job_path(args.work / "teacher", "valid", j) for j in range(r["n_valid"])]}
    interface = np.zeros(len(species), bool)
    start = 0
    for s in SPECIES_ORDER:
        interface[start:start + INTERFACE_COMPOSITION.get(s, 0)] = True
        start += COMPOSITION[s]
    sp = np.asarray(species)
    idx = net.species_index(species)
    lat = torch.tensor(lattice, dtype=torch.float32)
    print(f"checkpoint after {ck['state']['epoch']} epochs")
    for name, paths in sets.items():
        fr = load_frames(paths, lattice, species)
        stage = np.zeros(len(fr))  # position within its job's relaxation, 0..1
        for j in np.unique(fr.job):
            m = np.flatnonzero((fr.job == j) & (fr.kind == 0))
            stage[m] = np.arange(len(m)) / max(len(m) - 1, 1)
        keep = np.arange(len(fr)) % 8 == 0
        fr, stage = fr.subset(keep), stage[keep]
        pred = []
        for i in range(0, len(fr), 4):
            _, f = net.energy_forces(torch.tensor(fr.positions[i:i + 4], dtype=torch.float32),
                                     lat, idx)
            pred.append(f.detach().double().numpy())
        err = np.abs(np.concatenate(pred) - fr.forces)
        zero = np.abs(fr.forces)
        relax = fr.kind == 0
        rows = {"all": (slice(None), slice(None)),
                "early third": (relax & (stage < 1 / 3), slice(None)),
                "last third": (relax & (stage > 2 / 3), slice(None)),
                "rattled": (fr.kind == 1, slice(None)),
                "interface atoms": (slice(None), interface),
                "slab atoms": (slice(None), ~interface)}
        rows.update({f"{s} atoms": (slice(None), sp == s) for s in SPECIES_ORDER})
        print(f"{name}: {len(fr)} frames")
        for label, (fm, am) in rows.items():
            e, z = err[fm][:, am], zero[fm][:, am]
            print(f"  {label:16s} MAE {1000 * e.mean():6.1f}  zero-force {1000 * z.mean():6.1f}"
                  f"  meV/A")


def loss(args) -> None:
    from dismai.energy.distill import template
    from dismai.energy.distilled import PotentialNet
    from dismai.energy.teacher_data import job_path, load_frames

    lattice_np, species = template()
    k = args.fit_jobs
    fr = load_frames([job_path(args.work / "teacher", "train", j) for j in range(k)]
                     + [job_path(args.work / "teacher", "train", args.test_job)], lattice_np,
                     species)
    relax_pos = np.zeros(len(fr), int)
    for j in range(k + 1):
        m = np.flatnonzero((fr.job == j) & (fr.kind == 0))
        relax_pos[m] = np.arange(len(m))
    train = fr.subset((fr.job < k) & ((fr.kind == 1) | (relax_pos % 2 == 0)))
    test = fr.subset((fr.job == k) & (fr.kind == 0))
    stage = np.arange(len(test)) / (len(test) - 1)
    n = len(species)
    lattice = torch.tensor(lattice_np, dtype=torch.float32)
    x = torch.tensor(train.positions, dtype=torch.float32)
    f_ref = torch.tensor(train.forces, dtype=torch.float32)
    e_ref = torch.tensor(train.energy, dtype=torch.float32)
    rms = f_ref.square().mean((1, 2)).sqrt()
    w = 1.0 / rms.clamp(min=args.floor).square() if args.floor > 0 else torch.ones_like(rms)
    w = w / w.mean()
    torch.manual_seed(0)
    net = PotentialNet(sorted(set(species)), channels=32,
                       energy_shift=float(train.energy.mean() / n),
                       energy_scale=float(f_ref.square().mean().sqrt()), n_layers=args.layers)
    torch.nn.init.zeros_(net.readout[-1].weight)
    idx = net.species_index(species)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    rng = np.random.default_rng(0)
    print(f"{len(train)} training frames of {k} jobs, floor {args.floor}, w_energy "
          f"{args.w_energy}, layers {args.layers}")
    t0 = time.process_time()
    for step in range(1, args.steps + 1):
        lr = 0.5 * args.lr * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        b = rng.choice(len(train), 2, replace=False)
        e, f = net.energy_forces(x[b], lattice, idx, create_graph=True)
        loss_f = ((f - f_ref[b]).square().mean((1, 2)) * w[b]).mean()
        loss_e = ((e - e_ref[b]) / n).square().mean()
        opt.zero_grad()
        (loss_f + args.w_energy * loss_e).backward()
        opt.step()
        if step % args.every == 0 or step == args.steps:
            pred, pe = [], []
            for i in range(0, len(test), 8):
                e, f = net.energy_forces(torch.tensor(test.positions[i:i + 8], dtype=torch.float32),
                                         lattice, idx)
                pred.append(f.detach().double().numpy())
                pe.append(e.detach().double().numpy())
            err = np.abs(np.concatenate(pred) - test.forces)
            de = (np.concatenate(pe) - test.energy) / n
            de_rel = 1000 * np.abs((de - de[-1])[:-1]).mean()  # relative to its minimum
            parts = [f"{lab} {1000 * err[m].mean():.1f}/{1000 * np.abs(test.forces[m]).mean():.1f}"
                     for lab, m in (("all", stage >= 0), ("early", stage < 1 / 3),
                                    ("last", stage > 2 / 3))]
            print(f"step {step}: unseen candidate force MAE/zero-force (meV/A): "
                  f"{', '.join(parts)}; energy MAE {1000 * np.abs(de).mean():.1f}, relative to "
                  f"the minimum {de_rel:.1f} meV/atom ({time.process_time() - t0:.0f} CPU-s)",
                  flush=True)


def locality(args) -> None:
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    from dismai.energy import get_energy_model
    from dismai.energy.distill import template
    from dismai.energy.teacher_data import job_minimum, job_path

    lattice, species = template()
    _, x, _, _ = job_minimum(job_path(args.work / "teacher", "valid", 0))
    calc = get_energy_model("chgnet", model_name="0.3.0").calculator()
    atoms = Atoms(symbols=list(species), positions=x, cell=lattice, pbc=True)
    atoms.calc = calc
    f0 = atoms.get_forces().copy()
    rng = np.random.default_rng(0)
    z = x[:, 2]
    i, j, d = neighbor_list("ijd", atoms, 25.0)
    for q in (0.3, 0.5):
        moved = z < np.quantile(z, q)
        other = atoms.copy()
        other.calc = calc
        other.positions[moved] += rng.normal(0, 0.05, (moved.sum(), 3))
        df = 1000 * np.linalg.norm(other.get_forces() - f0, axis=1)
        dist = np.full(len(atoms), np.inf)  # to the nearest rattled atom
        sel = moved[j] & ~moved[i]
        np.minimum.at(dist, i[sel], d[sel])
        print(f"rattled the {moved.sum()} atoms below z = {np.quantile(z, q):.1f} Å")
        for lo, hi in ((0, 5), (5, 10), (10, 15), (15, 25)):
            m = ~moved & (dist >= lo) & (dist < hi)
            if m.any():
                print(f"  {m.sum():3d} atoms {lo}-{hi} Å away: force change mean "
                      f"{df[m].mean():6.1f}, max {df[m].max():6.1f} meV/A")


def validate(args) -> None:
    import json

    from dismai.energy.distill import get_recipe, validate_potential
    from dismai.energy.distilled import DistilledModel
    from dismai.energy.teacher_data import job_path

    r = get_recipe("interface-mlip")
    paths = [job_path(args.work / "teacher", "valid", j) for j in range(r["n_valid"])]
    out = validate_potential(DistilledModel("interface-mlip", path=args.weights), r, paths)
    target = args.weights.with_suffix(".validation.json")
    target.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def linear(args) -> None:
    from dismai.energy.distill import template
    from dismai.energy.distilled import radius_edges
    from dismai.energy.teacher_data import job_path, load_frames

    lattice_np, species = template()
    fr = load_frames([job_path(args.work / "teacher", "train", k) for k in range(4)],
                     lattice_np, species)
    names = sorted(set(species))
    z = np.array([names.index(s) for s in species])
    n, nb, rc = len(species), 8, 5.0
    lattice = torch.tensor(lattice_np)

    def features(frames):
        rows = []
        for t in frames:
            x = torch.tensor(fr.positions[t:t + 1])
            src, tgt, img = (a.numpy() for a in radius_edges(x, lattice, rc))
            vec = (x[0][tgt] - x[0][src]).numpy() - img @ lattice_np
            r = np.linalg.norm(vec, axis=1)
            g = (np.exp(-((r[:, None] - np.linspace(1.5, 5, nb)) / 0.45) ** 2)
                 * ((1 - r / rc) ** 2)[:, None])
            pair = z[tgt] * len(names) + z[src]
            a = np.zeros((n, 3, len(names) ** 2 * nb))
            for k in range(nb):  # force on the target along the source-to-target direction
                np.add.at(a, (tgt, slice(None), pair * nb + k), g[:, k:k + 1] * vec / r[:, None])
            rows.append(a.reshape(n * 3, -1))
        return np.concatenate(rows)

    rng = np.random.default_rng(0)
    relax = np.flatnonzero(fr.kind == 0)
    train = rng.choice(relax[fr.job[relax] < 3], 30, replace=False)
    test = rng.choice(relax[fr.job[relax] == 3], 10, replace=False)
    a, b = features(train), fr.forces[train].reshape(-1)
    w, *_ = np.linalg.lstsq(a, b, rcond=None)
    for label, frames in (("train (3 candidates)", train), ("test (a 4th candidate)", test)):
        aa, bb = features(frames), fr.forces[frames].reshape(-1)
        pred = aa @ w
        r2 = 1 - ((pred - bb) ** 2).sum() / ((bb - bb.mean()) ** 2).sum()
        print(f"{label}: MAE {1000 * np.abs(pred - bb).mean():.1f} meV/A, zero-force MAE "
              f"{1000 * np.abs(bb).mean():.1f}, R2 {r2:.2f}")


def _pair_forces(x: torch.Tensor, lattice: torch.Tensor) -> torch.Tensor:
    from dismai.energy.distilled import radius_edges

    x = x.clone().requires_grad_(True)
    src, tgt, img = radius_edges(x.detach(), lattice, 5.0)
    flat = x.reshape(-1, 3)
    r = (flat[tgt] - flat[src] - img @ lattice).norm(dim=-1)
    e = (torch.exp(-2 * (r - 2.5)) * (1 - r / 5) ** 2 * 0.05).sum()
    return -torch.autograd.grad(e, x)[0]


def fit(args) -> None:
    from dismai.energy.distill import template
    from dismai.energy.distilled import PotentialNet
    from dismai.energy.teacher_data import job_path, load_frames

    lattice_np, species = template()
    fr = load_frames([job_path(args.work / "teacher", "train", k) for k in range(3)],
                     lattice_np, species)
    rng = np.random.default_rng(0)
    sel = rng.choice(np.flatnonzero(fr.kind == 0), 20, replace=False)
    lattice = torch.tensor(lattice_np, dtype=torch.float32)
    x = torch.tensor(fr.positions[sel], dtype=torch.float32)
    target = (_pair_forces(x, lattice) if args.target == "pair"
              else torch.tensor(fr.forces[sel], dtype=torch.float32))
    print(f"target {args.target}: zero-force MAE {1000 * target.abs().mean():.1f} meV/A")
    torch.manual_seed(0)
    net = PotentialNet(sorted(set(species)), channels=args.channels, n_layers=args.layers,
                       energy_shift=float(fr.energy.mean() / len(species)),
                       energy_scale=float(target.square().mean().sqrt()))
    torch.nn.init.zeros_(net.readout[-1].weight)
    idx = net.species_index(species)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    print(f"{sum(p.numel() for p in net.parameters())} parameters, {args.layers} layers, "
          f"{args.channels} channels, lr {args.lr}{' cosine' if args.cosine else ''}")
    t0 = time.process_time()
    for step in range(1, args.steps + 1):
        if args.cosine:
            for g in opt.param_groups:
                g["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * step / args.steps))
        b = rng.choice(20, 2, replace=False)
        _, f = net.energy_forces(x[b], lattice, idx, create_graph=True)
        loss = (f - target[b]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            _, f = net.energy_forces(x, lattice, idx)
            print(f"step {step}: force MAE {1000 * (f - target).abs().mean():.1f} meV/A "
                  f"({time.process_time() - t0:.0f} CPU-s)", flush=True)


def wall(args) -> None:
    import io
    import json

    from dismai.energy.distill import get_recipe, pair_floors, template
    from dismai.energy.distilled import PotentialNet
    from dismai.energy.teacher_data import job_path, load_frames
    from dismai.fileio import write_bytes, write_json
    from dismai.provenance import file_sha256

    lattice, species = template()
    paths = [job_path(args.work / "teacher", "train", j) for j in range(args.fit_jobs)]
    state = torch.load(args.weights, weights_only=True)
    cfg = {**state["config"], "pair_floor": pair_floors(get_recipe("interface-mlip"),
                                                        load_frames(paths, lattice, species))}
    net = PotentialNet(**cfg)
    net.load_state_dict(state["state_dict"])
    buf = io.BytesIO()
    torch.save({"config": net.config, "state_dict": net.state_dict()}, buf)
    out = args.out / args.weights.name
    write_bytes(out, buf.getvalue())
    manifest = json.loads(args.weights.with_suffix(".json").read_text())
    manifest.pop("validation", None)
    manifest.update(weights_sha256=file_sha256(out), base_weights_sha256=file_sha256(
        args.weights), pair_floor=net.config["pair_floor"])
    write_json(out.with_suffix(".json"), manifest)
    print(json.dumps(net.config["pair_floor"], indent=1))


def _compare_with_teacher_fire(run, tag: str) -> dict:
    """Steps, fingerprint distances and energies of a RelaxRun over the first held-out
    candidates against the teacher jobs' CHGNet FIRE minima."""
    import json

    from dismai.energy.distill import _candidates, _spearman, get_recipe, teacher_minima
    from dismai.energy.teacher_data import job_path
    from dismai.interface_cell import CATIONS
    from dismai.metrics.interface.motifs import compute_features

    cands = _candidates(get_recipe("interface-mlip"), "valid")
    done = run.structures
    idx = np.asarray(done.properties["input_index"])
    teacher, _, e_t, steps_t = teacher_minima(
        cands, [job_path(WORK / "teacher", "valid", int(i)) for i in idx])
    ft, fo = compute_features(teacher), compute_features(done)
    e_o = np.asarray(done.properties["energy_per_atom"])
    out = {"what": tag, "candidates": len(run.table), "converged": len(done),
           "steps_mean": float(np.mean(done.properties["relax_steps"])),
           "teacher_fire_steps_mean": float(np.mean(steps_t)),
           "d": {s: float(np.linalg.norm(ft.mean_fp[s] - fo.mean_fp[s], axis=1).mean())
                 for s in CATIONS},
           "spearman_energy": _spearman(e_o, e_t),
           "energy_minus_teacher_fire_mev_atom_mean": 1000 * float(np.mean(e_o - e_t)),
           "energy_abs_difference_mev_atom_max": 1000 * float(np.max(np.abs(e_o - e_t))),
           "wall_s_per_structure": float(np.mean([r["seconds"] for r in run.table]))}
    print(json.dumps(out, indent=1))
    return out


def prerelax(args) -> None:
    from dismai.energy import get_energy_model
    from dismai.energy.distill import _candidates, get_recipe
    from dismai.energy.distilled import DistilledModel
    from dismai.relax import relax_structures

    cands = _candidates(get_recipe("interface-mlip"), "valid")[np.arange(args.n)]
    run = relax_structures(cands, get_energy_model("chgnet", model_name="0.3.0"), args.out,
                           optimizer="surrogate", n_workers=args.workers,
                           surrogate=DistilledModel("interface-mlip", path=args.weights))
    _compare_with_teacher_fire(run, f"CHGNet FIRE after pre-relaxing on {args.weights}")


def teacher_cg(args) -> None:
    from dismai.energy import get_energy_model
    from dismai.energy.distill import _candidates, get_recipe
    from dismai.relax import relax_structures

    cands = _candidates(get_recipe("interface-mlip"), "valid")[np.arange(args.n)]
    run = relax_structures(cands, get_energy_model("chgnet", model_name="0.3.0"), args.out,
                           optimizer="cg", n_workers=args.workers)
    _compare_with_teacher_fire(run, "CHGNet SciPy CG")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["heldout", "breakdown", "loss", "locality", "validate",
                                     "linear", "fit", "wall", "prerelax", "teacher-cg"])
    ap.add_argument("--weights", type=Path, help="validate, wall, prerelax: a weights file")
    ap.add_argument("--out", type=Path, help="wall: a folder; prerelax, teacher-cg: a store")
    ap.add_argument("--n", type=int, default=20, help="prerelax, teacher-cg: candidates")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--floor", type=float, default=0.0, help="loss: eV/A, 0 = squared loss")
    ap.add_argument("--w-energy", type=float, default=1.0)
    ap.add_argument("--every", type=int, default=200)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--channels", type=int, default=32, help="fit, loss: network width")
    ap.add_argument("--cosine", action="store_true", help="fit: cosine-decay the lr to 0")
    ap.add_argument("--fit-jobs", type=int, default=4, help="loss: held-in jobs fitted")
    ap.add_argument("--test-job", type=int, default=15, help="loss: the held-in job tested")
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--target", choices=["chgnet", "pair"], default="chgnet")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--steps", type=int, default=1200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    commands = {"heldout": heldout, "breakdown": breakdown, "loss": loss, "locality": locality,
                "validate": validate, "linear": linear, "fit": fit, "wall": wall,
                "prerelax": prerelax, "teacher-cg": teacher_cg}
    commands[args.what](args)


if __name__ == "__main__":
    main()
