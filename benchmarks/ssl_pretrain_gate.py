"""The masked-atom model's pre-training gate on Perov-5 (issue 15): pre-train `ssl-pretrain`
with a preset on the training split (the published validation split, 3787 crystals) and
score the held-out test split: masked-species accuracy against always guessing the most
frequent training element, and position-noise MSE (fractional) against predicting no noise,
on the same random corruptions.  The run folder resumes.

    python benchmarks/ssl_pretrain_gate.py                   # cpu preset, runs/ssl-gate
    python benchmarks/ssl_pretrain_gate.py --preset quick --limit 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv=None) -> int:
    from dismai.datasets.crystal_sets import load_crystals
    from dismai.models import create_model, resolve_config
    from dismai.models.ssl import SSLPretrainConfig, reconstruction_scores

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--dataset", default="perov-5", choices=["perov-5", "carbon-24"])
    p.add_argument("--limit", type=int, default=None, help="training crystals (default all)")
    p.add_argument("--out", default="runs/ssl-gate")
    p.add_argument("--repeats", type=int, default=3, help="corruptions per held-out crystal")
    args = p.parse_args(argv)
    train = load_crystals(args.dataset, "train", limit=args.limit)
    test = load_crystals(args.dataset, "test")
    cfg = resolve_config("ssl-pretrain", SSLPretrainConfig, preset=args.preset, family=None)
    val = train[len(train) - max(1, len(train) // 20):]  # 5 % for best-by-validation
    train = train[:len(train) - len(val)]
    m = create_model("ssl-pretrain", cfg)
    c0 = time.process_time()
    m.fit(train, val, run_dir=Path(args.out) / args.preset, resume=True, progress=True)
    c_train = time.process_time() - c0
    s = reconstruction_scores(m, test, train, seed=0, repeats=args.repeats)
    print(f"ssl-pretrain ({args.preset}) on {args.dataset}: {len(train)} training crystals, "
          f"{len(test)} held out, {s['n_masked']} masked atoms scored; training "
          f"{c_train:.0f} CPU-s in this call (0 when the run was already finished)")
    print("| held-out score | pre-trained | trivial baseline |")
    print("|---|---|---|")
    print(f"| masked-species accuracy | {s['masked_accuracy']:.3f} | "
          f"{s['masked_accuracy_majority']:.3f} (most frequent element) |")
    print(f"| position-noise MSE (fractional) | {s['position_mse']:.3g} | "
          f"{s['position_mse_zero']:.3g} (no noise predicted) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
