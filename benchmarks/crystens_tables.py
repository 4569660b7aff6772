"""Tables 1 and 2 of the CrysTens paper for our models of the original image.

For each model: train it (resumable: rerun the same command to continue), generate `--n`
images, reconstruct them (crystens_original.reconstruct) and average the paper's statistics
over the readable ones:

* Table 1: variance of the 8 copies of the lattice lengths, angles, space group and
  fractional coordinates, before any averaging;
* Table 2: |own coordinate - blended coordinate| per atom and the pairwise-distance
  difference per atom.

Three references run in the same process: the training images themselves (the floor: their
copies agree exactly), uniform noise images (the random reference) and the same generator
untrained (its near-constant output agrees with itself better than noise does, so a trained
generator can score worse on these consistency statistics while it learns the layout).  The
paper's numbers (PCD, 53,856 crystals, their networks and budgets) are printed beside.

    python benchmarks/crystens_tables.py --models crystens-wgan --limit 1000 --epochs 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "general-crystals" \
    / "perov_5" / "val.csv"
TABLE1 = ("lattice_param_variance", "lattice_angle_variance", "space_group_variance",
          "frac_coord_variance")
TABLE2 = ("relative_coord_difference", "pairwise_distance_difference")
#: Alverson et al. 2024, Tables 1 and 2 (1000 generated CrysTens each)
PAPER = {
    "crystens-gan": (582.23, 1338.11, 6322.1, 5.57e-2, 9.62e-2, 3.84),
    "crystens-wgan": (31.18, 695.03, 3024.27, 5.9e-2, 1.37e-2, 2.49),
    "diffusion": (3.5e-1, 8.46e-1, 4.56, 4.36e-4, 5.51e-4, 4.73e-1),
}


def table_row(images: np.ndarray, **kw) -> dict:
    """Mean of each statistic over the images that reconstruct to a readable crystal, and
    the fraction that do."""
    from dismai.models.crystens_original import reconstruct

    stats, ok = [], 0
    for img in images:
        r = reconstruct(img, **kw)
        if r.crystal is not None:
            ok += 1
            stats.append(r.stats)
    row = {k: float(np.mean([s[k] for s in stats])) if stats else float("nan")
           for k in TABLE1 + TABLE2}
    row["valid"] = ok / len(images)
    row["mean_atoms"] = float(np.mean([s["n_atoms"] for s in stats])) if stats else 0.0
    return row


def main(argv=None) -> int:
    import torch

    from dismai.crystals import CrystalSet
    from dismai.fileio import write_json, write_text
    from dismai.models import create_model, get_model_class, resolve_config
    from dismai.models.crystens_gan import CrysTensWGAN

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CDVAE-style CSV")
    p.add_argument("--limit", type=int, default=1000, help="training crystals (first rows)")
    p.add_argument("--models", nargs="+", default=["crystens-wgan"])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--n", type=int, default=1000, help="images to generate per model")
    p.add_argument("--out", type=Path, default=Path("runs/crystens-tables"))
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    data = CrystalSet.from_csv(args.data, limit=args.limit)
    data = CrystalSet([c for c in data if c.n_atoms <= CrysTensWGAN.max_atoms], data.name)
    print(f"{len(data)} training crystals from {args.data}")
    noise = np.random.default_rng(0).random((args.n, 4, 64, 64))
    rows = {"training images": table_row(CrysTensWGAN.images(data[:args.n])),
            "uniform noise": table_row(noise)}
    for name in args.models:
        over = {} if args.epochs is None else {"epochs": args.epochs}
        cfg = resolve_config(name, get_model_class(name).Config, preset=args.preset,
                             overrides=over)
        untrained = create_model(name, cfg)
        untrained._build(data)
        kw = {"count_rule": cfg.count_rule, "element_clusters": cfg.element_clusters or None,
              "coord_clusters": cfg.coord_clusters or None}
        rows[f"{name} untrained"] = table_row(untrained.sample_images(args.n, seed=0), **kw)
        m = create_model(name, cfg)
        run = args.out / name
        t = time.process_time()
        m.fit(data, run_dir=run, resume=(run / "checkpoint.pt").exists())
        print(f"{name}: trained in {time.process_time() - t:.0f} CPU-s (this call)")
        rows[name] = table_row(m.sample_images(args.n, seed=0), **kw)
    cols = TABLE1 + TABLE2
    head = ["model", "valid", "atoms"] + [c.replace("_", " ") for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, r in rows.items():
        lines.append(f"| {k} | {r['valid']:.2f} | {r['mean_atoms']:.1f} | "
                     + " | ".join(f"{r[c]:.3g}" for c in cols) + " |")
    for k, v in PAPER.items():
        lines.append(f"| paper: {k} (PCD) | | | " + " | ".join(f"{x:.3g}" for x in v) + " |")
    text = "\n".join(lines)
    print(text)
    write_text(args.out / "tables.md", text + "\n")
    write_json(args.out / "tables.json", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
