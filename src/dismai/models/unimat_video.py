"""UniMat's representation as Dismai-Bench used it: a structure as a "video" of one frame per
atom (spec/models.md §4.1, §4.3).

* Frames are the atoms in species-block order (the template's order).
* Each frame is a G x G element grid with 3 channels: the pixel of the atom's element
  holds its fractional (x, y, z), min-max scaled to [0, 1] with the training set's limits;
  every other pixel is -1 ("absent"). The data range is [-1, 1].
* The grid is a periodic-table layout cropped to the dataset's elements. The published
  element positions live only in the unpublished param.json (spec §9.3); the paper states
  that every dataset used 4 x 4 frames (Dismai-Bench §4.2.4), so we choose a layout that
  gives 4 x 4 for all six datasets: in UniMat's 9 x 18 table (periods 1-7, then lanthanide
  and actinide rows), keep the rows that hold one of the dataset's elements and the group
  columns that do, in table order, then merge neighbouring columns whenever no kept row has
  an element in both (greedily, left to right), and place the result at the top left of
  the smallest square whose side is a multiple of 4 (the 3D U-Net halves the grid twice).
  Within every period the elements stay in table order and groups never swap order, so
  chemically close elements stay on neighbouring pixels, which is what UniMat's layout is
  for. The alloys (Cr, Fe, Ni: period 4, groups 6, 8, 10; nothing to merge) give one row of
  three; a-Si one pixel; the interface (Li, O / Cl / Sc, Co) rows 2-4 in two columns: Li
  and Sc, then O, Cl and Co.

Reconstruction, as the published converter does it: per atom, round the frame, blank the
ground-truth pixel and call the species correct only if every other pixel still has a
channel equal to -1; a structure is kept only if all its atoms are correct, with the
coordinates read (unrounded) from the ground-truth pixels and un-scaled.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dismai.errors import InputError, StructureError

__all__ = ["ElementGrid", "element_grid", "fit_scaler", "encode", "decode", "ABSENT"]

ABSENT = -1.0


def _period_group(symbol: str) -> tuple[int, int]:
    """Row and column (1-based) of an element in UniMat's 9 x 18 periodic table: periods 1-7,
    then the lanthanides (row 8) and actinides (row 9) in columns 3-17."""
    from ase.data import atomic_numbers

    z = atomic_numbers.get(symbol, 0)
    if not 1 <= z <= 118:
        raise StructureError(f"unknown element {symbol!r}")
    for row, (first, last) in ((8, (57, 71)), (9, (89, 103))):
        if first <= z <= last:
            return row, z - first + 3
    starts = [1, 3, 11, 19, 37, 55, 87, 119]  # first Z of each period
    period = max(i + 1 for i, s in enumerate(starts) if z >= s)
    pos = z - starts[period - 1]  # 0-based position within the period
    if period == 1:
        return 1, 1 if z == 1 else 18
    if period in (2, 3):
        return period, pos + 1 if pos < 2 else pos + 11
    if period in (4, 5):
        return period, pos + 1
    return period, pos + 1 if pos < 2 else pos - 13  # 6, 7: after the f-block (14 + 1)


@dataclasses.dataclass(frozen=True)
class ElementGrid:
    """The side G and each element's (row, column) pixel."""

    side: int
    pixels: dict[str, tuple[int, int]]

    def pixel_index(self, species) -> np.ndarray:
        """(N, 2) grid pixel of every atom of a species list."""
        try:
            return np.array([self.pixels[s] for s in species], dtype=np.int64)
        except KeyError as exc:
            raise StructureError(f"element {exc.args[0]} is not on the element grid "
                                 f"({', '.join(self.pixels)})") from None


def element_grid(elements, multiple: int = 4, side: int = 0) -> ElementGrid:
    """The cropped, column-merged periodic-table layout of `elements` (see the module doc)
    on a side x side grid (0: the smallest multiple of `multiple` that holds it)."""
    elements = sorted(set(elements), key=lambda e: _period_group(e))
    if not elements:
        raise InputError("an element grid needs at least one element")
    pg = {e: _period_group(e) for e in elements}
    rows = sorted({p for p, _ in pg.values()})
    columns: list[set[int]] = []  # merged group columns, each the set of rows it fills
    col_of_group: dict[int, int] = {}
    for g in sorted({g for _, g in pg.values()}):
        used = {p for p, gg in pg.values() if gg == g}
        if not columns or columns[-1] & used:
            columns.append(set())
        columns[-1] |= used
        col_of_group[g] = len(columns) - 1
    need = multiple * math.ceil(max(len(rows), len(columns)) / multiple)
    if side and (side < max(len(rows), len(columns)) or side % multiple):
        raise StructureError(
            f"a {side} x {side} element grid cannot hold {', '.join(elements)} "
            f"({len(rows)} rows x {len(columns)} columns); use a multiple of {multiple} "
            f">= {need}, or 0 (automatic)")
    return ElementGrid(side or need,
                       {e: (rows.index(p), col_of_group[g]) for e, (p, g) in pg.items()})


def fit_scaler(frac: np.ndarray) -> np.ndarray:
    """(3, 2) min and max of x, y, z over the training structures (scaler.json)."""
    f = frac.reshape(-1, 3)
    return np.stack([f.min(0), f.max(0)], 1).astype(np.float64)


def _span(scaler: np.ndarray) -> np.ndarray:
    span = scaler[:, 1] - scaler[:, 0]
    return np.where(span > 0, span, 1.0)


def encode(frac: np.ndarray, pixels: np.ndarray, side: int, scaler: np.ndarray) -> np.ndarray:
    """(B, N, 3) fractional coordinates -> (B, 3, N, G, G) videos in [-1, 1] (float32)."""
    frac = np.asarray(frac, dtype=np.float64)
    b, n, _ = frac.shape
    video = np.full((b, 3, n, side, side), ABSENT, dtype=np.float32)
    scaled = (frac - scaler[:, 0]) / _span(scaler)  # (B, N, 3)
    atoms = np.arange(n)
    video[:, :, atoms, pixels[:, 0], pixels[:, 1]] = scaled.transpose(0, 2, 1)
    return video


def decode(videos: np.ndarray, pixels: np.ndarray, scaler: np.ndarray):
    """(B, 3, N, G, G) generated videos -> (frac (B, N, 3), kept (B,), per-atom correct
    (B, N)).  An atom's species is correct when, after rounding the frame and blanking its
    ground-truth pixel, every pixel has a channel equal to -1; a structure is kept when all
    its atoms are.  NaN frames are never correct."""
    v = np.asarray(videos, dtype=np.float64)
    if v.ndim != 5 or v.shape[1] != 3 or v.shape[2] != len(pixels):
        raise InputError(f"UniMat videos must have shape (B, 3, {len(pixels)}, G, G), got "
                         f"{v.shape}")
    atoms = np.arange(len(pixels))
    rounded = np.round(v)
    rounded[:, :, atoms, pixels[:, 0], pixels[:, 1]] = ABSENT
    correct = (rounded == ABSENT).any(axis=1).all(axis=(2, 3))  # (B, N)
    correct &= np.isfinite(v).all(axis=(1, 3, 4))
    coords = v[:, :, atoms, pixels[:, 0], pixels[:, 1]].transpose(0, 2, 1)  # (B, N, 3)
    frac = coords * _span(scaler) + scaler[:, 0]
    return frac, correct.all(axis=1), correct
