"""CDVAE costs: decoder forward and training step per network size on a-si-64; the decoder
(a Langevin step) and a training step at 256 and 264 atoms with our padded-table bilinear
against the straightforward per-triplet scatter of the published model's formula (outputs
compared); the radius graph per decoder call; the CrystalNN encoder graph against
pymatgen's per-site StructureGraph.

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


def scatter_bilinear(x, basis, trip, weight):
    """The published formula written straight: per triplet t of edge e, rW[e] cbf[t] x[t],
    summed into its edge with index_add (what torch-scatter does there), then the bilinear
    weight.  The reference the padded-table `efficient_bilinear` is timed against."""
    rw, sph = basis
    cbf = sph[trip.id3_ca, :, trip.ragged]  # (T, L): the per-triplet spherical basis
    u = torch.einsum("tjl,tl->tj", rw[trip.id3_ca], cbf)
    per_t = u[:, :, None] * x[:, None, :]  # (T, J, C): what makes this path memory-bound
    r = x.new_zeros(trip.n_edges, rw.shape[1], x.shape[-1]).index_add_(0, trip.id3_ca, per_t)
    c, j, o = weight.shape
    return r.transpose(1, 2).reshape(trip.n_edges, c * j) @ weight.reshape(c * j, o)


def _size_rows(repeats: int, batch: int) -> None:
    """Paper decoder at 256 (a-si) and 264 atoms (a-Si density, random): decoder call and
    training step, efficient against scatter, with the largest output difference."""
    from dismai.datasets import load

    asi = load("a-si").train
    rng = np.random.default_rng(0)
    cases = {"256 atoms (a-si)": (asi.lattice, asi.frac[:batch]),
             "264 atoms (a-Si density)": (asi.lattice * (264 / 256) ** (1 / 3),
                                          rng.random((batch, 264, 3)))}
    print(f"\nsize | decoder call B={batch} efficient / scatter | train step B={batch} "
          "efficient / scatter | max |diff| | radius graph per call")
    for label, (lat_np, frac) in cases.items():
        print(_size_row(label, lat_np, frac, repeats))


def _size_row(label: str, lat_np, frac, repeats: int) -> str:
    from dismai.models import cdvae
    from dismai.models.cdvae import CDVAEConfig, CDVAENet
    from dismai.models.periodic_graph import radius_graph

    cfg = CDVAEConfig()
    n = frac.shape[1]
    torch.manual_seed(0)
    net = CDVAENet(cfg, [14] * n, lat_np, np.zeros(6), np.ones(6))
    types, lat = net.z_atomic - 1, torch.as_tensor(lat_np, dtype=torch.float32)
    fr, z = torch.as_tensor(frac, dtype=torch.float32), torch.zeros(len(frac), cfg.latent_dim)

    def call():
        return net.decoder(z, fr, types, lat)

    rows, outs = {}, {}
    orig = cdvae.efficient_bilinear
    for name, fn in (("efficient", orig), ("scatter", scatter_bilinear)):
        cdvae.efficient_bilinear = fn
        try:
            with torch.no_grad():
                outs[name] = call()
                t_call = _cpu(call, repeats)
            t_step = _cpu(lambda: call().square().sum().backward(), repeats)
        finally:
            cdvae.efficient_bilinear = orig
        rows[name] = (t_call, t_step)
    diff = float((outs["efficient"] - outs["scatter"]).abs().max())
    graph = _cpu(lambda: radius_graph(fr, lat, cfg.dec_cutoff, cfg.max_neighbours), repeats)
    (ce, se), (cs, ss) = rows["efficient"], rows["scatter"]
    return (f"{label} | {ce:.2f} / {cs:.2f} ({cs / ce:.2f}x) | {se:.2f} / {ss:.2f} "
            f"({ss / se:.2f}x) | {diff:.1e} | {graph:.3f} CPU-s")


def main(argv=None) -> int:
    from dismai.datasets import load
    from dismai.models.cdvae import CDVAEConfig
    from dismai.models.periodic_graph import crystalnn_bonds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-pymatgen", action="store_true")
    p.add_argument("--no-sizes", action="store_true", help="skip the 256/264-atom rows")
    p.add_argument("--size-batch", type=int, default=2,
                   help="structures per call in the 256/264-atom rows (the scatter reference "
                        "holds a (triplets, 16, 64) tensor: 8 structures exhaust 24 GB)")
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
    if not args.no_sizes:
        _size_rows(args.repeats, args.size_batch)
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
