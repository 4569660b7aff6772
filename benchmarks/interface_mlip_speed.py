"""CPU cost of the distilled interface potential against its teacher, CHGNet, on real
interface candidates, in the same process on one thread.

Reports CPU seconds per energy+force call (one structure, and per structure in batches)
and per FIRE relaxation to fmax 0.05 eV/Å, and the ratios to CHGNet.

    python benchmarks/interface_mlip_speed.py [--weights PATH] [--candidates 4] [--relax 2]
    python benchmarks/interface_mlip_speed.py --untrained --relax 0   # cost only

--untrained times a randomly initialised network of the recipe's size (the cost does not
depend on the weights; relaxations need trained ones).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def cpu(fn, repeat: int = 1) -> float:
    t0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="a .pt with its .json (default: shipped)")
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--relax", type=int, default=2, help="candidates relaxed by both")
    ap.add_argument("--seed", type=int, default=303)
    ap.add_argument("--untrained", action="store_true",
                    help="time a random network of the recipe's size (no weights needed)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from dismai.datasets.interface_recipe import build_candidates
    from dismai.energy import get_energy_model
    from dismai.energy.distilled import DistilledModel
    from dismai.relax import relax_structures

    cands = build_candidates(args.candidates, seed=args.seed)
    one = cands[[0]]
    distilled = DistilledModel(path=args.weights)
    if args.untrained:
        from dismai.energy.distill import get_recipe
        from dismai.energy.distilled import PotentialNet

        torch.manual_seed(0)
        cfg = {**get_recipe("interface-mlip")["model"], "species": sorted(set(cands.species))}
        distilled._net = PotentialNet(**cfg).eval()
    chgnet = get_energy_model("chgnet")
    distilled.energy_forces(one)
    chgnet.energy_forces(one)
    rows = []
    t_d = cpu(lambda: distilled.energy_forces(one), 5)
    t_c = cpu(lambda: chgnet.energy_forces(one), 3)
    rows.append(("energy+forces, 1 structure", t_c, t_d))
    t_db = cpu(lambda: distilled.energy_forces(cands)) / len(cands)
    t_cb = cpu(lambda: chgnet.energy_forces(cands)) / len(cands)
    rows.append((f"energy+forces, batch of {len(cands)}, per structure", t_cb, t_db))
    sub = cands[list(range(args.relax))]
    steps = {}
    for name, model in (("chgnet", chgnet), ("distilled", distilled)) if args.relax else ():
        t0 = time.process_time()
        run = relax_structures(sub, model, optimizer="fire", n_workers=1, progress=False)
        steps[name] = (time.process_time() - t0) / len(sub), np.mean(
            [r["steps"] for r in run.table])
    if steps:
        rows.append((f"FIRE relaxation, per structure ({args.relax})", steps["chgnet"][0],
                     steps["distilled"][0]))
    print(f"{'CPU seconds, one thread':48s} {'CHGNet':>10s} {'distilled':>10s} {'ratio':>8s}")
    for label, c, d in rows:
        print(f"{label:48s} {c:10.4f} {d:10.4f} {c / d:7.1f}x")
    if steps:
        print(f"mean FIRE steps: CHGNet {steps['chgnet'][1]:.1f}, "
              f"distilled {steps['distilled'][1]:.1f}")


if __name__ == "__main__":
    main()
