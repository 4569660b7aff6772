"""DiffCSP denoiser throughput: dismai's CSPNet vs the straightforward per-edge implementation.

Both run the paper-size network (4 layers x 256 hidden, 128 frequencies; paper §4.2.2) with
the same weights:

* dismai (``CSPNet.forward``): split first edge linear, per-atom sin/cos tables, one triangle
  of atom blocks for the pair products (docs/diffcsp.md);
* reference (``reference_forward``): per layer, per edge, the concatenation
  [h_i, h_j, G (9), sin/cos(2 pi m d_ij) (768)] -> Linear(1289, 256), phases in fp32, as the
  published CSPNet computes it (spec graph-models.md §1.2).

Training = one full ``DiffCSP.train_step`` at batch 4 (noise, target, forward, backward,
clip, Adam).  Sampling = one predictor-corrector step (2 denoiser calls) at batch 16; the
reference runs it in chunks (--ref-chunk) to bound its memory.  Throughput is in
structure-steps per second (structures x denoiser calls per second for sampling).  Before
timing, the outputs of the two implementations are compared in float64 and float32 (phases
exact) and must agree to 1e-5.  Timings are interleaved so machine load affects both alike.

    python benchmarks/diffcsp_speed.py                  # N = 256 (alloy) and 264 (interface)
    python benchmarks/diffcsp_speed.py --n-atoms 256 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from dismai.models.diffcsp import DiffCSP, reference_forward
from dismai.structures import StructureSet

PAPER = {"hidden_dim": 256, "num_layers": 4, "num_freqs": 128, "time_dim": 256,
         "timesteps": 1000, "batch_size": 4, "device": "cpu", "seed": 0}


def structures(n_atoms: int, m: int, rng) -> StructureSet:
    """256: the FCC alloy template; 264: random atoms in the interface cell and composition."""
    if n_atoms == 256:
        from dismai.datasets.alloy_recipe import random_site_species, structures_from_site_species

        return structures_from_site_species(random_site_species(m, seed=int(rng.integers(1e9))))
    if n_atoms != 264:
        raise SystemExit("--n-atoms: 256 (alloy) or 264 (interface)")
    a, b, c, gamma = 12.46997, 17.19967, 40.0, np.radians(75.6674)
    lattice = np.array([[a, 0, 0], [b * np.cos(gamma), b * np.sin(gamma), 0], [0, 0, c]])
    species = ["Li"] * 72 + ["Sc"] * 12 + ["Co"] * 36 + ["Cl"] * 72 + ["O"] * 72
    return StructureSet(lattice, species, rng.random((m, 264, 3)))


def build(data: StructureSet, denoiser: str) -> DiffCSP:
    torch.manual_seed(0)
    m = DiffCSP({**PAPER, "denoiser": denoiser})
    m._build(data)
    m.optimizers = m.make_optimizers()
    m.prepare_data(data, None)
    m.start_epoch(0)
    m.set_train_mode(True)
    return m


def check_equal(eff: DiffCSP, data: StructureSet) -> dict:
    """Max |difference| of the two implementations on one structure at three noise levels."""
    net = eff.net
    x = torch.as_tensor(data.frac[:1], dtype=torch.float64).expand(3, -1, -1).contiguous()
    t = torch.tensor([1, 500, 1000])
    out = {}
    with torch.no_grad():
        net64 = net.double()
        ref64 = reference_forward(net64, x, t, exact_phases=True)
        out["float64: dismai vs reference"] = float((net64(x, t) - ref64).abs().max())
        net.float()
        eff32 = net(x, t)
        out["float32: dismai vs reference (exact phases)"] = float(
            (eff32 - reference_forward(net, x, t, exact_phases=True)).abs().max())
        out["float32: dismai vs float64"] = float((eff32.double() - ref64).abs().max())
        out["float32: reference (fp32 phases, as coded) vs float64"] = float(
            (reference_forward(net, x.float(), t).double() - ref64).abs().max())
    return out


def time_train(m: DiffCSP) -> float:
    t0 = time.perf_counter()
    m.train_step(np.arange(4), 0)
    return time.perf_counter() - t0


def time_sample_step(m: DiffCSP, x: torch.Tensor, chunk: int) -> float:
    """One sampler step: two denoiser calls on the whole batch (in chunks for the reference)."""
    t = torch.full((len(x),), 700)
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(2):
            for i in range(0, len(x), chunk):
                m.denoise(x[i:i + chunk], t[i:i + chunk])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-atoms", type=int, nargs="+", default=[256, 264])
    ap.add_argument("--sample-batch", type=int, default=16)
    ap.add_argument("--ref-chunk", type=int, default=4,
                    help="structures per reference call when sampling (memory)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--skip-check", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"DiffCSP denoiser, paper size (4 layers x 256, 128 freqs), torch {torch.__version__},"
          f" {torch.get_num_threads()} threads, CPU")
    failed = False
    for n in args.n_atoms:
        data = structures(n, 8, rng)
        eff, ref = build(data, "efficient"), build(data, "reference")
        ref.net.load_state_dict(eff.net.state_dict())
        print(f"\nN = {n} ({data.formula}), {n * n} pairs per structure")
        if not args.skip_check:
            diffs = check_equal(eff, data)
            for k, v in diffs.items():
                print(f"  max |diff| {k:<52} {v:.2e}")
            ok = (diffs["float64: dismai vs reference"] < 1e-5
                  and diffs["float32: dismai vs reference (exact phases)"] < 1e-5)
            print(f"  identical to 1e-5: {'yes' if ok else 'NO'}")
            failed |= not ok
        xs = torch.as_tensor(structures(n, args.sample_batch, rng).frac, dtype=torch.float64)
        tr = {"dismai": [], "reference": []}
        sa = {"dismai": [], "reference": []}
        for _ in range(args.repeats):
            tr["dismai"].append(time_train(eff))
            tr["reference"].append(time_train(ref))
            sa["dismai"].append(time_sample_step(eff, xs, args.sample_batch))
            sa["reference"].append(time_sample_step(ref, xs, args.ref_chunk))
        med = {k: statistics.median(v) for k, v in tr.items()}
        smed = {k: statistics.median(v) for k, v in sa.items()}
        print(f"  {'':<10} {'train step (B=4)':>17} {'struct-steps/s':>15} "
              f"{'sample step (B=' + str(args.sample_batch) + ')':>19} {'struct-calls/s':>15}")
        for k in ("reference", "dismai"):
            print(f"  {k:<10} {med[k]:>16.2f}s {4 / med[k]:>15.3f} {smed[k]:>18.2f}s "
                  f"{2 * args.sample_batch / smed[k]:>15.3f}")
        print(f"  speed-up (dismai / reference): training {med['reference'] / med['dismai']:.2f}x,"
              f" sampling {smed['reference'] / smed['dismai']:.2f}x  (median of {args.repeats})")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if failed:
        raise SystemExit("outputs differ by more than 1e-5")


if __name__ == "__main__":
    main()
