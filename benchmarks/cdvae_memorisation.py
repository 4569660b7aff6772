"""Does CDVAE memorise two structures?  (Open question, issue 12: with the cpu-preset
network and sampler it did not at 150 or 600 epochs: 0 of 16 samples within 0.3 Å.)

Trains on 16 copies of the 6-atom toy pair and prints each sample's RMS to the nearest
training structure; `--max-sigma 10 --levels 50` samples over the published noise range.

    python benchmarks/cdvae_memorisation.py --epochs 600
    python benchmarks/cdvae_memorisation.py --epochs 600 --max-sigma 10 --levels 50
"""

from __future__ import annotations

import argparse
import time

import torch


def main(argv=None) -> int:
    from dismai.models.config import preset_layers
    from dismai.testing import check_memorisation, toy_structures

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--max-sigma", type=float, default=1.2)
    p.add_argument("--levels", type=int, default=20)
    p.add_argument("--steps-per-level", type=int, default=6)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    pair = toy_structures(2, seed=3, n_fe=2, n_ni=2, n_cr=2)
    # the cpu preset's network and sampler; batch 32 so one batch holds both structures
    cfg = {**preset_layers("cdvae", "cpu", None)[0][1], "batch_size": 32,
           "epochs": args.epochs, "num_noise_level": args.levels,
           "n_step_each": args.steps_per_level, "max_sigma": args.max_sigma, "val_every": 0,
           "n_sample_dump": 0, "device": "cpu", "checkpoint_minutes": 0.0,
           "encoder_graph": "radius"}
    t = time.process_time()
    try:
        rms = check_memorisation("cdvae", cfg, pair, copies=16, n_sample=16, rms_tol=0.3,
                                 min_fraction=0.5)
        print("memorised; RMS", rms)
    except AssertionError as exc:
        print(str(exc))
    print(f"{time.process_time() - t:.0f} CPU-s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
