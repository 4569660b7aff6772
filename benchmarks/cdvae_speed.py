"""CDVAE costs on a-si-64: decoder forward and training step per network size, and the
CrystalNN encoder graph against pymatgen's per-site StructureGraph.

CPU seconds with one thread (torch.set_num_threads(1)); every row is also printed as a ratio
to the first one measured in the same run (the paper network; pymatgen for the graphs), so
a loaded machine shows up in both.

    python benchmarks/cdvae_speed.py
    python benchmarks/cdvae_speed.py --repeats 1 --no-pymatgen
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

SIZES = {
    "paper (hidden 128, 3 blocks), 20 nb": {},
    "hidden 64, 2 blocks, 20 nb": dict(dec_hidden=64, emb_size_trip=32, emb_size_bil_trip=32,
                                       dec_blocks=2),
    "cpu preset (hidden 32, 2 blocks), 20 nb": dict(
        dec_hidden=32, emb_size_trip=16, emb_size_bil_trip=16, emb_size_cbf=8, emb_size_rbf=8,
        dec_num_radial=32, dec_blocks=2, num_atom_layers=1),
    "cpu preset, 12 nb": dict(dec_hidden=32, emb_size_trip=16, emb_size_bil_trip=16,
                              emb_size_cbf=8, emb_size_rbf=8, dec_num_radial=32, dec_blocks=2,
                              num_atom_layers=1, max_neighbours=12),
}


def _cpu(fn, repeats: int) -> float:
    fn()
    t = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - t) / repeats


def _decoder_row(cfg, s, lat, repeats: int) -> list[float]:
    """Forward at 8 and 50 structures, and forward + backward at 8, in CPU-s."""
    from dismai.models.cdvae import CDVAENet

    net = CDVAENet(cfg, [14] * s.n_atoms, s.lattice, np.zeros(6), np.ones(6))
    types = net.z_atomic - 1
    row = []
    for b in (8, 50):
        fr = torch.as_tensor(s.frac[:b], dtype=torch.float32)
        z = torch.zeros(b, cfg.latent_dim)
        with torch.no_grad():
            row.append(_cpu(lambda fr=fr, z=z: net.decoder(z, fr, types, lat), repeats))
    fr8, z8 = torch.as_tensor(s.frac[:8], dtype=torch.float32), torch.zeros(8, cfg.latent_dim)
    row.append(_cpu(lambda: net.decoder(z8, fr8, types, lat).square().sum().backward(), repeats))
    return row


def main(argv=None) -> int:
    from dismai.datasets import load
    from dismai.models.cdvae import CDVAEConfig
    from dismai.models.periodic_graph import crystalnn_bonds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-pymatgen", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    s = load("a-si-64").train
    lat = torch.as_tensor(s.lattice, dtype=torch.float32)
    base = None
    print("decoder | forward B=8 | forward B=50 | train step B=8 (CPU-s; ratio to paper)")
    for label, kw in SIZES.items():
        row = _decoder_row(CDVAEConfig(**kw), s, lat, args.repeats)
        base = base or row
        print(f"{label} | " + " | ".join(f"{v:.3f} ({v / b0:.2f}x)"
                                         for v, b0 in zip(row, base, strict=True)))
    k = 4
    fast = _cpu(lambda: [crystalnn_bonds(s.lattice, f, s.species) for f in s.frac[:k]], 1) / k
    print(f"CrystalNN encoder graph, shared tessellation: {fast:.3f} CPU-s per structure")
    if not args.no_pymatgen:
        from pymatgen.analysis.graphs import StructureGraph
        from pymatgen.analysis.local_env import CrystalNN
        from pymatgen.core import Lattice, Structure

        nn = CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)
        build = getattr(StructureGraph, "from_local_env_strategy", None) or \
            StructureGraph.with_local_env_strategy

        def ref():
            for f in s.frac[:k]:
                build(Structure(Lattice(s.lattice), list(s.species), f % 1.0), nn)

        slow = _cpu(ref, 1) / k
        print(f"pymatgen StructureGraph + CrystalNN: {slow:.3f} CPU-s per structure "
              f"({slow / fast:.1f}x the shared tessellation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
