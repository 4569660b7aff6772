"""What has a trained DiffCSP learnt of a-Si?  Per-noise-level loss, denoising from noised
training structures, and the bond-angle histogram of its samples (docs/learning.md).

    python benchmarks/diffcsp_probe.py RUN_DIR [--dataset a-si-64] [--n 60] [--starts 5,15,30]

Prints, for the run's model:

* the normalised score loss at several noise levels on training and validation structures
  (1 = predicting nothing; equal values on both mean underfitting, not memorisation);
* d_angle (Euclidean distance of mean CrystalNN angle histograms, as the metric) of
  structures denoised by the model's own sampler started at step t0 from noised training
  structures, and from the uniform prior (t0 = T), beside training structures noised with
  the same sigma and not denoised;
* the angle histogram of its samples in 15-degree bins beside the training set's.

d_angle here is against the first 100 training structures on n structures, so it carries a
finite-sample floor (about 0.011 at n = 30): compare rows, not with the bench's numbers.
"""

from __future__ import annotations

import argparse
import math
import sys


def main(argv=None) -> int:
    import numpy as np
    import torch

    from dismai.datasets import load
    from dismai.metrics.asi.features import compute_features
    from dismai.models.diffcsp import wrapped_normal_score
    from dismai.workflows import load_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--dataset", default="a-si-64")
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--starts", default="5,15,30")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model, _ = load_run(args.run, device="cpu")
    cfg, ds = model.config, load(args.dataset)
    sig_tab = model.schedule.sigmas.tolist()
    lam_tab = model.schedule.sigmas_norm.tolist()
    edge = float(np.cbrt(abs(np.linalg.det(ds.train.lattice))))
    train_feats = compute_features(ds.train[:100], n_workers=1)
    ref_angles = train_feats.angle_dist.mean(0)
    centres = np.arange(0.25, 180, 0.5)
    bins = np.arange(0, 181, 15)

    def angle_row(structures):
        f = compute_features(structures, n_workers=1)
        mean = f.angle_dist.mean(0)
        hist = np.histogram(centres, bins=bins, weights=mean)[0] * 100
        return float(np.linalg.norm(mean - ref_angles)), float(f.n_angles.mean()), hist

    print("normalised score loss per noise level (64 structures):")
    for name, split in (("train", ds.train), ("val", ds.val)):
        x0 = torch.as_tensor(split.wrapped().frac[:64])
        g = torch.Generator().manual_seed(0)
        cells = []
        for t in sorted({1, 5, 10, 20, 30, 40, cfg.timesteps}):
            if t > cfg.timesteps:
                continue
            sig = sig_tab[t]
            eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
            target = wrapped_normal_score(sig * eps, sig) / math.sqrt(lam_tab[t])
            with torch.no_grad():
                pred = model.denoise((x0 + sig * eps) % 1.0, torch.full((len(x0),), t))
            loss = float(((pred.double() - target) ** 2).mean())
            cells.append(f"t={t} (sigma {sig * edge:.2f} A) {loss:.3f}")
        print(f"  {name}: " + ", ".join(cells))

    def denoise_from(t0: int, n: int, seed: int = 1):
        """The model's own sampler started at step t0 from noised training structures
        (t0 = T: from uniform, as DiffCSP.sample)."""
        x0 = ds.train.wrapped().frac[100:100 + n]
        rng = np.random.default_rng(seed)
        if t0 >= cfg.timesteps:
            return model.sample(n, seed=seed)
        x = (x0 + sig_tab[t0] * rng.standard_normal(x0.shape)) % 1.0
        return ds.train[:n].with_frac(model.denoise_from(x, t0, seed=seed))

    print(f"\nd_angle against training structures, n = {args.n}:")
    rng = np.random.default_rng(0)
    clean = ds.train[100:100 + args.n]
    print(f"  training structures, clean: {angle_row(clean)[0]:.4f}")
    for t0 in [int(s) for s in args.starts.split(",")] + [cfg.timesteps]:
        sig_a = sig_tab[t0] * edge
        den = angle_row(denoise_from(t0, args.n))[0]
        if t0 < cfg.timesteps:
            noised = clean.with_frac((clean.frac + rng.normal(size=clean.frac.shape)
                                      * sig_tab[t0]) % 1.0)
            print(f"  from t0 = {t0} (sigma {sig_a:.3f} A): denoised {den:.4f}, "
                  f"noised only {angle_row(noised)[0]:.4f}")
        else:
            print(f"  from the uniform prior (t0 = T = {t0}): {den:.4f}")

    print("\nangle histogram, % per 15-degree bin (0-15 ... 165-180), angles per structure:")
    for name, structures in (("train", ds.train[:args.n]),
                             ("model", model.sample(args.n, seed=5))):
        d, n_ang, hist = angle_row(structures)
        print(f"  {name:6s} {n_ang:6.0f}  " + " ".join(f"{h:5.1f}" for h in hist)
              + (f"   d_angle {d:.4f}" if name == "model" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
