"""Batched FIRE (`dismai.relax_batch`) against FIRE one structure at a time
(`dismai.relax.relax_atoms`), in the same process: structures relaxed per CPU-minute and
the ratio, with the step counts of both (they should agree).

    python benchmarks/relax_batch_speed.py --model sw-vink --dataset a-si-64 --n 16
    python benchmarks/relax_batch_speed.py --model chgnet --dataset a-si-64 --n 8
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    import numpy as np

    from dismai.datasets import load
    from dismai.energy import get_energy_model
    from dismai.errors import DismaiError
    from dismai.relax import relax_atoms
    from dismai.relax_batch import fire_relax_batch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sw-vink")
    p.add_argument("--dataset", default="a-si-64")
    p.add_argument("--n", type=int, default=16, help="validation structures relaxed")
    p.add_argument("--rattle", type=float, default=0.05, help="Gaussian rattle, Å")
    args = p.parse_args(argv)
    try:
        data = load(args.dataset)
        model = get_energy_model(args.model)
    except DismaiError as exc:
        raise SystemExit(f"error: {exc}") from None
    s = data.val[:args.n]
    rng = np.random.default_rng(0)
    s = s.with_frac(s.frac + rng.normal(0, args.rattle, s.frac.shape) @ np.linalg.inv(
        s.lattice))
    model.energy_forces(s[:1])  # load weights outside the timing

    c0 = time.process_time()
    batch, _ = fire_relax_batch(s, model)
    cpu_batch = time.process_time() - c0
    c0 = time.process_time()
    single = [relax_atoms(a, model.calculator(), model=model, optimizer="fire")[0]
              for a in s.to_atoms()]
    cpu_single = time.process_time() - c0

    same = sum(a["steps"] == b["steps"] for a, b in zip(batch, single, strict=True))
    print(f"{args.model} on {len(s)} {args.dataset} structures rattled by {args.rattle} Å: "
          f"mean FIRE steps {np.mean([r['steps'] for r in batch]):.1f} (batched) / "
          f"{np.mean([r['steps'] for r in single]):.1f} (one at a time); equal step counts "
          f"for {same} of {len(s)}")
    print("| engine | CPU-s | structures per CPU-minute |\n|---|---|---|")
    print(f"| one at a time (relax_atoms, ASE FIRE) | {cpu_single:.1f} | "
          f"{60 * len(s) / cpu_single:.2f} |")
    print(f"| batched (fire_relax_batch) | {cpu_batch:.1f} | {60 * len(s) / cpu_batch:.2f} |")
    print(f"ratio (batched / one at a time, structures per CPU-minute): "
          f"{cpu_single / cpu_batch:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
