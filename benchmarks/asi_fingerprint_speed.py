"""a-Si fingerprint + bond-angle speed: dismai vs the reference's per-site loop.

Reference path (spec benchmark-metrics.md §6.4, §6.6): for every atom, matminer
``CrystalNNFingerprint.from_preset('ops').featurize(structure, i)`` (one CrystalNN /
Voronoi tessellation per site, one pure-Python LocalStructOrderParams per order parameter),
then a second pass of pymatgen ``CrystalNN(distance_cutoffs=None, x_diff_weight=0,
porous_adjustment=False).get_nn_info`` per atom for the bond angles.

Ours: :func:`dismai.metrics.asi.features.fingerprints_and_angles` - one tessellation per
structure shared by both passes, numba order parameters.

The structures are 256-atom a-Si-like cells: diamond Si 4x4x2 supercells rattled by
0.2-0.3 Å (Gaussian per coordinate) and a random dense packing at a-Si density
(0.05 atoms/Å^3, minimum distance 2.0 Å).  Both paths see identical wrapped coordinates;
the script asserts the fingerprints and the sorted angle lists are identical (bitwise, or
within 1e-12 if --allclose) and prints throughput and the per-core speed-up, measured in
CPU seconds of this process (time.process_time) so that other load on a shared machine
does not distort the ratio; the parallel run is wall-clock.

    python benchmarks/asi_fingerprint_speed.py [--n-rattled 3] [--n-random 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings

import numpy as np


def diamond_supercell(reps=(4, 4, 2), a=5.431):
    base = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]], dtype=float)
    base = np.concatenate([base, base + 0.25])
    cells = np.array([[i, j, k] for i in range(reps[0]) for j in range(reps[1])
                      for k in range(reps[2])], dtype=float)
    frac = ((cells[:, None, :] + base[None]).reshape(-1, 3)) / np.array(reps, dtype=float)
    return np.diag(np.array(reps, dtype=float) * a), frac


def rattled(sigma: float, seed: int):
    lat, frac = diamond_supercell()
    cart = frac @ lat + np.random.default_rng(seed).normal(0.0, sigma, frac.shape)
    return lat, (cart @ np.linalg.inv(lat)) % 1.0


def random_dense(seed: int, n: int = 256, density: float = 0.05, dmin: float = 2.0):
    length = (n / density) ** (1 / 3)
    rng = np.random.default_rng(seed)
    pts: list[np.ndarray] = []
    while len(pts) < n:
        p = rng.random(3)
        if pts:
            d = np.array(pts) - p
            d -= np.round(d)
            if (np.sqrt(((d * length) ** 2).sum(1)) < dmin).any():
                continue
        pts.append(p)
    return np.eye(3) * length, np.array(pts) % 1.0


def reference_path(lattice, frac):
    """What get_a_Si_motifs.py + get_a_Si_bond_angle.py do for one structure."""
    from matminer.featurizers.site import CrystalNNFingerprint
    from pymatgen.analysis.local_env import CrystalNN
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice(lattice), ["Si"] * len(frac), frac)
    fpz = CrystalNNFingerprint.from_preset("ops")
    fps = np.array([fpz.featurize(s, i) for i in range(len(s))])
    cnn = CrystalNN(distance_cutoffs=None, x_diff_weight=0, porous_adjustment=False)
    angles = []
    for i in range(len(s)):
        nn = [x["site"].coords for x in cnn.get_nn_info(s, i)]
        c = s[i].coords
        for a in range(len(nn)):
            for b in range(a + 1, len(nn)):
                u, v = nn[a] - c, nn[b] - c
                cos = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
                ang = np.arccos(cos)
                if np.isnan(ang):
                    ang = np.arccos(round(cos, 5))
                angles.append(ang * 180 / np.pi)
    return fps, np.array(angles)


def _ours(args):
    from dismai.metrics.asi.features import fingerprints_and_angles

    return fingerprints_and_angles(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-rattled", type=int, default=3)
    ap.add_argument("--n-random", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="processes for the parallel run")
    ap.add_argument("--allclose", action="store_true", help="accept 1e-12 instead of bitwise")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from dismai.metrics.asi.features import fingerprints_and_angles
    from dismai.metrics.crystalnn import map_structures

    sigmas = [0.2, 0.25, 0.3]
    structs = [(f"rattled {sigmas[i % 3]:.2f} Å", *rattled(sigmas[i % 3], 100 + i))
               for i in range(args.n_rattled)]
    structs += [("random dense", *random_dense(200 + i)) for i in range(args.n_random)]
    fingerprints_and_angles(*structs[0][1:])  # warm up (imports, numba cache)
    reference_path(*diamond_supercell((1, 1, 1)))

    t_ref = t_ours = 0.0
    n_atoms = 0
    for name, lat, frac in structs:
        gc.collect()  # neither path pays for the other's garbage
        t = time.process_time()  # CPU seconds: robust on a shared machine
        fr, ar = reference_path(lat, frac)
        t1 = time.process_time() - t
        gc.collect()
        t = time.process_time()
        fo, ao, n_fb = fingerprints_and_angles(lat, frac)
        t2 = time.process_time() - t
        if args.allclose:
            same_fp = np.allclose(fo, fr, rtol=0, atol=1e-12)
            same_ang = len(ao) == len(ar) and np.allclose(np.sort(ao), np.sort(ar), atol=1e-12)
        else:
            same_fp = np.array_equal(fo, fr)
            same_ang = np.array_equal(np.sort(ao), np.sort(ar))
        assert same_fp, f"{name}: fingerprints differ, max |diff| {np.abs(fo - fr).max():.3g}"
        assert same_ang, f"{name}: bond angles differ"
        print(f"{name:16s} {len(frac)} atoms, {len(ao)} angles, fallback sites {n_fb}: "
              f"reference {t1:6.2f} s, dismai {t2:6.3f} s (CPU), x{t1 / t2:5.1f}, identical")
        t_ref += t1
        t_ours += t2
        n_atoms += len(frac)
    print(f"reference (matminer featurize + CrystalNN angle pass, 1 core): "
          f"{n_atoms / t_ref:8.1f} atom fingerprints/s")
    print(f"dismai (1 core):                                              "
          f"{n_atoms / t_ours:8.1f} atom fingerprints/s")
    print(f"per-core speed-up: x{t_ref / t_ours:.1f}")
    if args.workers > 1:
        jobs = [(lat, frac) for _, lat, frac in structs] * 2
        t = time.perf_counter()
        map_structures(_ours, jobs, args.workers)
        tp = time.perf_counter() - t
        print(f"dismai ({args.workers} processes, {len(jobs)} structures): "
              f"{len(jobs) * 256 / tp:8.1f} atom fingerprints/s")


if __name__ == "__main__":
    main()
