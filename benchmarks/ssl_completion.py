"""Masked-species completion of an alloy by the masked-atom model (`ssl`, our extension).

Trains `ssl` (the cpu backbone, positions barely noised: completion keeps them) on part of
an alloy dataset's training split, or loads a model file, then masks atoms of the
validation structures and predicts them under the composition of the masked atoms
(`dismai.models.ssl_template.complete_species`).  Prints the masked-site accuracy beside
the trivial baseline (the masked atoms' species shuffled among them) and scores the
completed, the shuffled and the original structures with the alloy metrics (d_cluster
against the training split).  docs/masked-atom.md has the results.

    python benchmarks/ssl_completion.py --dataset alloy-300K-narrow --train 300 --epochs 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    import torch

    from dismai.datasets import load
    from dismai.errors import DismaiError
    from dismai.models import GenerativeModel
    from dismai.models.config import resolve_config
    from dismai.models.ssl_template import SSLTemplate, complete_species
    from dismai.workflows import evaluate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="alloy-300K-narrow")
    p.add_argument("--model", help="a saved ssl model (default: train one)")
    p.add_argument("--train", type=int, default=300, help="training structures used")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--ratio", type=float, default=0.15, help="share of atoms masked")
    p.add_argument("--out", default="runs/ssl-completion")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=10,
                   help="structures per forward pass (memory: about 0.5 GB per 256-atom "
                        "structure at the cpu size)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    try:
        data = load(args.dataset)
        if args.model:
            model = GenerativeModel.load(args.model, device="cpu")
        else:
            cfg = resolve_config("ssl", SSLTemplate.Config, preset="cpu",
                                 overrides={"epochs": args.epochs, "sigma_max_ratio": 0.1,
                                            "device": "cpu", "seed": args.seed})
            model = SSLTemplate(cfg)
            t = time.process_time()
            model.fit(data.train[:args.train], data.val[:64], run_dir=out / "run",
                      resume=True)
            print(f"trained on {args.train} structures, {args.epochs} epochs: "
                  f"{time.process_time() - t:.0f} CPU-s")
            model.save(out / "model.pt")
        model.config.sample_batch_size = args.batch
        rows = []
        for mode in ("random", "species"):
            done, rep = complete_species(model, data.val, mode=mode, ratio=args.ratio,
                                         seed=args.seed)
            print(f"{mode} masking: {rep}")
            rows.append((mode, rep, done))
        random_done = rows[0][2]
        shuffled = _shuffled(data.val, args.ratio, args.seed)
        scores = {}
        for label, s in (("completed (15 %)", random_done), ("shuffled (15 %)", shuffled),
                         ("originals", data.val)):
            ev = evaluate(s, data, progress=False, label=label)
            scores[label] = ev.metrics["d_cluster"]
    except DismaiError as exc:
        raise SystemExit(f"error: {exc}") from None
    print("\n| structures (validation split) | d_cluster vs training |\n|---|---|")
    for label, v in scores.items():
        print(f"| {label} | {_fmt(v)} |")
    r, s = rows[0][1], rows[1][1]
    print("\n| masking | masked atoms | accuracy (composition kept) | accuracy (free) | "
          "shuffled baseline |\n|---|---|---|---|---|")
    print(f"| 15 % random | {r['n_masked']} | {r['masked_accuracy']:.3f} | "
          f"{r['masked_accuracy_free']:.3f} | {r['masked_accuracy_shuffled']:.3f} |")
    print(f"| one species | {s['n_masked']} | (exact by construction) | "
          f"{s['masked_accuracy_free']:.3f} | - |")
    return 0


def _shuffled(structures, ratio: float, seed: int):
    """The trivial completion: the same masked sites as complete_species draws (same
    seed), their species shuffled among them."""
    import numpy as np
    import torch

    from dismai.models.ssl_corruption import mask_atoms

    g = torch.Generator().manual_seed(seed)
    b, n = len(structures), structures.n_atoms
    labels = torch.arange(n).repeat(b)  # distinct "species" per atom: ratio masking only
    _, mask = mask_atoms(labels, torch.full((b,), n), g, ratio, 0.0)
    mask = mask.reshape(b, n).numpy()
    rng = np.random.default_rng(seed)
    frac = structures.wrapped().frac.copy()
    for i in range(b):
        idx = np.flatnonzero(mask[i])
        frac[i, idx] = frac[i, rng.permutation(idx)]  # positions exchanged = species swapped
    return structures.with_frac(frac)


def _fmt(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {x:.4g}" for k, x in v.items() if isinstance(x, float))
    return f"{v:.4g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
