"""Can the CryinGAN generator space atoms like a-Si?  A diagnosis, not a speed benchmark.

Fits the generator directly to a target nearest-neighbour distance (loss (NN1 - 2.3 Å)^2 on
the a-si-64 cell), once with a fresh batch of z every step (what GAN training needs) and once
with one fixed batch of z, next to free coordinates.  docs/learning.md explains the result.

    python benchmarks/cryingan_generator_fit.py [--steps 500]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn


def fit(make_frac, params, steps: int, lr: float, fresh_z: bool, lattice, k: int = 6):
    from dismai.models.periodic_knn import neighbour_distances, periodic_knn

    opt = torch.optim.Adam(params, lr=lr)
    z = torch.randn(16, 64)
    for _ in range(steps):
        if fresh_z:
            z = torch.randn(16, 64)
        frac = make_frac(z)
        _, idx, shift = periodic_knn(frac.detach(), lattice, k)
        d = neighbour_distances(frac, lattice, idx, shift)
        loss = ((d[..., 0] - 2.3) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach()), float(d[..., 0].detach().median())


def main(argv=None) -> int:
    from dismai.datasets import load
    from dismai.models.cryingan import Generator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    lattice = torch.as_tensor(load("a-si-64").template.lattice, dtype=torch.float32)
    n = 64
    print(f"target NN1 2.30 Å (a-si-64 train: 2.31 Å, uniform random: 1.51 Å), "
          f"{args.steps} Adam steps")
    theta = torch.randn(16, n, 3, requires_grad=True)
    t0 = time.process_time()
    loss, nn1 = fit(lambda z: torch.sigmoid(theta), [theta], args.steps, 3e-2, True, lattice)
    print(f"free coordinates            loss {loss:.3g}  NN1 median {nn1:.2f} Å "
          f"({time.process_time() - t0:.0f} CPU-s)")
    for c1, bn in ((8, 0.8), (128, 0.8), (8, None)):
        for fresh in (True, False):
            torch.manual_seed(0)
            g = Generator(n, 64, c1, (32, 64, 32), bn_eps=bn or 1e-5)
            if bn is None:
                g.norms = nn.ModuleList(nn.Identity() for _ in g.norms)
            g.train()
            t0 = time.process_time()
            loss, nn1 = fit(g, list(g.parameters()), args.steps, 1e-3, fresh, lattice)
            label = f"generator C1={c1:<3d} BN {'off' if bn is None else bn}"
            print(f"{label:27s} {'fresh z' if fresh else 'fixed z'}: loss {loss:.3g}  "
                  f"NN1 median {nn1:.2f} Å ({time.process_time() - t0:.0f} CPU-s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
