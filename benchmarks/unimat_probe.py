"""How far a trained UniMat network is from the exact denoiser, on a-Si.

In a-Si every fractional coordinate is uniform over the cell, so each coordinate pixel of
a UniMat video is uniform on [0, 1] and its exact single-pixel denoiser E[x0 | x_t] is
known (`image_diffusion.uniform_posterior_mean`).  At each probed time this prints, on
training videos noised to that time, the spread of the network's predicted x0 at the
coordinate pixels against the exact one, their RMS difference, the network's and the
exact denoiser's RMS error against the truth, and the slope of the network's prediction
on the exact one (1 = right; < 1 = pulled towards the middle of the cell).  Then it samples
`--n` structures and prints the spread of their coordinates (uniform: 0.289) and their
median nearest-neighbour distance (training set 2.31 Å, uniformly random 1.51 Å).  The
diagnosis behind docs/unimat.md, "The learning gate".

The exact denoiser ignores what the other atoms say, so a network that has learnt a-Si
can beat it at high noise; one that has not yet learnt the marginal cannot.

    python benchmarks/unimat_probe.py runs/learning/unimat/run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main(argv=None) -> int:
    from dismai.datasets import load
    from dismai.errors import DismaiError
    from dismai.models.image_diffusion import (
        _pad,
        alpha_sigma,
        cosine_log_snr,
        predicted_x0,
        uniform_posterior_mean,
    )
    from dismai.workflows import load_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a unimat run folder or model file trained on an a-Si set")
    p.add_argument("--dataset", default="a-si-64")
    p.add_argument("--videos", type=int, default=64, help="training videos noised")
    p.add_argument("--n", type=int, default=100, help="structures sampled (0: none)")
    p.add_argument("--times", type=float, nargs="+",
                   default=[0.9, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05])
    args = p.parse_args(argv)
    try:
        model, _ = load_run(args.run, device="cpu")
        data = load(args.dataset)
    except DismaiError as exc:
        raise SystemExit(f"error: {exc}") from None
    if model.name != "unimat":
        raise SystemExit(f"{args.run}: a {model.name} run, not unimat")
    if set(data.template.species) != {"Si"}:
        raise SystemExit(f"{args.dataset}: the exact denoiser needs uniform coordinates "
                         "(an a-Si set)")
    cfg, net = model.config, model._sampler("base")
    x = torch.as_tensor(model.videos(data.train[:args.videos]))
    pix, atoms = model._pixels, np.arange(len(model._pixels))

    def coord(v):
        return v[:, :, atoms, pix[:, 0], pix[:, 1]]

    g = torch.Generator().manual_seed(1)
    print(f"unimat ({cfg.objective}-prediction) on {args.dataset}, {args.videos} training "
          "videos, coordinate pixels only")
    print("| t | std of x0: network / exact | RMS network - exact | RMS error: network / "
          "exact | slope on exact |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        for t in args.times:
            ls = cosine_log_snr(torch.full((len(x),), t))
            a, s = alpha_sigma(ls)
            xt = _pad(a, x) * x + _pad(s, x) * torch.randn(x.shape, generator=g)
            got = coord(predicted_x0(xt, net(xt, ls), ls, cfg.objective).clamp(-1, 1))
            ref, true = coord(uniform_posterior_mean(xt, ls)), coord(x)
            slope = float(((got - got.mean()) * (ref - ref.mean())).mean() / ref.var())
            print(f"| {t:g} | {got.std():.3f} / {ref.std():.3f} | "
                  f"{(got - ref).square().mean().sqrt():.3f} | "
                  f"{(got - true).square().mean().sqrt():.3f} / "
                  f"{(ref - true).square().mean().sqrt():.3f} | {slope:.2f} |")
    if args.n:
        c0 = time.process_time()
        s = model.sample(args.n, seed=0)
        d = s.frac[:, :, None] - s.frac[:, None]
        d -= np.round(d)
        r = np.linalg.norm(d @ s.lattice, axis=-1)
        r[:, np.arange(s.n_atoms), np.arange(s.n_atoms)] = np.inf
        print(f"{len(s)} of {args.n} samples kept ({cfg.sample_steps} steps, "
              f"{time.process_time() - c0:.0f} CPU-s): coordinate std "
              f"{s.frac.std(axis=(0, 1)).mean():.3f} (uniform 0.289), median nearest "
              f"neighbour {np.median(r.min(-1)):.2f} Å")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
