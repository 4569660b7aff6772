"""An Imagen-style cascade of image diffusion models, trained and sampled as one model.

A base U-Net learns nearest-downsampled images at ``base_size``; when the images are larger,
a super-resolution U-Net learns the full size conditioned on the noised low-resolution copy
(spec/models.md §3.2-3.4).  Both take one Adam step on every batch, each with its own EMA
and its best-validation snapshot.  `ImageCascade` is a mixin for a TrainableModel whose
``prepare_data`` puts (M, 4, side, side) images in [0, 1] into ``self._train`` (and
``self._val`` or None); CrysTens in both forms uses it, on fixed-template and on general
crystals.  UniMat uses it as a single stage with its own network (a video U-Net on
(M, 3, N, G, G) videos already in [-1, 1]): `_set_stages`, `_shape` and `auto_normalise`
are the three places where a host differs.  `DiffusionConfig` holds the keys every such
model shares, `CascadeConfig` adds the two 2-D U-Nets.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch

from dismai.errors import ConfigError, TrainingDataError
from dismai.models.config import TrainConfig, _non_negative, _positive
from dismai.models.image_diffusion import (
    EMA,
    OBJECTIVES,
    BestWeights,
    UNet,
    diffusion_loss,
    resize_nearest,
    sample_images,
)
from dismai.models.training import generator_state, restore_generator

__all__ = ["DiffusionConfig", "CascadeConfig", "ImageCascade"]

def _levels(default):
    return dataclasses.field(default_factory=lambda: list(default))


@dataclasses.dataclass
class DiffusionConfig(TrainConfig):
    """Keys every image/video diffusion model shares: attention sizes, Adam, the min-SNR
    loss, EMA, validation and the sampler; defaults = Dismai-Bench's train_imagen.py and
    train_video_diff.py (spec/models.md §3.2-3.4, §4.2)."""

    batch_size: int = 8
    epochs: int = 1000  # 150,000 steps per U-Net at batch 8 on 1200 structures
    heads: int = 8
    dim_head: int = 64
    ff_mult: float = 2.0
    groups: int = 8
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.99
    adam_eps: float = 1e-8
    min_snr_gamma: float = 5.0
    objective: str = "eps"  # or "v" (imagen-pytorch's pred_objectives)
    threshold_percentile: float = 0.95
    ema_beta: float = 0.9999
    ema_after: int = 100
    ema_every: int = 10
    ema_power: float = 2 / 3
    sample_steps: int = 100  # generate_crys_tens.py / generate_unimat.py --timesteps 100
    sample_batch_size: int = 25
    val_every: int = 5  # epochs; validation loss of every U-Net
    sample_weights: str = "best"  # best: EMA weights at each U-Net's lowest validation loss

    RESUMABLE_KEYS: ClassVar[frozenset] = TrainConfig.RESUMABLE_KEYS | {
        "sample_steps", "sample_batch_size", "threshold_percentile", "sample_weights"}

    def validate(self) -> None:
        super().validate()
        _positive(self, "heads", "dim_head", "ff_mult", "groups", "lr", "sample_steps",
                  "sample_batch_size", "ema_every")
        _non_negative(self, "min_snr_gamma", "ema_after", "val_every")
        if not 0 < self.threshold_percentile <= 1:
            raise ConfigError("threshold_percentile must lie in (0, 1]")
        if self.sample_weights not in ("best", "last"):
            raise ConfigError(f"sample_weights must be best or last, got {self.sample_weights!r}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got "
                              f"{self.objective!r}")
        if not 0 <= self.ema_beta < 1:
            raise ConfigError("ema_beta must lie in [0, 1)")

    def check_unet_levels(self, prefix: str, dim: int, mults) -> None:
        """Per-level lists of one U-Net (keys `prefix`resnet_blocks, ...attns,
        ...cross_attns) have one entry per level, and its channels fit the groups."""
        n = len(mults)
        for key in ("resnet_blocks", "attns", "cross_attns"):
            if len(getattr(self, f"{prefix}{key}")) != n:
                raise ConfigError(f"{prefix}{key} needs one entry per level of "
                                  f"{prefix}dim_mults ({n})")
        if (dim * min(mults)) % self.groups:
            raise ConfigError(f"{prefix}dim x its multipliers must be divisible by groups "
                              f"({self.groups})")


@dataclasses.dataclass
class CascadeConfig(DiffusionConfig):
    """The cascade's U-Net keys; defaults = Dismai-Bench's train_imagen.py (spec/models.md
    §3.2-3.4)."""

    base_size: int = 64
    base_dim: int = 64
    base_dim_mults: list[int] = _levels([1, 2, 4])
    base_resnet_blocks: list[int] = _levels([3, 3, 3])
    base_attns: list[bool] = _levels([False, True, True])
    base_cross_attns: list[bool] = _levels([False, True, True])
    base_linear_attn: bool = True
    sr_dim: int = 64
    sr_dim_mults: list[int] = _levels([1, 2, 4])
    sr_resnet_blocks: list[int] = _levels([2, 4, 8])
    sr_attns: list[bool] = _levels([False, False, True])
    sr_cross_attns: list[bool] = _levels([False, False, True])
    sr_linear_attn: bool = False
    lowres_noise_level: float = 0.2

    RESUMABLE_KEYS: ClassVar[frozenset] = DiffusionConfig.RESUMABLE_KEYS | {
        "lowres_noise_level"}

    def validate(self) -> None:
        super().validate()
        _positive(self, "base_size", "base_dim", "sr_dim")
        for pre in ("base", "sr"):
            self.check_unet_levels(f"{pre}_", getattr(self, f"{pre}_dim"),
                                   getattr(self, f"{pre}_dim_mults"))
        if not 0 <= self.lowres_noise_level < 1:
            raise ConfigError("lowres_noise_level must lie in [0, 1)")


class ImageCascade:
    """The cascade's networks, optimisers, losses, validation and sampler (see the module
    doc).  The host class calls _build_cascade from _build (the 2-D U-Nets from
    CascadeConfig), or builds its own network and hands it to _set_stages (UniMat's video
    U-Net: one stage)."""

    loss_columns: ClassVar[tuple[str, ...]] = ("base_loss", "sr_loss", "val_base_loss",
                                               "val_sr_loss")
    #: channels of the images
    channels: ClassVar[int] = 4
    #: data in [0, 1], mapped to [-1, 1] for the networks (Imagen's auto_normalize_img);
    #: False: the data are already in [-1, 1] (UniMat)
    auto_normalise: ClassVar[bool] = True

    def _build_cascade(self, side: int) -> None:
        """The U-Nets for `side` x `side` images (a base at min(base_size, side), and a
        super-resolution one at `side` when that is larger); self._dev must be set."""
        cfg = self.config
        common = {"heads": cfg.heads, "dim_head": cfg.dim_head, "ff_mult": cfg.ff_mult,
                  "groups": cfg.groups}
        base_side = min(cfg.base_size, side)
        base = UNet(self.channels, cfg.base_dim, cfg.base_dim_mults, cfg.base_resnet_blocks,
                    cfg.base_attns, cfg.base_cross_attns, cfg.base_linear_attn, **common)
        sr = None
        if side > base_side:
            sr = UNet(self.channels, cfg.sr_dim, cfg.sr_dim_mults, cfg.sr_resnet_blocks,
                      cfg.sr_attns, cfg.sr_cross_attns, cfg.sr_linear_attn, lowres_cond=True,
                      memory_efficient=True, **common)
        self._set_stages(side, base_side, base, sr)

    def _set_stages(self, side: int, base_side: int, base, sr=None) -> None:
        """Take the base network (at base_side) and the optional super-resolution one (at
        side) onto the device, with their EMA and best copies and the noise generator."""
        self.side, self._base_side = side, base_side
        self.base = base.to(self._dev)
        if self._base_side % self.base.side_multiple:
            raise TrainingDataError(f"base_size {self._base_side} is not a multiple of "
                                    f"{self.base.side_multiple}")
        self.cascade = sr is not None
        mods = {"base": self.base, "base_ema": self._ema(self.base),
                "base_best": BestWeights(self.base)}
        if self.cascade:
            self.sr = sr.to(self._dev)
            if self.side % self.sr.side_multiple:
                raise TrainingDataError(f"image side {self.side} is not a multiple of "
                                        f"{self.sr.side_multiple} (super-resolution U-Net)")
            mods.update({"sr": self.sr, "sr_ema": self._ema(self.sr),
                         "sr_best": BestWeights(self.sr)})
        self._mods = mods
        self._noise = torch.Generator(device=self._dev)
        self._noise.manual_seed(self.config.seed)

    def _shape(self, b: int, side: int) -> tuple[int, ...]:
        """Shape of b generated images at `side`."""
        return (b, self.channels, side, side)

    def _set_images(self, train: np.ndarray, val: np.ndarray | None) -> None:
        """Keep the training (and validation) images on the device: (M, 4, side, side)
        for CrysTens, (M, 3, N, G, G) videos for UniMat."""
        self._train = torch.as_tensor(train, device=self._dev)
        self._val = None if val is None or not len(val) else torch.as_tensor(val,
                                                                               device=self._dev)
        self._n_train = len(self._train)
        self._per_epoch = math.ceil(len(self._train) / self.config.batch_size)
        self._epoch = 0

    def _ema(self, net):
        c = self.config
        return EMA(net, c.ema_beta, c.ema_after, c.ema_every, c.ema_power).to(self._dev)

    def modules(self) -> dict:
        return self._mods

    def make_optimizers(self) -> dict:
        c = self.config

        def adam(net):
            return torch.optim.Adam(net.parameters(), lr=c.lr, betas=(c.beta1, c.beta2),
                                    eps=c.adam_eps)

        opts = {"base": adam(self.base)}
        if self.cascade:
            opts["sr"] = adam(self.sr)
        return opts

    def rng_states(self) -> dict:
        return generator_state(self._noise, self._dev)

    def set_rng_states(self, states: dict) -> None:
        restore_generator(self._noise, states, self._dev)

    def losses(self, x01: torch.Tensor, gen: torch.Generator) -> dict:
        """{"base": ..., "sr": ...}: each U-Net's min-SNR diffusion loss on one batch (of
        data in [0, 1], or in [-1, 1] without auto_normalise)."""
        kw = {"gamma": self.config.min_snr_gamma, "objective": self.config.objective}
        x = x01 * 2 - 1 if self.auto_normalise else x01
        small = resize_nearest(x, self._base_side)
        out = {"base": diffusion_loss(self.base, small, gen, **kw)}
        if self.cascade:
            lowres = resize_nearest(small, self.side)
            out["sr"] = diffusion_loss(self.sr, x, gen, lowres=lowres, **kw)
        return out

    def train_step(self, items: np.ndarray, batch_index: int) -> dict:
        return self.cascade_step(self._train[torch.as_tensor(items, device=self._dev)],
                                 batch_index)

    def cascade_step(self, x: torch.Tensor, batch_index: int) -> dict:
        """One Adam step of each U-Net on the (B, 4, side, side) images x in [0, 1], and
        the validation at the end of every val_every-th epoch."""
        stats = {}
        for name, loss in self.losses(x, self._noise).items():
            opt, net = self.optimizers[name], self._mods[name]
            if torch.isfinite(loss):
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self._mods[f"{name}_ema"].update(net)
                stats[f"{name}_loss"] = (loss.detach(), len(x))
        if self._val is not None and self.validation_due(batch_index):
            for k, v in self.validation_losses(self._epoch).items():
                stats[f"val_{k}_loss"] = (v, 1)
                # the published best checkpoint: EMA weights when the validation loss of the
                # (non-EMA) U-Net is lowest
                self._mods[f"{k}_best"].offer(v, self._mods[f"{k}_ema"].shadow)
        return stats

    @torch.no_grad()
    def validation_losses(self, epoch: int) -> dict[str, float]:
        """Mean validation loss per U-Net (non-EMA weights, as published), from a generator
        seeded by (seed, epoch): reproducible, nothing to checkpoint."""
        g = torch.Generator(device=self._dev)
        g.manual_seed((self.config.seed * 1_000_003 + 7919 * (epoch + 1)) % 2 ** 63)
        sums, bs = {}, self.config.batch_size
        nets = [self.base] + ([self.sr] if self.cascade else [])
        modes = [n.training for n in nets]
        for n in nets:
            n.eval()
        try:
            for i in range(0, len(self._val), bs):
                x = self._val[i:i + bs]
                for k, v in self.losses(x, g).items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(x)
        finally:
            for n, m in zip(nets, modes, strict=True):
                n.train(m)
        return {k: v / len(self._val) for k, v in sums.items()}

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_images(self, n: int, seed: int) -> np.ndarray:
        """(n, 4, L, L) generated images in [0, 1] (in [-1, 1] without auto_normalise; the
        shape is _shape's) (see _sampler for the weights;
        `sample_steps` steps per stage, sample_batch_size at a time)."""
        cfg = self.config
        g = torch.Generator().manual_seed(seed)
        out = []
        for start in range(0, n, cfg.sample_batch_size):
            b = min(cfg.sample_batch_size, n - start)
            kw = {"percentile": cfg.threshold_percentile, "objective": cfg.objective}
            x = sample_images(self._sampler("base"), self._shape(b, self._base_side),
                              cfg.sample_steps, g, self._dev, **kw)
            if self.cascade:
                low = resize_nearest(x, self.side)
                x = sample_images(self._sampler("sr"), self._shape(b, self.side),
                                  cfg.sample_steps, g, self._dev, lowres=low,
                                  lowres_noise_level=cfg.lowres_noise_level, **kw)
            out.append(((x + 1) / 2 if self.auto_normalise else x).cpu())
        return torch.cat(out).numpy()

    def _sampler(self, unet: str):
        """The weights a U-Net samples with: its best EMA snapshot (sample_weights best, once
        a validation ran) or its last EMA weights."""
        best = self._mods[f"{unet}_best"]
        if self.config.sample_weights == "best" and best.filled:
            return best.weights
        return self._mods[f"{unet}_ema"].shadow
