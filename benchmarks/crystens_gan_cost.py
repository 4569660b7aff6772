"""CPU seconds per WGAN-GP critic step and generator step at a few network widths.

A critic step is what `crystens-wgan` does per batch: a generator pass without gradients,
critic passes on real and fake images and the gradient penalty's double backward.  One
thread, batch 16 by default, the mean of `--repeats` steps after one warm-up step.

    python benchmarks/crystens_gan_cost.py
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> int:
    import torch

    from dismai.models.crystens_gan import Critic, Generator, gradient_penalty

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--widths", default="4/4,8/8,16/32",
                   help="critic/generator widths (16/32 is the published size)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    print("| critic / generator width | critic step, CPU-s | generator step, CPU-s |")
    print("|---|---|---|")
    for pair in args.widths.split(","):
        cw, gw = (int(x) for x in pair.split("/"))
        critic, gen = Critic(cw), Generator(128, gw)
        real = torch.rand(args.batch, 1, 64, 64, 4)

        def critic_step(critic=critic, gen=gen, real=real):
            with torch.no_grad():
                fake = gen(torch.randn(args.batch, 128))
            loss = critic(fake).mean() - critic(real).mean() \
                + 10 * gradient_penalty(critic, real, fake, g)
            loss.backward()

        def gen_step(critic=critic, gen=gen):
            (-critic(gen(torch.randn(args.batch, 128))).mean()).backward()

        out = []
        for step in (critic_step, gen_step):
            step()
            t = time.process_time()
            for _ in range(args.repeats):
                step()
            out.append((time.process_time() - t) / args.repeats)
        print(f"| {cw} / {gw} | {out[0]:.2f} | {out[1]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
