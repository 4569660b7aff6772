"""k nearest periodic neighbours in plain torch, with gradients only where they are needed.

CryinGAN's bond-distance features are the k smallest distances from each atom to the points of
the 3x3x3 block of periodic images (the published code uses PyTorch3D ``knn_points`` on 27N
points).  Choosing the neighbours is a discrete decision with no gradient, so we choose them
under ``no_grad`` and recompute only the chosen k distances with autograd: the values and
gradients are those of the 27-image search, at a fraction of the memory and time.

Choosing is cheap too: if an atom's k-th neighbour distance, measured over the
nearest-in-fractional-space image of every other atom, is below half the smallest
perpendicular width w of the cell, then no other image can be closer (a ball of radius w/2
around an atom lies inside the fractional unit box centred on it), so the (B, N, N) search is
exact for that atom.  The few atoms where it is not (isolated atoms, tiny cells, N <= k) get
the full 27-image search.
"""

from __future__ import annotations

import itertools

import torch

from dismai.errors import InputError

__all__ = ["periodic_knn", "neighbour_distances", "min_width", "IMAGE_SHIFTS"]

#: The 27 integer image shifts of the 3x3x3 block, (0, 0, 0) first then x outer, z inner
#: (the order of the published code; only matters for ties).
IMAGE_SHIFTS = torch.tensor(
    [(0, 0, 0)] + [s for s in itertools.product((-1, 0, 1), repeat=3) if s != (0, 0, 0)],
    dtype=torch.float64,
)


def min_width(lattice: torch.Tensor) -> float:
    """Smallest distance between opposite faces of the cell (rows = cell vectors)."""
    lat = lattice.detach().double().cpu()
    vol = torch.abs(torch.linalg.det(lat))
    widths = [vol / torch.linalg.norm(torch.linalg.cross(lat[i - 2], lat[i - 1])) for i in range(3)]
    return float(min(widths))


def _safe_norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm whose gradient stays finite when two atoms coincide.

    The published code takes sqrt of squared distances, so a coincident pair gives an
    infinite gradient; clamping the square below at 1e-12 Å² gives a zero gradient there
    instead and changes no distance above 1e-6 Å.
    """
    return torch.sqrt(torch.clamp_min((v * v).sum(-1), 1e-12))


@torch.no_grad()
def _select_min_image(frac: torch.Tensor, lattice: torch.Tensor, k: int):
    """Candidates from the nearest-in-fractional-space image of every other atom."""
    diff = frac[:, None, :, :] - frac[:, :, None, :]  # (B, N_i, N_j, 3): r_j - r_i
    diff.sub_(torch.round(diff))
    cart = diff @ lattice
    d2 = cart.square_().sum(-1)
    d2.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    d2k, idx = torch.topk(d2, k, dim=-1, largest=False, sorted=True)
    b, n, _ = frac.shape
    nbr = torch.gather(frac, 1, idx.reshape(b, n * k, 1).expand(b, n * k, 3)).reshape(b, n, k, 3)
    shifts = -torch.round(nbr - frac[:, :, None, :])
    return d2k, idx, shifts


@torch.no_grad()
def _select_27_images(frac: torch.Tensor, lattice: torch.Tensor, k: int, bi, ii):
    """Exhaustive 3x3x3-image search for the rows (structure bi, atom ii): exact for any cell.

    Only rows the cheap search could not settle come here (isolated atoms, tiny cells), in
    chunks that bound memory to about 16 M numbers.
    """
    n = frac.shape[1]
    if 27 * n - 1 < k:
        raise InputError(f"cannot find {k} neighbours among {27 * n - 1} periodic images")
    images = IMAGE_SHIFTS.to(frac)  # (27, 3)
    chunk = max(1, (1 << 24) // (27 * n * 3))
    out_d2, out_idx, out_shift = [], [], []
    for start in range(0, len(bi), chunk):
        b, i = bi[start:start + chunk], ii[start:start + chunk]
        rows = torch.arange(len(b), device=frac.device)
        diff = frac[b][:, None] + images[None, :, None, :] - frac[b, i][:, None, None, :]
        cart = diff @ lattice  # (R, 27, N, 3)
        d2 = cart.square_().sum(-1)
        d2[rows, 0, i] = float("inf")  # the atom itself, unshifted
        d2k, flat = torch.topk(d2.reshape(len(b), 27 * n), k, dim=-1, largest=False)
        out_d2.append(d2k)
        out_idx.append(flat % n)
        out_shift.append(images[flat // n])
    return torch.cat(out_d2), torch.cat(out_idx), torch.cat(out_shift)


def periodic_knn(frac: torch.Tensor, lattice: torch.Tensor, k: int):
    """Choose the k nearest periodic neighbours of every atom (no gradient).

    frac: (B, N, 3) fractional coordinates (expected in [0, 1), e.g. wrapped data or sigmoid
    outputs); lattice: (3, 3) rows = cell vectors.  Returns (dist, index, shift): distances
    (B, N, k) ascending, neighbour atom indices (B, N, k) and integer image shifts (B, N, k, 3)
    such that neighbour position = frac[index] + shift.  The atom itself (unshifted) is
    excluded; its own images are legitimate neighbours in tiny cells.
    """
    if frac.ndim != 3 or frac.shape[-1] != 3:
        raise ValueError(f"frac must have shape (B, N, 3), got {tuple(frac.shape)}")
    lattice = lattice.to(frac)
    frac = frac.detach()
    b, n, _ = frac.shape
    if n - 1 >= k:
        d2k, idx, shifts = _select_min_image(frac, lattice, k)
        unsettled = d2k[..., -1] >= (0.5 * min_width(lattice)) ** 2 * (1 - 1e-6)
        if not bool(unsettled.any()):
            return d2k.sqrt(), idx, shifts
    else:
        d2k = frac.new_empty(b, n, k)
        idx = torch.empty(b, n, k, dtype=torch.long, device=frac.device)
        shifts = frac.new_empty(b, n, k, 3)
        unsettled = torch.ones(b, n, dtype=torch.bool, device=frac.device)
    rows = unsettled.nonzero(as_tuple=True)
    d2k[rows], idx[rows], shifts[rows] = _select_27_images(frac, lattice, k, *rows)
    return d2k.sqrt(), idx, shifts


def neighbour_distances(
    frac: torch.Tensor, lattice: torch.Tensor, index: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """Differentiable distances (B, N, k) to already-chosen neighbours (index, shift)."""
    b, n, k = index.shape
    nbr = torch.gather(frac, 1, index.reshape(b, n * k, 1).expand(b, n * k, 3)).reshape(b, n, k, 3)
    vec = (nbr + shift.to(frac) - frac[:, :, None, :]) @ lattice.to(frac)
    return _safe_norm(vec)
