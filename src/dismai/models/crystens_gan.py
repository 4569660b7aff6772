"""The CrysTens paper's GAN baselines on the original (4, 64, 64) image, in plain torch.

Both read the image as a 64 x 64 x 4 volume with one channel (the published Keras code's
view) and end in a sigmoid, so they generate the normalised image that
`dismai.models.crystens_original.reconstruct` turns into a crystal.

``crystens-wgan`` (spec models.md §2.5, train_wasserstein_gan.py), WGAN-GP:

* critic: 12 valid-padding blocks [Conv3d (spectral norm) -> LayerNorm over channels ->
  LeakyReLU 0.2] with 16, 16, 16x4, 32x3, 64, 64 (stride 5, 5, 1), 128 (stride 2) channels
  and kernels (1,1,1) x2, (3,3,1) x4, (7,7,1) x4, (5,5,2), (2,2,2), down to 3 x 3 x 1 x 128,
  then Dropout 0.25 and a spectral-norm Linear(1152, 1);
* generator: spectral-norm Linear(latent 128 -> 1024) + LayerNorm + LeakyReLU, reshaped to
  16 x 16 x 4, eight (3,3,3) transposed convolutions (spectral norm, LayerNorm, LeakyReLU)
  with 128, 128, 64, 64, 32, 32, 32, 32 channels (each grows the volume by 2: 32 x 32 x 20),
  a (2,2,2) stride-2 transposed convolution to 64 x 64 x 40 (no activation: the spec lists
  none) and a spectral-norm Conv3d(1, (1,1,10), stride (1,1,10)) with a sigmoid;
* loss: critic D(fake) - D(real) + 10 (|grad D(x_hat)| - 1)^2 at random interpolates,
  generator -D(fake); Adam 1e-4 (0.0, 0.9) for both; `n_critic` critic steps per
  generator step.

``crystens-gan``, the vanilla GAN (train_vanilla_gan.py; paper Appendix B.1): BCE on a
logit critic, Adam 1e-5, one critic step per generator step (non-saturating generator
loss), BatchNorm instead of LayerNorm, ReLU in the generator, no spectral norm.  The
published vanilla networks also have dense side branches that the spec only sketches; ours
keep the WGAN's layer chain (docs/crystens.md).

`critic_width` and `gen_width` scale the channel counts (16 and 32 as published) for the
small presets.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dismai.crystals import CrystalSet
from dismai.errors import ConfigError
from dismai.models.config import TrainConfig, _non_negative, _positive
from dismai.models.crystal_model import CrystalModel
from dismai.models.crystens_original import (
    MAX_ATOMS,
    ReconstructionKeys,
    encode_all,
    reconstruct_images,
)
from dismai.models.training import (
    PermutedEpochs,
    generator_state,
    restore_generator,
    select_device,
)

__all__ = ["CrysTensGAN", "CrysTensWGAN", "CrysTensGANConfig", "Critic", "Generator",
           "to_volume", "from_volume", "gradient_penalty"]

#: (channel multiple of critic_width, kernel, stride) of the 12 critic blocks
CRITIC_BLOCKS = ([(1, (1, 1, 1), 1)] * 2 + [(1, (3, 3, 1), 1)] * 4 + [(2, (7, 7, 1), 1)] * 3
                 + [(4, (7, 7, 1), 1), (4, (5, 5, 2), (5, 5, 1)), (8, (2, 2, 2), 2)])
#: channel multiples of gen_width of the eight (3,3,3) transposed convolutions
GEN_BLOCKS = (4, 4, 2, 2, 1, 1, 1, 1)


def to_volume(img: torch.Tensor) -> torch.Tensor:
    """(B, 4, 64, 64) image -> (B, 1, 64, 64, 4) volume (the Keras 64 x 64 x 4 x 1 view)."""
    return img.permute(0, 2, 3, 1).unsqueeze(1)


def from_volume(vol: torch.Tensor) -> torch.Tensor:
    return vol.squeeze(1).permute(0, 3, 1, 2)


class ChannelNorm(nn.Module):
    """Keras LayerNormalization(axis=-1) on a channel-first tensor: per voxel, over channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-3)  # Keras' default epsilon

    def forward(self, x):
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer


def _norm(channels: int, kind: str, dims: int = 3) -> nn.Module:
    """layer: over the channels of each voxel (WGAN); batch: BatchNorm (vanilla GAN)."""
    if kind == "batch":
        return nn.BatchNorm3d(channels, eps=1e-3) if dims == 3 else \
            nn.BatchNorm1d(channels, eps=1e-3)
    return ChannelNorm(channels) if dims == 3 else nn.LayerNorm(channels, eps=1e-3)


class Critic(nn.Module):
    """(B, 1, 64, 64, 4) -> (B,) scores (logits for the vanilla GAN)."""

    def __init__(self, width: int = 16, dropout: float = 0.25, slope: float = 0.2,
                 spectral: bool = True, norm: str = "layer"):
        super().__init__()
        layers, c = [], 1
        for mult, kernel, stride in CRITIC_BLOCKS:
            layers += [_sn(nn.Conv3d(c, mult * width, kernel, stride), spectral),
                       _norm(mult * width, norm), nn.LeakyReLU(slope)]
            c = mult * width
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.head = _sn(nn.Linear(9 * c, 1), spectral)

    def forward(self, vol):
        return self.head(self.drop(self.body(vol).flatten(1)))[:, 0]


class Generator(nn.Module):
    """(B, latent) -> (B, 1, 64, 64, 4) volume in (0, 1)."""

    def __init__(self, latent: int = 128, width: int = 32, slope: float = 0.2,
                 spectral: bool = True, norm: str = "layer"):
        super().__init__()
        act = (lambda: nn.LeakyReLU(slope)) if slope > 0 else nn.ReLU
        self.dense = nn.Sequential(_sn(nn.Linear(latent, 16 * 16 * 4), spectral),
                                   _norm(16 * 16 * 4, norm, dims=1), act())
        layers, c = [], 1
        for mult in GEN_BLOCKS:
            layers += [_sn(nn.ConvTranspose3d(c, mult * width, 3), spectral),
                       _norm(mult * width, norm), act()]
            c = mult * width
        layers.append(nn.ConvTranspose3d(c, width, 2, stride=2))  # 32x32x20 -> 64x64x40
        layers.append(_sn(nn.Conv3d(width, 1, (1, 1, 10), stride=(1, 1, 10)), spectral))
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        return torch.sigmoid(self.body(self.dense(z).reshape(-1, 1, 16, 16, 4)))


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     gen: torch.Generator) -> torch.Tensor:
    """mean over the batch of (|grad_x critic(x)| - 1)^2 at x = e real + (1 - e) fake."""
    e = torch.rand((len(real),) + (1,) * (real.dim() - 1), generator=gen, device=real.device)
    x = (e * real + (1 - e) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


@dataclasses.dataclass
class CrysTensGANConfig(ReconstructionKeys, TrainConfig):
    """Defaults = train_wasserstein_gan.py (spec models.md §2.5)."""

    batch_size: int = 32
    epochs: int = 100
    loss: str = "wgan-gp"  # or "bce" (the vanilla GAN)
    latent_dim: int = 128
    n_critic: int = 5  # critic steps per generator step
    gp_weight: float = 10.0
    lr: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.9
    critic_width: int = 16
    gen_width: int = 32
    dropout: float = 0.25
    leaky_slope: float = 0.2
    gen_slope: float = 0.2  # the generator's LeakyReLU slope (0: ReLU)
    spectral_norm: bool = True
    norm: str = "layer"  # or "batch"
    sample_batch_size: int = 50

    RESUMABLE_KEYS = TrainConfig.RESUMABLE_KEYS | ReconstructionKeys.RECONSTRUCTION_KEYS | {
        "sample_batch_size"}

    def validate(self) -> None:
        super().validate()
        _positive(self, "latent_dim", "n_critic", "lr", "critic_width", "gen_width",
                  "sample_batch_size")
        _non_negative(self, "gp_weight")
        self.validate_reconstruction()
        if self.loss not in ("wgan-gp", "bce"):
            raise ConfigError(f"loss must be wgan-gp or bce, got {self.loss!r}")
        if self.norm not in ("layer", "batch"):
            raise ConfigError(f"norm must be layer or batch, got {self.norm!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout must lie in [0, 1)")
        for b in ("beta1", "beta2"):
            if not 0 <= getattr(self, b) < 1:
                raise ConfigError(f"{b} must lie in [0, 1)")


class CrysTensWGAN(PermutedEpochs, CrystalModel):
    """WGAN-GP on original CrysTens images of general crystals (<= 52 atoms)."""

    name = "crystens-wgan"
    Config = CrysTensGANConfig
    max_atoms = MAX_ATOMS
    loss_columns = ("critic_loss", "gen_loss", "gp", "wasserstein")

    def _build(self, data) -> None:
        super()._build(data)
        c = self.config
        self._dev = select_device(c.device)
        self.critic = Critic(c.critic_width, c.dropout, c.leaky_slope, c.spectral_norm,
                             c.norm).to(self._dev)
        self.gen = Generator(c.latent_dim, c.gen_width, c.gen_slope, c.spectral_norm,
                             c.norm).to(self._dev)
        self._noise = torch.Generator(device=self._dev)
        self._noise.manual_seed(c.seed)

    def modules(self) -> dict:
        return {"critic": self.critic, "gen": self.gen}

    def make_optimizers(self) -> dict:
        c = self.config
        return {k: torch.optim.Adam(m.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
                for k, m in self.modules().items()}

    def rng_states(self) -> dict:
        return generator_state(self._noise, self._dev)

    def set_rng_states(self, states: dict) -> None:
        restore_generator(self._noise, states, self._dev)

    # ------------------------------------------------------------------ data
    @staticmethod
    def images(crystals: CrystalSet) -> np.ndarray:
        """(M, 4, 64, 64) normalised images (space groups from spglib)."""
        return encode_all(crystals)

    def prepare_data(self, train: CrystalSet, val: CrystalSet | None) -> None:
        self._train = to_volume(torch.as_tensor(self.images(train), device=self._dev))
        self._n_train = len(self._train)
        self._per_epoch = math.ceil(len(train) / self.config.batch_size)
        self._epoch = 0

    # ------------------------------------------------------------------ training
    def _z(self, b: int) -> torch.Tensor:
        return torch.randn((b, self.config.latent_dim), generator=self._noise, device=self._dev)

    def train_step(self, items: np.ndarray, batch_index: int) -> dict:
        c = self.config
        real = self._train[torch.as_tensor(items, device=self._dev)]
        b = len(real)
        opt_c, opt_g = self.optimizers["critic"], self.optimizers["gen"]
        with torch.no_grad():
            fake = self.gen(self._z(b))
        d_real, d_fake = self.critic(real), self.critic(fake)
        stats = {}
        if c.loss == "wgan-gp":
            gp = gradient_penalty(self.critic, real, fake, self._noise)
            loss_c = d_fake.mean() - d_real.mean() + c.gp_weight * gp
            stats["gp"] = (gp.detach(), b)
            stats["wasserstein"] = ((d_real.mean() - d_fake.mean()).detach(), b)
        else:
            loss_c = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                      + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        opt_c.zero_grad(set_to_none=True)
        loss_c.backward()
        opt_c.step()
        stats["critic_loss"] = (loss_c.detach(), b)
        step = self._epoch * self._per_epoch + batch_index
        if (step + 1) % c.n_critic == 0:
            score = self.critic(self.gen(self._z(b)))
            loss_g = (-score.mean() if c.loss == "wgan-gp" else
                      F.binary_cross_entropy_with_logits(score, torch.ones_like(score)))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            stats["gen_loss"] = (loss_g.detach(), b)
        return stats

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_images(self, n: int, seed: int) -> np.ndarray:
        """(n, 4, 64, 64) generated images; latents from a CPU generator seeded with seed."""
        g = torch.Generator().manual_seed(seed)
        was = self.gen.training
        self.gen.eval()
        try:
            out = []
            for start in range(0, n, self.config.sample_batch_size):
                b = min(self.config.sample_batch_size, n - start)
                z = torch.randn((b, self.config.latent_dim), generator=g).to(self._dev)
                out.append(from_volume(self.gen(z)).float().cpu())
        finally:
            self.gen.train(was)
        return torch.cat(out).numpy()

    def _sample_crystals(self, n: int, seed: int):
        return reconstruct_images(self.sample_images(n, seed), self.config)


@dataclasses.dataclass
class VanillaGANConfig(CrysTensGANConfig):
    """Defaults = train_vanilla_gan.py as far as the spec gives them (§2.5)."""

    batch_size: int = 64
    loss: str = "bce"
    n_critic: int = 1
    lr: float = 1e-5
    beta1: float = 0.9
    beta2: float = 0.999
    spectral_norm: bool = False
    norm: str = "batch"
    gen_slope: float = 0.0


class CrysTensGAN(CrysTensWGAN):
    """The vanilla-GAN baseline: BCE objective, Adam 1e-5 (see the module doc)."""

    name = "crystens-gan"
    Config = VanillaGANConfig

