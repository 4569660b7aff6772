"""CrysTens cascade costs at the paper's sizes: a training step (forward + backward) and a
sampling step (one U-Net call) of the base U-Net at 64 x 64 and of the super-resolution
U-Net at L = 272 (256 atoms) and 280 (264 atoms), with our fused attention against the
straightforward transcription of imagen-pytorch's attention (einsum similarities, float
softmax, einsum with the values) in this file; outputs compared; activation memory saved
for backward per sample.

CPU seconds with one thread; each row prints the reference / ours ratio measured in the same
run, so a loaded machine shows up in both.  Paper-size U-Nets on a CPU are slow: the
default batch is 2 and one repeat (about 5 minutes in all).

    python benchmarks/crystens_speed.py
    python benchmarks/crystens_speed.py --batch 1 --sizes 64 272
"""

from __future__ import annotations

import argparse
import time

import torch

from dismai.models import image_diffusion as imd


def reference_attention(self, x, context=None):
    """imagen-pytorch's Attention.forward written straight: the (B, h, n, n + 1) weights
    are materialised."""
    b, n, _ = x.shape
    x = self.norm(x)
    q = self.to_q(x).reshape(b, n, self.heads, -1).transpose(1, 2)
    k, v = self.to_kv(x).chunk(2, dim=-1)
    nk, nv = (t.expand(b, 1, -1) for t in self.null_kv.unbind(0))
    k, v = torch.cat([nk, k], 1), torch.cat([nv, v], 1)
    if self.to_context is not None and context is not None:
        ck, cv = self.to_context(context).chunk(2, dim=-1)
        k, v = torch.cat([ck, k], 1), torch.cat([cv, v], 1)
    q, k = imd._l2norm(q) * self.q_scale, imd._l2norm(k) * self.k_scale
    sim = torch.einsum("bhid,bjd->bhij", q, k) * self.scale
    out = torch.einsum("bhij,bjd->bhid", sim.float().softmax(-1).to(v.dtype), v)
    return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


def _unet(side: int):
    """The paper's base U-Net for side 64, its super-resolution U-Net otherwise (final
    convolution randomised: it starts at zero, which would make every output equal)."""
    torch.manual_seed(0)
    if side == 64:
        net, sr = imd.UNet(4, 64, (1, 2, 4), (3, 3, 3), (False, True, True),
                           (False, True, True), True), False
    else:
        net, sr = imd.UNet(4, 64, (1, 2, 4), (2, 4, 8), (False, False, True),
                           (False, False, True), False, lowres_cond=True,
                           memory_efficient=True), True
    torch.nn.init.normal_(net.final_conv.weight, std=0.02)
    return net, sr


def _inputs(side: int, batch: int, lowres: bool):
    g = torch.Generator().manual_seed(1)
    x = torch.rand((batch, 4, side, side), generator=g) * 2 - 1
    ls = torch.randn((batch,), generator=g)
    kw = {}
    if lowres:
        kw = {"lowres": torch.rand((batch, 4, side, side), generator=g) * 2 - 1,
              "lowres_log_snr": torch.randn((batch,), generator=g)}
    return x, ls, kw


def _cpu(fn, repeats: int) -> float:
    t = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - t) / repeats


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for backward during fn()."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return total


def _measure(net, side, batch, kw_flag, repeats):
    x, ls, kw = _inputs(side, batch, kw_flag)
    net.eval()  # the base U-Net's linear attention has dropout: outputs compared without it
    with torch.no_grad():
        out = net(x, ls, **kw)
        t_call = _cpu(lambda: net(x, ls, **kw), repeats)

    net.train()

    def step():
        net.zero_grad(set_to_none=True)
        net(x, ls, **kw).square().mean().backward()

    t_step = _cpu(step, repeats)
    mem = _saved_bytes(lambda: net(x, ls, **kw)) / batch
    return out, t_call, t_step, mem


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--sizes", type=int, nargs="*", default=[64, 272, 280])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"U-Net at side | params | U-Net call B={args.batch} ours / reference (CPU-s) | "
          f"train step B={args.batch} ours / reference | max |diff| | saved for backward "
          "per sample ours / reference")
    ours_forward = imd.Attention.forward
    for side in args.sizes:
        net, sr = _unet(side)
        n_par = sum(q.numel() for q in net.parameters())
        rows = {}
        for name, fwd in (("ours", ours_forward), ("reference", reference_attention)):
            imd.Attention.forward = fwd
            try:
                rows[name] = _measure(net, side, args.batch, sr, args.repeats)
            finally:
                imd.Attention.forward = ours_forward
        (o1, c1, s1, m1), (o2, c2, s2, m2) = rows["ours"], rows["reference"]
        diff = float((o1 - o2).abs().max())
        print(f"{side} | {n_par:,} | {c1:.2f} / {c2:.2f} ({c2 / c1:.2f}x) | {s1:.2f} / {s2:.2f}"
              f" ({s2 / s1:.2f}x) | {diff:.1e} | {m1 / 2**20:.0f} / {m2 / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
