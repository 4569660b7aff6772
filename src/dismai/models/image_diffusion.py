"""Imagen-style continuous-time Gaussian diffusion on images, in plain torch.

The core of the image models (CrysTens now, UniMat next).  It reproduces the behaviour of
imagen-pytorch 1.26.2 that Dismai-Bench trained with (spec/models.md §3.4), without the
package (it fetches a T5 config from the internet at import):

* noise: x_t = alpha(t) x_0 + sigma(t) eps with alpha² = sigmoid(log SNR), sigma² =
  sigmoid(-log SNR); a cosine log-SNR schedule for the U-Nets and a linear one for the
  low-resolution augmentation of a cascade;
* objective: predict eps, per-sample mean squared error weighted by min(SNR, 5) / SNR
  (min-SNR-γ), then the batch mean; or predict v = alpha eps - sigma x0 with the weight
  min(SNR, 5) / (SNR + 1), imagen-pytorch's other objective (same weight on the error of
  x0, but a small network learns the high-noise steps far sooner: docs/crystens.md);
* sampling: ancestral steps over a uniform grid of times 1 -> 0, the predicted x_0
  dynamically thresholded (per-sample 95th percentile of |x_0|, floored at 1), the result
  clamped to [-1, 1];
* EMA weights as ema-pytorch keeps them (beta 0.9999, start after 100 updates, every 10,
  warm-up power 2/3);
* the U-Net of imagen-pytorch's ``Unet`` (cross-embedding stem, ResNet blocks with time
  scale-shift and global-context gating, multi-query attention with cosine similarity,
  linear attention, pixel-unshuffle downsampling, pixel-shuffle upsampling, the
  memory-efficient layout of its super-resolution preset), built top-down below.

Images are channel-first (B, C, H, W) in [-1, 1] (callers map [0, 1] data with 2x - 1, as
Imagen's auto-normalisation does).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["cosine_log_snr", "linear_log_snr", "alpha_sigma", "min_snr_weight",
           "dynamic_threshold", "predicted_x0", "uniform_posterior_mean", "posterior",
           "resize_nearest", "diffusion_loss", "sample_images", "EMA", "BestWeights", "UNet"]


# ---------------------------------------------------------------------------- schedules
def cosine_log_snr(t: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """log SNR of the cosine schedule: -log(cos((t + s)/(1 + s) π/2)^-2 - 1), floored at 1e-5
    inside the log as imagen-pytorch does."""
    return -torch.log(torch.clamp(torch.cos((t + s) / (1 + s) * math.pi * 0.5) ** -2 - 1,
                                  min=1e-5))


def linear_log_snr(t: torch.Tensor) -> torch.Tensor:
    """log SNR of the linear (beta) schedule: -log(expm1(1e-4 + 10 t²)); the cascade's
    low-resolution augmentation noise."""
    return -torch.log(torch.clamp(torch.expm1(1e-4 + 10 * t ** 2), min=1e-20))


SCHEDULES = {"cosine": cosine_log_snr, "linear": linear_log_snr}


def alpha_sigma(log_snr: torch.Tensor):
    return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()


def _pad(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))


OBJECTIVES = ("eps", "v")


def min_snr_weight(log_snr: torch.Tensor, gamma: float = 5.0,
                   objective: str = "eps") -> torch.Tensor:
    """The loss weight under min-SNR-γ: min(SNR, γ) / SNR for eps-prediction,
    min(SNR, γ) / (SNR + 1) for v-prediction (both are min(SNR, γ) on the error of x0)."""
    snr = log_snr.exp()
    return snr.clamp(max=gamma) / (snr + 1 if objective == "v" else snr)


def predicted_x0(x_t, out, log_snr, objective: str = "eps"):
    """x0 implied by the network output: (x_t - sigma eps) / alpha for eps-prediction,
    alpha x_t - sigma v for v-prediction (v = alpha eps - sigma x0).  At high noise the
    first divides the network's error by alpha ~ 0; the second does not."""
    alpha, sigma = (_pad(v, x_t) for v in alpha_sigma(log_snr))
    if objective == "v":
        return alpha * x_t - sigma * out
    return (x_t - sigma * out) / alpha


def uniform_posterior_mean(x_t, log_snr, lo: float = 0.0, hi: float = 1.0):
    """E[x0 | x_t] when every entry of x0 is uniform on [lo, hi]: the exact denoiser of
    such data (a truncated-normal mean), a reference for probes and tests of the sampler.
    UniMat's a-Si coordinates are uniform on [0, 1] per pixel (benchmarks/unimat_probe.py)."""
    alpha, sigma = (_pad(v, x_t).double() for v in alpha_sigma(log_snr))
    mu, sd = x_t.double() / alpha, sigma / alpha
    normal = torch.distributions.Normal(0.0, 1.0)
    a, b = (lo - mu) / sd, (hi - mu) / sd
    mass = (normal.cdf(b) - normal.cdf(a)).clamp(min=1e-300)
    out = mu + sd * (normal.log_prob(a).exp() - normal.log_prob(b).exp()) / mass
    return out.clamp(lo, hi).to(x_t.dtype)


def dynamic_threshold(x0: torch.Tensor, percentile: float = 0.95) -> torch.Tensor:
    """Imagen's dynamic thresholding: s = per-sample quantile of |x0| (at least 1); clamp
    to [-s, s] and divide by s."""
    s = torch.quantile(x0.reshape(len(x0), -1).abs().float(), percentile, dim=-1)
    s = _pad(s.clamp(min=1.0).to(x0.dtype), x0)
    return x0.clamp(-s, s) / s


def posterior(x_t, x0, log_snr, log_snr_next):
    """Mean and variance of q(x_next | x_t, x0) between two times of the continuous chain."""
    alpha, _ = alpha_sigma(log_snr)
    alpha_next, sigma_next = alpha_sigma(log_snr_next)
    c = -torch.expm1(log_snr - log_snr_next)
    c, alpha, alpha_next, sigma_next = (_pad(v, x_t) for v in (c, alpha, alpha_next,
                                                               sigma_next))
    return alpha_next * (x_t * (1 - c) / alpha + c * x0), sigma_next ** 2 * c


def resize_nearest(x: torch.Tensor, size: int, clamp: bool = True) -> torch.Tensor:
    """Nearest resize of the last two axes to size x size (source line floor(m H / size)),
    then clamped to [-1, 1]: how Imagen makes and conditions on low-resolution images."""
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="nearest")
    return x.clamp(-1, 1) if clamp else x


# ---------------------------------------------------------------------------- training loss
def diffusion_loss(unet, x0: torch.Tensor, gen: torch.Generator, *, gamma: float = 5.0,
                   lowres: torch.Tensor | None = None, schedule: str = "cosine",
                   objective: str = "eps"):
    """Min-SNR-weighted loss of one batch (x0 in [-1, 1]): the network predicts eps
    (Imagen's default) or v = alpha eps - sigma x0 (imagen-pytorch's ``pred_objectives="v"``).

    lowres: for a super-resolution U-Net, the low-resolution image already resized to
    x0's size; it is noised at one random augmentation time for the whole batch (linear
    schedule), as imagen-pytorch does."""
    b, dev = len(x0), x0.device
    t = torch.rand((b,), generator=gen, device=dev)
    eps = torch.randn(x0.shape, generator=gen, device=dev)
    log_snr = SCHEDULES[schedule](t)
    alpha, sigma = alpha_sigma(log_snr)
    x_t = _pad(alpha, x0) * x0 + _pad(sigma, x0) * eps
    kw = {}
    if lowres is not None:
        t_aug = torch.rand((1,), generator=gen, device=dev).expand(b)
        kw = _noised_lowres(lowres, t_aug, gen)
    pred = unet(x_t, log_snr, **kw)
    target = _pad(alpha, x0) * eps - _pad(sigma, x0) * x0 if objective == "v" else eps
    per_sample = (pred.float() - target).square().reshape(b, -1).mean(-1)
    return (per_sample * min_snr_weight(log_snr, gamma, objective)).mean()


def _noised_lowres(lowres: torch.Tensor, t_aug: torch.Tensor, gen: torch.Generator) -> dict:
    log_snr = linear_log_snr(t_aug)
    a, s = alpha_sigma(log_snr)
    noise = torch.randn(lowres.shape, generator=gen, device=lowres.device)
    return {"lowres": _pad(a, lowres) * lowres + _pad(s, lowres) * noise,
            "lowres_log_snr": log_snr}


# ---------------------------------------------------------------------------- sampling
@torch.no_grad()
def sample_images(unet, shape, steps: int, gen: torch.Generator, device, *,
                  lowres: torch.Tensor | None = None, lowres_noise_level: float = 0.2,
                  percentile: float = 0.95, schedule: str = "cosine",
                  objective: str = "eps", on_step=None) -> torch.Tensor:
    """Ancestral sampling from N(0, I) over `steps` uniform times 1 -> 0 (the last step adds
    no noise); noise drawn on the CPU from `gen`, so results do not depend on the device.

    lowres: the base stage's images resized to `shape` (super-resolution stage), noised once
    at the fixed level `lowres_noise_level` as Imagen samples.  Runs the U-Net in eval mode
    (no dropout).  on_step(t, x_t, x0): called at every step with the predicted x0 before
    thresholding (a probe of the chain: benchmarks/diffusion_chain.py)."""
    was_training = unet.training
    unet.eval()
    try:
        return _sample(unet, shape, steps, gen, device, lowres, lowres_noise_level, percentile,
                       schedule, objective, on_step)
    finally:
        unet.train(was_training)


def _sample(unet, shape, steps, gen, device, lowres, lowres_noise_level, percentile,
            schedule, objective, on_step):
    b = shape[0]
    log_snr_fn = SCHEDULES[schedule]
    x = torch.randn(shape, generator=gen).to(device)
    kw = {}
    if lowres is not None:
        t_aug = torch.full((b,), lowres_noise_level)
        a, s = alpha_sigma(linear_log_snr(t_aug))
        noise = torch.randn(lowres.shape, generator=gen)
        kw = {"lowres": (_pad(a, lowres) * lowres.cpu() + _pad(s, lowres) * noise).to(device),
              "lowres_log_snr": linear_log_snr(t_aug).to(device)}
    times = torch.linspace(1.0, 0.0, steps + 1)
    for i in range(steps):
        t, t_next = times[i].expand(b), times[i + 1].expand(b)
        ls, ls_next = log_snr_fn(t).to(device), log_snr_fn(t_next).to(device)
        raw = predicted_x0(x, unet(x, ls, **kw).float(), ls, objective)
        if on_step is not None:
            on_step(float(times[i]), x, raw)
        x0 = dynamic_threshold(raw, percentile)
        mean, var = posterior(x, x0, ls, ls_next)
        noise = torch.randn(shape, generator=gen).to(device)
        x = mean if i == steps - 1 else mean + var.sqrt() * noise
    return x.clamp(-1.0, 1.0)  # as Imagen's sampling loop ends


# ---------------------------------------------------------------------------- EMA
class EMA(nn.Module):
    """Exponential moving average of a module's weights, as ema-pytorch keeps it.

    Update k (counting from 0) acts only when k is a multiple of `every`: while k <= `after`
    it copies the weights outright; the first update past `after` copies them once more and
    then averages (so it leaves the weights themselves); later ones average with decay
    min(beta, 1 - (1 + e)^-power), e = k + 1 - after - 1 (the counter already advanced),
    0 when e <= 0.  A module itself, so its weights and counters go into checkpoints."""

    def __init__(self, module: nn.Module, beta: float = 0.9999, after: int = 100,
                 every: int = 10, power: float = 2 / 3):
        super().__init__()
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self.beta, self.after, self.every, self.power = beta, after, every, power
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))

    def train(self, mode: bool = True):  # the average never trains (no dropout)
        super().train(mode)
        self.shadow.eval()
        return self

    def decay(self) -> float:
        """The decay an averaging update uses now (after the counter advanced)."""
        e = int(self.step) - self.after - 1
        return 0.0 if e <= 0 else min(self.beta, 1 - (1 + e) ** -self.power)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        step = int(self.step)
        self.step += 1
        if step % self.every:
            return
        src = module.state_dict()
        if step <= self.after or not bool(self.initted):
            self.shadow.load_state_dict(src)
            if step <= self.after:
                return
            self.initted.fill_(True)
        d = self.decay()
        for k, v in self.shadow.state_dict().items():
            if v.dtype.is_floating_point:
                v.lerp_(src[k], 1 - d)
            else:
                v.copy_(src[k])

    def forward(self, *args, **kwargs):
        return self.shadow(*args, **kwargs)


class BestWeights(nn.Module):
    """A copy of a module's weights at the lowest validation loss offered so far, with that
    loss: what the published "best" checkpoints held, kept inside the model's state so it
    goes into checkpoints and model files."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.weights = copy.deepcopy(module).eval().requires_grad_(False)
        self.register_buffer("loss", torch.tensor(float("inf"), dtype=torch.float64))

    @property
    def filled(self) -> bool:
        return bool(torch.isfinite(self.loss))

    def train(self, mode: bool = True):
        super().train(mode)
        self.weights.eval()
        return self

    @torch.no_grad()
    def offer(self, loss: float, source: nn.Module) -> bool:
        """Keep `source`'s weights if `loss` beats the best so far; True if kept."""
        if not math.isfinite(loss) or loss >= float(self.loss):
            return False
        self.weights.load_state_dict(source.state_dict())
        self.loss.fill_(loss)
        return True

    def forward(self, *args, **kwargs):
        return self.weights(*args, **kwargs)


# ---------------------------------------------------------------------------- U-Net parts
class LayerNorm(nn.Module):
    """Imagen's bias-free layer norm over `dim` (-1: features, 1: channels)."""

    def __init__(self, n: int, dim: int = -1):
        super().__init__()
        self.dim = dim
        self.g = nn.Parameter(torch.ones(n))

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=self.dim, unbiased=False, keepdim=True)
        g = self.g if self.dim == -1 else self.g.reshape(-1, *([1] * (x.ndim - 2)))
        return (x - mean) * torch.rsqrt(var + 1e-5) * g


def _l2norm(x):
    return F.normalize(x, dim=-1)


def _cosine_attention(q, k, v, q_scale, k_scale, scale: float, attn_mask=None):
    """Imagen's cosine-similarity attention: q (B, h, n, d); k, v (B, h or 1, m, d); an
    optional additive attn_mask broadcast to (B, h, n, m).  Fused
    (scaled_dot_product_attention), so the (B, h, n, m) weights are never held;
    benchmarks/crystens_speed.py times it against the einsum form, which it equals to float
    precision."""
    q, k = _l2norm(q) * q_scale, _l2norm(k) * k_scale
    shape = (q.shape[0], q.shape[1], k.shape[2], k.shape[3])
    return F.scaled_dot_product_attention(q, k.expand(shape), v.expand(shape),
                                          attn_mask=attn_mask, scale=scale)


class Attention(nn.Module):
    """Multi-query attention (per-head queries, one shared key/value head, a learned null
    key/value, cosine similarity x 8) over a sequence, optionally also over context tokens."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None = None,
                 scale: float = 8.0):
        super().__init__()
        self.heads, self.scale = heads, scale
        inner = heads * dim_head
        self.norm = LayerNorm(dim)
        self.null_kv = nn.Parameter(torch.randn(2, dim_head))
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim_head, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_context = (nn.Sequential(LayerNorm(context_dim),
                                         nn.Linear(context_dim, 2 * dim_head))
                           if context_dim else None)
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False), LayerNorm(dim))

    def forward(self, x, context=None):  # x (B, n, dim)
        b, n, _ = x.shape
        x = self.norm(x)
        q = self.to_q(x).reshape(b, n, self.heads, -1).transpose(1, 2)  # (B, h, n, d)
        k, v = self.to_kv(x).chunk(2, dim=-1)  # (B, n, d)
        nk, nv = (t.expand(b, 1, -1) for t in self.null_kv.unbind(0))
        k, v = torch.cat([nk, k], 1), torch.cat([nv, v], 1)
        if self.to_context is not None and context is not None:
            ck, cv = self.to_context(context).chunk(2, dim=-1)
            k, v = torch.cat([ck, k], 1), torch.cat([cv, v], 1)
        out = _cosine_attention(q, k[:, None], v[:, None], self.q_scale, self.k_scale,
                                self.scale)  # one key/value head shared by all queries
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class CrossAttention(nn.Module):
    """Attention of image positions to the conditioning tokens (here: the time tokens)."""

    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int,
                 scale: float = 8.0):
        super().__init__()
        self.heads, self.scale = heads, scale
        inner = heads * dim_head
        self.norm = LayerNorm(dim)
        self.null_kv = nn.Parameter(torch.randn(2, dim_head))
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False), LayerNorm(dim))

    def forward(self, x, context):  # x (B, n, dim), context (B, m, context_dim)
        b, n, _ = x.shape
        h = self.heads
        q = self.to_q(self.norm(x)).reshape(b, n, h, -1).transpose(1, 2)
        k, v = (t.reshape(b, -1, h, q.shape[-1]).transpose(1, 2)
                for t in self.to_kv(context).chunk(2, dim=-1))
        nk, nv = (t.expand(b, h, 1, -1) for t in self.null_kv.unbind(0))
        k, v = torch.cat([nk, k], 2), torch.cat([nv, v], 2)
        out = _cosine_attention(q, k, v, self.q_scale, self.k_scale, self.scale)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


def _tokens(x):  # (B, C, H, W) or (B, C, F, H, W) -> (B, positions, C)
    return x.flatten(2).transpose(1, 2)


def _image(t, like):  # inverse of _tokens
    return t.transpose(1, 2).reshape(like.shape[0], -1, *like.shape[2:])


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: float, channels: bool = False):
        super().__init__()
        hidden = int(dim * mult)
        if channels:  # on (B, C, H, W) with 1x1 convolutions
            self.net = nn.Sequential(LayerNorm(dim, 1), nn.Conv2d(dim, hidden, 1, bias=False),
                                     nn.GELU(), LayerNorm(hidden, 1),
                                     nn.Conv2d(hidden, dim, 1, bias=False))
        else:
            self.net = nn.Sequential(LayerNorm(dim), nn.Linear(dim, hidden, bias=False),
                                     nn.GELU(), LayerNorm(hidden),
                                     nn.Linear(hidden, dim, bias=False))

    def forward(self, x):
        return self.net(x)


class TransformerBlock(nn.Module):
    """Full self-attention (plus context tokens) and a feed-forward, over all positions."""

    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: float,
                 context_dim: int | None):
        super().__init__()
        self.attn = Attention(dim, heads, dim_head, context_dim)
        self.ff = FeedForward(dim, ff_mult)

    def forward(self, x, context=None):
        t = _tokens(x)
        t = self.attn(t, context) + t
        return _image(self.ff(t) + t, x)


class LinearAttention(nn.Module):
    """Softmax-kernel linear attention on (B, C, H, W) with depthwise-convolved q, k, v;
    cost linear in the number of positions."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None,
                 dropout: float = 0.05):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        inner = heads * dim_head
        self.norm = LayerNorm(dim, 1)

        def proj():
            return nn.Sequential(nn.Dropout(dropout), nn.Conv2d(dim, inner, 1, bias=False),
                                 nn.Conv2d(inner, inner, 3, padding=1, groups=inner,
                                           bias=False))

        self.to_q, self.to_k, self.to_v = proj(), proj(), proj()
        self.to_context = (nn.Sequential(LayerNorm(context_dim),
                                         nn.Linear(context_dim, 2 * inner, bias=False))
                           if context_dim else None)
        self.to_out = nn.Sequential(nn.Conv2d(inner, dim, 1, bias=False), LayerNorm(dim, 1))

    def forward(self, x, context=None):
        b, _, hh, ww = x.shape
        h = self.heads
        f = self.norm(x)

        def heads(t):  # (B, h d, H, W) -> (B h, H W, d)
            return t.reshape(b * h, -1, hh * ww).transpose(1, 2)

        q, k, v = heads(self.to_q(f)), heads(self.to_k(f)), heads(self.to_v(f))
        if self.to_context is not None and context is not None:
            ck, cv = (t.reshape(b, -1, h, q.shape[-1]).transpose(1, 2).reshape(b * h, -1,
                                                                                 q.shape[-1])
                      for t in self.to_context(context).chunk(2, dim=-1))
            k, v = torch.cat([ck, k], 1), torch.cat([cv, v], 1)
        q, k = q.softmax(-1) * self.scale, k.softmax(-2)
        out = q @ (k.transpose(1, 2) @ v)  # (B h, H W, d)
        out = out.transpose(1, 2).reshape(b, -1, hh, ww)
        return self.to_out(F.silu(out))


class LinearTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: float,
                 context_dim: int | None):
        super().__init__()
        self.attn = LinearAttention(dim, heads, dim_head, context_dim)
        self.ff = FeedForward(dim, ff_mult, channels=True)

    def forward(self, x, context=None):
        x = self.attn(x, context) + x
        return self.ff(x) + x


class GlobalContext(nn.Module):
    """Gate channels by an attention-pooled summary of the whole feature map."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = max(3, dim // 2)
        self.to_k = nn.Conv2d(dim, 1, 1)
        self.net = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, dim, 1),
                                 nn.Sigmoid())

    def forward(self, x):
        w = self.to_k(x).flatten(2).softmax(-1)  # (B, 1, H W)
        pooled = torch.einsum("bcn,ben->bc", x.flatten(2), w)
        return self.net(pooled[:, :, None, None])


class Block(nn.Module):
    """GroupNorm -> (time scale-shift) -> SiLU -> 3x3 conv."""

    def __init__(self, dim: int, dim_out: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim)
        self.proj = nn.Conv2d(dim, dim_out, 3, padding=1)

    def forward(self, x, scale_shift=None):
        x = self.norm(x)
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return self.proj(F.silu(x))


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, time_dim: int, groups: int, *,
                 cond_dim: int | None = None, linear_cross: bool = False, gca: bool = False,
                 heads: int = 8, dim_head: int = 64):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * dim_out))
        self.block1 = Block(dim, dim_out, groups)
        self.block2 = Block(dim_out, dim_out, groups)
        self.cross = None
        if cond_dim:
            self.cross = (LinearAttention(dim_out, heads, dim_head, cond_dim) if linear_cross
                          else CrossAttention(dim_out, cond_dim, heads, dim_head))
        self.gca = GlobalContext(dim_out) if gca else None
        self.res = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, t, cond=None):
        scale_shift = self.time_mlp(t)[:, :, None, None].chunk(2, dim=1)
        h = self.block1(x)
        if self.cross is not None:
            if isinstance(self.cross, LinearAttention):
                h = self.cross(h, cond) + h
            else:
                tok = _tokens(h)
                h = _image(self.cross(tok, cond) + tok, h)
        h = self.block2(h, scale_shift)
        if self.gca is not None:
            h = h * self.gca(h)
        return h + self.res(x)


class CrossEmbed(nn.Module):
    """Parallel convolutions of kernel 3, 7, 15 whose outputs are concatenated (dim/2, /4, /4)."""

    def __init__(self, dim_in: int, dim_out: int, kernels=(3, 7, 15)):
        super().__init__()
        sizes = [dim_out // 2 ** (i + 1) for i in range(len(kernels) - 1)]
        sizes.append(dim_out - sum(sizes))
        self.convs = nn.ModuleList(nn.Conv2d(dim_in, s, k, padding=(k - 1) // 2)
                                   for k, s in zip(kernels, sizes, strict=True))

    def forward(self, x):
        return torch.cat([c(x) for c in self.convs], 1)


def _zero_conv(dim: int, dim_out: int) -> nn.Conv2d:
    """The U-Nets' last 3x3 convolution, zero-initialised (the network starts at 0)."""
    conv = nn.Conv2d(dim, dim_out, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _downsample(dim: int, dim_out: int) -> nn.Module:
    return nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * dim, dim_out, 1))


class _Upsample(nn.Module):
    """1x1 conv to 4 dim_out channels, SiLU, pixel shuffle; ICNR-initialised."""

    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, 4 * dim_out, 1)
        w = torch.empty(dim_out, dim, 1, 1)
        nn.init.kaiming_uniform_(w)
        self.conv.weight.data.copy_(w.repeat_interleave(4, dim=0))
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        return F.pixel_shuffle(F.silu(self.conv(x)), 2)


class _ParallelConv(nn.Module):
    """The last level's channel change without downsampling: 3x3 conv + 1x1 conv."""

    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.a, self.b = nn.Conv2d(dim, dim_out, 3, padding=1), nn.Conv2d(dim, dim_out, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)


class _SinusoidalEmbedding(nn.Module):
    """[x, sin(2π w x), cos(2π w x)] with learned frequencies w (16 of them)."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim // 2))

    def forward(self, x):
        f = x[:, None] * self.w[None] * 2 * math.pi
        return torch.cat([x[:, None], f.sin(), f.cos()], -1)


class _TimeConditioning(nn.Module):
    """log SNR -> the ResNet blocks' time vector and two conditioning tokens."""

    def __init__(self, time_dim: int, cond_dim: int, n_tokens: int = 2):
        super().__init__()
        self.hidden = nn.Sequential(_SinusoidalEmbedding(16), nn.Linear(17, time_dim), nn.SiLU())
        self.to_cond = nn.Linear(time_dim, time_dim)
        self.to_tokens = nn.Linear(time_dim, cond_dim * n_tokens)
        self.cond_dim = cond_dim

    def forward(self, log_snr):
        h = self.hidden(log_snr)
        return self.to_cond(h), self.to_tokens(h).reshape(len(h), -1, self.cond_dim)


class UNet(nn.Module):
    """Imagen's 2-D U-Net for unconditional generation (optionally conditioned on a noised
    low-resolution image and its noise level: the super-resolution stage).

    dim_mults gives the channel multiplier of each level; resnet_blocks, attns (full
    self-attention), cross_attns (attention to the time tokens) and linear_attn are per
    level.  memory_efficient: downsample at the start of each level (so the first level
    already runs at half resolution, and the image side must be a multiple of 2^levels),
    as the super-resolution preset does; otherwise at the end of every level but the last.
    """

    def __init__(self, channels: int = 4, dim: int = 64, dim_mults=(1, 2, 4),
                 resnet_blocks=(3, 3, 3), attns=(False, True, True),
                 cross_attns=(False, True, True), linear_attn: bool = False, *,
                 lowres_cond: bool = False, memory_efficient: bool = False, heads: int = 8,
                 dim_head: int = 64, ff_mult: float = 2.0, groups: int = 8):
        super().__init__()
        n_levels = len(dim_mults)
        for name, v in (("resnet_blocks", resnet_blocks), ("attns", attns),
                        ("cross_attns", cross_attns)):
            if len(v) != n_levels:
                raise ValueError(f"{name} needs one entry per level ({n_levels}), got {len(v)}")
        self.channels, self.memory_efficient, self.n_levels = channels, memory_efficient, n_levels
        self.lowres_cond = lowres_cond
        time_dim = dim * 4 * (2 if lowres_cond else 1)
        self.time = _TimeConditioning(time_dim, dim)
        self.lowres_time = _TimeConditioning(time_dim, dim) if lowres_cond else None
        self.norm_cond = LayerNorm(dim)
        self.init_conv = CrossEmbed(channels * (2 if lowres_cond else 1), dim)
        dims = [dim] + [dim * m for m in dim_mults]
        in_out = list(zip(dims[:-1], dims[1:], strict=True))
        kw = {"heads": heads, "dim_head": dim_head}

        def attn_block(d, full, linear):
            if full:
                return TransformerBlock(d, heads, dim_head, ff_mult, dim)
            if linear:
                return LinearTransformerBlock(d, heads, dim_head, ff_mult, dim)
            return None

        self.downs, skips = nn.ModuleList(), []
        for i, (d_in, d_out) in enumerate(in_out):
            last = i == n_levels - 1
            cond = dim if cross_attns[i] else None
            cur = d_out if memory_efficient else d_in
            skips.append(cur)
            level = nn.ModuleDict({
                "init": ResnetBlock(cur, cur, time_dim, groups, cond_dim=cond,
                                    linear_cross=False, **kw),
                "blocks": nn.ModuleList(ResnetBlock(cur, cur, time_dim, groups, gca=True, **kw)
                                        for _ in range(resnet_blocks[i]))})
            if memory_efficient:
                level["pre"] = _downsample(d_in, d_out)
            else:
                level["post"] = _ParallelConv(d_in, d_out) if last else _downsample(d_in, d_out)
            a = attn_block(cur, attns[i], linear_attn)
            if a is not None:
                level["attn"] = a
            self.downs.append(level)
        mid = dims[-1]
        self.mid1 = ResnetBlock(mid, mid, time_dim, groups, cond_dim=dim, **kw)
        self.mid_attn = Attention(mid, heads, dim_head)  # imagen's attend_at_middle
        self.mid2 = ResnetBlock(mid, mid, time_dim, groups, cond_dim=dim, **kw)
        self.ups = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(reversed(in_out)):
            lvl = n_levels - 1 - i
            last = i == n_levels - 1
            cond = dim if cross_attns[lvl] else None
            skip = skips.pop()
            level = nn.ModuleDict({
                "init": ResnetBlock(d_out + skip, d_out, time_dim, groups, cond_dim=cond, **kw),
                "blocks": nn.ModuleList(ResnetBlock(d_out + skip, d_out, time_dim, groups,
                                                    gca=True, **kw)
                                        for _ in range(resnet_blocks[lvl]))})
            a = attn_block(d_out, attns[lvl], linear_attn)
            if a is not None:
                level["attn"] = a
            if memory_efficient or not last:
                level["up"] = _Upsample(d_out, d_in)
            self.ups.append(level)
        self.final_block = ResnetBlock(dim, dim, time_dim, groups, gca=True, **kw)
        self.final_conv = _zero_conv(dim, channels)
        self.skip_scale = 2 ** -0.5

    @property
    def side_multiple(self) -> int:
        """The image side must be a multiple of this (one halving per downsample)."""
        return 2 ** (self.n_levels if self.memory_efficient else self.n_levels - 1)

    def forward(self, x, log_snr, lowres=None, lowres_log_snr=None):
        """Predicted noise (B, C, H, W) of noised images x at per-sample log SNR."""
        if x.shape[-1] % self.side_multiple or x.shape[-2] % self.side_multiple:
            raise ValueError(f"image side {tuple(x.shape[-2:])} is not a multiple of "
                             f"{self.side_multiple}")
        t, c = self.time(log_snr.to(x.dtype))
        if self.lowres_cond:
            lt, lc = self.lowres_time(lowres_log_snr.to(x.dtype))
            t, c = t + lt, torch.cat([c, lc], 1)
            x = torch.cat([x, lowres], 1)
        c = self.norm_cond(c)
        x = self.init_conv(x)
        hiddens = []
        for level in self.downs:
            if "pre" in level:
                x = level["pre"](x)
            x = level["init"](x, t, c)
            for block in level["blocks"]:
                x = block(x, t)
                hiddens.append(x)
            if "attn" in level:
                x = level["attn"](x, c)
            hiddens.append(x)
            if "post" in level:
                x = level["post"](x)
        x = self.mid1(x, t, c)
        tok = _tokens(x)
        x = _image(self.mid_attn(tok) + tok, x)
        x = self.mid2(x, t, c)
        for level in self.ups:
            x = level["init"](torch.cat([x, hiddens.pop() * self.skip_scale], 1), t, c)
            for block in level["blocks"]:
                x = block(torch.cat([x, hiddens.pop() * self.skip_scale], 1), t)
            if "attn" in level:
                x = level["attn"](x, c)
            if "up" in level:
                x = level["up"](x)
        return self.final_conv(self.final_block(x, t))
