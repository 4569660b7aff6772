"""UniMat's video representation: the element grid, the lossless round trip on training
data, and the published all-or-nothing species rule on hand-made frames."""

from __future__ import annotations

import numpy as np
import pytest

from dismai.errors import InputError, StructureError
from dismai.models.unimat_video import ABSENT, decode, element_grid, encode, fit_scaler
from dismai.testing import requires_dataset


def test_element_grids_of_the_dismai_datasets():
    alloy = element_grid(["Fe", "Ni", "Cr"])  # period 4, groups 6, 8, 10
    assert alloy.side == 4 and alloy.pixels == {"Cr": (0, 0), "Fe": (0, 1), "Ni": (0, 2)}
    assert element_grid(["Si"]).side == 4
    # periods 2-4, groups 1, 3, 9, 16, 17: merged into two columns, so 4 x 4 frames as
    # the paper used for every dataset
    interface = element_grid(["Li", "Sc", "Co", "Cl", "O"])
    assert interface.side == 4
    assert interface.pixels == {"Li": (0, 0), "O": (0, 1), "Cl": (1, 1), "Sc": (2, 0),
                                "Co": (2, 1)}
    # columns merge only where no period fills both: Na (group 1) and Mg (2) stay apart
    assert element_grid(["Na", "Mg", "Cl"]).pixels == {"Na": (0, 0), "Mg": (0, 1),
                                                       "Cl": (0, 2)}
    assert element_grid(["Fe", "Ni", "Cr"], side=8).side == 8
    with pytest.raises(StructureError, match="cannot hold"):
        element_grid(["H", "Li", "Na", "K", "Rb"], side=4)  # five rows
    # lanthanides have their own row, so La and Ce do not share a pixel
    assert len(set(element_grid(["La", "Ce", "Hf"]).pixels.values())) == 3
    with pytest.raises(StructureError, match="not on the element grid"):
        alloy.pixel_index(["Fe", "Si"])


def test_round_trip_is_lossless(toy):
    grid = element_grid(toy.species)
    pix = grid.pixel_index(toy.species)
    frac = toy.wrapped().frac
    sc = fit_scaler(frac)
    video = encode(frac, pix, grid.side, sc)
    assert video.shape == (len(toy), 3, toy.n_atoms, grid.side, grid.side)
    assert video.min() == ABSENT and video.max() <= 1.0
    # exactly one pixel per frame is present
    assert ((video != ABSENT).any(1).sum((2, 3)) == 1).all()
    back, kept, correct = decode(video, pix, sc)
    assert kept.all() and correct.all()
    assert np.abs(back - frac).max() < 1e-6  # float32 storage


@requires_dataset("a-si-64")
def test_round_trip_on_a_si_64():
    from dismai.datasets import load

    s = load("a-si-64").train[:20]
    grid = element_grid(s.species)
    pix = grid.pixel_index(s.species)
    frac = s.wrapped().frac
    sc = fit_scaler(frac)
    back, kept, _ = decode(encode(frac, pix, grid.side, sc), pix, sc)
    assert kept.all() and np.abs(back - frac).max() < 1e-6


def test_species_rule_is_all_or_nothing():
    grid = element_grid(["Fe", "Ni", "Cr"])
    pix = grid.pixel_index(["Fe", "Ni"])
    sc = np.array([[0.0, 1.0]] * 3)
    video = encode(np.full((3, 2, 3), 0.25), pix, grid.side, sc)
    video[1, :, 0, 0, 0] = 0.6  # atom 0 (Fe) also lights the Cr pixel: wrong species
    video[2, 0, 1, 3, 3] = 0.4  # one channel of an empty pixel rounds to 0, the others
    #                             stay -1: still absent, so atom 1 is correct
    video[2, 1, 0, 0, 2] = -0.7  # rounds to -1 anyway
    _, kept, correct = decode(video, pix, sc)
    assert kept.tolist() == [True, False, True]
    assert correct.tolist() == [[True, True], [False, True], [True, True]]
    video[0, :, 1, 2, 2] = 0.49  # all three channels of an empty pixel round to 0
    _, kept, correct = decode(video, pix, sc)
    assert not kept[0] and correct[0].tolist() == [True, False]
    nan = video.copy()
    nan[2, 0, 0, 1, 1] = np.nan
    assert not decode(nan, pix, sc)[1][2]
    with pytest.raises(InputError, match="shape"):
        decode(video[:, :2], pix, sc)
