"""Follow a trained crystens-diffusion base U-Net along its own sampling chain.

Perov-5 images leave most of the 32 x 32 base image empty (-1 in diffusion space in every
training image).  At each probed time this prints the mean predicted x0 over that always-
empty region (a) along the sampling chain and (b) on noised training images at the same
time.  A network that predicts well on (b) but drifts on (a) has not learnt the high-noise
steps that fix the layout: the diagnosis behind the `cpu` preset's v-prediction
(docs/crystens.md, "Why the cpu preset predicts v").  Then the same for the super-
resolution U-Net, conditioned on the training images' own low-resolution copies: the mean
|predicted x0 - training image| along its chain and on noised training images.

    python benchmarks/diffusion_chain.py runs/crystens-tables-perov-5-cpu/crystens-diffusion
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main(argv=None) -> int:
    from dismai.datasets.crystal_sets import load_crystals
    from dismai.models.crystens_original import encode_all
    from dismai.models.image_diffusion import (
        alpha_sigma,
        cosine_log_snr,
        predicted_x0,
        resize_nearest,
        sample_images,
    )
    from dismai.workflows import load_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a crystens-diffusion run folder or model file")
    p.add_argument("--dataset", default="perov-5", choices=["perov-5", "carbon-24"])
    p.add_argument("--limit", type=int, default=1000, help="training crystals for (b)")
    p.add_argument("--n", type=int, default=16, help="chains sampled")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--times", type=float, nargs="+", default=[0.9, 0.7, 0.5, 0.3, 0.1])
    args = p.parse_args(argv)

    model, _ = load_run(args.run, device="cpu")
    if model.name != "crystens-diffusion":
        raise SystemExit(f"{args.run}: a {model.name} run, not crystens-diffusion")
    net, side = model._sampler("base"), model._base_side
    train = load_crystals(args.dataset, "train", limit=args.limit)
    images = resize_nearest(torch.as_tensor(encode_all(train)) * 2 - 1, side)
    empty = (images == -1).all(0)  # (4, side, side): empty in every training image
    print(f"{model.name} ({model.config.objective}-prediction), {args.dataset}: "
          f"{float(empty.float().mean()):.0%} of the base image is empty in all "
          f"{len(images)} training images")

    seen: dict[float, float] = {}

    def on_step(t, x, x0):
        for probe in args.times:  # the first chain step at or below each probed time
            if probe not in seen and t <= probe + 1e-9:
                seen[probe] = float(x0.clamp(-1, 1)[:, empty].mean())

    g = torch.Generator().manual_seed(0)
    sample_images(net, (args.n, 4, side, side), args.steps, g, "cpu",
                  percentile=model.config.threshold_percentile,
                  objective=model.config.objective, on_step=on_step)
    g = torch.Generator().manual_seed(1)
    x = images[:args.n]
    print("| t | (a) along the chain | (b) on noised training images |\n|---|---|---|")
    with torch.no_grad():
        for t in args.times:
            ls = cosine_log_snr(torch.full((len(x),), t))
            a, s = (v.reshape(-1, 1, 1, 1) for v in alpha_sigma(ls))
            x_t = a * x + s * torch.randn(x.shape, generator=g)
            x0 = predicted_x0(x_t, net(x_t, ls), ls, model.config.objective)
            b = float(x0.clamp(-1, 1)[:, empty].mean())
            print(f"| {t:g} | {seen.get(t, np.nan):.3f} | {b:.3f} |")
    print("(the training images hold -1.000 there)")
    if model.cascade:
        _super_resolution(model, images_full=torch.as_tensor(encode_all(train[:args.n])) * 2 - 1,
                          times=args.times, steps=args.steps)
    return 0


def _super_resolution(model, images_full, times, steps) -> None:
    from dismai.models.image_diffusion import (
        alpha_sigma,
        cosine_log_snr,
        linear_log_snr,
        predicted_x0,
        resize_nearest,
        sample_images,
    )

    cfg, net, x = model.config, model._sampler("sr"), images_full
    low = resize_nearest(resize_nearest(x, model._base_side), model.side)
    seen: dict[float, float] = {}

    def on_step(t, x_t, x0):
        for probe in times:
            if probe not in seen and t <= probe + 1e-9:
                seen[probe] = float((x0.clamp(-1, 1) - x).abs().mean())

    g = torch.Generator().manual_seed(0)
    sample_images(net, tuple(x.shape), steps, g, "cpu", lowres=low,
                  lowres_noise_level=cfg.lowres_noise_level,
                  percentile=cfg.threshold_percentile, objective=cfg.objective,
                  on_step=on_step)
    aug = linear_log_snr(torch.full((len(x),), cfg.lowres_noise_level))
    a0, s0 = (v.reshape(-1, 1, 1, 1) for v in alpha_sigma(aug))
    cond = {"lowres": a0 * low + s0 * torch.randn(low.shape, generator=g),
            "lowres_log_snr": aug}
    print("\nsuper-resolution U-Net, conditioned on the training images' low-resolution "
          "copies: mean |predicted x0 - training image|")
    print("| t | (a) along the chain | (b) on noised training images |\n|---|---|---|")
    with torch.no_grad():
        for t in times:
            ls = cosine_log_snr(torch.full((len(x),), t))
            a, s = (v.reshape(-1, 1, 1, 1) for v in alpha_sigma(ls))
            x_t = a * x + s * torch.randn(x.shape, generator=g)
            x0 = predicted_x0(x_t, net(x_t, ls, **cond), ls, cfg.objective)
            print(f"| {t:g} | {seen.get(t, np.nan):.3f} | "
                  f"{float((x0.clamp(-1, 1) - x).abs().mean()):.3f} |")


if __name__ == "__main__":
    raise SystemExit(main())
