"""Round trip of the original CrysTens image on Perov-5 and Carbon-24 (val.csv, which these
sessions treat as training data): encode every crystal, reconstruct it with our defaults and
with the published rules, and count exact reconstructions.

    python benchmarks/crystens_original_roundtrip.py [--limit N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dismai.crystals import CrystalSet
from dismai.models import crystens_original as co

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "general-crystals"


def _exact(rec, c) -> bool:
    if rec.crystal is None or rec.crystal.n_atoms != c.n_atoms:
        return False
    if not np.array_equal(rec.crystal.numbers, c.numbers):
        return False
    d = (rec.crystal.frac - c.frac + 0.5) % 1.0 - 0.5
    return bool(np.abs(d).max() < 1e-5)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--data", type=Path, default=DATA)
    args = p.parse_args(argv)
    rules = {"ours (lattice count, no element clustering)": dict(element_clusters=None),
             "published count (alpha)": dict(count_rule="alpha", element_clusters=None),
             "published element clustering (3)": dict()}
    print("set | crystals | " + " | ".join(rules) + " | CPU-s per crystal (encode)")
    for name in ("perov_5", "carbon_24"):
        cs = CrystalSet.from_csv(args.data / name / "val.csv", limit=args.limit)
        t = time.process_time()
        imgs = [co.encode(c) for c in cs]
        t = (time.process_time() - t) / len(cs)
        ok = {k: sum(_exact(co.reconstruct(im, **kw), c) for im, c in zip(imgs, cs, strict=True))
              for k, kw in rules.items()}
        print(f"{name} | {len(cs)} | " + " | ".join(f"{v} ({100 * v / len(cs):.1f} %)"
                                                   for v in ok.values()) + f" | {t:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
