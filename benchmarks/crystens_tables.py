"""Tables 1 and 2 of the CrysTens paper, validity and distribution statistics, for our
models of the original image on a general-crystal dataset (perov-5 or carbon-24).

For each model: train it on the dataset's train split (the published validation split;
resumable: rerun the same command to continue), generate `--n` images, reconstruct them
and report, over the readable crystals:

* Table 1: variance of the 8 copies of the lattice lengths, angles, space group and
  fractional coordinates, before any averaging;
* Table 2: |own coordinate - blended coordinate| per atom and the pairwise-distance
  difference per atom;
* beside them, the atom count and the spread of the cell lengths across samples (std, Å):
  a generator that always draws the same image has Table 1 variances near 0 and no spread;
* validity (of all n attempts): readable, structurally valid (distances >= 0.5 Å),
  charge-neutral (SMACT), both;
* two-sample KS statistics against the held-out test split (valid crystals only, as
  CDVAE scores property distributions): lattice lengths and angles, density, atom count,
  and with `--energy chgnet` CHGNet's energy per atom.

Three references run in the same process: the training images themselves (the floor),
uniform noise images (the random reference) and the same generator untrained.  The
paper's numbers (PCD, 53,856 crystals, their networks and budgets) are printed beside.

    python benchmarks/crystens_tables.py --dataset perov-5 --limit 1000 \\
        --models crystens-diffusion crystens-wgan --preset cpu

Rows of earlier calls with the same --out are kept, so models can be run one at a time
(with their own --epochs); the table then lists every model run so far.  The reference
rows and the held-out set's CHGNet energies are computed once per --out and reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np

TABLE1 = ("lattice_param_variance", "lattice_angle_variance", "space_group_variance",
          "frac_coord_variance")
TABLE2 = ("relative_coord_difference", "pairwise_distance_difference")
VALIDITY = ("readable", "structure_valid", "composition_valid", "valid")
#: Alverson et al. 2024, Tables 1 and 2 (1000 generated CrysTens each)
PAPER = {
    "crystens-gan": (582.23, 1338.11, 6322.1, 5.57e-2, 9.62e-2, 3.84),
    "crystens-wgan": (31.18, 695.03, 3024.27, 5.9e-2, 1.37e-2, 2.49),
    "crystens-diffusion": (3.5e-1, 8.46e-1, 4.56, 4.36e-4, 5.51e-4, 4.73e-1),
}


def score(attempts, test, energy=None) -> dict:
    """Table 1/2 means over the readable crystals, validity over all attempts and KS
    statistics of the valid crystals against `test`."""
    from dismai.crystals import CrystalSet
    from dismai.metrics.crystals import ks_statistics, valid_flags, validity

    ok = CrystalSet([c for c, _ in attempts if c is not None])
    row = {k: float(np.mean([c.properties[k] for c in ok])) if len(ok) else float("nan")
           for k in TABLE1 + TABLE2}
    row["mean_atoms"] = float(np.mean(ok.n_atoms)) if len(ok) else 0.0
    # Table 1 rewards an image whose 8 copies agree, so a generator that always draws the
    # same image scores ~0: the spread of the cell lengths across samples shows that
    lengths = np.array([c.lengths_angles[0] for c in ok]).reshape(-1, 3)
    row["cell_spread"] = float(lengths.std(0).mean()) if len(ok) > 1 else float("nan")
    flags = valid_flags(ok)
    row.update(validity(ok, attempts=len(attempts), flags=flags))
    valid = CrystalSet([c for c, s, q in zip(ok, *flags, strict=True) if s and q])
    row["ks"] = ks_statistics(valid, test, energy) if len(valid) >= 2 else {}
    return row


def chgnet_energy(test, cache_file: Path):
    """CrystalSet -> CHGNet 0.3.0 energy per atom (eV), batched.  The held-out set's
    energies are computed once and kept in `cache_file` (they take minutes)."""
    from dismai.energy.mlip import CHGNetModel
    from dismai.fileio import write_bytes

    model = CHGNetModel().load()
    test_e = np.load(cache_file) if cache_file.is_file() else None
    if test_e is None or len(test_e) != len(test):
        test_e = _energies(model, test)
        buf = io.BytesIO()
        np.save(buf, test_e)
        write_bytes(cache_file, buf.getvalue())

    def energy(crystals):
        return test_e if crystals is test else _energies(model, crystals)

    return energy


def _energies(model, crystals, batch: int = 32) -> np.ndarray:
    """Energy per atom, NaN where CHGNet refuses a structure (an isolated atom)."""
    out = []
    for i in range(0, len(crystals), batch):
        chunk = [c.to_pymatgen() for c in crystals[i:i + batch]]
        try:
            out += [float(p["e"]) for p in model.predict_structure(chunk, batch_size=batch)]
        except ValueError:
            for st in chunk:
                try:
                    out.append(float(model.predict_structure(st)["e"]))
                except ValueError:
                    out.append(float("nan"))
    return np.array(out)


def markdown(rows: dict) -> str:
    cols = TABLE1 + TABLE2
    head = ["model", "atoms", "cell spread (Å)"] + [c.replace("_", " ") for c in cols]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, r in rows.items():
        out.append(f"| {k} | {r['mean_atoms']:.1f} | {r['cell_spread']:.3g} | "
                   + " | ".join(f"{r[c]:.3g}" for c in cols) + " |")
    for k, v in PAPER.items():
        out.append(f"| paper: {k} (PCD) | | | " + " | ".join(f"{x:.3g}" for x in v) + " |")
    ks_keys = sorted({k for r in rows.values() for k in r["ks"]})
    out += ["", "| model | " + " | ".join(VALIDITY) + " | " +
            " | ".join(f"KS {k}" for k in ks_keys) + " |",
            "|" + "---|" * (1 + len(VALIDITY) + len(ks_keys))]
    for k, r in rows.items():
        out.append(f"| {k} | " + " | ".join(f"{r[v]:.3f}" for v in VALIDITY) + " | "
                   + " | ".join(f"{r['ks'].get(q, float('nan')):.3f}" for q in ks_keys)
                   + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    from dismai.crystals import CrystalSet
    from dismai.datasets.crystal_sets import load_crystals
    from dismai.fileio import write_json, write_text
    from dismai.models import create_model, get_model_class, resolve_config
    from dismai.models.crystens_original import (
        MAX_ATOMS,
        ReconstructionKeys,
        encode_all,
        reconstruct_images,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="perov-5", choices=["perov-5", "carbon-24"])
    p.add_argument("--limit", type=int, default=None, help="first LIMIT training crystals")
    p.add_argument("--models", nargs="+", default=["crystens-diffusion", "crystens-wgan"])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--n", type=int, default=1000, help="images to generate per model")
    p.add_argument("--n-untrained", type=int, default=100,
                   help="images from each untrained generator (a reference; sampling an "
                        "untrained cascade costs as much as a trained one)")
    p.add_argument("--energy", choices=["none", "chgnet"], default="none")
    p.add_argument("--out", type=Path, default=None,
                   help="default runs/crystens-tables-DATASET-PRESET")
    args = p.parse_args(argv)
    out = args.out or Path(f"runs/crystens-tables-{args.dataset}-{args.preset}")

    train = load_crystals(args.dataset, "train", limit=args.limit)
    train = CrystalSet([c for c in train if c.n_atoms <= MAX_ATOMS], train.name)
    test = load_crystals(args.dataset, "test")
    out.mkdir(parents=True, exist_ok=True)
    energy = (chgnet_energy(test, out / f"chgnet-energy-{args.dataset}-test.npy")
              if args.energy == "chgnet" else None)
    print(f"{len(train)} training crystals ({args.dataset} train = published val split), "
          f"{len(test)} held out (published test split)")
    keys = ReconstructionKeys()
    noise = np.random.default_rng(0).random((args.n, 4, 64, 64))
    old = out / "tables.json"  # rows of earlier calls (other models, epochs) are kept
    rows = json.loads(old.read_text()) if old.is_file() else {}

    def missing(name):  # a reference row is scored once per --out, with --energy as asked
        return name not in rows or "cell_spread" not in rows[name] or (
            energy is not None and "energy_per_atom" not in rows[name]["ks"])

    if missing("training images"):
        rows["training images"] = score(reconstruct_images(encode_all(train[:args.n]), keys),
                                        test, energy)
    if missing("uniform noise"):
        rows["uniform noise"] = score(reconstruct_images(noise, keys), test, energy)
    for name in args.models:
        over = {} if args.epochs is None else {"epochs": args.epochs}
        cfg = resolve_config(name, get_model_class(name).Config, preset=args.preset,
                             overrides=over)
        key = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
        if missing(f"{name} untrained") or rows[f"{name} untrained"].get("config") != key:
            untrained = create_model(name, cfg)
            untrained._build(train)
            rows[f"{name} untrained"] = score(untrained.generate(args.n_untrained, seed=0),
                                              test, energy)
            rows[f"{name} untrained"]["config"] = key
        m = create_model(name, cfg)
        run = out / name
        t = time.process_time()
        m.fit(train, run_dir=run, resume=(run / "checkpoint.pt").exists())
        t_fit = time.process_time() - t
        t = time.process_time()
        attempts = m.generate(args.n, seed=0)
        print(f"{name}: training {t_fit:.0f} CPU-s (this call), sampling "
              f"{time.process_time() - t:.0f} CPU-s")
        rows[name] = score(attempts, test, energy)
        write_json(out / "tables.json", rows)  # finished rows survive an interruption
    text = markdown(rows)
    print(text)
    write_text(out / "tables.md", text + "\n")
    write_json(out / "tables.json", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
