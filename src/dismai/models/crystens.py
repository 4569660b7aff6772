"""CrysTens as Dismai-Bench benchmarked it: a structure as a 4-channel L x L image, generated
by an Imagen-style cascade (a 64 x 64 base U-Net, then a super-resolution U-Net at L).

The image (spec/models.md §3.1), L = 11 + padding + N:

* lines 0-10 are the header: 0 atomic number, 1-3 fractional x, y, z, 4-10 the lattice and
  space group (zero: the cell is fixed); each atom's header values sit in its column and its
  mirrored row, in all four channels (8 copies);
* `padding` empty lines make L a multiple of 8 (the super-resolution U-Net halves it three
  times);
* the atom block holds, for atoms i, j: channel 0 the fractional distance |x_i - x_j| (no
  periodic images), channels 1-3 x_i - x_j, y_i - y_j, z_i - z_j;
* every quantity is min-max scaled to [0, 1] with limits from the training set.

Reconstruction (§3.3): each atom's header coordinate c_i is the mean of its 8 copies; the
differences are antisymmetrised, d[i, j] = (D[i, j] - D[j, i]) / 2; atom j sits at the mean
over i of c_i - d[i, j].  Species are the template's (the network's are only scored).  No
k-means and no lattice averaging, unlike the original CrysTens.

Training follows the published cascade: each U-Net learns on its own; here both take one
Adam step on every batch (the base on the nearest 64 x 64 downsample, the super-resolution
one on the full image conditioned on its noised nearest down-and-up-sampled copy), which is
the same pair of objectives trained side by side rather than one after the other.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch

from dismai.errors import ConfigError, InputError, TrainingDataError
from dismai.models.config import TrainConfig, _non_negative, _positive
from dismai.models.image_diffusion import (
    EMA,
    BestWeights,
    UNet,
    diffusion_loss,
    resize_nearest,
    sample_images,
)
from dismai.models.training import (
    PermutedEpochs,
    TrainableModel,
    generator_state,
    restore_generator,
    select_device,
)
from dismai.structures import StructureSet, species_blocks

__all__ = ["CrysTens", "CrysTensConfig", "auto_padding", "image_side", "fit_scaler",
           "encode", "decode", "HEADER_LINES", "SCALER_KEYS"]

HEADER_LINES = 11
SCALER_KEYS = ("atom_num", "coord_x", "coord_y", "coord_z", "dist_norm", "dist_dx",
               "dist_dy", "dist_dz")
STAT_KEYS = ("atom_num_accuracy", "lat_len_mae", "lat_angle_mae", "spacegroup_mae",
             "coord_mae", "pair_dist_mae")


# ---------------------------------------------------------------------------- representation
def auto_padding(n_atoms: int, multiple: int = 8) -> int:
    """Smallest padding >= 1 that makes 11 + padding + N a multiple of `multiple` (5 for the
    256- and 264-atom sets, as in the paper: L = 272 and 280)."""
    return 1 + (-(HEADER_LINES + 1 + n_atoms)) % multiple


def image_side(n_atoms: int, padding: int) -> int:
    return HEADER_LINES + padding + n_atoms


def _pairwise(frac: np.ndarray) -> np.ndarray:
    """(B, 4, N, N): fractional distance, then x_i - x_j, y_i - y_j, z_i - z_j."""
    d = frac[:, :, None, :] - frac[:, None, :, :]  # (B, N, N, 3), d[i, j] = x_i - x_j
    return np.concatenate([np.linalg.norm(d, axis=-1)[:, None], d.transpose(0, 3, 1, 2)], 1)


def fit_scaler(frac: np.ndarray, z: np.ndarray) -> dict[str, list[float]]:
    """Min and max of every scaled quantity over the training structures (scaler.json)."""
    pw = _pairwise(frac)
    vals = [z.astype(np.float64), frac[..., 0], frac[..., 1], frac[..., 2],
            pw[:, 0], pw[:, 1], pw[:, 2], pw[:, 3]]
    return {k: [float(v.min()), float(v.max())] for k, v in zip(SCALER_KEYS, vals, strict=True)}


def _scale(v, lim, inverse=False):
    lo, hi = lim
    span = hi - lo if hi > lo else 1.0  # a constant (one element): scaled to 0
    return v * span + lo if inverse else (v - lo) / span


def encode(frac: np.ndarray, z: np.ndarray, scaler: dict, padding: int) -> np.ndarray:
    """(B, N, 3) fractional coordinates and (N,) atomic numbers -> (B, 4, L, L) in [0, 1]."""
    b, n, _ = frac.shape
    side, off = image_side(n, padding), HEADER_LINES + padding
    img = np.zeros((b, 4, side, side), dtype=np.float32)
    header = np.stack([np.broadcast_to(_scale(z.astype(np.float64), scaler["atom_num"]), (b, n))]
                      + [_scale(frac[..., k], scaler[f"coord_{a}"])
                         for k, a in enumerate("xyz")], 1)  # (B, 4, N)
    atoms = slice(off, off + n)
    img[:, :, 0:4, atoms] = header[:, None]
    img[:, :, atoms, 0:4] = header[:, None].transpose(0, 1, 3, 2)
    pw = _pairwise(frac)
    for c, key in enumerate(("dist_norm", "dist_dx", "dist_dy", "dist_dz")):
        img[:, c, atoms, atoms] = _scale(pw[:, c], scaler[key])
    return img


def decode(img, scaler: dict, padding: int, z_true: np.ndarray):
    """(B, 4, L, L) images in [0, 1] -> ((B, N, 3) fractional coordinates, per-image
    statistics), as Dismai-Bench's convert_crys_tens_to_extxyz.py reconstructs them.

    Statistics (statistics.csv): atom_num_accuracy, the fraction of atoms whose rounded
    atomic number is right; lat_len_mae, lat_angle_mae, spacegroup_mae, the mean |value| of
    the scaled header lines 4-6, 7-9 and 10 (zero in the data); coord_mae, the mean |c_i -
    d[i, j] - x_j| over every estimate; pair_dist_mae, the mean |generated distance -
    distance of the final coordinates| over all N x N pairs.  An image with NaN gives NaN
    coordinates (a failed structure)."""
    img = np.asarray(img, dtype=np.float64)
    n = len(z_true)
    side = image_side(n, padding)
    if img.ndim != 4 or img.shape[1:] != (4, side, side):
        raise InputError(f"CrysTens images must have shape (B, 4, {side}, {side}) for {n} "
                         f"atoms and padding {padding}, got {img.shape}")
    off = HEADER_LINES + padding
    atoms = slice(off, off + n)

    def copies(line):  # (B, 8, N): the header value of every atom, 4 channels x row/column
        return np.concatenate([img[:, :, line, atoms], img[:, :, atoms, line]], 1)

    head = {r: copies(r).mean(1) for r in range(4)}
    z_pred = np.rint(_scale(head[0], scaler["atom_num"], inverse=True))
    c = np.stack([_scale(head[k + 1], scaler[f"coord_{a}"], inverse=True)
                  for k, a in enumerate("xyz")], -1)  # (B, N, 3)
    d = np.stack([_scale(img[:, k + 1, atoms, atoms], scaler[f"dist_d{a}"], inverse=True)
                  for k, a in enumerate("xyz")], 1)  # (B, 3, N, N)
    dbar = (d - d.transpose(0, 1, 3, 2)) / 2
    est = c.transpose(0, 2, 1)[:, :, :, None] - dbar  # (B, 3, i, j): atom j seen from i
    final = est.mean(2).transpose(0, 2, 1)  # (B, N, 3)
    dist_gen = _scale(img[:, 0, atoms, atoms], scaler["dist_norm"], inverse=True)
    dist_new = np.linalg.norm(final[:, :, None] - final[:, None], axis=-1)
    stats = {
        "atom_num_accuracy": (z_pred == np.asarray(z_true)[None]).mean(1),
        "lat_len_mae": np.abs(np.stack([copies(r) for r in (4, 5, 6)])).mean((0, 2, 3)),
        "lat_angle_mae": np.abs(np.stack([copies(r) for r in (7, 8, 9)])).mean((0, 2, 3)),
        "spacegroup_mae": np.abs(copies(10)).mean((1, 2)),
        "coord_mae": np.abs(est - final.transpose(0, 2, 1)[:, :, None]).mean((1, 2, 3)),
        "pair_dist_mae": np.abs(dist_gen - dist_new).mean((1, 2)),
    }
    return final, stats


def permute_images(img: torch.Tensor, perm: torch.Tensor, off: int) -> torch.Tensor:
    """Relabel the atoms of (B, 4, L, L) images: atom line off + k of image b in the result
    is atom line off + perm[b, k] of the input (rows and columns alike), which is the image
    of the structure with atoms reordered by perm[b]."""
    b, _, side, _ = img.shape
    idx = torch.arange(side, device=img.device).expand(b, side).clone()
    idx[:, off:] = perm + off
    rows = idx[:, None, :, None].expand(b, 4, side, side)
    img = torch.gather(img, 2, rows)
    cols = idx[:, None, None, :].expand(b, 4, side, side)
    return torch.gather(img, 3, cols)


# ---------------------------------------------------------------------------- config
def _levels(default):
    return dataclasses.field(default_factory=lambda: list(default))


@dataclasses.dataclass
class CrysTensConfig(TrainConfig):
    """Defaults = Dismai-Bench's train_imagen.py (spec/models.md §3.2-3.4)."""

    batch_size: int = 8
    epochs: int = 1000  # 150,000 steps per U-Net at batch 8 on 1200 structures
    padding: int = 0  # 0: the smallest that makes L a multiple of 8
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
    heads: int = 8
    dim_head: int = 64
    ff_mult: float = 2.0
    groups: int = 8
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.99
    adam_eps: float = 1e-8
    min_snr_gamma: float = 5.0
    threshold_percentile: float = 0.95
    ema_beta: float = 0.9999
    ema_after: int = 100
    ema_every: int = 10
    ema_power: float = 2 / 3
    sample_steps: int = 100  # generate_crys_tens.py --timesteps 100
    lowres_noise_level: float = 0.2
    sample_batch_size: int = 25
    permute_augment: bool = False  # relabel atoms within species blocks every step
    val_every: int = 5  # epochs; validation loss of both U-Nets
    sample_weights: str = "best"  # best: EMA weights at each U-Net's lowest validation loss


    RESUMABLE_KEYS: ClassVar[frozenset] = TrainConfig.RESUMABLE_KEYS | {
        "sample_steps", "lowres_noise_level", "sample_batch_size", "threshold_percentile",
        "sample_weights"}

    def validate(self) -> None:
        super().validate()
        _positive(self, "base_size", "base_dim", "sr_dim", "heads", "dim_head", "ff_mult",
                  "groups", "lr", "sample_steps", "sample_batch_size", "ema_every")
        _non_negative(self, "padding", "min_snr_gamma", "ema_after", "val_every")
        for pre in ("base", "sr"):
            n = len(getattr(self, f"{pre}_dim_mults"))
            for key in ("resnet_blocks", "attns", "cross_attns"):
                if len(getattr(self, f"{pre}_{key}")) != n:
                    raise ConfigError(f"{pre}_{key} needs one entry per level of "
                                      f"{pre}_dim_mults ({n})")
            if (getattr(self, f"{pre}_dim") * min(getattr(self, f"{pre}_dim_mults"))) \
                    % self.groups:
                raise ConfigError(f"{pre}_dim x its multipliers must be divisible by groups "
                                  f"({self.groups})")
        if not 0 < self.threshold_percentile <= 1:
            raise ConfigError("threshold_percentile must lie in (0, 1]")
        if not 0 <= self.lowres_noise_level < 1:
            raise ConfigError("lowres_noise_level must lie in [0, 1)")
        if self.sample_weights not in ("best", "last"):
            raise ConfigError(f"sample_weights must be best or last, got {self.sample_weights!r}")
        if not 0 <= self.ema_beta < 1:
            raise ConfigError("ema_beta must lie in [0, 1)")


# ---------------------------------------------------------------------------- model
class CrysTens(PermutedEpochs, TrainableModel):
    """CrysTens (Dismai-Bench fixed-lattice form) with its two-U-Net cascade."""

    name = "crystens"
    Config = CrysTensConfig
    min_atoms = 2
    loss_columns = ("base_loss", "sr_loss", "val_base_loss", "val_sr_loss")

    def _build(self, template: StructureSet) -> None:
        super()._build(template)
        cfg = self.config
        self._dev = select_device(cfg.device)
        n = template.n_atoms
        self.padding = cfg.padding or auto_padding(n)
        self.side = image_side(n, self.padding)
        if self.side % 8:
            raise TrainingDataError(
                f"{n} atoms with padding {self.padding} give an image side of {self.side}, "
                "not a multiple of 8; use padding 0 (automatic)")
        from ase.data import atomic_numbers

        self._z = np.array([atomic_numbers[s] for s in template.species])
        self._off = HEADER_LINES + self.padding
        self._blocks = species_blocks(template.species)
        common = {"heads": cfg.heads, "dim_head": cfg.dim_head, "ff_mult": cfg.ff_mult,
                  "groups": cfg.groups}
        self._base_side = min(cfg.base_size, self.side)
        self.base = UNet(4, cfg.base_dim, cfg.base_dim_mults, cfg.base_resnet_blocks,
                         cfg.base_attns, cfg.base_cross_attns, cfg.base_linear_attn,
                         **common).to(self._dev)
        if self._base_side % self.base.side_multiple:
            raise TrainingDataError(f"base_size {self._base_side} is not a multiple of "
                                    f"{self.base.side_multiple}")
        self.cascade = self.side > self._base_side
        mods = {"base": self.base, "base_ema": self._ema(self.base),
                "base_best": BestWeights(self.base)}
        if self.cascade:
            self.sr = UNet(4, cfg.sr_dim, cfg.sr_dim_mults, cfg.sr_resnet_blocks, cfg.sr_attns,
                           cfg.sr_cross_attns, cfg.sr_linear_attn, lowres_cond=True,
                           memory_efficient=True, **common).to(self._dev)
            if self.side % self.sr.side_multiple:
                raise TrainingDataError(f"image side {self.side} is not a multiple of "
                                        f"{self.sr.side_multiple} (super-resolution U-Net)")
            mods.update({"sr": self.sr, "sr_ema": self._ema(self.sr),
                         "sr_best": BestWeights(self.sr)})
        self._mods = mods
        self.scaler: dict | None = None
        self._noise = torch.Generator(device=self._dev)
        self._noise.manual_seed(cfg.seed)

    def _ema(self, net):
        c = self.config
        return EMA(net, c.ema_beta, c.ema_after, c.ema_every, c.ema_power).to(self._dev)

    def modules(self) -> dict:
        return self._mods

    # the scaler is data: kept with the weights (as tensors, for weights_only loading)
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["scaler"] = torch.tensor([self.scaler[k] for k in SCALER_KEYS],
                                       dtype=torch.float64)
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        lim = state.pop("scaler").tolist()
        self.scaler = dict(zip(SCALER_KEYS, lim, strict=True))
        super().load_state_dict(state)

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

    # ------------------------------------------------------------------ data
    def images(self, s: StructureSet) -> np.ndarray:
        """The (M, 4, L, L) CrysTens images of a structure set, in [0, 1]."""
        return encode(s.wrapped().frac, self._z, self.scaler, self.padding)

    def prepare_data(self, train: StructureSet, val: StructureSet | None) -> None:
        frac = train.wrapped().frac
        self.scaler = fit_scaler(frac, self._z)
        self._train = torch.as_tensor(encode(frac, self._z, self.scaler, self.padding),
                                      device=self._dev)
        self._val = None
        if val is not None and len(val):
            self._val = torch.as_tensor(self.images(val), device=self._dev)
        self._n_train = len(self._train)
        self._per_epoch = math.ceil(len(self._train) / self.config.batch_size)
        self._epoch = 0

    def _permute(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = len(x)
        perm = torch.cat([a + torch.argsort(torch.rand((b, e - a), generator=gen,
                                                       device=self._dev), dim=1)
                          for _, a, e in self._blocks], 1)
        return permute_images(x, perm, self._off)

    def losses(self, x01: torch.Tensor, gen: torch.Generator) -> dict:
        """{"base": ..., "sr": ...}: each U-Net's min-SNR diffusion loss on one batch."""
        g = self.config.min_snr_gamma
        x = x01 * 2 - 1
        small = resize_nearest(x, self._base_side)
        out = {"base": diffusion_loss(self.base, small, gen, gamma=g)}
        if self.cascade:
            lowres = resize_nearest(small, self.side)
            out["sr"] = diffusion_loss(self.sr, x, gen, gamma=g, lowres=lowres)
        return out

    def train_step(self, items: np.ndarray, batch_index: int) -> dict:
        x = self._train[torch.as_tensor(items, device=self._dev)]
        if self.config.permute_augment:
            x = self._permute(x, self._noise)
        stats = {}
        for name, loss in self.losses(x, self._noise).items():
            opt, net = self.optimizers[name], self._mods[name]
            if torch.isfinite(loss):
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self._mods[f"{name}_ema"].update(net)
                stats[f"{name}_loss"] = (loss.detach(), len(items))
        cfg = self.config
        if (batch_index == self._per_epoch - 1 and self._val is not None and cfg.val_every
                and (self._epoch + 1) % cfg.val_every == 0):
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
        """(n, 4, L, L) generated images in [0, 1] (see _sampler for the weights;
        `sample_steps` steps per stage, sample_batch_size at a time)."""
        cfg = self.config
        g = torch.Generator().manual_seed(seed)
        out = []
        for start in range(0, n, cfg.sample_batch_size):
            b = min(cfg.sample_batch_size, n - start)
            kw = {"percentile": cfg.threshold_percentile}
            x = sample_images(self._sampler("base"), (b, 4, self._base_side, self._base_side),
                              cfg.sample_steps, g, self._dev, **kw)
            if self.cascade:
                low = resize_nearest(x, self.side)
                x = sample_images(self._sampler("sr"), (b, 4, self.side, self.side),
                                  cfg.sample_steps, g, self._dev, lowres=low,
                                  lowres_noise_level=cfg.lowres_noise_level, **kw)
            out.append(((x + 1) / 2).cpu())
        return torch.cat(out).numpy()

    def _sampler(self, unet: str):
        """The weights a U-Net samples with: its best EMA snapshot (sample_weights best, once
        a validation ran) or its last EMA weights."""
        best = self._mods[f"{unet}_best"]
        if self.config.sample_weights == "best" and best.filled:
            return best.weights
        return self._mods[f"{unet}_ema"].shadow

    def _sample_frac(self, n: int, seed: int):
        """Generate images and reconstruct them; images with NaN are failed structures and
        are left out (the bench counts them against n)."""
        frac, stats = decode(self.sample_images(n, seed), self.scaler, self.padding, self._z)
        ok = np.isfinite(frac).all(axis=(1, 2))
        return frac[ok], {f"crystens_{k}": v[ok] for k, v in stats.items()}

    def reconstruct(self, images) -> tuple[np.ndarray, dict]:
        """Coordinates and statistics of given (B, 4, L, L) images in [0, 1]."""
        return decode(images, self.scaler, self.padding, self._z)
