"""CryinGAN training throughput: dismai's implementation vs a straightforward published one.

The reference below is written directly from spec models.md §1 the way the published code
works: Conv2d/ConvTranspose2d layers on (B, 1, N, W) tensors, per-species AvgPool2d,
neighbour distances from torch.cdist over all 27 periodic images (N x 27N) with gradients
through every image (the drop-in replacement for PyTorch3D knn_points the spec suggests),
and the gradient penalty on non-detached fakes.  dismai's CryinGAN computes the same losses
(see docs/cryingan.md).

Throughput = structures per second over one generator cycle at the published gen_int = 5:
four critic-only steps and one critic + generator step (forward and backward of everything).
Timings of the two implementations are interleaved so machine load affects both alike.

    python benchmarks/cryingan_speed.py                 # interface-sized: 264 atoms, batch 32
    python benchmarks/cryingan_speed.py --system alloy  # 256 atoms, 3 species
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dismai.models.cryingan import CryinGAN
from dismai.structures import StructureSet

W_DIST = 0.05


def interface_template(rng) -> StructureSet:
    """Random 264-atom structure with the interface composition and cell (c = 40 Å)."""
    a, b, c, gamma = 12.46997, 17.19967, 40.0, np.radians(75.6674)
    lattice = np.array([[a, 0, 0], [b * np.cos(gamma), b * np.sin(gamma), 0], [0, 0, c]])
    species = ["Li"] * 72 + ["Sc"] * 12 + ["Co"] * 36 + ["Cl"] * 72 + ["O"] * 72
    return StructureSet(lattice, species, rng.random((1, 264, 3)))


def alloy_template(rng) -> StructureSet:
    from dismai.datasets.alloy_recipe import random_site_species, structures_from_site_species

    return structures_from_site_species(random_site_species(1, seed=int(rng.integers(1 << 30))))


# ------------------------------------------------------------------ straightforward reference
class RefGenerator(nn.Module):
    def __init__(self, n_atoms, latent=64, c1=128):
        super().__init__()
        self.n, self.c1 = n_atoms, c1
        self.l1 = nn.Sequential(nn.Linear(latent, c1 * n_atoms), nn.ReLU())
        self.maps = nn.Sequential(
            nn.ConvTranspose2d(c1, 256, (1, 3), 1, 0), nn.BatchNorm2d(256, 0.8), nn.ReLU(),
            nn.ConvTranspose2d(256, 512, 1, 1, 0), nn.BatchNorm2d(512, 0.8), nn.ReLU(),
            nn.ConvTranspose2d(512, 256, 1, 1, 0), nn.BatchNorm2d(256, 0.8), nn.ReLU(),
            nn.ConvTranspose2d(256, 1, 1, 1, 0), nn.Sigmoid())

    def forward(self, z):
        return self.maps(self.l1(z).view(-1, self.c1, self.n, 1))  # (B, 1, N, 3)


class RefCritic(nn.Module):
    def __init__(self, counts, width):
        super().__init__()
        self.counts = counts
        self.convs = nn.Sequential(
            nn.Conv2d(1, 512, (1, width)), nn.LeakyReLU(0.2),
            nn.Conv2d(512, 512, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(512, 256, 1), nn.LeakyReLU(0.2))
        self.fcs = nn.Sequential(
            nn.Linear(256 * len(counts), 1000), nn.LeakyReLU(0.2),
            nn.Linear(1000, 200), nn.LeakyReLU(0.2), nn.Linear(200, 10))

    def forward(self, x):  # (B, 1, N, W)
        h = self.convs(x)
        pooled, start = [], 0
        for n in self.counts:
            pooled.append(F.avg_pool2d(h[:, :, start:start + n], (n, 1)))
            start += n
        return self.fcs(torch.cat(pooled, dim=2).flatten(1))


def _init(module):
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def ref_distances(coords, cell, k=6):
    """27-image cdist + topk, gradients through all 27N candidate distances."""
    b, _, n, _ = coords.shape
    frac = coords.view(b, n, 3)
    shifts = torch.tensor([s for s in itertools.product((-1, 0, 1), repeat=3)
                           if s != (0, 0, 0)], dtype=frac.dtype)
    images = torch.cat([frac] + [frac + s for s in shifts], dim=1)  # (B, 27N, 3)
    d = torch.cdist(frac @ cell, images @ cell)  # (B, N, 27N)
    return d.topk(k + 1, dim=-1, largest=False).values[..., 1:].unsqueeze(1)  # (B, 1, N, k)


def ref_gp(critic, real, fake):
    alpha = torch.rand(real.shape[0], 1, 1, 1)
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return 10 * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


class Reference:
    """The published training step, written the straightforward way."""

    def __init__(self, template: StructureSet, batch: int, detach: bool = False):
        counts = list(template.composition.values())
        self.cell = torch.tensor(template.lattice, dtype=torch.float32)
        self.g = RefGenerator(template.n_atoms)
        self.cc, self.cd = RefCritic(counts, 3), RefCritic(counts, 6)
        for m in (self.g, self.cc, self.cd):
            _init(m)
        adam = dict(lr=5e-5, betas=(0.5, 0.999))
        self.og, self.oc, self.od = (torch.optim.Adam(m.parameters(), **adam)
                                     for m in (self.g, self.cc, self.cd))
        self.detach = detach
        rng = np.random.default_rng(1)
        self.real = torch.tensor(rng.random((batch, 1, template.n_atoms, 3)),
                                 dtype=torch.float32)
        with torch.no_grad():
            self.real_d = ref_distances(self.real, self.cell)

    def step(self, train_generator: bool):
        b = self.real.shape[0]
        c_real = self.cc(self.real).mean()
        fake = self.g(torch.randn(b, 64))
        if self.detach:
            fake = fake.detach()
        c_fake = self.cc(fake.detach()).mean()
        fake_d = ref_distances(fake, self.cell)
        d_fake = self.cd(fake_d.detach()).mean()
        d_real = self.cd(self.real_d).mean()
        loss = (c_fake - c_real + ref_gp(self.cc, self.real, fake)
                + W_DIST * (d_fake - d_real + ref_gp(self.cd, self.real_d, fake_d)))
        self.oc.zero_grad()
        self.od.zero_grad()
        loss.backward()
        self.oc.step()
        self.od.step()
        if train_generator:
            for p in itertools.chain(self.cc.parameters(), self.cd.parameters()):
                p.requires_grad_(False)
            fake = self.g(torch.randn(b, 64))
            loss_g = -self.cc(fake).mean() - W_DIST * self.cd(ref_distances(fake, self.cell)).mean()
            self.og.zero_grad()
            loss_g.backward()
            self.og.step()
            for p in itertools.chain(self.cc.parameters(), self.cd.parameters()):
                p.requires_grad_(True)


class Dismai:
    def __init__(self, template: StructureSet, batch: int):
        data = template.with_frac(np.random.default_rng(1).random((batch, template.n_atoms, 3)))
        self.m = CryinGAN(dict(device="cpu", weight_dist=W_DIST, batch_size=batch))
        self.m._build(data)
        self.m.optimizers = self.m.make_optimizers()
        self.m.prepare_data(data, None)
        self.m.set_train_mode(True)
        self.items = self.m.epoch_items(np.random.default_rng(0))[:batch]

    def step(self, train_generator: bool):
        self.m.train_step(self.items, 0 if train_generator else 1)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", choices=("interface", "alloy"), default="interface")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="timed steps of each kind")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--ablation", action="store_true",
                    help="also time the reference with detached fakes")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    template = interface_template(rng) if args.system == "interface" else alloy_template(rng)
    impls = {"reference (published, cdist 27 images)": Reference(template, args.batch)}
    if args.ablation:
        impls["reference + detached fakes"] = Reference(template, args.batch, detach=True)
    impls["dismai CryinGAN"] = Dismai(template, args.batch)
    times = {name: {False: [], True: []} for name in impls}
    for impl in impls.values():  # warm-up
        impl.step(True)
        impl.step(False)
    for _ in range(args.repeats):
        for name, impl in impls.items():
            for gen in (False, True):
                times[name][gen].append(timed(lambda impl=impl, gen=gen: impl.step(gen)))

    print(f"CryinGAN training step, {template.n_atoms} atoms ({template.formula}), "
          f"batch {args.batch}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, CPU; load average {os.getloadavg()[0]:.1f} at the end")
    print("median of", args.repeats, "timed steps each; critic step = coordinate + distance "
          "critic update with both gradient penalties")
    print(f"{'implementation':42s} {'critic step':>12s} {'critic+G':>10s} {'structures/s':>13s}")
    rates = {}
    for name, t in times.items():
        tc, tg = statistics.median(t[False]), statistics.median(t[True])
        cycle = 4 * tc + tg  # gen_int = 5: four critic-only steps, one with a generator step
        rates[name] = 5 * args.batch / cycle
        print(f"{name:42s} {tc:11.3f}s {tg:9.3f}s {rates[name]:13.2f}")
    ref, ours = rates[next(iter(rates))], rates["dismai CryinGAN"]
    print(f"speed-up (dismai / reference): {ours / ref:.2f}x")


if __name__ == "__main__":
    main()
