"""CPU cost of the energy models and of relaxation (numbers in docs/energy-models.md).

    python benchmarks/energy_models_speed.py [--threads 1] [--md-steps 5000] [--mlip]

Measures: LAMMPS SW MD throughput (atom-steps/s, 256 atoms, NVT at 3000 K), one
energy+force call on a 256-atom cell for every installed backend (median of repeats
after a warm-up call), and the relaxation of a rattled 64-atom diamond cell.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
from ase.build import bulk

from dismai.energy import BackendUnavailable, get_energy_model
from dismai.relax import relax_structures
from dismai.structures import StructureSet


def cell_256(seed=0):
    at = bulk("Si", "diamond", a=5.431, cubic=True).repeat((4, 4, 2))
    at.rattle(0.1, seed=seed)
    return at


def time_calls(calc, atoms, repeats):
    atoms.calc = calc
    out = []
    for k in range(repeats + 1):
        atoms.positions[0, 0] += 1e-3 * (1 if k % 2 else -1)
        t = time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        out.append(time.perf_counter() - t)
    return statistics.median(out[1:]), out[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the MLIPs")
    ap.add_argument("--md-steps", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mlip", action="store_true", help="also time CHGNet and SevenNet")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    # force calls, MLIPs first (a LAMMPS instance resets OpenMP threads to 1)
    rows = []
    if args.mlip:
        import torch

        torch.set_num_threads(args.threads)
        for name in ("chgnet", "sevennet"):
            try:
                model = get_energy_model(name)
            except BackendUnavailable as exc:
                print(f"{name}: skipped ({exc})")
                continue
            t = time.perf_counter()
            calc = model.calculator()
            load = time.perf_counter() - t
            med, first = time_calls(calc, cell_256(), args.repeats)
            rows.append((name, med, first, load))
    for backend in ("lammps", "numpy"):
        try:
            model = get_energy_model("sw-vink", backend=backend)
        except BackendUnavailable as exc:
            print(f"sw-vink/{backend}: skipped ({exc})")
            continue
        med, first = time_calls(model.calculator(), cell_256(), args.repeats)
        rows.append((f"sw-vink/{backend}", med, first, 0.0))
    print("\nenergy+forces, 256 atoms (s per call; median, first call, model load)")
    for name, med, first, load in rows:
        print(f"  {name:18s} {med:9.4f} {first:9.4f} {load:7.2f}")

    # LAMMPS MD throughput
    try:
        from dismai.energy.stillinger_weber import LammpsSW, MDStage

        at = cell_256()
        with LammpsSW(at.cell.array, at.positions) as s:
            t = time.perf_counter()
            s.run_md([MDStage(3000.0, 3000.0, args.md_steps * 1e-3)], timestep_fs=1.0,
                     seed=1, trace_every=args.md_steps)
            dt = time.perf_counter() - t
        print(f"\nLAMMPS SW NVT MD: {len(at)} atoms x {args.md_steps} steps in {dt:.2f} s "
              f"= {len(at) * args.md_steps / dt:.3g} atom-steps/s")
    except BackendUnavailable as exc:
        print(f"LAMMPS MD: skipped ({exc})")

    # relaxation of a rattled 64-atom diamond cell
    at = bulk("Si", "diamond", a=5.431, cubic=True).repeat(2)
    at.rattle(0.1, seed=3)
    ss = StructureSet.from_atoms([at])
    print("\nrelaxation, 64-atom diamond rattled 0.1 Å (sw-vink)")
    # (label, energy model, relax_structures options)
    cases = [(f"{backend:6s} {opt:10s}", "sw-vink",
              {"optimizer": opt, "model_kwargs": {"backend": backend}})
             for backend, opt in [("numpy", "cg"), ("lammps", "cg"), ("lammps", "fire"),
                                  ("lammps", "lammps-cg")]]
    if args.mlip:
        cases += [(f"{name:17s}", name, {}) for name in ("chgnet", "sevennet")]
    for label, model, options in cases:
        try:
            t = time.perf_counter()
            run = relax_structures(ss, model, n_workers=1, progress=False, **options)
            dt = time.perf_counter() - t
        except BackendUnavailable as exc:
            print(f"  {'/'.join(label.split())}: skipped ({exc})")
            continue
        r = run.table[0]
        print(f"  {label} {r['status']:10s} steps {r['steps']:4d}  "
              f"E {r['e_initial']:.5f} -> {r['e_final']:.5f} eV/atom  "
              f"fmax {r['fmax_final']:.4f}  {dt:.2f} s")
    print(f"\nE(diamond, Vink SW) reference: {-2 * 1.64833:.5f} eV/atom; "
          f"np.__version__ {np.__version__}")


if __name__ == "__main__":
    main()
