"""UniMat's costs at the paper's size: a training step (forward + backward) and a sampling
step (one U-Net call) of the published 3D U-Net (dim 64, mults 1-2-4, three ResNet blocks
per level, 23.1 M parameters) on (B, 3, N, 4, 4) videos for N = 256 (alloys, a-Si) and
264 (interface), with our temporal attention (fused, chunked over pixels) against the
straightforward transcription of imagen-pytorch's (einsum similarities, the (S, h, N, N + 1)
weights materialised, float softmax) in this file; outputs compared; activation memory
saved for backward per sample, and the peak resident memory of a training step.

CPU seconds with one thread; each row prints the reference / ours ratio measured in the
same run.  About a minute with the defaults.

    python benchmarks/unimat_speed.py
    python benchmarks/unimat_speed.py --batch 8 --frames 256
"""

from __future__ import annotations

import argparse
import resource

import torch

from crystens_speed import _cpu, _saved_bytes  # same folder: CPU time, saved activations
from dismai.models import unet3d
from dismai.models.image_diffusion import _l2norm


def reference_temporal_attention(self, seq, mask):
    """TemporalAttention.attend written straight: every (S, h, F, F + 1) weight is held."""
    s, f, _ = seq.shape
    x = self.norm(seq)
    q = self.to_q(x).reshape(s, f, self.heads, -1).transpose(1, 2)
    k, v = self.to_kv(x).chunk(2, dim=-1)
    nk, nv = (t.expand(s, 1, -1) for t in self.null_kv.unbind(0))
    k, v = torch.cat([nk, k], 1), torch.cat([nv, v], 1)
    q, k = _l2norm(q) * self.q_scale, _l2norm(k) * self.k_scale
    sim = torch.einsum("shid,sjd->shij", q, k) * self.scale + mask
    out = torch.einsum("shij,sjd->shid", sim.float().softmax(-1).to(v.dtype), v)
    return self.to_out(out.transpose(1, 2).reshape(s, f, -1))


def _unet():
    """The paper's network with its zero-initialised output layers randomised (else every
    output is zero and the comparison says nothing)."""
    torch.manual_seed(0)
    net = unet3d.UNet3D(3, 64, (1, 2, 4), (3, 3, 3), (False, True, True), (False, True, True))
    for mod in net.modules():
        if isinstance(mod, unet3d.TemporalAttention):
            torch.nn.init.ones_(mod.to_out[1].g)
    torch.nn.init.normal_(net.final_conv.weight, std=0.02)
    return net


def _measure(net, frames, batch, repeats):
    g = torch.Generator().manual_seed(1)
    x = torch.rand((batch, 3, frames, 4, 4), generator=g) * 2 - 1
    ls = torch.randn((batch,), generator=g)
    with torch.no_grad():
        out = net(x, ls)
        t_call = _cpu(lambda: net(x, ls), repeats)

    def step():
        net.zero_grad(set_to_none=True)
        net(x, ls).square().mean().backward()

    t_step = _cpu(step, repeats)
    mem = _saved_bytes(lambda: net(x, ls)) / batch
    return out, t_call, t_step, mem


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--frames", type=int, nargs="*", default=[256, 264])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    net = _unet()
    n_par = sum(q.numel() for q in net.parameters())
    print(f"3D U-Net: {n_par:,} parameters; batch {args.batch}; CPU-s with one thread")
    print("frames N | U-Net call ours / reference | train step ours / reference | max |diff| "
          "| saved for backward per sample ours / reference | peak RSS so far")
    ours = unet3d.TemporalAttention.attend
    for frames in args.frames:
        rows = {}
        for name, fn in (("ours", ours), ("reference", reference_temporal_attention)):
            unet3d.TemporalAttention.attend = fn
            try:
                rows[name] = _measure(net, frames, args.batch, args.repeats)
            finally:
                unet3d.TemporalAttention.attend = ours
        (o1, c1, s1, m1), (o2, c2, s2, m2) = rows["ours"], rows["reference"]
        diff = float((o1 - o2).abs().max())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        print(f"{frames} | {c1:.2f} / {c2:.2f} ({c2 / c1:.2f}x) | {s1:.2f} / {s2:.2f} "
              f"({s2 / s1:.2f}x) | {diff:.1e} | {m1 / 2**20:.0f} / {m2 / 2**20:.0f} MiB | "
              f"{rss:.1f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
