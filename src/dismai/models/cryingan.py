"""CryinGAN (Yong, Su & Ertekin, Dismai-Bench 2024): a point-cloud WGAN-GP for one fixed cell.

Generator: 64-d Gaussian noise -> fractional coordinates of all N atoms (rows in the
template's species-block order).  Critics: a PointNet-style per-atom MLP with per-species
pooling, once on fractional coordinates and once on the distances to each atom's k = 6
nearest periodic neighbours; the distance critic's losses are weighted by
lambda = ``weight_dist``.  Architecture, losses and optimiser follow §C1; the
per-atom 1x1 convolutions of the published code are written as channel-last Linear layers
(same maths, same Xavier-uniform initialisation bounds, faster GEMMs and double backward).

Variants (config): weight_dist = 0 (coordinate critic only, the published baseline),
coord_pooling / dist_pooling = max or mix (max and average concatenated), critic = "comb"
(one critic on coordinates and distances side by side).  Alloy augmentation: integer
lattice translations (``translation_grid``), drawn on the fly per epoch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dismai.models.config import ConfigError, TrainConfig, _positive
from dismai.models.periodic_knn import neighbour_distances, periodic_knn
from dismai.models.training import (
    TrainableModel,
    generator_state,
    restore_generator,
    select_device,
)
from dismai.structures import StructureSet

__all__ = ["CryinGAN", "CryinGANConfig", "Generator", "Critic", "gradient_penalty",
           "translation_shifts"]

POOLINGS = ("avg", "max", "mix")
CRITICS = ("separate", "comb")
SAMPLE_CHUNK = 256  # structures per generator call when sampling (memory only)


@dataclasses.dataclass
class CryinGANConfig(TrainConfig):
    """Published defaults (§C1.12); epochs and weight_dist come from presets."""

    batch_size: int = 32
    latent_dim: int = 64
    gen_channels_1: int = 128
    gen_channels: list[int] = dataclasses.field(default_factory=lambda: [256, 512, 256])
    bn_eps: float = 0.8  # AS-CODED BatchNorm2d(C, 0.8): eps, not momentum; reproduced
    critic_channels: list[int] = dataclasses.field(default_factory=lambda: [512, 512, 256])
    critic_hidden: list[int] = dataclasses.field(default_factory=lambda: [1000, 200])
    critic_outputs: int = 10  # critic score = mean over these outputs (as published)
    critic: str = "separate"  # separate (coord + distance critic) or comb (one critic)
    coord_pooling: str = "avg"
    dist_pooling: str = "avg"
    n_neighbors: int = 6
    weight_dist: float = 0.05  # lambda; 0 = no distance critic; unused by critic=comb
    gp_weight: float = 10.0
    g_lr: float = 5e-5
    coord_lr: float = 5e-5
    dist_lr: float = 5e-5
    beta1: float = 0.5
    beta2: float = 0.999
    gen_int: int = 5  # generator step when (batch index within the epoch) % gen_int == 0
    lr_step_size: int = 100000  # epochs per learning-rate decay step (StepLR)
    lr_gamma: float = 0.95
    translation_grid: list[int] = dataclasses.field(default_factory=list)  # e.g. [4, 4, 4]
    augment_copies: int = 0  # translated copies of each structure per epoch; 0 = all

    def validate(self) -> None:
        super().validate()
        _positive(self, "latent_dim", "gen_channels_1", "critic_outputs", "n_neighbors",
                  "gen_int", "lr_step_size")
        for key in ("gen_channels", "critic_channels", "critic_hidden"):
            vals = getattr(self, key)
            if not vals or min(vals) <= 0:
                raise ConfigError(f"{key} must be a non-empty list of positive integers")
        if self.critic not in CRITICS:
            raise ConfigError(f"critic must be one of {CRITICS}, got {self.critic!r}")
        for key in ("coord_pooling", "dist_pooling"):
            if getattr(self, key) not in POOLINGS:
                raise ConfigError(f"{key} must be one of {POOLINGS}, got {getattr(self, key)!r}")
        for key in ("weight_dist", "gp_weight", "g_lr", "coord_lr", "dist_lr", "bn_eps"):
            if getattr(self, key) < 0 or not math.isfinite(getattr(self, key)):
                raise ConfigError(f"{key} must be a finite number >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError("beta1 and beta2 must lie in [0, 1)")
        grid = self.translation_grid
        if grid and (len(grid) != 3 or min(grid) < 1):
            raise ConfigError(f"translation_grid must be [] or 3 positive integers, got {grid}")
        n_shifts = math.prod(grid) if grid else 1
        if not 0 <= self.augment_copies <= n_shifts:
            raise ConfigError(
                f"augment_copies must lie in 0..{n_shifts} (the number of translations)"
            )


# ---------------------------------------------------------------------------- networks
class _LeakyReLU(torch.autograd.Function):
    """leaky_relu whose backward is linear in the incoming gradient with a constant mask.

    Same values and first derivatives as F.leaky_relu.  Its second derivative is zero
    almost everywhere, but autograd's built-in double backward still propagates explicit
    zeros through the whole forward graph; here the mask carries no graph, so the gradient
    penalty's double backward only walks the input-gradient chain (~40 % less work).
    """

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return F.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors  # detached below: the mask is a constant of the graph
        return torch.ops.aten.leaky_relu_backward(grad, x.detach(), ctx.slope, False), None


def leaky_relu(x: torch.Tensor, slope: float = 0.2) -> torch.Tensor:
    return _LeakyReLU.apply(x, slope)


def _xavier_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Xavier-uniform with explicit fans, so Linear layers get their Conv2d twins' bounds."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-bound, bound)


def _linear(n_in: int, n_out: int, fans: tuple[int, int] | None = None) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    _xavier_(layer.weight, *(fans or (n_in, n_out)))
    nn.init.zeros_(layer.bias)
    return layer


class Generator(nn.Module):
    """z (B, latent) -> fractional coordinates (B, N, 3) in (0, 1).

    Published layers: Linear(latent, C1*N) + ReLU; ConvTranspose2d(C1, c0, (1, 3)) + BN + ReLU;
    1x1 ConvTranspose2d c_i -> c_{i+1} + BN + ReLU; 1x1 ConvTranspose2d c_last -> 1; sigmoid.
    Here every (atom, column) position is one row of a GEMM.
    """

    def __init__(self, n_atoms: int, latent_dim: int = 64, channels_1: int = 128,
                 channels=(256, 512, 256), bn_eps: float = 0.8):
        super().__init__()
        self.n_atoms, self.c1, self.c0 = n_atoms, channels_1, channels[0]
        self.l1 = _linear(latent_dim, channels_1 * n_atoms)
        # ConvTranspose2d(C1, c0, kernel (1, 3)) on a width-1 input: one bias per channel,
        # weight (C1, 3 * c0); torch's fans for that layer are (3 c0, 3 C1).
        self.expand_weight = nn.Parameter(torch.empty(channels_1, 3 * channels[0]))
        self.expand_bias = nn.Parameter(torch.zeros(channels[0]))
        _xavier_(self.expand_weight, 3 * channels[0], 3 * channels_1)
        self.norms = nn.ModuleList(nn.BatchNorm1d(c, eps=bn_eps) for c in channels)
        self.maps = nn.ModuleList(_linear(a, b) for a, b in zip(channels[:-1], channels[1:],
                                                                strict=True))
        self.out = _linear(channels[-1], 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        h = F.relu(self.l1(z)).view(b * self.n_atoms, self.c1)
        h = (h @ self.expand_weight).view(b * self.n_atoms * 3, self.c0) + self.expand_bias
        h = F.relu(self.norms[0](h))
        for lin, norm in zip(self.maps, self.norms[1:], strict=True):
            h = F.relu(norm(lin(h)))
        return torch.sigmoid(self.out(h)).view(b, self.n_atoms, 3)


class Critic(nn.Module):
    """(B, N, W) per-atom features -> (B, outputs) scores, invariant within species blocks.

    Published layers: Conv2d(1, c0, (1, W)) + LeakyReLU(0.2); 1x1 Conv2d c_i -> c_{i+1} +
    LeakyReLU; per-species pooling; Linear layers 1000, 200 + LeakyReLU; Linear -> 10.
    """

    def __init__(self, blocks, width: int, channels=(512, 512, 256), hidden=(1000, 200),
                 outputs: int = 10, pooling: str = "avg"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}")
        self.blocks = [(int(a), int(b)) for a, b in blocks]
        self.pooling = pooling
        n_atoms = self.blocks[-1][1]
        # first layer = Conv2d(1, c0, (1, W)): torch's fans are (W, c0 * W)
        self.convs = nn.ModuleList([_linear(width, channels[0], (width, channels[0] * width))])
        self.convs.extend(_linear(a, b) for a, b in zip(channels[:-1], channels[1:],
                                                         strict=True))
        pooled = len(self.blocks) * channels[-1] * (2 if pooling == "mix" else 1)
        sizes = [pooled, *hidden]
        self.fcs = nn.ModuleList(_linear(a, b) for a, b in zip(sizes[:-1], sizes[1:],
                                                                strict=True))
        self.out = _linear(sizes[-1], outputs)
        avg = torch.zeros(len(self.blocks), n_atoms)
        for e, (a, b) in enumerate(self.blocks):
            avg[e, a:b] = 1.0 / (b - a)
        self.register_buffer("avg_matrix", avg, persistent=False)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, n_species * C [* 2]): per-species average, max or both."""
        parts = []
        if self.pooling in ("avg", "mix"):
            parts.append(self.avg_matrix @ h)
        if self.pooling in ("max", "mix"):
            parts.append(torch.stack([h[:, a:b].amax(dim=1) for a, b in self.blocks], dim=1))
        return torch.cat(parts, dim=-1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = leaky_relu(conv(h), 0.2)
        h = self.pool(h)
        for fc in self.fcs:
            h = leaky_relu(fc(h), 0.2)
        return self.out(h)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """weight * mean_b (||d sum(outputs) / d x_hat||_2 - 1)^2, x_hat = a real + (1 - a) fake.

    As published: the gradient is of the *sum* of the critic outputs, per-sample alpha is
    broadcast over the whole (N, W) input, and for the distance critic the interpolation is
    between distance vectors.
    """
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return weight * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def translation_shifts(grid) -> np.ndarray:
    """(prod(grid), 3) fractional shifts i/g over the grid, the identity first."""
    if not grid:
        return np.zeros((1, 3))
    axes = [np.arange(g) / g for g in grid]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


# ---------------------------------------------------------------------------- the model
class CryinGAN(TrainableModel):
    """CryinGAN with the published training loop (WGAN-GP, gen_int, separate Adams)."""

    name = "cryingan"
    #: the critics see the atoms of one species as a set (pooled per species block)
    invariances: ClassVar[tuple] = ("permutation",)
    Config = CryinGANConfig
    min_atoms = 2
    loss_columns = ("distance_dis", "cost_dis", "cost_gen", "D_real", "D_fake",
                    "D_dist_real", "D_dist_fake")

    # ------------------------------------------------------------------ construction
    def _build(self, template: StructureSet) -> None:
        super()._build(template)
        cfg = self.config
        self._dev = select_device(cfg.device)
        blocks = [(a, b) for _, a, b in self.template.blocks]
        n, k = self.template.n_atoms, cfg.n_neighbors
        self.lattice = torch.as_tensor(self.template.lattice, dtype=torch.float32,
                                       device=self._dev)
        self.generator = Generator(n, cfg.latent_dim, cfg.gen_channels_1, cfg.gen_channels,
                                   cfg.bn_eps)
        critic = dict(channels=cfg.critic_channels, hidden=cfg.critic_hidden,
                      outputs=cfg.critic_outputs)
        self.dist_critic = None
        if cfg.critic == "comb":
            self.coord_critic = Critic(blocks, 3 + k, pooling=cfg.coord_pooling, **critic)
        else:
            self.coord_critic = Critic(blocks, 3, pooling=cfg.coord_pooling, **critic)
            if cfg.weight_dist > 0:
                self.dist_critic = Critic(blocks, k, pooling=cfg.dist_pooling, **critic)
        for mod in self.modules().values():
            mod.to(self._dev)
        self._noise = torch.Generator(device=self._dev)
        self._noise.manual_seed(cfg.seed)

    @property
    def uses_distances(self) -> bool:
        return self.dist_critic is not None or self.config.critic == "comb"

    def modules(self) -> dict:
        mods = {"generator": self.generator, "coord_critic": self.coord_critic}
        if self.dist_critic is not None:
            mods["dist_critic"] = self.dist_critic
        return mods

    def _base_lrs(self) -> dict:
        cfg = self.config  # with critic=comb the single critic is "coord_critic"
        return {"generator": cfg.g_lr, "coord_critic": cfg.coord_lr, "dist_critic": cfg.dist_lr}

    def make_optimizers(self) -> dict:
        lrs, betas = self._base_lrs(), (self.config.beta1, self.config.beta2)
        return {name: torch.optim.Adam(mod.parameters(), lr=lrs[name], betas=betas)
                for name, mod in self.modules().items()}

    def rng_states(self) -> dict:
        return generator_state(self._noise, self._dev)

    def set_rng_states(self, states: dict) -> None:
        restore_generator(self._noise, states, self._dev)

    # ------------------------------------------------------------------ data
    def distances(self, frac: torch.Tensor, grad: bool = False) -> torch.Tensor:
        """k-nearest periodic neighbour distances (B, N, k), differentiable if grad."""
        d, idx, shift = periodic_knn(frac, self.lattice, self.config.n_neighbors)
        return neighbour_distances(frac, self.lattice, idx, shift) if grad else d

    def prepare_data(self, train: StructureSet, val: StructureSet | None) -> None:
        cfg = self.config
        self._frac = torch.as_tensor(train.wrapped().frac, dtype=torch.float32,
                                     device=self._dev)
        self._real_dist = None
        if self.uses_distances:  # lattice translations leave them unchanged: compute once
            with torch.no_grad():
                self._real_dist = torch.cat([self.distances(self._frac[i:i + 64])
                                             for i in range(0, len(self._frac), 64)])
        self._shifts = torch.as_tensor(translation_shifts(cfg.translation_grid),
                                       dtype=torch.float32, device=self._dev)
        self._copies = cfg.augment_copies or len(self._shifts)

    def epoch_size(self) -> int:
        return len(self._frac) * self._copies

    def epoch_items(self, rng: np.random.Generator) -> np.ndarray:
        """(M * copies, 2) rows (structure, translation): each structure `copies` times with
        distinct translations, shuffled; with all 64 it is the published augmented set."""
        m, t, c = len(self._frac), len(self._shifts), self._copies
        trans = np.zeros((m, c), dtype=np.int64)
        if t > 1:
            trans = rng.random((m, t)).argsort(axis=1)[:, :c]
        items = np.stack([np.repeat(np.arange(m), c), trans.ravel()], axis=1)
        return items[rng.permutation(len(items))]

    def start_epoch(self, epoch: int) -> None:
        """StepLR per epoch, as published: lr = lr0 * gamma ** (epoch // step_size)."""
        cfg, lrs = self.config, self._base_lrs()
        factor = cfg.lr_gamma ** (epoch // cfg.lr_step_size)
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = lrs[name] * factor

    # ------------------------------------------------------------------ one step
    def _critic_terms(self, critic: Critic, real, fake):
        """Mean scores on real and fake (one forward for both) and the gradient penalty."""
        b = real.shape[0]
        scores = critic(torch.cat([real, fake]))
        alpha = torch.rand(b, 1, 1, generator=self._noise, device=self._dev)
        gp = gradient_penalty(critic, real, fake, alpha, self.config.gp_weight)
        return scores[:b].mean(), scores[b:].mean(), gp

    def probe(self, frac: np.ndarray) -> np.ndarray:
        """Coordinate-critic scores (B,) of (B, N, 3) fractional coordinates: the handle
        dismai.testing uses to check the claimed invariances."""
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(frac), dtype=torch.float32, device=self._dev)
            d = self.distances(x) if self.uses_distances else None
            return self.coord_critic(self._critic_input(x, d)).reshape(-1).double().cpu().numpy()

    def _critic_input(self, coords, dists):
        return torch.cat([coords, dists], dim=-1) if self.config.critic == "comb" else coords

    def train_step(self, items: np.ndarray, batch_index: int) -> dict:
        cfg, opts = self.config, self.optimizers
        w = cfg.weight_dist
        idx = torch.as_tensor(items[:, 0], device=self._dev)
        real = self._frac[idx]
        if len(self._shifts) > 1:
            shift = self._shifts[torch.as_tensor(items[:, 1], device=self._dev)]
            real = torch.remainder(real + shift[:, None, :], 1.0)
        real_d = self._real_dist[idx] if self._real_dist is not None else None
        b = real.shape[0]

        # critic step: fakes detached (the published code keeps them attached, which only
        # adds generator gradients that its generator step zeroes before use)
        z = torch.randn(b, cfg.latent_dim, generator=self._noise, device=self._dev)
        with torch.no_grad():
            fake = self.generator(z)
            fake_d = self.distances(fake) if self.uses_distances else None
        c_real, c_fake, gp = self._critic_terms(self.coord_critic,
                                                self._critic_input(real, real_d),
                                                self._critic_input(fake, fake_d))
        loss_d = c_fake - c_real + gp
        wdist = c_real - c_fake
        stats = {"D_real": (c_real.detach(), b), "D_fake": (c_fake.detach(), b)}
        if self.dist_critic is not None:
            d_real, d_fake, gp_d = self._critic_terms(self.dist_critic, real_d, fake_d)
            loss_d = loss_d + w * (d_fake - d_real + gp_d)
            wdist = wdist + w * (d_real - d_fake)
            stats.update(D_dist_real=(d_real.detach(), b), D_dist_fake=(d_fake.detach(), b))
        critics = [n for n in opts if n != "generator"]
        for n in critics:
            opts[n].zero_grad(set_to_none=True)
        loss_d.backward()
        for n in critics:
            opts[n].step()
        stats.update(distance_dis=(wdist.detach(), b), cost_dis=(loss_d.detach(), b))

        if batch_index % cfg.gen_int == 0:
            for n in critics:
                self.modules()[n].requires_grad_(False)
            try:
                z = torch.randn(b, cfg.latent_dim, generator=self._noise, device=self._dev)
                fake = self.generator(z)
                fake_d = self.distances(fake, grad=True) if self.uses_distances else None
                loss_g = -self.coord_critic(self._critic_input(fake, fake_d)).mean()
                if self.dist_critic is not None:
                    loss_g = loss_g - w * self.dist_critic(fake_d).mean()
                opts["generator"].zero_grad(set_to_none=True)
                loss_g.backward()
                opts["generator"].step()
            finally:
                for n in critics:
                    self.modules()[n].requires_grad_(True)
            stats["cost_gen"] = (loss_g.detach(), b)
        return stats

    # ------------------------------------------------------------------ sampling
    def _sample_frac(self, n: int, seed: int) -> np.ndarray:
        """Generator in eval mode (BatchNorm running statistics), noise drawn on the CPU."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.config.latent_dim, generator=g)
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.no_grad():
                out = [self.generator(z[i:i + SAMPLE_CHUNK].to(self._dev)).cpu()
                       for i in range(0, n, SAMPLE_CHUNK)]
        finally:
            self.generator.train(was_training)
        return torch.cat(out).double().numpy()
