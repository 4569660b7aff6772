"""Diagnostics of the interface-mlip distillation (docs/interface.md, "Result so far").

``heldout``: errors of the weights in a training checkpoint (its best epoch) on the held-out
candidates' teacher frames (every 4th frame), beside the MAE of predicting zero forces.

``linear``: how much of CHGNet's forces a linear species-pair force model explains: 25
ordered species pairs x 8 Gaussian radial functions (cutoff 5 Å), least squares on 30
relaxation frames of 3 held-in candidates, tested on 10 frames of a fourth.

``fit``: can the network fit 20 relaxation frames of 3 held-in candidates?  Squared force
loss, Adam, batches of 2; the target is CHGNet's forces or (``--target pair``) the forces
of a made-up species-blind pair potential on the same frames, a target known to be easy.

    python benchmarks/distill_diagnostics.py heldout
    python benchmarks/distill_diagnostics.py linear
    python benchmarks/distill_diagnostics.py fit --lr 3e-3 --steps 1200
    python benchmarks/distill_diagnostics.py fit --target pair --lr 1e-2 --steps 300
"""

from __future__ import annotations

import argparse
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
    net = PotentialNet(sorted(set(species)), channels=32,
                       energy_shift=float(fr.energy.mean() / len(species)),
                       energy_scale=float(target.square().mean().sqrt()))
    torch.nn.init.zeros_(net.readout[-1].weight)
    idx = net.species_index(species)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    t0 = time.process_time()
    for step in range(1, args.steps + 1):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["heldout", "linear", "fit"])
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--target", choices=["chgnet", "pair"], default="chgnet")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--steps", type=int, default=1200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    {"heldout": heldout, "linear": linear, "fit": fit}[args.what](args)


if __name__ == "__main__":
    main()
