"""The masked-atom model's corruption operators: the vectorised apply equals a loop over
crystals on the same random draws, the published off-by-one is kept only on request,
species masking masks whole elements, position noise follows d_min and wraps, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dismai.errors import StructureError
from dismai.models.ssl_corruption import (
    AtomBatch,
    MaskDraw,
    add_position_noise,
    apply_masking,
    apply_noise,
    draw_masking,
    draw_noise,
    mask_atoms,
    min_incell_distance,
)
from dismai.testing import toy_crystals


@pytest.fixture(scope="module")
def batch():
    crystals = [c for c in toy_crystals(12, seed=4, max_atoms=9) if c.n_atoms >= 2]
    return AtomBatch.from_crystals(crystals)


def _loop_mask(b: AtomBatch, draw: MaskDraw, ratio: float, as_coded: bool) -> np.ndarray:
    """Crystal by crystal, as the published mask_graph_batch does it."""
    numbers, mask, start, u = b.numbers.numpy(), [], 0, draw.uniforms.numpy()
    used = 0
    for n in b.natoms.tolist():
        z = numbers[start:start + n]
        hi = n - 1 if as_coded else n
        m = np.zeros(n, bool)
        if draw.species:
            m[z == z[int(np.floor(u[used] * hi))]] = True
            used += 1
        else:
            k = math.ceil(ratio * n)
            for j in range(k):
                m[int(np.floor(u[used + j] * hi))] = True
            used += k
        mask.append(m)
        start += n
    assert used == len(u)
    return np.concatenate(mask)


@pytest.mark.parametrize("as_coded", [False, True])
@pytest.mark.parametrize("species_prob", [0.0, 1.0])
def test_vectorised_masking_equals_the_loop(batch, as_coded, species_prob):
    for seed in range(5):
        draw = draw_masking(batch.natoms, torch.Generator().manual_seed(seed), 0.15,
                            species_prob)
        masked, mask = apply_masking(batch.numbers, batch.natoms, draw, 0.15, as_coded)
        assert np.array_equal(mask.numpy(), _loop_mask(batch, draw, 0.15, as_coded))
        assert (masked[mask] == 0).all() and torch.equal(masked[~mask], batch.numbers[~mask])


def test_species_masking_masks_whole_elements_and_random_masking_at_most_15_percent(batch):
    g = torch.Generator().manual_seed(0)
    _, mask = mask_atoms(batch.numbers, batch.natoms, g, species_prob=1.0)
    start = 0
    for n in batch.natoms.tolist():
        z, m = batch.numbers[start:start + n], mask[start:start + n]
        assert m.any() and len(set(z[m].tolist())) == 1  # one element ...
        assert not (z[~m] == z[m][0]).any()  # ... and all of its atoms
        start += n
    _, mask = mask_atoms(batch.numbers, batch.natoms, g, species_prob=0.0)
    counts = torch.zeros(len(batch.natoms), dtype=torch.long).index_add_(
        0, batch.batch, mask.long())
    assert (counts >= 1).all() and (counts <= torch.ceil(0.15 * batch.natoms)).all()


def test_the_published_off_by_one_never_masks_the_last_atom(batch):
    last = batch.offsets + batch.natoms - 1
    hits = {False: 0, True: 0}
    for seed in range(200):
        for as_coded in (False, True):
            _, mask = mask_atoms(batch.numbers, batch.natoms,
                                 torch.Generator().manual_seed(seed), species_prob=0.0,
                                 as_coded=as_coded)
            hits[as_coded] += int(mask[last].sum())
    assert hits[True] == 0 and hits[False] > 0


def test_one_coin_per_batch():
    natoms = torch.tensor([4, 6])
    species = [draw_masking(natoms, torch.Generator().manual_seed(s)).species
               for s in range(400)]
    assert 0.4 < np.mean(species) < 0.6


def test_position_noise_scale_wrap_and_fractional_target(batch):
    dmin = min_incell_distance(batch.pos, batch.natoms)
    start = 0
    for b, n in enumerate(batch.natoms.tolist()):  # brute force, no periodic images
        p = batch.pos[start:start + n]
        d = torch.cdist(p, p) + torch.eye(n) * 1e9
        assert float(dmin[b]) == pytest.approx(float(d.min()))
        start += n
    unit = draw_noise(len(batch.numbers), torch.Generator().manual_seed(1), "uniform")
    wrapped, target = apply_noise(batch, unit, 0.2)
    owner = batch.batch
    inv = torch.linalg.inv(batch.cell)[owner]
    frac = torch.einsum("ti,tij->tj", wrapped, inv)
    assert (frac >= 0).all() and (frac < 1).all()
    noise = torch.einsum("ti,tij->tj", target, batch.cell[owner])  # back to Cartesian
    assert (noise.abs() <= 0.2 * dmin[owner][:, None] + 1e-12).all()
    # the wrapped position is the noisy one up to a lattice vector
    shift = torch.einsum("ti,tij->tj", batch.pos + noise - wrapped, inv)
    assert torch.allclose(shift, torch.round(shift), atol=1e-9)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = add_position_noise(batch, g1), add_position_noise(batch, g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # deterministic under a seed


def test_one_atom_crystals_are_refused():
    b = AtomBatch(torch.tensor([8, 8, 3]), torch.rand(3, 3, dtype=torch.float64),
                  torch.eye(3, dtype=torch.float64).expand(2, 3, 3) * 4, torch.tensor([2, 1]))
    with pytest.raises(StructureError, match="crystal 1 has 1 atom"):
        mask_atoms(b.numbers, b.natoms, torch.Generator().manual_seed(0))
    with pytest.raises(StructureError, match="at least 2 atoms"):
        add_position_noise(b, torch.Generator().manual_seed(0))
