"""The masked-atom model's GAN-stage gate on Perov-5 (issue 15): from the cpu pre-training
(benchmarks/ssl_pretrain_gate.py), train `ssl-gan` in both modes (as-published: the
adversarial term never reaches G; fixed: it does) for the same steps on the same batches,
then score held-out reconstructions at the GAN's noise (sigma 0.2 d_min): masked-species
accuracy and position-noise MSE (`ssl.reconstruction_scores`, the same corruptions for every
model), beside the pre-trained model and the trivial baselines; and with
`dismai.models.ssl_reconstruction.evaluate_reconstruction`.  The run
folders resume.

    python benchmarks/ssl_gan_gate.py                       # runs/ssl-gate/cpu/model.pt
    python benchmarks/ssl_gan_gate.py --limit 400 --test-limit 500   # a quicker look
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

MODES = ("as-published", "fixed")


_EXTRA = ("masked_accuracy", "unmasked_changed", "composition_similarity",
          "structural_similarity_matched", "structural_similarity_all",
          "structural_similarity_eqn5", "valid", "composition_valid")


def _extra_scores(model, test, seed: int) -> dict:
    """evaluate_reconstruction's numbers (beta masking: 15 % of the atoms, once per crystal,
    noise 0.2 d_min)."""
    from dismai.models.ssl_reconstruction import evaluate_reconstruction

    out = evaluate_reconstruction(model, test, sigma_ratio=0.2, masking="beta", repeats=1,
                                  seed=seed)
    return {k: out[k] for k in _EXTRA if isinstance(out.get(k), (int, float))}


def _last_row(run: Path) -> dict:
    with open(run / "losses.csv") as fh:
        rows = list(csv.DictReader(fh))
    return rows[-1] if rows else {}


def main(argv=None) -> int:
    from dismai.datasets.crystal_sets import load_crystals
    from dismai.models import GenerativeModel, create_model, resolve_config
    from dismai.models.ssl import reconstruction_scores
    from dismai.models.ssl_gan import SSLGANConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained", default="runs/ssl-gate/cpu/model.pt")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--limit", type=int, default=None, help="training crystals (default all)")
    p.add_argument("--test-limit", type=int, default=None, help="held-out crystals scored")
    p.add_argument("--out", default="runs/ssl-gan-gate")
    args = p.parse_args(argv)
    train = load_crystals("perov-5", "train", limit=args.limit)
    test = load_crystals("perov-5", "test", limit=args.test_limit)
    val = train[len(train) - max(1, len(train) // 20):]  # as in the pre-training gate
    train = train[:len(train) - len(val)]

    pre = GenerativeModel.load(args.pretrained, device="cpu")
    pre.config.sigma_ratio = 0.2  # scored at the GAN's noise, like the GAN models
    models, info = {"pre-trained only": pre}, {}
    for mode in MODES:
        cfg = resolve_config("ssl-gan", SSLGANConfig, preset=args.preset, overrides={
            "generator_from": args.pretrained, "adversarial": mode})
        m = create_model("ssl-gan", cfg)
        run = Path(args.out) / f"{args.preset}-{mode}"
        c0 = time.process_time()
        m.fit(train, val, run_dir=run, resume=True, progress=True)
        info[mode] = (time.process_time() - c0, _last_row(run))
        models[mode] = m
    assert all(m.config.batch_size == pre.config.batch_size for m in models.values()), \
        "the scorer's corruptions depend on the batch size: keep it equal"

    scores = {k: reconstruction_scores(m, test, train, seed=0) for k, m in models.items()}
    extra = {k: _extra_scores(m, test, 0) for k, m in models.items()}
    s0 = scores["pre-trained only"]
    print(f"ssl-gan ({args.preset}) on perov-5 from {args.pretrained}: {len(train)} training "
          f"crystals, {len(test)} held out, {s0['n_masked']} masked atoms scored at "
          "sigma 0.2 d_min")
    for mode in MODES:
        cpu, row = info[mode]
        print(f"  {mode}: {cpu:.0f} CPU-s of training in this call; last epoch: label_loss "
              f"{float(row.get('label_loss', 'nan')):.3f}, val D accuracy "
              f"{float(row.get('val_d_accuracy', 'nan')):.3f}")
    names = list(models)
    print("| held-out score | " + " | ".join(names) + " | trivial baseline |")
    print("|---" * (len(names) + 2) + "|")
    print("| masked-species accuracy | " + " | ".join(
        f"{scores[k]['masked_accuracy']:.3f}" for k in names)
        + f" | {s0['masked_accuracy_majority']:.3f} (most frequent element) |")
    print("| position-noise MSE (fractional) | " + " | ".join(
        f"{scores[k]['position_mse']:.3g}" for k in names)
        + f" | {s0['position_mse_zero']:.3g} (no noise predicted) |")
    print("evaluate_reconstruction (beta masking, 15 % of the atoms, sigma 0.2 d_min):")
    for key in [k for k in _EXTRA if any(k in v for v in extra.values())]:
        print(f"| {key} | " + " | ".join(
            f"{extra[k].get(key, float('nan')):.4g}" for k in names) + " | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
