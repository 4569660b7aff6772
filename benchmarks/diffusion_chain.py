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


def chain_table(net, x, times, steps, stat, cfg, seed_b=None, **cond) -> list[str]:
    """Markdown rows: stat(predicted x0) (a) at the first sampling-chain step at or below
    each time and (b) on the images x noised to that time (noise from seed_b, or from the
    chain's generator after sampling).  cond: a super-resolution U-Net's clean
    low-resolution images ("lowres"), noised at cfg.lowres_noise_level as the sampler
    does."""
    from dismai.models.image_diffusion import (
        alpha_sigma,
        cosine_log_snr,
        linear_log_snr,
        predicted_x0,
        sample_images,
    )

    seen: dict[float, float] = {}

    def on_step(t, x_t, x0):
        for probe in times:
            if probe not in seen and t <= probe + 1e-9:
                seen[probe] = stat(x0.clamp(-1, 1))

    g = torch.Generator().manual_seed(0)
    kw = {} if not cond else {"lowres": cond["lowres"],
                              "lowres_noise_level": cfg.lowres_noise_level}
    sample_images(net, tuple(x.shape), steps, g, "cpu", percentile=cfg.threshold_percentile,
                  objective=cfg.objective, on_step=on_step, **kw)
    if seed_b is not None:
        g = torch.Generator().manual_seed(seed_b)
    net_kw = {}
    if cond:
        aug = linear_log_snr(torch.full((len(x),), cfg.lowres_noise_level))
        a0, s0 = (v.reshape(-1, 1, 1, 1) for v in alpha_sigma(aug))
        low = cond["lowres"]
        net_kw = {"lowres": a0 * low + s0 * torch.randn(low.shape, generator=g),
                  "lowres_log_snr": aug}
    rows = ["| t | (a) along the chain | (b) on noised training images |", "|---|---|---|"]
    with torch.no_grad():
        for t in times:
            ls = cosine_log_snr(torch.full((len(x),), t))
            a, s = (v.reshape(-1, 1, 1, 1) for v in alpha_sigma(ls))
            x_t = a * x + s * torch.randn(x.shape, generator=g)
            x0 = predicted_x0(x_t, net(x_t, ls, **net_kw), ls, cfg.objective)
            rows.append(f"| {t:g} | {seen.get(t, np.nan):.3f} | "
                        f"{stat(x0.clamp(-1, 1)):.3f} |")
    return rows


def main(argv=None) -> int:
    from dismai.datasets.crystal_sets import load_crystals
    from dismai.errors import DismaiError
    from dismai.models.crystens_original import encode_all
    from dismai.models.image_diffusion import resize_nearest
    from dismai.workflows import load_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a crystens-diffusion run folder or model file")
    p.add_argument("--dataset", default="perov-5", choices=["perov-5", "carbon-24"])
    p.add_argument("--limit", type=int, default=1000, help="training crystals for (b)")
    p.add_argument("--n", type=int, default=16, help="chains sampled")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--times", type=float, nargs="+", default=[0.9, 0.7, 0.5, 0.3, 0.1])
    args = p.parse_args(argv)

    try:
        model, _ = load_run(args.run, device="cpu")
    except DismaiError as exc:
        raise SystemExit(f"error: {exc}") from None
    if model.name != "crystens-diffusion":
        raise SystemExit(f"{args.run}: a {model.name} run, not crystens-diffusion")
    cfg, side = model.config, model._base_side
    train = load_crystals(args.dataset, "train", limit=args.limit)
    full = torch.as_tensor(encode_all(train)) * 2 - 1
    images = resize_nearest(full, side)
    empty = (images == -1).all(0)  # (4, side, side): empty in every training image
    print(f"{model.name} ({cfg.objective}-prediction), {args.dataset}: "
          f"{float(empty.float().mean()):.0%} of the base image is empty in all "
          f"{len(images)} training images")
    print("\n".join(chain_table(model._sampler("base"), images[:args.n], args.times,
                                args.steps, lambda x0: float(x0[:, empty].mean()), cfg,
                                seed_b=1)))
    print("(the training images hold -1.000 there)")
    if model.cascade:
        x = full[:args.n]
        low = resize_nearest(resize_nearest(x, side), model.side)
        print("\nsuper-resolution U-Net, conditioned on the training images' low-resolution "
              "copies: mean |predicted x0 - training image|")
        print("\n".join(chain_table(model._sampler("sr"), x, args.times, args.steps,
                                    lambda x0: float((x0 - x).abs().mean()), cfg,
                                    lowres=low)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
