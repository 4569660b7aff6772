"""The CrysTens paper's diffusion model on the original (4, 64, 64) image of general crystals.

The paper's best model (Tables 1 and 2): an Imagen cascade, a base U-Net at 32 x 32 on the
nearest downsample and a super-resolution U-Net at 64 x 64 (spec models.md §2.4; paper
Appendix B.3).  It runs on the same cascade as the Dismai-Bench form
(`dismai.models.image_cascade`), with the published sizes:

* base: dim 256, dim_mults (1, 2, 4), 3 ResNet blocks per level, linear attention at level
  1, full self-attention and cross-attention at levels 2 and 3;
* super-resolution: dim 256, dim_mults (1, 2, 4), ResNet blocks (2, 4, 8), attention and
  cross-attention at level 3 only, the memory-efficient layout;
* Adam 1e-4 (0.9, 0.99), EMA, batch 4, 1000 sampling steps (Imagen's default timesteps).

Where it differs from the published script: both U-Nets train side by side instead of one
after the other (the objectives are the same); an epoch visits every training crystal once
(the script draws 250,000 batches with replacement); there is no validation split, so it
samples with the last EMA weights (the script saved whenever the previous step's training
loss was the lowest so far, a noisy rule).  Images use the "avg_std" normalisation on both
sides and the channel-first layout (crystens_original).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dismai.crystals import CrystalSet
from dismai.models.crystal_model import CrystalModel
from dismai.models.crystens_original import (
    MAX_ATOMS,
    SIDE,
    ReconstructionKeys,
    encode_all,
    reconstruct_images,
)
from dismai.models.image_cascade import CascadeConfig, ImageCascade, _levels
from dismai.models.training import PermutedEpochs, select_device

__all__ = ["CrysTensDiffusion", "CrysTensDiffusionConfig"]


@dataclasses.dataclass
class CrysTensDiffusionConfig(ReconstructionKeys, CascadeConfig):
    """Defaults = train_diffusion_model.py (spec models.md §2.4)."""

    batch_size: int = 4
    epochs: int = 264  # 250,000 steps at batch 4 on Perov-5's 3787 validation crystals
    base_size: int = 32
    base_dim: int = 256
    base_attns: list[bool] = _levels([False, True, True])
    base_cross_attns: list[bool] = _levels([False, True, True])
    base_linear_attn: bool = True
    sr_dim: int = 256
    sr_resnet_blocks: list[int] = _levels([2, 4, 8])
    sr_attns: list[bool] = _levels([False, False, True])
    sr_cross_attns: list[bool] = _levels([False, False, True])
    sample_steps: int = 1000
    val_every: int = 0
    sample_weights: str = "last"

    RESUMABLE_KEYS = CascadeConfig.RESUMABLE_KEYS | ReconstructionKeys.RECONSTRUCTION_KEYS

    def validate(self) -> None:
        super().validate()
        self.validate_reconstruction()


class CrysTensDiffusion(PermutedEpochs, ImageCascade, CrystalModel):
    """Imagen-style cascade (32 -> 64) on original CrysTens images (<= 52 atoms)."""

    name = "crystens-diffusion"
    Config = CrysTensDiffusionConfig
    max_atoms = MAX_ATOMS

    def _build(self, data) -> None:
        super()._build(data)
        self._dev = select_device(self.config.device)
        self._build_cascade(SIDE)

    @staticmethod
    def images(crystals: CrystalSet) -> np.ndarray:
        return encode_all(crystals)

    def prepare_data(self, train: CrystalSet, val: CrystalSet | None) -> None:
        self._set_images(self.images(train), self.images(val) if val else None)

    def _sample_crystals(self, n: int, seed: int):
        return reconstruct_images(self.sample_images(n, seed), self.config)
