"""The masked-atom model on a fixed template (`ssl`, our extension): the model contract,
composition-constrained unmasking, species completion, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dismai.errors import ConfigError, InputError
from dismai.models import create_model
from dismai.models.ssl_template import complete_species, constrained_unmask
from dismai.testing import check_generative_model, toy_structures

TINY = {"epochs": 2, "batch_size": 3, "layers": 1, "channels": 8, "hidden": 8, "heads": 2,
        "alpha_channels": 4, "value_channels": 4, "ffn_hidden": 8, "lmax": 1, "mmax": 1,
        "edge_channels": 8, "n_distance": 8, "activation": "gate", "sample_steps": 3,
        "sample_batch_size": 3, "lr": 1e-3, "checkpoint_minutes": 0.0, "n_sample_dump": 2,
        "device": "cpu", "seed": 2}


@pytest.fixture(scope="module")
def toy():
    return toy_structures(10, seed=3)


def test_contract(toy, tmp_path):
    check_generative_model("ssl", TINY, toy[:7], tmp_path, val=toy[7:], interrupt_at=2)


def test_unmasking_keeps_the_composition():
    g = torch.Generator().manual_seed(0)
    elements = torch.tensor([24, 26, 28])
    b, n = 5, 12
    logits = torch.randn(b, n, 118, generator=g)
    logits[..., 25] += 5.0  # the network wants iron everywhere
    quota = torch.tensor([[3, 4, 5]]).repeat(b, 1)
    z = torch.zeros((b, n), dtype=torch.long)
    z = constrained_unmask(z, logits, quota, elements, rounds_left=3)
    assert ((z > 0).sum(1) == 4).all()  # a third of 12 per round
    assert (z[z > 0] == 26).all()  # the most confident go first, within iron's quota of 4
    for left in (2, 1):
        z = constrained_unmask(z, logits, quota, elements, rounds_left=left)
    assert (quota == 0).all()
    for row in z:
        assert torch.equal(torch.bincount(row, minlength=29)[[24, 26, 28]],
                           torch.tensor([3, 4, 5]))


def test_species_completion_reports_against_shuffling(toy):
    m = create_model("ssl", {**TINY, "epochs": 1})
    m.fit(toy[:7], toy[7:])
    done, report = complete_species(m, toy, mode="species", seed=1)
    assert done.species == toy.species and done.frac.shape == toy.frac.shape
    assert report["n_masked"] > 0
    # one whole species masked: under the composition it can only come back as itself
    assert report["masked_accuracy"] == report["masked_accuracy_shuffled"] == 1.0
    assert 0 <= report["masked_accuracy_free"] <= 1
    np.testing.assert_allclose(done.frac, toy.wrapped().frac, atol=1e-6)
    done, report = complete_species(m, toy, mode="random", ratio=0.3, seed=1)
    assert report["n_masked"] <= np.ceil(0.3 * toy.n_atoms) * len(toy)
    for key in ("masked_accuracy", "masked_accuracy_free", "masked_accuracy_shuffled"):
        assert 0 <= report[key] <= 1
    # the completed structures hold the same positions, some atoms' species exchanged
    assert np.allclose(np.sort(done.frac.reshape(-1)), np.sort(toy.wrapped().frac.reshape(-1)),
                       atol=1e-6)
    m.config.sample_batch_size = 2  # the network runs in batches: the result is the same
    again, report2 = complete_species(m, toy, mode="random", ratio=0.3, seed=1)
    assert report2 == report and np.array_equal(again.frac, done.frac)
    with pytest.raises(InputError, match="completion mode"):
        complete_species(m, toy, mode="half")


def test_bad_config():
    with pytest.raises(ConfigError, match="sigma_max_ratio"):
        create_model("ssl", {**TINY, "sigma_max_ratio": 0.05})


def test_presets_are_not_confused_with_a_longer_model_name():
    from dismai.models.config import preset_names

    assert preset_names("ssl") == ["cpu", "paper", "quick"]  # not ssl-pretrain's or ssl-gan's
    assert "cpu" in preset_names("ssl-pretrain") and "cpu" in preset_names("ssl-gan")
