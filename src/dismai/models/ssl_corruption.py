"""The corruption operators of the self-supervised masked-atom model (spec/models.md §7.3),
vectorised over a flat batch of crystals.

Pre-training shows the network corrupted crystals and asks it to undo two things:

* **masking**: one coin flip per batch.  Heads ("species masking"): per crystal one random
  atom is drawn and every atom of its element is masked.  Tails ("random masking"): per
  crystal ceil(ratio N) atom indices are drawn with replacement and masked (so at most
  `ratio` of the atoms).  A masked atom gets atomic number 0, the [MASK] token.
* **position noise**: per crystal, d_min is the smallest distance between two of its atoms
  *inside the cell, without periodic images* (as published); every atom moves by Cartesian
  noise of scale sigma_ratio d_min (Gaussian, or uniform in +-sigma_ratio d_min), and the
  positions are wrapped back into the cell.  The target is that noise in fractional
  coordinates (noise @ cell^-1), as published.

The published code draws atom indices from [0, N - 2], so the last atom of a crystal is
never masked (an off-by-one).  `as_coded=True` keeps that; the default draws from
[0, N - 1].  Each operator is split into a *draw* (every random number, from one
generator, in one call per kind) and an *apply* (deterministic), so the vectorised apply
can be checked against a loop over crystals on the same draws
(benchmarks/ssl_speed.py, tests/test_ssl_corruption.py).
"""

from __future__ import annotations

import dataclasses

import torch

from dismai.errors import StructureError

__all__ = ["AtomBatch", "MaskDraw", "n_random_masked", "draw_masking", "apply_masking",
           "mask_atoms",
           "min_incell_distance", "draw_noise", "apply_noise", "add_position_noise",
           "MASK_TOKEN"]

MASK_TOKEN = 0  # atomic number of a masked atom (embedding row 0)


@dataclasses.dataclass
class AtomBatch:
    """Crystals of any size and cell as one flat batch: numbers (T,) atomic numbers,
    pos (T, 3) Cartesian positions in Å, cell (B, 3, 3) with cell vectors as rows,
    natoms (B,).  Atoms of crystal b are rows offsets[b] : offsets[b] + natoms[b]."""

    numbers: torch.Tensor
    pos: torch.Tensor
    cell: torch.Tensor
    natoms: torch.Tensor

    @property
    def batch(self) -> torch.Tensor:
        """(T,) the crystal of every atom."""
        return torch.repeat_interleave(torch.arange(len(self.natoms),
                                                    device=self.natoms.device), self.natoms)

    @property
    def offsets(self) -> torch.Tensor:
        return torch.cumsum(self.natoms, 0) - self.natoms

    @classmethod
    def from_crystals(cls, crystals, dtype=torch.float64) -> AtomBatch:
        """From a CrystalSet (or any sequence of dismai.crystals.Crystal)."""
        return cls(torch.as_tensor([int(z) for c in crystals for z in c.numbers]),
                   torch.cat([torch.as_tensor(c.frac @ c.lattice, dtype=dtype)
                              for c in crystals]),
                   torch.stack([torch.tensor(c.lattice, dtype=dtype) for c in crystals]),
                   torch.as_tensor([c.n_atoms for c in crystals]))


# ---------------------------------------------------------------------------- masking
@dataclasses.dataclass
class MaskDraw:
    """The random numbers of one masking call: species (the batch's coin), and
    uniforms in [0, 1): one per crystal (species masking) or ceil(ratio N) per crystal,
    crystal after crystal (random masking)."""

    species: bool
    uniforms: torch.Tensor


def _index_bound(natoms: torch.Tensor, as_coded: bool) -> torch.Tensor:
    if int(natoms.min()) < 2:
        bad = int(torch.nonzero(natoms < 2)[0])
        raise StructureError(f"crystal {bad} has {int(natoms[bad])} atom(s); masking and "
                             "position noise need at least 2 atoms per crystal")
    return natoms - 1 if as_coded else natoms  # exclusive upper bound of drawn indices


def n_random_masked(natoms: torch.Tensor, ratio: float) -> torch.Tensor:
    """ceil(ratio N) indices drawn per crystal in random masking."""
    return torch.ceil(natoms.double() * ratio).long()


def draw_masking(natoms: torch.Tensor, gen: torch.Generator, ratio: float = 0.15,
                 species_prob: float = 0.5) -> MaskDraw:
    species = bool(torch.rand((), generator=gen) < species_prob)
    count = len(natoms) if species else int(n_random_masked(natoms, ratio).sum())
    return MaskDraw(species, torch.rand((count,), generator=gen, dtype=torch.float64))


def apply_masking(numbers: torch.Tensor, natoms: torch.Tensor, draw: MaskDraw,
                  ratio: float = 0.15, as_coded: bool = False):
    """(masked numbers, (T,) bool mask) for the draw."""
    hi = _index_bound(natoms, as_coded)
    offsets = torch.cumsum(natoms, 0) - natoms
    if draw.species:
        pick = offsets + torch.floor(draw.uniforms * hi).long()  # (B,) one atom each
        batch = torch.repeat_interleave(torch.arange(len(natoms)), natoms)
        mask = numbers == numbers[pick][batch]
    else:
        k = n_random_masked(natoms, ratio)
        idx = torch.repeat_interleave(offsets, k) + torch.floor(
            draw.uniforms * torch.repeat_interleave(hi, k)).long()
        mask = torch.zeros(len(numbers), dtype=torch.bool)
        mask[idx] = True
    return numbers.masked_fill(mask, MASK_TOKEN), mask


def mask_atoms(numbers, natoms, gen, ratio: float = 0.15, species_prob: float = 0.5,
               as_coded: bool = False):
    """Draw and apply one masking (see the module doc)."""
    draw = draw_masking(natoms, gen, ratio, species_prob)
    return apply_masking(numbers, natoms, draw, ratio, as_coded)


# ---------------------------------------------------------------------------- position noise
def min_incell_distance(pos: torch.Tensor, natoms: torch.Tensor) -> torch.Tensor:
    """(B,) smallest distance between two atoms of each crystal, without periodic images
    (the published d_min)."""
    _index_bound(natoms, as_coded=False)
    b, nmax = len(natoms), int(natoms.max())
    offsets = torch.cumsum(natoms, 0) - natoms
    slot = torch.arange(nmax)
    valid = slot[None] < natoms[:, None]  # (B, Nmax)
    idx = (offsets[:, None] + slot[None]).clamp(max=len(pos) - 1)
    p = pos[idx]  # (B, Nmax, 3), padding rows repeat real atoms but are masked below
    d = torch.cdist(p, p)
    pair = valid[:, :, None] & valid[:, None, :] & ~torch.eye(nmax, dtype=torch.bool)[None]
    return d.masked_fill(~pair, float("inf")).reshape(b, -1).min(1).values


def draw_noise(n_atoms_total: int, gen: torch.Generator, kind: str = "gaussian",
               dtype=torch.float64) -> torch.Tensor:
    """(T, 3) unit noise: standard normal, or uniform in [-1, 1)."""
    if kind == "gaussian":
        return torch.randn((n_atoms_total, 3), generator=gen, dtype=dtype)
    if kind == "uniform":
        return torch.rand((n_atoms_total, 3), generator=gen, dtype=dtype) * 2 - 1
    raise ValueError(f"noise kind must be gaussian or uniform, got {kind!r}")


def apply_noise(batch: AtomBatch, unit: torch.Tensor, sigma_ratio: float):
    """(wrapped noisy Cartesian positions, fractional noise target) for the unit noise."""
    owner = batch.batch
    scale = sigma_ratio * min_incell_distance(batch.pos, batch.natoms)
    noise = unit.to(batch.pos.dtype) * scale[owner][:, None]
    inv = torch.linalg.inv(batch.cell)[owner]  # (T, 3, 3)
    frac = torch.einsum("ti,tij->tj", batch.pos + noise, inv)
    frac = frac - torch.floor(frac)
    wrapped = torch.einsum("ti,tij->tj", frac, batch.cell[owner])
    return wrapped, torch.einsum("ti,tij->tj", noise, inv)


def add_position_noise(batch: AtomBatch, gen: torch.Generator, sigma_ratio: float = 0.1,
                       kind: str = "gaussian"):
    """Draw and apply one position noise (see the module doc)."""
    return apply_noise(batch, draw_noise(len(batch.numbers), gen, kind, batch.pos.dtype),
                       sigma_ratio)
