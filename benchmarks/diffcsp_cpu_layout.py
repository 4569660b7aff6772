"""DiffCSP on a 2-core CPU: atom-block layout and sampling batch for the `cpu` preset network.

Times, for the `cpu`/`demo` preset network (hidden 64, 3 layers, 32 frequencies) on `a-si-64`
structures (N = 64), interleaved so machine load hits every variant alike:

* one training step (forward, backward, Adam) at batch 16 with 8, 4, 2 and 1 atom blocks for
  the triangular pair layout (``CSPNet.n_blocks``; ``pair_blocks`` picks 4 at N = 64);
* one denoiser call per structure when sampling, at sample batches 10, 25, 50 and 100.

Prints wall-clock ratios against the baseline in the same run (8 blocks; batch 50), which is
what the shared machines allow (docs/learning.md quotes the results).

    python benchmarks/diffcsp_cpu_layout.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main(argv=None) -> int:
    from dismai.datasets import load
    from dismai.models.diffcsp import CSPNet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train = load("a-si-64").train
    z = [14] * train.n_atoms
    frac = torch.as_tensor(train.wrapped().frac[:100]).float()
    net = CSPNet(z, train.lattice, 14, hidden=64, num_layers=3, num_freqs=32, time_dim=32,
                 timesteps=50)
    opt = torch.optim.Adam(net.parameters())
    x16, t16 = frac[:16], torch.randint(1, 51, (16,))

    def train_step():
        opt.zero_grad()
        net(x16, t16).square().mean().backward()
        opt.step()

    blocks = (8, 4, 2, 1)
    times = {b: [] for b in blocks}
    for _ in range(args.repeats):
        for b in blocks:
            net.n_blocks = b
            times[b].append(_time(train_step, 5))
    base = statistics.median(times[8])
    print(f"training step, batch 16, {args.threads} threads (median of {args.repeats}):")
    for b in blocks:
        m = statistics.median(times[b])
        print(f"  {b} blocks of {train.n_atoms // b}: {m * 1e3:6.0f} ms  ratio to 8 blocks "
              f"{m / base:.2f}")

    net.n_blocks = 4
    batches = (10, 25, 50, 100)
    per = {b: [] for b in batches}
    with torch.no_grad():
        for _ in range(args.repeats):
            for b in batches:
                xb, tb = frac[:b], torch.full((b,), 25)
                per[b].append(_time(lambda xb=xb, tb=tb: net(xb, tb), 3) / b)
    base = statistics.median(per[50])
    print("sampling, one denoiser call per structure:")
    for b in batches:
        m = statistics.median(per[b])
        print(f"  batch {b:3d}: {m * 1e3:5.2f} ms  ratio to batch 50 {m / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
