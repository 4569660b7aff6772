"""How fast is the near-copy check (dismai.metrics.memorisation), and what does the
prefilter buy?  For each dataset: CPU time of the two-stage search (invariant prefilter,
then exact distances on the candidates) for N generated structures against the full
training split, and the ratio against the exact distance to every training structure
(measured on a few generated structures and scaled), plus how often the two agree.

    python benchmarks/near_copy_speed.py --n 1000 --exact 3

Generated structures are the validation split, repeated with rattling to reach N (what is
timed does not depend on what they are).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _cpu() -> float:
    return time.process_time()


def main(argv=None) -> int:
    from dismai.datasets import load
    from dismai.metrics import memorisation as mem
    from dismai.structures import StructureSet

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="*", default=["alloy-300K-narrow", "a-si-64", "a-si"])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--exact", type=int, default=3, help="structures timed without prefilter")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    for name in args.datasets:
        ds = load(name)
        kind = ds.family.near_copy_kind
        reps = -(-args.n // len(ds.val))
        frac = np.concatenate([ds.val.frac] * reps)[:args.n]
        if kind == "atoms":
            frac = (frac + rng.normal(0, 0.002, frac.shape)) % 1.0
        gen = StructureSet(frac, ds.val.lattice, ds.val.species_blocks)
        train = ds.train
        t0 = _cpu()
        mem.nearest_distances(kind, gen[:1], train)  # training-side cache, as in an evaluation
        t_cache = _cpu() - t0
        t0 = _cpu()
        fast = mem.nearest_distances(kind, gen, train)
        t_fast = _cpu() - t0
        few = gen[:args.exact]
        t0 = _cpu()
        if kind == "sites":
            full = mem.alloy_nearest(few, train, candidates=len(train))
        else:
            full = mem.atoms_nearest(few, train, candidates=len(train))
        t_full = (_cpu() - t0) / len(few) * len(gen)
        agree = np.allclose(full, fast[:len(few)], atol=1e-9)
        print(f"{name}: {len(gen)} x {len(train)} structures ({kind}): two-stage "
              f"{t_fast:.1f} CPU-s (+{t_cache:.1f} CPU-s training-side, once per process); "
              f"exact against all, scaled from {len(few)}: {t_full:.0f} CPU-s; ratio "
              f"{t_full / t_fast:.0f}x; same nearest distances on those {len(few)}: {agree}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
