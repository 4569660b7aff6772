"""DiffCSP (Jiao et al. 2023) as benchmarked by Dismai-Bench: a fractional-coordinate score model.

What the benchmark trained (§D1.7, §D5; paper §4.2.2): the CSPNet
denoiser (4 layers x 256 hidden, fully connected graph over all ordered atom pairs, sinusoidal
embedding of fractional-coordinate differences, lattice Gram matrix on every edge) learns the
normalised score of a wrapped normal on the fractional coordinates; species are fixed by the
template (embedded as node features, never diffused) and the ground-truth lattice is fed and
kept (lattice cost 0).  Sampling is the predictor-corrector loop of §D1.5 (corrector first,
1000 steps, step size 1e-5).

Implementation notes (all exact rewrites of the reference maths, §D1.9):

* Dense pair tensors in atom blocks, (B, block pairs, b, b, H), no edge lists; the mean over
  senders is a tensor sum (no scatter).
* The first edge linear W1 [h_i, h_j, G, emb(d_ij)] is split: h_i A and h_j B are computed per
  atom and broadcast, G C per crystal, only emb(d_ij) D per pair.
* emb(d_ij) is never computed from sin/cos of N^2 phases: with per-atom tables S = sin(2 pi m x),
  C = cos(2 pi m x) (phases reduced mod 1 in float64), sin(2 pi m (x_j - x_i)) = S_j C_i - C_j S_i
  and cos(...) = C_j C_i + S_j S_i.  This is cheaper than N^2 transcendentals and at least as
  accurate as fp32 phases up to 2 pi * 127 rad (§D1.8); the pair features are built once
  per forward for all layers.
* The sin part is antisymmetric and the cos part symmetric under i <-> j, so the D-product is
  computed for one triangle of atom blocks only and mirrored (44 % fewer FLOPs in that GEMM;
  with the split, 55 % fewer pair FLOPs per forward than the reference, 65 % per training step).

Optional, off by default (§D1.3-1.5, paper §2.2 / ESI Fig. S6): the original joint lattice
DDPM (``cost_lattice > 0``) with lattice teacher forcing for the first epochs.

``reference_forward`` is the straightforward transcription (per-layer per-edge concatenation
of 2H + 9 + 768 features) used by the tests and ``benchmarks/diffcsp_speed.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import warnings
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dismai.errors import InputError
from dismai.models.base import TrainingDataError
from dismai.models.config import ConfigError, TrainConfig, _non_negative, _positive
from dismai.models.training import (
    PermutedEpochs,
    TrainableModel,
    adam_with_plateau,
    generator_state,
    restore_generator,
    select_device,
)
from dismai.structures import StructureSet

__all__ = ["DiffCSP", "DiffCSPConfig", "CSPNet", "reference_forward", "wrapped_normal_score",
           "sigma_schedule", "sigma_norm_table", "lattice_schedule", "pair_blocks"]

N_IMAGES = 10  # wrapped-normal images n = -10..10 (§D1.3, d_log_p_wrapped_normal)
GRAM_FEATURES = 9  # flattened L L^T on every edge (§D1.2 item 5)
DENOISERS = ("efficient", "reference")


# ---------------------------------------------------------------------------- config
@dataclasses.dataclass
class DiffCSPConfig(TrainConfig):
    """Defaults = the Dismai-Bench settings (§D1.6-1.7; paper §4.2.2)."""

    batch_size: int = 4  # paper §4.2.2
    epochs: int = 1000  # paper §4.2.2
    hidden_dim: int = 256  # paper §4.2.2 (original DiffCSP: 512)
    num_layers: int = 4  # paper §4.2.2 (original: 6)
    num_freqs: int = 128  # sinusoid frequencies 2 pi m, m = 0..127 (§D1.2 item 4)
    time_dim: int = 256  # §D1.2 item 1
    type_table_size: int = 0  # rows of the type embedding; 0 = max Z of the data (§D1.7.4)
    timesteps: int = 1000  # T (§D1.3)
    sigma_begin: float = 0.005  # §D1.6
    sigma_end: float = 0.1  # §D1.7.6 (a-Si: 0.05, preset)
    step_lr: float = 1e-5  # corrector step size gamma (paper §4.2.2, §D1.7.8)
    lr: float = 1e-3  # Adam (§D1.4)
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    plateau_factor: float = 0.6  # ReduceLROnPlateau on the validation loss (§D1.4)
    plateau_patience: int = 30
    min_lr: float = 1e-4
    val_every: int = 5  # epochs between validation passes (§D1.4); 0 = never
    grad_clip_value: float = 0.5  # clipping by value (§D1.4); 0 = off
    sample_batch_size: int = 20  # structures per network call when sampling (§D1.7.8)
    bf16: bool = False  # bf16 autocast on CUDA (published runs: fp32); no effect on CPU
    denoiser: str = "efficient"  # or "reference": the straightforward per-edge concatenation
    cost_lattice: float = 0.0  # > 0: joint lattice DDPM (original DiffCSP 1; Dismai-Bench 0)
    teacher_forcing_lattice: bool = False  # ESI variant: true lattice fed for the first epochs
    teacher_forcing_max_epoch: int = 150  # last forced epoch, 0-based (Dismai yaml; a-Si 500)

    RESUMABLE_KEYS: ClassVar[frozenset] = TrainConfig.RESUMABLE_KEYS | {"sample_batch_size"}

    def validate(self) -> None:
        super().validate()
        _positive(self, "hidden_dim", "num_layers", "num_freqs", "time_dim", "timesteps",
                  "sigma_begin", "sigma_end", "lr", "sample_batch_size", "plateau_factor")
        _non_negative(self, "type_table_size", "step_lr", "plateau_patience", "min_lr",
                      "val_every", "grad_clip_value", "cost_lattice",
                      "teacher_forcing_max_epoch")
        if self.time_dim % 2:
            raise ConfigError(f"time_dim must be even, got {self.time_dim}")
        if not self.sigma_begin < self.sigma_end:
            raise ConfigError(f"sigma_begin ({self.sigma_begin}) must be below sigma_end "
                              f"({self.sigma_end})")
        if self.denoiser not in DENOISERS:
            raise ConfigError(f"denoiser must be one of {DENOISERS}, got {self.denoiser!r}")
        if self.teacher_forcing_lattice and self.cost_lattice == 0:
            raise ConfigError(
                "teacher_forcing_lattice needs lattice diffusion (cost_lattice > 0); with "
                "cost_lattice 0 the true lattice is always fed, so forcing would change nothing")

    @property
    def lattice_diffusion(self) -> bool:
        return self.cost_lattice > 0


# ---------------------------------------------------------------------------- noise schedule
def sigma_schedule(sigma_begin: float, sigma_end: float, timesteps: int) -> np.ndarray:
    """(T + 1,) float64: sigma_0 = 0, then exp(linspace(ln begin, ln end, T)) (§D1.3)."""
    s = np.exp(np.linspace(math.log(sigma_begin), math.log(sigma_end), timesteps))
    return np.concatenate([[0.0], s])


def wrapped_normal_score(x, sigma):
    """s(x; sigma) = -d/dx log p_WN(x; sigma), 21 images, period 1 (§D1.3).

    Points away from the clean position (the sampler subtracts it).  The image weights are a
    softmax (spec's numerical tip), so huge |x| / sigma never give 0/0.  Works on numpy
    arrays and torch tensors (sigma broadcastable to x).
    """
    if isinstance(x, torch.Tensor):
        n = torch.arange(-N_IMAGES, N_IMAGES + 1, dtype=x.dtype, device=x.device)
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        y = x[..., None] + n
        w = torch.softmax(-y * y / (2 * sig[..., None] ** 2), dim=-1)
        return (w * y).sum(-1) / sig ** 2
    x = np.asarray(x, dtype=np.float64)
    sig = np.asarray(sigma, dtype=np.float64)
    y = x[..., None] + np.arange(-N_IMAGES, N_IMAGES + 1)
    lw = -y * y / (2 * sig[..., None] ** 2)
    w = np.exp(lw - lw.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return (w * y).sum(-1) / sig ** 2


def sigma_norm_table(sigmas: np.ndarray, step: float = 0.02, half_width: float = 12.0
                     ) -> np.ndarray:
    """lambda(sigma) = E[s(x; sigma)^2], x ~ WN(0, sigma^2); index 0 (sigma 0) is 1 (§D1.3).

    The reference estimates it by Monte Carlo (10,000 unseeded draws, ~1.4 % error per t);
    here it is the trapezoid rule over eps in [-12, 12] (x = sigma eps; s is periodic, so
    wrapping is implicit).  Gaussian-weighted smooth integrands make the trapezoid rule
    spectrally accurate: step 0.02 and 0.005 agree to all printed digits, matching the reference's
    computed values (40000, 10000, 400.0, 99.996, 19.08, 0.004084).  Pure float64 numpy in a
    fixed order: bit-identical on every call.
    """
    k = int(round(half_width / step))
    eps = np.arange(-k, k + 1) * step
    w = np.exp(-0.5 * eps * eps)
    w /= w.sum()
    sig = np.asarray(sigmas, dtype=np.float64)
    out = np.ones(len(sig))
    for a in range(0, len(sig), 64):
        s = sig[a:a + 64, None]
        pos = s > 0
        score = wrapped_normal_score(s * eps, np.broadcast_to(np.where(pos, s, 1.0),
                                                              (len(s), len(eps))))
        out[a:a + 64] = np.where(pos[:, 0], (score * score * w).sum(-1), 1.0)
    return out


@functools.lru_cache(maxsize=8)
def _tables(sigma_begin: float, sigma_end: float, timesteps: int):
    sig = sigma_schedule(sigma_begin, sigma_end, timesteps)
    norm = sigma_norm_table(sig)
    sig.setflags(write=False)
    norm.setflags(write=False)
    return sig, norm


class NoiseSchedule(nn.Module):
    """sigma_t and lambda_t as float64 buffers, so they are saved with every checkpoint and a
    loaded model reuses the stored values (as the reference's `sigmas_norm` buffer)."""

    def __init__(self, sigma_begin: float, sigma_end: float, timesteps: int):
        super().__init__()
        sig, norm = _tables(float(sigma_begin), float(sigma_end), int(timesteps))
        self.register_buffer("sigmas", torch.tensor(sig, dtype=torch.float64))
        self.register_buffer("sigmas_norm", torch.tensor(norm, dtype=torch.float64))


def lattice_schedule(timesteps: int, s: float = 0.008) -> dict[str, np.ndarray]:
    """Cosine DDPM tables for the optional lattice diffusion (§D1.3), float64, index 0..T.

    abar(x) = cos^2(((x/T) + s)/(1 + s) pi/2) / abar(0); beta_t = clip(1 - abar_t/abar_{t-1},
    1e-4, 0.9999) with beta_0 = 0; alpha = 1 - beta; alpha_bar = cumprod(alpha); posterior
    std sigma_t = sqrt(beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)), sigma_0 = 0.
    """
    x = np.linspace(0.0, timesteps, timesteps + 1)
    f = np.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    f = f / f[0]
    betas = np.concatenate([[0.0], np.clip(1 - f[1:] / f[:-1], 1e-4, 0.9999)])
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    sig = np.zeros_like(betas)
    sig[1:] = np.sqrt(betas[1:] * (1 - abar[:-1]) / (1 - abar[1:]))
    return {"betas": betas, "alphas": alphas, "alphas_cumprod": abar, "sigmas": sig}


# ---------------------------------------------------------------------------- denoiser
def pair_blocks(n_atoms: int, max_blocks: int = 8, min_block: int = 16) -> int:
    """Atom blocks for the triangular pair layout: the largest divisor of N up to max_blocks
    whose blocks hold at least min_block atoms.

    With nb blocks the pair products cost (nb + 1) / (2 nb) of the full square (0.56 at 8);
    N = 256 and 264 both split into 8.  Smaller blocks save FLOPs but cost more, smaller
    ops: at N = 64 (a-si-64, hidden 64, batch 16, 2 threads) a training step with 4 blocks of
    16 takes 0.88-0.96 of the time with 8 blocks of 8 (benchmarks/diffcsp_cpu_layout.py).
    A prime N, or N < 2 min_block: one block.
    """
    for nb in range(min(max_blocks, n_atoms // min_block), 1, -1):
        if n_atoms % nb == 0:
            return nb
    return 1


def time_embedding(timesteps: int, dim: int) -> torch.Tensor:
    """(T + 1, dim): [sin(t f_k), cos(t f_k)], f_k = exp(-k ln 1e4 / (dim/2 - 1)) (§D1.2.1).

    Tabulated in float64 for every integer t (the reference evaluates it in fp32 per call).
    """
    half = dim // 2
    f = torch.exp(torch.arange(half, dtype=torch.float64) * -(math.log(1e4) / max(half - 1, 1)))
    arg = torch.arange(timesteps + 1, dtype=torch.float64)[:, None] * f[None]
    return torch.cat([arg.sin(), arg.cos()], dim=1).float()


#: Pair rows (structures x receivers x senders) per chunk of block pairs: bounds the (rows, H)
#: temporaries (2 GB at H = 256 in fp32) for large sampling batches on a GPU.  Smaller chunks
#: were measured *slower* on the shared 2-core CPU (more, smaller ops contend for the cores),
#: so batches up to ~30 structures at N = 256 are one chunk.
CHUNK_ROWS = 1 << 21


def _trig_products(si, ci, sj, cj):
    """(sin, cos) of (theta_j - theta_i) from the per-atom sin/cos of theta_i and theta_j."""
    return sj * ci - cj * si, cj * ci + sj * si


class _PairTrig:
    """sin / cos of 2 pi m (x_j - x_i) for all pairs, in a triangular layout of atom blocks.

    Atoms are split into nb blocks of bs; block pairs are the diagonal ones (I = I) and the
    upper ones (I < J, receiver i in I, sender j in J), whose lower mirror (J, I) reuses the
    same products.  The pair features come from per-atom sin/cos tables and are built once
    per forward and shared by all layers (§D1.9 (iii)), except when sampling in several
    chunks: then they are rebuilt per chunk, so memory stays bounded for any batch size.
    """

    def __init__(self, frac: torch.Tensor, n_freqs: int, n_blocks: int, dtype):
        b_, n, _ = frac.shape
        m = torch.arange(n_freqs, dtype=torch.float64, device=frac.device)
        phase = torch.remainder(frac.double()[..., None] * m, 1.0).reshape(b_, n, 3 * n_freqs)
        phase = phase * (2 * math.pi)
        bs = n // n_blocks
        self.s = phase.sin().to(dtype).view(b_, n_blocks, bs, -1)
        self.c = phase.cos().to(dtype).view(b_, n_blocks, bs, -1)
        self.n_blocks, self.bs = n_blocks, bs
        iu = torch.triu_indices(n_blocks, n_blocks, 1, device=frac.device)
        self.I, self.J = iu[0], iu[1]
        self.chunk = max(1, CHUNK_ROWS // (b_ * bs * bs))  # block pairs per chunk
        self.keep = torch.is_grad_enabled() or self.chunk >= max(len(self.I), n_blocks)
        if self.keep:
            self._off = self._off_feats(0, len(self.I), cached=False)
            self._diag = self._diag_feats(0, n_blocks, cached=False)

    def _off_feats(self, k0: int, k1: int, cached: bool = True):
        if cached and self.keep:
            return self._off[0][:, k0:k1], self._off[1][:, k0:k1]
        i, j = self.I[k0:k1], self.J[k0:k1]
        s, c = self.s, self.c
        return _trig_products(s[:, i, :, None], c[:, i, :, None], s[:, j, None], c[:, j, None])

    def _diag_feats(self, d0: int, d1: int, cached: bool = True):
        if cached and self.keep:
            return self._diag[:, d0:d1]
        s, c = self.s[:, d0:d1], self.c[:, d0:d1]
        return torch.cat(_trig_products(s[:, :, :, None], c[:, :, :, None], s[:, :, None],
                                        c[:, :, None]), dim=-1)

    def mean_messages(self, wd: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                      edge_mlp) -> torch.Tensor:
        """mean_j edge_mlp(a_i + b_j + D emb(d_ij)) -> (B, N, H), chunk by chunk of block pairs.

        Diagonal and upper blocks are summed over their sender axis (dim 3); the mirrored
        lower blocks are kept in the upper layout (sender i on dim 2, receiver j on dim 3)
        and summed over dim 2.  Block sums are added into their receiver blocks.
        """
        nf3 = wd.shape[1] // 2
        bsz, n, h = a.shape
        nb, bs, ch = self.n_blocks, self.bs, self.chunk
        a = a.view(bsz, nb, bs, h)
        b = b.view(bsz, nb, bs, h)
        agg = None
        for d0 in range(0, nb, ch):
            d1 = min(d0 + ch, nb)
            x = (self._diag_feats(d0, d1) @ wd.t()).add_(a[:, d0:d1, :, None])
            part = edge_mlp(x.add_(b[:, d0:d1, None])).sum(3)
            if agg is None:
                agg = part.new_zeros(bsz, nb, bs, h)  # float32 under autocast (sum)
            agg[:, d0:d1] += part
        for k0 in range(0, len(self.I), ch):
            k1 = min(k0 + ch, len(self.I))
            i, j = self.I[k0:k1], self.J[k0:k1]
            off_sin, off_cos = self._off_feats(k0, k1)
            p = off_sin @ wd[:, :nf3].t()  # antisymmetric in (i, j)
            q = off_cos @ wd[:, nf3:].t()  # symmetric
            upper = edge_mlp((q + p).add_(a[:, i, :, None]).add_(b[:, j, None])).sum(3)
            lower = edge_mlp((q - p).add_(b[:, i, :, None]).add_(a[:, j, None])).sum(2)
            agg.index_add_(1, i, upper)
            agg.index_add_(1, j, lower)
        return (agg / n).reshape(bsz, n, h)


class CSPLayer(nn.Module):
    """One CSPNet message-passing layer (§D1.2 item 6): pre-LN, edge MLP, mean, node MLP."""

    def __init__(self, hidden: int, n_emb: int):
        super().__init__()
        self.edge1 = nn.Linear(2 * hidden + GRAM_FEATURES + n_emb, hidden)
        self.edge2 = nn.Linear(hidden, hidden)
        self.node1 = nn.Linear(2 * hidden, hidden)
        self.node2 = nn.Linear(hidden, hidden)
        self.ln = nn.LayerNorm(hidden)

    def _node_update(self, h, hn, agg):
        u = F.silu(self.node2(F.silu(self.node1(torch.cat([hn, agg], dim=-1)))))
        return h + u

    def forward(self, h: torch.Tensor, pairs: _PairTrig, gram: torch.Tensor) -> torch.Tensor:
        hn = self.ln(h)
        hd = hn.shape[-1]
        w = self.edge1.weight  # columns: [h_i (H) | h_j (H) | G (9) | emb (6F)]
        wa, wb = w[:, :hd], w[:, hd:2 * hd]
        wg, wd = w[:, 2 * hd:2 * hd + GRAM_FEATURES], w[:, 2 * hd + GRAM_FEATURES:]
        a = hn @ wa.t() + (gram @ wg.t() + self.edge1.bias)  # receiver term, per atom
        b = hn @ wb.t()  # sender term, per atom
        inplace = not torch.is_grad_enabled()  # sampling: no activations kept

        def edge_mlp(x):
            return F.silu(self.edge2(F.silu(x, inplace=inplace)), inplace=inplace)

        return self._node_update(h, hn, pairs.mean_messages(wd, a, b, edge_mlp))


def lattice_gram(lattice: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) lattices (rows = vectors) -> (B, 1, 9) flattened L L^T, per crystal."""
    return (lattice @ lattice.transpose(1, 2)).reshape(-1, 1, GRAM_FEATURES)


class CSPNet(nn.Module):
    """CSPNet for one template: species and the template's Gram matrix are fixed buffers
    (§D1.2).  With ``lattice_head`` (lattice diffusion only) a per-crystal lattice can be
    fed instead, and the head predicts its DDPM noise eps_L = M(mean_i h_i) L (§D1.2 item 9)."""

    def __init__(self, atomic_numbers, lattice, n_types: int, hidden: int = 256,
                 num_layers: int = 4, num_freqs: int = 128, time_dim: int = 256,
                 timesteps: int = 1000, lattice_head: bool = False):
        super().__init__()
        self.num_freqs = num_freqs
        self.type_emb = nn.Embedding(n_types, hidden)
        self.atom_latent_emb = nn.Linear(hidden + time_dim, hidden)
        self.layers = nn.ModuleList(CSPLayer(hidden, 6 * num_freqs) for _ in range(num_layers))
        self.final_ln = nn.LayerNorm(hidden)
        self.coord_out = nn.Linear(hidden, 3, bias=False)
        # the reference builds the lattice head always and discards it with cost_lattice 0;
        # here it exists only when the lattice is diffused
        self.lattice_out = nn.Linear(hidden, 9, bias=False) if lattice_head else None
        z = torch.as_tensor(np.asarray(atomic_numbers), dtype=torch.long)
        lat = torch.as_tensor(np.asarray(lattice), dtype=torch.float64)
        self.register_buffer("types", z - 1, persistent=False)  # index Z - 1 (§D0)
        self.register_buffer("gram", (lat @ lat.T).reshape(9).float(), persistent=False)
        self.register_buffer("time_table", time_embedding(timesteps, time_dim), persistent=False)
        self.n_blocks = pair_blocks(len(z))

    def embed(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """Node input: Linear([type embedding, time embedding]) with no activation (§D1.2.2)."""
        e = self.type_emb(self.types)
        te = self.time_table[t]
        n = e.shape[0]
        x = torch.cat([e.expand(batch, n, -1), te[:, None].expand(batch, n, -1)], dim=-1)
        return self.atom_latent_emb(x)

    def _gram(self, lattice, dtype):
        return self.gram if lattice is None else lattice_gram(lattice).to(dtype)

    def forward(self, frac: torch.Tensor, t: torch.Tensor,
                lattice: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, 3) fractional coordinates, (B,) integer t -> (B, N, 3) normalised score.

        lattice: optional (B, 3, 3) per-crystal lattices (default: the template's).
        """
        return self.forward_joint(frac, t, lattice)[0]

    def forward_joint(self, frac, t, lattice=None):
        """(coordinate score, lattice noise or None); the second needs ``lattice_head``."""
        h = self.embed(t, frac.shape[0])
        pairs = _PairTrig(frac, self.num_freqs, self.n_blocks, h.dtype)
        gram = self._gram(lattice, h.dtype)
        for layer in self.layers:
            h = layer(h, pairs, gram)
        return self.heads(self.final_ln(h), lattice)

    def heads(self, h: torch.Tensor, lattice):
        coords = self.coord_out(h)
        if self.lattice_out is None or lattice is None:
            return coords, None
        m = self.lattice_out(h.mean(dim=1)).reshape(-1, 3, 3)
        return coords, m @ lattice.to(m.dtype)


def reference_forward(net: CSPNet, frac: torch.Tensor, t: torch.Tensor,
                      exact_phases: bool = False, lattice: torch.Tensor | None = None,
                      joint: bool = False):
    """The straightforward CSPNet: per layer, per edge [h_i, h_j, G, emb((x_j - x_i) mod 1)].

    Same parameters as ``net``.  exact_phases=False computes the phases 2 pi m d in the
    network dtype as the reference code does (fp32: errors up to ~1e-4 rad at m = 127);
    True computes them in float64, so a comparison isolates the algebraic rewrite.
    joint=True returns (score, lattice noise) as ``CSPNet.forward_joint``.
    """
    bsz, n, _ = frac.shape
    h = net.embed(t, bsz)
    dtype = h.dtype
    x = frac.double() if exact_phases else frac.to(dtype)
    freqs = 2 * math.pi * torch.arange(net.num_freqs, dtype=x.dtype, device=x.device)
    g = net._gram(lattice, dtype)
    gram = (g if lattice is None else g[:, :, None]).expand(bsz, n, n, GRAM_FEATURES)
    for layer in net.layers:
        hn = layer.ln(h)
        d = torch.remainder(x[:, None, :, :] - x[:, :, None, :], 1.0)  # [b, i, j] = x_j - x_i
        ph = (d[..., None] * freqs).reshape(bsz, n, n, 3 * net.num_freqs)
        emb = torch.cat([ph.sin(), ph.cos()], dim=-1).to(dtype)
        hd = hn.shape[-1]
        inp = torch.cat([hn[:, :, None].expand(bsz, n, n, hd), hn[:, None].expand(bsz, n, n, hd),
                         gram, emb], dim=-1)
        m = F.silu(layer.edge2(F.silu(layer.edge1(inp))))
        h = layer._node_update(h, hn, m.mean(dim=2))
    out = net.heads(net.final_ln(h), lattice)
    return out if joint else out[0]


# ---------------------------------------------------------------------------- the model
def _atomic_numbers(species) -> list[int]:
    from ase.data import atomic_numbers

    try:
        return [atomic_numbers[s] for s in species]
    except KeyError as exc:
        raise TrainingDataError(f"unknown chemical symbol {exc.args[0]!r}") from None


class DiffCSP(PermutedEpochs, TrainableModel):
    """DiffCSP with the Dismai-Bench settings: coordinate score model on a fixed cell."""

    name = "diffcsp"
    Config = DiffCSPConfig
    min_atoms = 1
    loss_columns = ("coord_loss", "val_coord_loss", "lr")
    #: Evaluation options per dataset family, read by ``dismai bench``: the paper scored
    #: DiffCSP alloys with the translated lattice match (its structures come out shifted).
    eval_options: ClassVar[dict] = {"alloy": {"lattice_match": "translated"}}
    #: the score is periodic and unchanged by a common shift of all atoms; permuting atoms
    #: within a species block permutes it
    invariances: ClassVar[tuple] = ("translation", "permutation")

    # ------------------------------------------------------------------ construction
    def _build(self, template: StructureSet) -> None:
        super()._build(template)
        cfg = self.config
        self._dev = select_device(cfg.device)
        z = _atomic_numbers(self.template.species)
        n_types = cfg.type_table_size or max(z)
        if max(z) > n_types:
            raise TrainingDataError(
                f"type_table_size {n_types} is smaller than the largest atomic number {max(z)}")
        self.net = CSPNet(z, self.template.lattice, n_types, cfg.hidden_dim, cfg.num_layers,
                          cfg.num_freqs, cfg.time_dim, cfg.timesteps,
                          lattice_head=cfg.lattice_diffusion).to(self._dev)
        self.schedule = NoiseSchedule(cfg.sigma_begin, cfg.sigma_end, cfg.timesteps).to(self._dev)
        self._epoch = 0
        if cfg.lattice_diffusion:  # optional joint lattice DDPM (§D1.3-1.5)
            self._lat_tab = {k: torch.tensor(v, dtype=torch.float64, device=self._dev)
                             for k, v in lattice_schedule(cfg.timesteps).items()}
            self._lat0 = torch.as_tensor(self.template.lattice, dtype=torch.float64,
                                         device=self._dev)
            self.loss_columns = ("coord_loss", "lattice_loss", "val_coord_loss",
                                 "val_lattice_loss", "lr")
        self._noise = torch.Generator(device=self._dev)
        self._noise.manual_seed(cfg.seed)
        self._amp = cfg.bf16 and self._dev.type == "cuda"
        if cfg.bf16 and not self._amp:
            warnings.warn("diffcsp: bf16 autocast is CUDA-only; running fp32 on the CPU",
                          stacklevel=2)

    def modules(self) -> dict:
        return {"denoiser": self.net, "schedule": self.schedule}

    def make_optimizers(self) -> dict:
        """Adam plus its ReduceLROnPlateau, whose state the Trainer checkpoints alongside."""
        return adam_with_plateau(self.net.parameters(), self.config)

    def rng_states(self) -> dict:
        return generator_state(self._noise, self._dev)

    def set_rng_states(self, states: dict) -> None:
        restore_generator(self._noise, states, self._dev)

    # ------------------------------------------------------------------ network
    def _autocast(self):
        if self._amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def probe(self, frac: np.ndarray) -> np.ndarray:
        """Predicted score (B, N, 3) of (B, N, 3) fractional coordinates at the middle time
        step: the handle dismai.testing uses to check the claimed invariances."""
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(frac), dtype=torch.float32, device=self._dev)
            t = torch.full((x.shape[0],), max(1, self.config.timesteps // 2),
                           dtype=torch.long, device=self._dev)
            return self.denoise(x, t).double().cpu().numpy()

    def denoise(self, frac: torch.Tensor, t: torch.Tensor, lattice=None):
        """Predicted normalised score (float32) with the configured denoiser and precision.

        With a (B, 3, 3) ``lattice`` (lattice diffusion): (score, predicted lattice noise).
        """
        with self._autocast():
            if self.config.denoiser == "reference":
                out = reference_forward(self.net, frac, t, lattice=lattice, joint=True)
            else:
                out = self.net.forward_joint(frac, t, lattice)
        if lattice is None:
            return out[0].float()
        return out[0].float(), out[1].float()

    def keeps_lattice(self, epoch: int) -> bool:
        """True lattice fed (no lattice noise, no lattice loss) in this 0-based epoch?

        Always without lattice diffusion; with teacher forcing while epoch <= max epoch
        (paper §2.2: "the ground truth lattice parameters are used as input, and lattice cost
        is not used to update the model").
        """
        cfg = self.config
        return not cfg.lattice_diffusion or (cfg.teacher_forcing_lattice
                                             and epoch <= cfg.teacher_forcing_max_epoch)

    def loss_terms(self, x0: torch.Tensor, gen: torch.Generator,
                   keep_lattice: bool = True) -> dict[str, torch.Tensor]:
        """{"coord": MSE(pred, s(sigma_t eps; sigma_t)/sqrt(lambda_t))} (one mean over all atoms
        and coordinates, §D1.3-1.4), plus {"lattice": MSE(eps_L_hat, eps_L)} when the lattice
        is diffused (L_t = sqrt(abar_t) L_0 + sqrt(1 - abar_t) eps_L, L_0 in Å)."""
        b = x0.shape[0]
        t = torch.randint(1, self.config.timesteps + 1, (b,), generator=gen, device=self._dev)
        eps = torch.randn(x0.shape, generator=gen, device=self._dev, dtype=torch.float64)
        sig = self.schedule.sigmas[t][:, None, None]
        lam = self.schedule.sigmas_norm[t][:, None, None]
        noise = sig * eps
        xt = torch.remainder(x0 + noise, 1.0)
        target = (wrapped_normal_score(noise, sig) / lam.sqrt()).float()
        if keep_lattice:
            return {"coord": F.mse_loss(self.denoise(xt, t), target)}
        eps_l = torch.randn((b, 3, 3), generator=gen, device=self._dev, dtype=torch.float64)
        abar = self._lat_tab["alphas_cumprod"][t][:, None, None]
        lat_t = abar.sqrt() * self._lat0 + (1 - abar).sqrt() * eps_l
        pred, pred_l = self.denoise(xt, t, lat_t.float())
        return {"coord": F.mse_loss(pred, target), "lattice": F.mse_loss(pred_l, eps_l.float())}

    def _total(self, terms: dict):
        """Training objective from loss_terms: coord + cost_lattice * lattice (§D1.4)."""
        if "lattice" in terms:
            return terms["coord"] + self.config.cost_lattice * terms["lattice"]
        return terms["coord"]

    # ------------------------------------------------------------------ data and training
    def prepare_data(self, train: StructureSet, val: StructureSet | None) -> None:
        self._frac = torch.as_tensor(train.wrapped().frac, dtype=torch.float64, device=self._dev)
        self._val = None
        if val is not None and len(val):
            self._val = torch.as_tensor(val.wrapped().frac, dtype=torch.float64,
                                        device=self._dev)
        self._n_train = len(self._frac)
        self._per_epoch = math.ceil(len(self._frac) / self.config.batch_size)
        self._epoch = 0

    def validation_terms(self, epoch: int) -> dict[str, float]:
        """Per-term validation means with fresh t and noise (§D1.4), under the same lattice
        rule as training in that epoch.

        Its generator is seeded from (seed, epoch): reproducible and independent of the
        training stream, so nothing extra needs checkpointing.
        """
        g = torch.Generator(device=self._dev)
        g.manual_seed((self.config.seed * 1_000_003 + 7919 * (epoch + 1)) % 2**63)
        sums, bs = {}, self.config.batch_size
        keep = self.keeps_lattice(epoch)
        with torch.no_grad():
            for i in range(0, len(self._val), bs):
                x0 = self._val[i:i + bs]
                for k, v in self.loss_terms(x0, g, keep).items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(x0)
        return {k: v / len(self._val) for k, v in sums.items()}

    def train_step(self, items: np.ndarray, batch_index: int) -> dict:
        """One Adam step (clip by value, NaN loss skips the step); at the end of an epoch,
        validation every val_every epochs and a plateau-scheduler step on the newest value."""
        cfg, adam = self.config, self.optimizers["adam"]
        x0 = self._frac[torch.as_tensor(items, device=self._dev)]
        terms = self.loss_terms(x0, self._noise, self.keeps_lattice(self._epoch))
        loss = self._total(terms)
        stats = {}
        if torch.isfinite(loss):
            adam.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip_value > 0:
                nn.utils.clip_grad_value_(self.net.parameters(), cfg.grad_clip_value)
            adam.step()
            for k, v in terms.items():
                stats[f"{k}_loss"] = (v.detach(), len(items))
        if batch_index == self._per_epoch - 1:
            plateau = self.optimizers["plateau"]
            if (self._val is not None and cfg.val_every
                    and (self._epoch + 1) % cfg.val_every == 0):
                val = self.validation_terms(self._epoch)
                plateau.last_val = self._total(val)
                for k, v in val.items():
                    stats[f"val_{k}_loss"] = (v, 1)
            if plateau.last_val is not None:  # a stale value counts as no improvement
                plateau.step(plateau.last_val)
            stats["lr"] = (adam.param_groups[0]["lr"], 1)
        return stats

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def _sample_frac(self, n: int, seed: int):
        """Predictor-corrector sampling (§D1.5), sample_batch_size structures per call.

        Noise comes from a CPU generator seeded with `seed`, in a fixed order, so the same
        (n, seed, config) gives the same structures on any device.  With lattice diffusion
        the generated lattices are returned as the per-structure property
        ``generated_lattice`` (rows of L flattened, Å); the coordinates stay fractional on the
        dataset cell, which every dismai structure set shares.
        """
        g = torch.Generator().manual_seed(seed)
        out, lats = [], []
        for start in range(0, n, self.config.sample_batch_size):
            b = min(self.config.sample_batch_size, n - start)
            x, lat = self._sample_batch(b, g)
            out.append(x.cpu())
            if lat is not None:
                lats.append(lat.cpu().reshape(b, 9))
        frac = torch.cat(out).numpy()
        if not lats:
            return frac
        return frac, {"generated_lattice": torch.cat(lats).numpy()}

    @torch.no_grad()
    def denoise_from(self, frac: np.ndarray, t_start: int, seed: int = 0) -> np.ndarray:
        """Run the sampler from step t_start (1..T) on given (B, N, 3) fractional coordinates
        instead of from the uniform prior: with noised training structures, this shows how
        well the learnt score restores them at that noise level (benchmarks/diffcsp_probe.py).
        One batch, coordinates only (no lattice diffusion)."""
        if self.config.lattice_diffusion:
            raise InputError("denoise_from needs cost_lattice 0 (no lattice diffusion)")
        if not 1 <= t_start <= self.config.timesteps:
            raise InputError(f"t_start must lie in 1..{self.config.timesteps}, got {t_start}")
        x = torch.as_tensor(np.asarray(frac), dtype=torch.float64, device=self._dev)
        g = torch.Generator().manual_seed(seed)
        return self._sample_batch(len(x), g, x=x, t_start=t_start)[0].cpu().numpy()

    def _sample_batch(self, b: int, g: torch.Generator, x: torch.Tensor | None = None,
                      t_start: int | None = None):
        """One predictor-corrector batch from the uniform prior at T (or from x at t_start)."""
        cfg, dev = self.config, self._dev
        sig_tab = self.schedule.sigmas.cpu().tolist()
        lam_tab = self.schedule.sigmas_norm.cpu().tolist()
        shape = (b, self.template.n_atoms, 3)
        if x is None:
            x = torch.rand(shape, generator=g, dtype=torch.float64).to(dev)
        lat = None
        if cfg.lattice_diffusion:  # L_T ~ N(0, I) (§D1.5)
            lat = torch.randn((b, 3, 3), generator=g, dtype=torch.float64).to(dev)
            tab = {k: v.cpu().tolist() for k, v in self._lat_tab.items()}

        def noise(t, size=shape):
            if t == 1:
                return 0.0
            return torch.randn(size, generator=g, dtype=torch.float64).to(dev)

        def score(x, tt):
            if lat is None:
                return self.denoise(x, tt), None
            return self.denoise(x, tt, lat.float())

        for t in range(t_start or cfg.timesteps, 0, -1):
            tt = torch.full((b,), t, dtype=torch.long, device=dev)
            sig, sig_prev, rlam = sig_tab[t], sig_tab[t - 1], math.sqrt(lam_tab[t])
            # corrector (Langevin) first, as coded (§D1.5 item 2); the lattice waits
            step = cfg.step_lr * (sig / cfg.sigma_begin) ** 2
            x = x - step * rlam * score(x, tt)[0] + math.sqrt(2 * step) * noise(t)
            # predictor (item 3); x' is not wrapped before this call
            adj = sig ** 2 - sig_prev ** 2
            eps_x, eps_l = score(x, tt)
            x = x - adj * rlam * eps_x + math.sqrt(sig_prev ** 2 * adj / sig ** 2) * noise(t)
            x = torch.remainder(x, 1.0)
            if lat is not None:  # ancestral DDPM step with the predictor call's eps_L
                a, abar = tab["alphas"][t], tab["alphas_cumprod"][t]
                lat = (lat - (1 - a) / math.sqrt(1 - abar) * eps_l) / math.sqrt(a) \
                    + tab["sigmas"][t] * noise(t, (b, 3, 3))
        return x, lat
