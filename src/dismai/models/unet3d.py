"""A factorised space-time U-Net for "videos" (B, C, F, H, W): UniMat's network (spec
models.md §4.2), after imagen-pytorch 1.26.2's ``Unet3D``, built from the 2-D U-Net's parts
in `image_diffusion` wherever the maths is the same.

* Convolutions are factorised: a 2-D spatial convolution on every frame, then a 1-D
  temporal convolution over frames, causal (padded on the left) and initialised to the
  identity (the published code's Dirac initialisation puts the 1 in the middle tap of a
  left-padded kernel, which delays every frame by one at initialisation; we follow the
  stated intent).
* Every level ends with a temporal "PEG" (a causal depthwise 3-frame convolution, residual)
  and **causal** temporal self-attention with a relative position bias (an MLP of i - j),
  over frames at each spatial position: frame k attends to frames <= k.
* Spatial self-attention, where a level has it, runs over all frames and pixels as one
  sequence (as published); GroupNorm and the global-context gate also see all frames.
* No temporal down-sampling: only H and W are halved (twice for three levels).

Differences from the published network: its feed-forward shifts half the channels by one
frame ("time-token shift"); ours does not (the 2-D feed-forward is reused).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dismai.models.image_diffusion import (
    Attention,
    CrossAttention,
    CrossEmbed,
    GlobalContext,
    LayerNorm,
    TransformerBlock,
    _cosine_attention,
    _downsample,
    _image,
    _ParallelConv,
    _TimeConditioning,
    _tokens,
    _Upsample,
    _zero_conv,
)

__all__ = ["UNet3D", "TemporalAttention", "SpaceTimeConv"]


def _per_frame(module, x):
    """Apply a 2-D module to every frame of (B, C, F, H, W)."""
    b, _, f = x.shape[:3]
    y = module(x.transpose(1, 2).flatten(0, 1))
    return y.reshape(b, f, *y.shape[1:]).transpose(1, 2)


def _as_image(x):  # (B, C, F, H, W) -> (B, C, F H, W): one sequence over frames and pixels
    return x.flatten(2, 3)


class SpaceTimeConv(nn.Module):
    """k x k spatial convolution per frame, then a causal k-frame temporal convolution that
    starts as the identity (only for k > 1)."""

    def __init__(self, dim: int, dim_out: int, k: int = 3):
        super().__init__()
        self.spatial = nn.Conv2d(dim, dim_out, k, padding=k // 2)
        self.temporal = None
        if k > 1:
            self.temporal = nn.Conv1d(dim_out, dim_out, k)
            with torch.no_grad():
                self.temporal.weight.zero_()
                self.temporal.weight[:, :, -1] = torch.eye(dim_out)
                self.temporal.bias.zero_()

    def forward(self, x):
        x = _per_frame(self.spatial, x)
        if self.temporal is None:
            return x
        b, c, f, h, w = x.shape
        seq = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, f)
        seq = self.temporal(F.pad(seq, (self.temporal.kernel_size[0] - 1, 0)))
        return seq.reshape(b, h, w, c, f).permute(0, 3, 4, 1, 2)


class TemporalPeg(nn.Module):
    """Residual causal depthwise convolution over 3 frames."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, (3, 1, 1), groups=dim)

    def forward(self, x):
        return x + self.conv(F.pad(x, (0, 0, 0, 0, 2, 0)))


class _PositionBias(nn.Module):
    """Attention bias per head from the signed frame distance i - j (a 3-layer MLP), run
    once on the 2 n - 1 distinct distances."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, dim), LayerNorm(dim), nn.SiLU(),
                                 nn.Linear(dim, dim), LayerNorm(dim), nn.SiLU(),
                                 nn.Linear(dim, heads))

    def forward(self, n: int, device):
        dist = torch.arange(-(n - 1), n, device=device, dtype=torch.float32)[:, None]
        per_dist = self.net(dist)  # (2 n - 1, heads)
        pos = torch.arange(n, device=device)
        return per_dist[pos[:, None] - pos[None] + n - 1].permute(2, 0, 1)  # (heads, i, j)


class TemporalAttention(nn.Module):
    """Causal multi-query attention over frames at every spatial position, with a relative
    position bias and a learned null key (always visible); cosine similarity x 8 as in the
    2-D attention; output zero-initialised, so the block starts as the identity.  Runs
    `chunk` spatial positions at a time (the maths is unchanged; memory is bounded)."""

    def __init__(self, dim: int, heads: int, dim_head: int, chunk: int = 4096):
        super().__init__()
        self.heads, self.chunk, self.scale = heads, chunk, 8.0
        self.norm = LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim_head, bias=False)
        self.null_kv = nn.Parameter(torch.randn(2, dim_head))
        self.null_bias = nn.Parameter(torch.zeros(heads))
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.bias = _PositionBias(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim, bias=False),
                                    LayerNorm(dim))
        nn.init.zeros_(self.to_out[1].g)

    def mask(self, f: int, device) -> torch.Tensor:
        """(heads, F, 1 + F) additive mask: the null key's bias, then the position bias,
        with -inf on every later frame."""
        bias = torch.cat([self.null_bias[:, None, None].expand(-1, f, 1),
                          self.bias(f, device)], -1)
        future = torch.ones(f, f + 1, dtype=torch.bool, device=device).triu(2)
        return bias.masked_fill(future, float("-inf"))

    def attend(self, seq, mask):
        """seq (S, F, C) -> (S, F, C) under `mask` (no residual)."""
        s, f, _ = seq.shape
        h = self.heads
        x = self.norm(seq)
        # multi-query: the heads' queries share one key/value head, so they are stacked
        # into one sequence of h F queries (keys and values are never copied per head)
        q = self.to_q(x).reshape(s, f, h, -1).transpose(1, 2).reshape(s, 1, h * f, -1)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        nk, nv = (t.expand(s, 1, -1) for t in self.null_kv.unbind(0))
        k, v = torch.cat([nk, k], 1)[:, None], torch.cat([nv, v], 1)[:, None]
        out = _cosine_attention(q, k, v, self.q_scale, self.k_scale, self.scale,
                                attn_mask=mask.to(q.dtype).reshape(1, h * f, f + 1))
        return self.to_out(out.reshape(s, h, f, -1).transpose(1, 2).reshape(s, f, -1))

    def forward(self, x):  # (B, C, F, H, W), residual
        b, c, f, h, w = x.shape
        seq = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, f, c)
        mask = self.mask(f, x.device)  # once, shared by every chunk
        out = torch.cat([self.attend(seq[i:i + self.chunk], mask)
                         for i in range(0, len(seq), self.chunk)])
        return x + out.reshape(b, h, w, f, c).permute(0, 4, 3, 1, 2)


class _Block(nn.Module):
    def __init__(self, dim: int, dim_out: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim)  # over channels x frames x pixels
        self.proj = SpaceTimeConv(dim, dim_out, 3)

    def forward(self, x, scale_shift=None):
        x = self.norm(x)
        if scale_shift is not None:
            x = x * (scale_shift[0] + 1) + scale_shift[1]
        return self.proj(F.silu(x))


class ResnetBlock3D(nn.Module):
    """The 2-D ResnetBlock with space-time convolutions: block1, cross-attention to the time
    tokens (optional), block2 with the time scale-shift, global-context gate (optional,
    pooled over all frames and pixels), residual."""

    def __init__(self, dim: int, dim_out: int, time_dim: int, groups: int, *,
                 cond_dim: int | None = None, gca: bool = False, heads: int = 8,
                 dim_head: int = 64):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * dim_out))
        self.block1, self.block2 = _Block(dim, dim_out, groups), _Block(dim_out, dim_out, groups)
        self.cross = CrossAttention(dim_out, cond_dim, heads, dim_head) if cond_dim else None
        self.gca = GlobalContext(dim_out) if gca else None
        self.res = nn.Conv3d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, t, cond=None):
        scale_shift = self.time_mlp(t)[:, :, None, None, None].chunk(2, dim=1)
        h = self.block1(x)
        if self.cross is not None:
            h = h + _image(self.cross(_tokens(h), cond), h)
        h = self.block2(h, scale_shift)
        if self.gca is not None:
            h = h * self.gca(_as_image(h))[..., None]
        return h + self.res(x)


class UNet3D(nn.Module):
    """Imagen's video U-Net for unconditional generation of (B, C, F, H, W) in [-1, 1]
    (see the module doc).  Per level: resnet_blocks, attns (spatial self-attention) and
    cross_attns (attention to the time tokens); H and W must be multiples of
    2^(levels - 1)."""

    def __init__(self, channels: int = 3, dim: int = 64, dim_mults=(1, 2, 4),
                 resnet_blocks=(3, 3, 3), attns=(False, True, True),
                 cross_attns=(False, True, True), *, heads: int = 8, dim_head: int = 64,
                 ff_mult: float = 2.0, groups: int = 8, chunk: int = 4096):
        super().__init__()
        n = len(dim_mults)
        for name, v in (("resnet_blocks", resnet_blocks), ("attns", attns),
                        ("cross_attns", cross_attns)):
            if len(v) != n:
                raise ValueError(f"{name} needs one entry per level ({n}), got {len(v)}")
        self.channels, self.n_levels = channels, n
        time_dim = 4 * dim
        self.time = _TimeConditioning(time_dim, dim)
        self.norm_cond = LayerNorm(dim)
        self.init_conv = CrossEmbed(channels, dim)
        kw = {"heads": heads, "dim_head": dim_head}

        def temporal(d):
            return nn.ModuleList([TemporalPeg(d), TemporalAttention(d, heads, dim_head, chunk)])

        self.init_temporal = temporal(dim)
        dims = [dim] + [dim * m for m in dim_mults]
        in_out = list(zip(dims[:-1], dims[1:], strict=True))
        self.downs, skips = nn.ModuleList(), []
        for i, (d_in, d_out) in enumerate(in_out):
            cond = dim if cross_attns[i] else None
            level = nn.ModuleDict({
                "init": ResnetBlock3D(d_in, d_in, time_dim, groups, cond_dim=cond, **kw),
                "blocks": nn.ModuleList(ResnetBlock3D(d_in, d_in, time_dim, groups, gca=True,
                                                      **kw) for _ in range(resnet_blocks[i])),
                "temporal": temporal(d_in),
                "post": _ParallelConv(d_in, d_out) if i == n - 1 else _downsample(d_in, d_out)})
            if attns[i]:
                level["attn"] = TransformerBlock(d_in, heads, dim_head, ff_mult, dim)
            skips.append(d_in)
            self.downs.append(level)
        mid = dims[-1]
        self.mid1 = ResnetBlock3D(mid, mid, time_dim, groups, cond_dim=dim, **kw)
        self.mid_attn = Attention(mid, heads, dim_head)
        self.mid_temporal = temporal(mid)
        self.mid2 = ResnetBlock3D(mid, mid, time_dim, groups, cond_dim=dim, **kw)
        self.ups = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(reversed(in_out)):
            lvl = n - 1 - i
            cond = dim if cross_attns[lvl] else None
            skip = skips.pop()
            level = nn.ModuleDict({
                "init": ResnetBlock3D(d_out + skip, d_out, time_dim, groups, cond_dim=cond,
                                      **kw),
                "blocks": nn.ModuleList(ResnetBlock3D(d_out + skip, d_out, time_dim, groups,
                                                      gca=True, **kw)
                                        for _ in range(resnet_blocks[lvl])),
                "temporal": temporal(d_out)})
            if attns[lvl]:
                level["attn"] = TransformerBlock(d_out, heads, dim_head, ff_mult, dim)
            if i != n - 1:
                level["up"] = _Upsample(d_out, d_in)
            self.ups.append(level)
        self.final_block = ResnetBlock3D(dim, dim, time_dim, groups, gca=True, **kw)
        self.final_conv = _zero_conv(dim, channels)
        self.skip_scale = 2 ** -0.5

    @property
    def side_multiple(self) -> int:
        return 2 ** (self.n_levels - 1)

    @staticmethod
    def _temporal(mods, x):
        peg, attn = mods
        return attn(peg(x))

    def forward(self, x, log_snr):
        """Predicted noise (or v) of noised videos x (B, C, F, H, W) at per-sample log SNR."""
        if x.ndim != 5 or x.shape[-1] % self.side_multiple or x.shape[-2] % self.side_multiple:
            raise ValueError(f"videos must be (B, C, F, H, W) with H and W multiples of "
                             f"{self.side_multiple}, got {tuple(x.shape)}")
        t, c = self.time(log_snr.to(x.dtype))
        c = self.norm_cond(c)
        x = self._temporal(self.init_temporal, _per_frame(self.init_conv, x))
        hiddens = []
        for level in self.downs:
            x = level["init"](x, t, c)
            for block in level["blocks"]:
                x = block(x, t)
                hiddens.append(x)
            if "attn" in level:
                x = level["attn"](_as_image(x), c).reshape(x.shape)
            x = self._temporal(level["temporal"], x)
            hiddens.append(x)
            x = _per_frame(level["post"], x)
        x = self.mid1(x, t, c)
        x = x + _image(self.mid_attn(_tokens(x)), x)
        x = self.mid2(self._temporal(self.mid_temporal, x), t, c)
        for level in self.ups:
            x = level["init"](torch.cat([x, hiddens.pop() * self.skip_scale], 1), t, c)
            for block in level["blocks"]:
                x = block(torch.cat([x, hiddens.pop() * self.skip_scale], 1), t)
            if "attn" in level:
                x = level["attn"](_as_image(x), c).reshape(x.shape)
            x = self._temporal(level["temporal"], x)
            if "up" in level:
                x = _per_frame(level["up"], x)
        return _per_frame(self.final_conv, self.final_block(x, t))
