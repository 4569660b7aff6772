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

import numpy as np
import torch

from dismai.errors import InputError, TrainingDataError
from dismai.models.config import _non_negative
from dismai.models.image_cascade import CascadeConfig, ImageCascade
from dismai.models.training import PermutedEpochs, TrainableModel, select_device
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
@dataclasses.dataclass
class CrysTensConfig(CascadeConfig):
    """Defaults = Dismai-Bench's train_imagen.py (spec/models.md §3.2-3.4)."""

    padding: int = 0  # 0: the smallest that makes L a multiple of 8
    permute_augment: bool = False  # relabel atoms within species blocks every step

    def validate(self) -> None:
        super().validate()
        _non_negative(self, "padding")


# ---------------------------------------------------------------------------- model
class CrysTens(PermutedEpochs, ImageCascade, TrainableModel):
    """CrysTens (Dismai-Bench fixed-lattice form) with its two-U-Net cascade."""

    name = "crystens"
    Config = CrysTensConfig
    min_atoms = 2

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
        self._build_cascade(self.side)
        self.scaler: dict | None = None

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

    # ------------------------------------------------------------------ data
    def images(self, s: StructureSet) -> np.ndarray:
        """The (M, 4, L, L) CrysTens images of a structure set, in [0, 1]."""
        return encode(s.wrapped().frac, self._z, self.scaler, self.padding)

    def prepare_data(self, train: StructureSet, val: StructureSet | None) -> None:
        frac = train.wrapped().frac
        self.scaler = fit_scaler(frac, self._z)
        self._set_images(encode(frac, self._z, self.scaler, self.padding),
                         self.images(val) if val is not None and len(val) else None)

    def _permute(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = len(x)
        perm = torch.cat([a + torch.argsort(torch.rand((b, e - a), generator=gen,
                                                       device=self._dev), dim=1)
                          for _, a, e in self._blocks], 1)
        return permute_images(x, perm, self._off)

    def train_step(self, items: np.ndarray, batch_index: int) -> dict:
        x = self._train[torch.as_tensor(items, device=self._dev)]
        if self.config.permute_augment:
            x = self._permute(x, self._noise)
        return self.cascade_step(x, batch_index)

    def _sample_frac(self, n: int, seed: int):
        """Generate images and reconstruct them; images with NaN are failed structures and
        are left out (the bench counts them against n)."""
        frac, stats = decode(self.sample_images(n, seed), self.scaler, self.padding, self._z)
        ok = np.isfinite(frac).all(axis=(1, 2))
        return frac[ok], {f"crystens_{k}": v[ok] for k, v in stats.items()}

    def reconstruct(self, images) -> tuple[np.ndarray, dict]:
        """Coordinates and statistics of given (B, 4, L, L) images in [0, 1]."""
        return decode(images, self.scaler, self.padding, self._z)
