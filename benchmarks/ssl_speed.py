"""Costs of the masked-atom model (issue 15).

1. The corruption operators: our vectorised masking and position noise against a
   transcription of the published Python loops over crystals (mask_graph_batch,
   add_noise_to_batch_pos) on the same random draws: outputs must be identical; CPU time
   ratio per batch of crystals.
2. The backbone: forward + backward CPU seconds and the activation memory autograd keeps
   per structure, at 5 atoms (Perov-5), 24 and 256 atoms (a-Si density), for the `cpu`
   preset's size and the published one (not at 256 atoms: it would need ~100 GB).

    python benchmarks/ssl_speed.py
    python benchmarks/ssl_speed.py --skip-paper
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import numpy as np
import torch

from crystens_speed import _saved_bytes  # same folder: activations kept for backward


# ---------------------------------------------------------------------------- published loops
def published_masking(numbers, natoms, draw, ratio=0.15, as_coded=True):
    """mask_graph_batch, crystal by crystal (indices from the pre-drawn uniforms)."""
    out, start, used = numbers.clone(), 0, 0
    u = draw.uniforms
    for n in natoms.tolist():
        hi = n - 1 if as_coded else n
        z = numbers[start:start + n]
        if draw.species:
            target = z[int(math.floor(float(u[used]) * hi))]
            for j in range(n):
                if z[j] == target:
                    out[start + j] = 0
            used += 1
        else:
            k = math.ceil(ratio * n)
            for j in range(k):
                out[start + int(math.floor(float(u[used + j]) * hi))] = 0
            used += k
        start += n
    return out


def published_noise(pos, cell, natoms, unit, sigma_ratio):
    """add_noise_to_batch_pos, crystal by crystal: dense d_min, noise, wrap, target."""
    wrapped, target, start = [], [], 0
    for b, n in enumerate(natoms.tolist()):
        p = pos[start:start + n]
        d = torch.cdist(p, p)
        d = d + torch.eye(n, dtype=p.dtype) * 1e30
        noise = unit[start:start + n] * sigma_ratio * d.min()
        inv = torch.linalg.inv(cell[b])
        frac = (p + noise) @ inv
        wrapped.append((frac - torch.floor(frac)) @ cell[b])
        target.append(noise @ inv)
        start += n
    return torch.cat(wrapped), torch.cat(target)


def _cpu(fn, *args, repeats=3):
    """(mean CPU seconds of fn(*args), its last result)."""
    t = time.process_time()
    for _ in range(repeats):
        out = fn(*args)
    return (time.process_time() - t) / repeats, out


def corruption_rows(batch_sizes=(32, 256)) -> None:
    from dismai.datasets.crystal_sets import load_crystals
    from dismai.models.ssl_corruption import (
        AtomBatch,
        apply_masking,
        apply_noise,
        draw_masking,
        draw_noise,
    )

    crystals = load_crystals("perov-5", "train", limit=max(batch_sizes))
    print("corruption of a batch of Perov-5 crystals: ours / published loops (CPU-s), "
          "identical outputs")
    print("| crystals | masking ours / loops | position noise ours / loops |")
    print("|---|---|---|")
    for bs in batch_sizes:
        b = AtomBatch.from_crystals(crystals[:bs])
        times = []
        for species in (True, False):
            draw = draw_masking(b.natoms, torch.Generator().manual_seed(0),
                                species_prob=float(species))
            t1, (ours, _) = _cpu(apply_masking, b.numbers, b.natoms, draw, 0.15, True)
            t2, ref = _cpu(published_masking, b.numbers, b.natoms, draw)
            assert torch.equal(ours, ref), "vectorised masking differs from the loops"
            times.append((t1, t2))
        unit = draw_noise(len(b.numbers), torch.Generator().manual_seed(1))
        t3, (w1, f1) = _cpu(apply_noise, b, unit, 0.1)
        t4, (w2, f2) = _cpu(published_noise, b.pos, b.cell, b.natoms, unit, 0.1)
        assert torch.allclose(w1, w2, atol=1e-12) and torch.allclose(f1, f2, atol=1e-12), \
            "vectorised position noise differs from the loops"
        tm, tl = sum(t for t, _ in times), sum(t for _, t in times)
        print(f"| {bs} | {tm * 1e3:.2f} / {tl * 1e3:.2f} ms ({tl / tm:.0f}x) | "
              f"{t3 * 1e3:.2f} / {t4 * 1e3:.2f} ms ({t4 / t3:.0f}x) |")


def _train_step(net, args) -> None:
    net.zero_grad(set_to_none=True)
    out = net(*args)
    (out["node"].square().mean() + out["vector"].square().mean()).backward()


def backbone_rows(sizes: dict) -> None:
    from dismai.models.equiformer import Equiformer, EquiformerConfig

    g = np.random.default_rng(0)
    cases = {5: np.eye(3) * 4.0, 24: np.eye(3) * 6.6, 256: np.eye(3) * 14.6}  # ~a-Si density
    print("\nbackbone forward + backward, one structure (CPU-s, one thread), "
          "activation memory kept for backward")
    print("| size | parameters | atoms | edges | forward + backward | saved for backward |")
    print("|---|---|---|---|---|---|")
    for name, kw in sizes.items():
        torch.manual_seed(0)
        net = Equiformer(EquiformerConfig(**kw), 118, "node", vector_head=True)
        n_par = sum(p.numel() for p in net.parameters())
        for n, lat in cases.items():
            if name == "paper" and n > 24:
                print(f"| {name} | {n_par:,} | {n} | - | not run: about 10 MB of activations "
                      "per edge (24-atom row) x ~10,800 edges is ~100 GB | |")
                continue
            frac = g.random((n, 3))
            pos = torch.tensor(frac @ lat, dtype=torch.float32)
            cell = torch.tensor(lat, dtype=torch.float32)[None]
            z = torch.full((n,), 14)
            natoms = torch.tensor([n])

            args = (z, pos, cell, natoms)
            _train_step(net, args)  # warm-up: caches, allocator
            t, _ = _cpu(_train_step, net, args, repeats=1)
            mem = _saved_bytes(functools.partial(net, *args))
            edges = len(net.graph(z, pos, cell, natoms).distance)
            print(f"| {name} | {n_par:,} | {n} | {edges} | {t:.2f} | {mem / 2**20:.0f} MiB |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-paper", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    corruption_rows()
    cpu = {"layers": 2, "channels": 32, "hidden": 32, "heads": 4, "alpha_channels": 8,
           "value_channels": 8, "ffn_hidden": 64, "lmax": 2, "mmax": 1, "edge_channels": 32,
           "n_distance": 64, "activation": "gate"}
    sizes = {"cpu": cpu} if args.skip_paper else {"cpu": cpu, "paper": {}}
    backbone_rows(sizes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
