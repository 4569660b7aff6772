"""An equivariant graph-attention transformer of the EquiformerV2 family, in plain torch
(e3nn only for real spherical harmonics' Wigner matrices and the sphere grids): the
backbone of the self-supervised masked-atom model (spec/models.md §7.1).

Every atom carries features x of shape ((lmax + 1)², C): C channels of each real
spherical-harmonic coefficient (degree l, order m), in e3nn's order (index l² + l + m).
Read top-down:

* **Embedding**: atomic number -> the l = 0 coefficients (number 0 is the [MASK] token),
  plus an edge-degree embedding: each edge's radial features make m = 0 coefficients in
  the edge's own frame, rotated back and summed over the incoming edges / avg_degree.
* **Blocks** (``layers`` times): RMS norm, SO(2) graph attention, residual; RMS norm,
  feed-forward, residual.
* **SO(2) graph attention**: the features of both ends of an edge are rotated so that the
  edge points along the polar axis (y in e3nn); only orders |m| <= mmax are kept; an SO(2)
  convolution (per m, a linear map over degrees and channels that commutes with rotations
  about the edge, its inputs scaled by a radial function of the edge) makes values and
  attention logits; logits are softmaxed over each atom's incoming edges per head; a second
  SO(2) convolution after the activation; weighted values are rotated back and summed.
* **Feed-forward**: per-degree linear maps with the activation between.
* **Activation**: ``"s2"`` is the separable S2 activation (SiLU of the scalars; the other
  degrees through a pointwise SiLU on a sphere grid and back), as published; it is
  equivariant up to the grid's resolution.  ``"gate"`` (SiLU scalars, higher degrees
  scaled by sigmoid gates from scalars) is exactly equivariant.
* **Heads**: per-atom scalars (the l = 0 coefficients of an output feed-forward: 'node'
  logits, or their per-crystal mean) and an equivariant 3-vector per atom (the l = 1
  coefficients of one more attention layer).

Differences from EquiformerV2 (docs/masked-atom.md): one radial function per SO(2)
convolution shared by all orders; no dropout or drop-path; the published per-graph 'mean'
divides the sum by the constant 77.81317 (OC20's average atom count); ours by the true
atom count, or the constant with ``mean_divisor``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from dismai.models.periodic_graph import Edges, crystal_radius_graph

__all__ = ["EquiformerConfig", "Equiformer", "EdgeFrames", "SO2Convolution", "n_coeffs",
           "type_embedding"]


def n_coeffs(lmax: int) -> int:
    return (lmax + 1) ** 2


def _degrees(lmax: int) -> torch.Tensor:
    """(S,) the degree l of every coefficient index."""
    return torch.cat([torch.full((2 * l + 1,), l) for l in range(lmax + 1)])


@dataclasses.dataclass
class EquiformerConfig:
    """Sizes of the backbone; defaults = the published one (spec §7.1)."""

    layers: int = 12
    channels: int = 128  # sphere_channels
    hidden: int = 128  # attn_hidden_channels
    heads: int = 8
    alpha_channels: int = 32
    value_channels: int = 16
    ffn_hidden: int = 512
    lmax: int = 6
    mmax: int = 2
    edge_channels: int = 128
    n_distance: int = 600
    cutoff: float = 5.0
    max_neighbours: int = 500
    max_elements: int = 119  # atomic numbers 0 (mask) .. 118
    activation: str = "s2"  # or "gate"
    grid_resolution: int = 0  # sphere grid side (0: 2 (lmax + 1) + 2)
    avg_degree: float = 23.395  # the published edge-degree normalisation
    mean_divisor: float = 0.0  # 'mean' head: 0 = true mean, 77.81317 = as published

    def validate(self) -> None:
        from dismai.errors import ConfigError

        if not 0 <= self.mmax <= self.lmax:
            raise ConfigError(f"mmax must lie in [0, lmax], got {self.mmax} > {self.lmax}")
        if self.activation not in ("s2", "gate"):
            raise ConfigError(f"activation must be s2 or gate, got {self.activation!r}")
        for k in ("layers", "channels", "hidden", "heads", "alpha_channels",
                  "value_channels", "ffn_hidden", "edge_channels", "n_distance",
                  "max_neighbours"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.cutoff <= 0:
            raise ConfigError("cutoff must be positive")


# ---------------------------------------------------------------------------- edge frames
@functools.cache
def _so3_generators(l: int) -> torch.Tensor:
    """e3nn's real-basis generators of degree l, computed in float64 (e3nn builds them in
    the default dtype, which limits float64 work to float32 accuracy)."""
    from e3nn.o3._wigner import so3_generators

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return so3_generators(l).to(torch.float64)
    finally:
        torch.set_default_dtype(old)


def _pole_safe(vec: torch.Tensor) -> torch.Tensor:
    """`vec` with the gradient of its edges within 1e-3 rad of the polar axis (y) cut off;
    the same values.  The angles' derivatives are infinite at the pole (acos at 1, atan2
    at (0, 0)), which made NaN gradients whenever positions need them (the masked-atom
    GAN's `fixed` mode; an edge to an atom's own periodic image along y is at the pole,
    with a zero gradient times an infinite one).  Those edges keep the gradient through
    their distance."""
    if not vec.requires_grad:
        return vec
    off_axis = vec[:, 0].square() + vec[:, 2].square()
    pole = off_axis.detach() <= 1e-6 * vec.detach().square().sum(-1)
    return torch.where(pole[:, None], vec.detach(), vec)


class EdgeFrames:
    """Per edge, the Wigner matrices that rotate coefficients into the frame where the edge
    points along y (the polar axis of e3nn's real harmonics) and back: D(alpha, beta, 0) of
    e3nn's convention, with R(alpha, beta, 0) y = the edge direction."""

    def __init__(self, vec: torch.Tensor, lmax: int):
        from e3nn import o3

        alpha, beta = o3.xyz_to_angles(_pole_safe(vec))
        s = n_coeffs(lmax)
        d = vec.new_zeros((len(vec), s, s))
        for l in range(lmax + 1):
            x = _so3_generators(l).to(device=vec.device, dtype=vec.dtype)
            d[:, l * l:(l + 1) ** 2, l * l:(l + 1) ** 2] = (
                torch.matrix_exp(alpha[:, None, None] * x[1])
                @ torch.matrix_exp(beta[:, None, None] * x[0]))
        self.d = d  # (E, S, S): global = d @ edge frame

    def to_edge(self, x: torch.Tensor) -> torch.Tensor:  # (E, S, C)
        return torch.einsum("eji,ejc->eic", self.d, x)

    def from_edge(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("eij,ejc->eic", self.d, x)


def _order_indices(lmax: int, mmax: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Per order m = 0..mmax: coefficient indices of +m (and -m) for l = m..lmax."""
    out = []
    for m in range(mmax + 1):
        pos = torch.tensor([l * l + l + m for l in range(m, lmax + 1)])
        neg = None if m == 0 else torch.tensor([l * l + l - m for l in range(m, lmax + 1)])
        out.append((pos, neg))
    return out


class SO2Convolution(nn.Module):
    """A linear map of edge-frame coefficients that commutes with rotations about the edge:
    per order m, the (+m, -m) pair is mixed as a complex number by one complex matrix over
    (degree, channel), so a rotation by t about the edge (which turns each pair by m t, the
    same way for every degree) passes through.  Inputs are scaled per (m, degree, channel)
    by a radial function of the edge.  `extra` invariant scalars come out of the m = 0 map.
    Coefficients with |m| > mmax are dropped (zero in the output)."""

    def __init__(self, c_in: int, c_out: int, lmax: int, mmax: int, edge_channels: int,
                 extra: int = 0):
        super().__init__()
        self.lmax, self.mmax, self.c_in, self.c_out, self.extra = lmax, mmax, c_in, c_out, extra
        self.orders = _order_indices(lmax, mmax)
        sizes = [len(p) * c_in for p, _ in self.orders]
        self.radial = nn.Sequential(nn.Linear(edge_channels, edge_channels), nn.SiLU(),
                                    nn.Linear(edge_channels, sum(sizes)))
        self.sizes = sizes
        self.m0 = nn.Linear(sizes[0], len(self.orders[0][0]) * c_out + extra)
        self.mixes = nn.ModuleList(nn.Linear(sz, 2 * (sz // c_in) * c_out, bias=False)
                                   for sz in sizes[1:])

    def forward(self, x: torch.Tensor, edge: torch.Tensor):
        """x (E, S, c_in) in the edge frame, edge (E, edge_channels) -> ((E, S, c_out),
        (E, extra) scalars)."""
        e = x.shape[0]
        scale = torch.split(self.radial(edge), self.sizes, dim=-1)
        out = x.new_zeros((e, n_coeffs(self.lmax), self.c_out))
        pos0, _ = self.orders[0]
        y0 = self.m0(x[:, pos0].reshape(e, -1) * scale[0])
        n0 = len(pos0) * self.c_out
        out[:, pos0] = y0[:, :n0].reshape(e, len(pos0), self.c_out)
        extra = y0[:, n0:]
        for (pos, neg), mix, sc in zip(self.orders[1:], self.mixes, scale[1:], strict=True):
            k = len(pos)
            xp = x[:, pos].reshape(e, -1) * sc
            xn = x[:, neg].reshape(e, -1) * sc
            yp_r, yp_i = mix(xp).chunk(2, dim=-1)  # (A xp, B xp)
            yn_r, yn_i = mix(xn).chunk(2, dim=-1)  # (A xn, B xn)
            out[:, pos] = (yp_r - yn_i).reshape(e, k, self.c_out)  # A xp - B xn
            out[:, neg] = (yn_r + yp_i).reshape(e, k, self.c_out)  # A xn + B xp
        return out, extra


# ---------------------------------------------------------------------------- per-degree parts
class SO3Linear(nn.Module):
    """Per degree l a (c_in -> c_out) linear map shared by its 2l + 1 orders; bias on l = 0
    only (a bias on l > 0 would break equivariance)."""

    def __init__(self, c_in: int, c_out: int, lmax: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(lmax + 1, c_in, c_out) / math.sqrt(c_in))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.register_buffer("deg", _degrees(lmax), persistent=False)

    def forward(self, x):  # (N, S, c_in)
        y = torch.einsum("nsc,scd->nsd", x, self.weight[self.deg])
        return torch.cat([y[:, :1] + self.bias, y[:, 1:]], 1)


class RMSNormSH(nn.Module):
    """EquiformerV2's RMS norm over spherical harmonics: centre the scalars over channels,
    divide everything by one RMS over channels and degrees (each degree weighted equally),
    scale per (degree, channel); bias on the scalars."""

    def __init__(self, channels: int, lmax: int, eps: float = 1e-5):
        super().__init__()
        self.eps, self.lmax = eps, lmax
        self.weight = nn.Parameter(torch.ones(lmax + 1, channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        deg = _degrees(lmax)
        self.register_buffer("deg", deg, persistent=False)
        self.register_buffer("balance", 1.0 / ((2 * deg + 1) * (lmax + 1)).double(),
                             persistent=False)

    def forward(self, x):
        x = torch.cat([x[:, :1] - x[:, :1].mean(-1, keepdim=True), x[:, 1:]], 1)
        ms = torch.einsum("nsc,s->n", x.square(), self.balance.to(x.dtype)) / x.shape[-1]
        y = x * torch.rsqrt(ms + self.eps)[:, None, None] * self.weight[self.deg]
        return torch.cat([y[:, :1] + self.bias, y[:, 1:]], 1)


class Activation(nn.Module):
    """SiLU on the scalars; the higher degrees either through a pointwise SiLU on a sphere
    grid ("s2", separable S2 activation) or scaled by sigmoid gates ("gate", `gates`
    scalars per channel and degree given by the caller)."""

    def __init__(self, channels: int, lmax: int, kind: str, resolution: int = 0):
        super().__init__()
        self.kind, self.lmax, self.channels = kind, lmax, channels
        if kind == "s2":
            from e3nn import o3

            res = resolution or 2 * (lmax + 1) + 2
            self.to_grid = o3.ToS2Grid(lmax, (res, res + 1), normalization="integral")
            self.from_grid = o3.FromS2Grid((res, res + 1), lmax, normalization="integral")
        self.register_buffer("deg", _degrees(lmax), persistent=False)

    @property
    def n_gates(self) -> int:
        return self.lmax * self.channels if self.kind == "gate" else 0

    def forward(self, x, gates=None):  # x (N, S, C); gates (N, lmax C) for "gate"
        scalars = F.silu(x[:, :1])
        if self.lmax == 0:
            return scalars
        if self.kind == "gate":
            g = torch.sigmoid(gates).reshape(len(x), self.lmax, -1)  # (N, lmax, C)
            return torch.cat([scalars, x[:, 1:] * g[:, self.deg[1:] - 1]], 1)
        grid = self.to_grid(x.transpose(1, 2))  # (N, C, beta, alpha)
        back = self.from_grid(F.silu(grid)).transpose(1, 2)
        return torch.cat([scalars, back[:, 1:]], 1)


# ---------------------------------------------------------------------------- layers
def _segment_softmax(logits: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of (E, H) logits over the edges that share a target (index (E,))."""
    h = logits.shape[1]
    idx = index[:, None].expand(-1, h)
    top = logits.new_full((n, h), float("-inf")).scatter_reduce(0, idx, logits, "amax",
                                                                include_self=True)
    w = torch.exp(logits - top.index_select(0, index))
    total = logits.new_zeros((n, h)).index_add_(0, index, w)
    return w / total.index_select(0, index)


class GraphAttention(nn.Module):
    """SO(2) equivariant graph attention (see the module doc): (N, S, C) -> (N, S, c_out)."""

    def __init__(self, cfg: EquiformerConfig, c_out: int):
        super().__init__()
        c, h = cfg.channels, cfg.heads
        self.cfg = cfg
        self.act = Activation(cfg.hidden, cfg.lmax, cfg.activation, cfg.grid_resolution)
        self.conv1 = SO2Convolution(2 * c, cfg.hidden, cfg.lmax, cfg.mmax, cfg.edge_channels,
                                    extra=h * cfg.alpha_channels + self.act.n_gates)
        self.alpha_norm = nn.LayerNorm(cfg.alpha_channels)
        self.alpha_dot = nn.Parameter(torch.randn(h, cfg.alpha_channels)
                                      / math.sqrt(cfg.alpha_channels))
        self.conv2 = SO2Convolution(cfg.hidden, h * cfg.value_channels, cfg.lmax, cfg.mmax,
                                    cfg.edge_channels)
        self.proj = SO3Linear(h * cfg.value_channels, c_out, cfg.lmax)

    def forward(self, x, graph):
        cfg, e = self.cfg, graph.edges
        msg = torch.cat([x.index_select(0, e.source), x.index_select(0, e.target)], -1)
        msg = graph.frames.to_edge(msg)
        v, extra = self.conv1(msg, graph.edge_features)
        n_alpha = cfg.heads * cfg.alpha_channels
        logits = F.leaky_relu(self.alpha_norm(extra[:, :n_alpha].reshape(
            -1, cfg.heads, cfg.alpha_channels)), 0.2)
        alpha = _segment_softmax((logits * self.alpha_dot).sum(-1), e.target, len(x))
        v = self.act(v, extra[:, n_alpha:])
        v, _ = self.conv2(v, graph.edge_features)
        v = v.reshape(len(v), v.shape[1], cfg.heads, cfg.value_channels) * alpha[:, None, :,
                                                                                 None]
        v = graph.frames.from_edge(v.flatten(2))
        out = x.new_zeros((len(x),) + v.shape[1:]).index_add_(0, e.target, v)
        return self.proj(out)


class FeedForward(nn.Module):
    def __init__(self, c_in: int, hidden: int, c_out: int, lmax: int, activation: str,
                 resolution: int = 0):
        super().__init__()
        self.up = SO3Linear(c_in, hidden, lmax)
        self.act = Activation(hidden, lmax, activation, resolution)
        self.gates = nn.Linear(c_in, self.act.n_gates) if self.act.n_gates else None
        self.down = SO3Linear(hidden, c_out, lmax)

    def forward(self, x):
        gates = None if self.gates is None else self.gates(x[:, 0])
        return self.down(self.act(self.up(x), gates))


class Block(nn.Module):
    def __init__(self, cfg: EquiformerConfig):
        super().__init__()
        self.norm1 = RMSNormSH(cfg.channels, cfg.lmax)
        self.attn = GraphAttention(cfg, cfg.channels)
        self.norm2 = RMSNormSH(cfg.channels, cfg.lmax)
        self.ffn = FeedForward(cfg.channels, cfg.ffn_hidden, cfg.channels, cfg.lmax,
                               cfg.activation, cfg.grid_resolution)

    def forward(self, x, graph):
        x = x + self.attn(self.norm1(x), graph)
        return x + self.ffn(self.norm2(x))


def type_embedding(table: nn.Embedding, numbers: torch.Tensor) -> torch.Tensor:
    """Rows of an atom-type embedding: a lookup for integer atomic numbers (T,); for a float
    (T, max_elements) tensor of type probabilities, their probability-weighted mix
    (probs @ table.weight), a soft type through which gradients reach the probabilities
    (the masked-atom GAN's `fixed` mode)."""
    if numbers.is_floating_point():
        return numbers.to(table.weight.dtype) @ table.weight
    return table(numbers)


@dataclasses.dataclass
class Graph:
    """What every layer needs about the edges of one batch."""

    edges: Edges
    frames: EdgeFrames
    edge_features: torch.Tensor  # (E, edge_channels): distance and both atoms' numbers
    distance: torch.Tensor
    owner: torch.Tensor  # (T,) the crystal of every atom


class Equiformer(nn.Module):
    """The backbone and its heads (see the module doc).

    forward(numbers (T,), pos (T, 3) Cartesian Å, cell (B, 3, 3), natoms (B,)) ->
    {"node": (T, out_channels)} or {"graph": (B, out_channels)}, plus "vector": (T, 3)
    when built with ``vector_head``.  numbers may also be a float (T, max_elements) tensor
    of type probabilities (`type_embedding`)."""

    def __init__(self, cfg: EquiformerConfig, out_channels: int, aggregate: str = "node",
                 vector_head: bool = False):
        super().__init__()
        cfg.validate()
        if aggregate not in ("node", "mean"):
            raise ValueError(f"aggregate must be node or mean, got {aggregate!r}")
        self.cfg, self.aggregate = cfg, aggregate
        c, ec = cfg.channels, cfg.edge_channels
        self.embed = nn.Embedding(cfg.max_elements, c)
        self.register_buffer("centres", torch.linspace(0, cfg.cutoff, cfg.n_distance),
                             persistent=False)
        self.width = 2.0 * cfg.cutoff / (cfg.n_distance - 1) if cfg.n_distance > 1 else 1.0
        self.edge_source = nn.Embedding(cfg.max_elements, ec)
        self.edge_target = nn.Embedding(cfg.max_elements, ec)
        self.edge_mlp = nn.Sequential(nn.Linear(cfg.n_distance + 2 * ec, ec), nn.SiLU(),
                                      nn.Linear(ec, ec))
        self.degree = nn.Sequential(nn.Linear(ec, ec), nn.SiLU(),
                                    nn.Linear(ec, (cfg.lmax + 1) * c))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNormSH(c, cfg.lmax)
        self.head = FeedForward(c, cfg.ffn_hidden, out_channels, cfg.lmax, cfg.activation,
                                cfg.grid_resolution)
        self.vector = GraphAttention(cfg, 1) if vector_head else None
        self.register_buffer("m0", torch.tensor([l * l + l for l in range(cfg.lmax + 1)]),
                             persistent=False)

    def graph(self, numbers, pos, cell, natoms) -> Graph:
        cfg = self.cfg
        e = crystal_radius_graph(pos.detach(), cell.detach(), natoms, cfg.cutoff,
                                 cfg.max_neighbours)
        owner = torch.repeat_interleave(torch.arange(len(natoms), device=pos.device), natoms)
        lat = cell[owner.index_select(0, e.source)]
        vec = (pos.index_select(0, e.target) - pos.index_select(0, e.source)
               - torch.einsum("ei,eij->ej", e.image.to(pos.dtype), lat))
        dist = torch.linalg.norm(vec, dim=-1)
        gauss = torch.exp(-0.5 * ((dist[:, None] - self.centres.to(dist.dtype)) / self.width)
                          ** 2)
        src = type_embedding(self.edge_source, numbers[e.source])
        dst = type_embedding(self.edge_target, numbers[e.target])
        feats = self.edge_mlp(torch.cat([gauss, src, dst], -1))
        return Graph(e, EdgeFrames(vec, cfg.lmax), feats, dist, owner)

    def forward(self, numbers, pos, cell, natoms) -> dict:
        cfg = self.cfg
        g = self.graph(numbers, pos, cell, natoms)
        x = pos.new_zeros((len(numbers), n_coeffs(cfg.lmax), cfg.channels))
        x[:, 0] = type_embedding(self.embed, numbers)
        # edge-degree embedding: m = 0 coefficients in each edge frame, rotated and summed
        deg = pos.new_zeros((len(g.distance), n_coeffs(cfg.lmax), cfg.channels))
        deg[:, self.m0] = self.degree(g.edge_features).reshape(-1, cfg.lmax + 1, cfg.channels)
        x = x.index_add(0, g.edges.target, g.frames.from_edge(deg) / cfg.avg_degree)
        for block in self.blocks:
            x = block(x, g)
        x = self.norm(x)
        out = {}
        scalars = self.head(x)[:, 0]  # (T, out_channels)
        if self.aggregate == "node":
            out["node"] = scalars
        else:
            total = scalars.new_zeros((len(natoms), scalars.shape[1])).index_add_(
                0, g.owner, scalars)
            div = cfg.mean_divisor or natoms.to(scalars.dtype)[:, None]
            out["graph"] = total / div
        if self.vector is not None:
            # the l = 1 coefficients in e3nn's order are proportional to (x, y, z)
            out["vector"] = self.vector(x, g)[:, 1:4, 0]
        return out
