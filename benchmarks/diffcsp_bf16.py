"""Does bf16 autocast change DiffCSP beyond noise?  fp32 vs bf16 on one trained model.

    python benchmarks/diffcsp_bf16.py RUN_DIR [--n 8] [--seed 0] [--device auto]

1. Denoiser outputs on fixed random inputs at several noise levels: the relative difference
   ||eps_bf16 - eps_fp32|| / ||eps_fp32|| for dismai's CSPNet and for the straightforward
   reference transcription (same weights), so the bf16 error of the rewrite can be told apart
   from that of the architecture.
2. Sampling: n structures with the same seed in fp32 and in bf16, timed, compared by the
   nearest-neighbour distance distribution (any dataset) and, for the 14.4 Å alloy cube, by
   how far atoms sit from the a/2 = 1.8 Å grid (spec datasets.md: FCC sites lie on it).

bf16 runs as torch.autocast on the model's device (CUDA on a GPU; on a CPU it is emulated
and slow, but rounds the same way: bf16 inputs to matrix products, fp32 accumulation).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from dismai.models import ModelError
from dismai.models.diffcsp import reference_forward
from dismai.workflows import load_run as _load_model


def _ctx(dev: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)


def _nn_stats(s) -> tuple[float, float]:
    d = []
    for f in s.frac:
        cart = np.mod(f @ s.lattice, np.diag(s.lattice))  # orthorhombic cells only
        d.append(cKDTree(cart, boxsize=np.diag(s.lattice)).query(cart, k=2)[0][:, 1])
    d = np.concatenate(d)
    return float(np.median(d)), float(np.percentile(d, 5))


def _grid_offset(s) -> float:
    c = np.mod(s.frac * 14.4, 14.4)
    g = (c - c[:, :1]) / 1.8
    return float(np.median(np.linalg.norm((g - np.round(g)) * 1.8, axis=-1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--n", type=int, default=8, help="structures to sample each way")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    try:
        m, src = _load_model(args.run_dir, device=args.device)
    except (ModelError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if m.name != "diffcsp":
        raise SystemExit(f"error: {src} holds a {m.name} model; this benchmark needs diffcsp")
    dev, net, cfg = m.device, m.net, m.config
    print(f"model {src} on {dev.type}: {cfg.num_layers} x {cfg.hidden_dim}, "
          f"T = {cfg.timesteps}, N = {m.template.n_atoms}")
    g = torch.Generator().manual_seed(args.seed)
    x = torch.rand(2, m.template.n_atoms, 3, generator=g, dtype=torch.float64).to(dev)
    print("denoiser output, relative difference bf16 vs fp32:")
    with torch.no_grad():
        for t in sorted({1, cfg.timesteps // 10 or 1, cfg.timesteps // 2 or 1, cfg.timesteps}):
            tt = torch.full((2,), t, device=dev)
            row = []
            for f in (net, lambda a, b: reference_forward(net, a, b)):
                ref = f(x, tt).float()
                with _ctx(dev, True):
                    low = f(x, tt).float()
                row.append(float((low - ref).norm() / ref.norm()))
            print(f"  t = {t:4d}: dismai {row[0]:.4f}   reference transcription {row[1]:.4f}")
    if args.n < 1:
        return
    out = {}
    for amp in (False, True):
        m._autocast = lambda amp=amp: _ctx(dev, amp)
        t0 = time.perf_counter()
        s = m.sample(args.n, seed=args.seed)
        out[amp] = (s, time.perf_counter() - t0)
    alloy = np.allclose(m.template.lattice, np.eye(3) * 14.4, atol=1e-3)
    for amp, (s, sec) in out.items():
        med, p5 = _nn_stats(s)
        extra = f", median offset from the 1.8 Å grid {_grid_offset(s):.4f} Å" if alloy else ""
        print(f"{'bf16' if amp else 'fp32'} sampling of {args.n}: {sec:.1f} s; nearest-neighbour "
              f"distance median {med:.4f} Å, 5th percentile {p5:.4f} Å{extra}")
    diff = (out[True][0].frac - out[False][0].frac + 0.5) % 1.0 - 0.5
    print(f"same seed, bf16 vs fp32: median per-atom displacement "
          f"{np.median(np.linalg.norm(diff @ m.template.lattice, axis=-1)):.3f} Å")


if __name__ == "__main__":
    main()
