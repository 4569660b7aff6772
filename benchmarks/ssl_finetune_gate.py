"""Does masked-atom pre-training help fine-tuning?  (issue 15's second gate)

From the pre-trained `ssl-pretrain` run of benchmarks/ssl_pretrain_gate.py and from
scratch, with the same backbone size, seed, batches and number of steps, fine-tune on the
Perov-5 training split and score the held-out test split:

* regression of `heat_ref` (formation energy per atom, eV): MAE against the training
  mean;
* classification of a stability-like label, heat_ref <= the training median (balanced by
  construction): accuracy against the majority class.  As published, only the head trains.

    python benchmarks/ssl_finetune_gate.py runs/ssl-gate/cpu --steps 300
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> int:
    from dismai.datasets.crystal_sets import load_crystals
    from dismai.errors import DismaiError
    from dismai.models.ssl_finetune import evaluate_property, finetune, property_network
    from dismai.workflows import load_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="an ssl-pretrain run folder or model file")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--test-limit", type=int, default=None)
    args = p.parse_args(argv)
    try:
        pre, _ = load_run(args.run, device="cpu")
    except DismaiError as exc:
        raise SystemExit(f"error: {exc}") from None
    train = load_crystals("perov-5", "train")
    test = load_crystals("perov-5", "test", limit=args.test_limit)
    cfg = pre.config.backbone()
    print(f"fine-tuning on perov-5 ({len(train)} training, {len(test)} held-out crystals), "
          f"{args.steps} steps at batch {args.batch}, Adam {args.lr:g}")
    print("| task | held-out score | pre-trained | from scratch | trivial baseline |")
    print("|---|---|---|---|---|")
    for task, out, score, base in (("regression", 1, "mae", "mae_mean_predictor"),
                                   ("classification", 2, "accuracy", "accuracy_majority")):
        res = {}
        for arm, source in (("pre-trained", pre), ("scratch", None)):
            net, _ = property_network(cfg, out, source)
            c0 = time.process_time()
            fit = finetune(net, train, "heat_ref", task, steps=args.steps,
                           batch_size=args.batch, lr=args.lr, seed=0)
            res[arm] = (evaluate_property(net, fit, test, train), time.process_time() - c0)
        (a, ta), (b, tb) = res["pre-trained"], res["scratch"]
        name = "MAE of heat_ref (eV/atom)" if task == "regression" else \
            "accuracy of heat_ref <= training median"
        print(f"| {task} | {name} | {a[score]:.3f} | {b[score]:.3f} | {a[base]:.3f} |")
        print(f"|  | CPU-s (fine-tune + score) | {ta:.0f} | {tb:.0f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
