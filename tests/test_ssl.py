"""Masked-atom pre-training (ssl-pretrain): the model contract on general crystals, the
loss terms, the unmasking schedule of the sampler, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dismai.crystals import Crystal, CrystalSet
from dismai.errors import ConfigError, TrainingDataError
from dismai.models import create_model
from dismai.models.ssl import SSLPretrainConfig, _unmask, reconstruction_scores
from dismai.testing import check_generative_model, toy_crystals

TINY = {"epochs": 2, "batch_size": 3, "layers": 1, "channels": 8, "hidden": 8, "heads": 2,
        "alpha_channels": 4, "value_channels": 4, "ffn_hidden": 8, "lmax": 1, "mmax": 1,
        "edge_channels": 8, "n_distance": 8, "activation": "gate", "sample_steps": 2,
        "lr": 1e-3, "checkpoint_minutes": 0.0, "n_sample_dump": 2, "device": "cpu", "seed": 2}


@pytest.fixture(scope="module")
def crystals():
    return CrystalSet([c for c in toy_crystals(16, seed=5) if c.n_atoms >= 2], "toy")


def test_contract(crystals, tmp_path):
    check_generative_model("ssl-pretrain", TINY, crystals[:7], tmp_path, val=crystals[7:],
                           interrupt_at=2)


def test_unmasking_finishes_in_the_last_round():
    logits = torch.randn(7, 118, generator=torch.Generator().manual_seed(0))
    owner = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    natoms = torch.tensor([3, 4])
    z = torch.zeros(7, dtype=torch.long)
    z = _unmask(z, logits, owner, natoms, rounds_left=2)  # half of each crystal, rounded up
    assert (z[:3] > 0).sum() == 2 and (z[3:] > 0).sum() == 2
    # the most confident masked atoms go first
    prob = logits.softmax(-1).max(-1).values
    assert set(torch.nonzero(z[3:] > 0).flatten().tolist()) == \
        set(torch.topk(prob[3:], 2).indices.tolist())
    z = _unmask(z, logits, owner, natoms, rounds_left=1)
    assert (z > 0).all() and torch.equal(z, torch.where(z > 0, z, z))


def test_training_lowers_the_loss_and_scores_against_baselines(crystals, tmp_path):
    m = create_model("ssl-pretrain", {**TINY, "epochs": 30})
    m.fit(crystals[:7], crystals[7:], run_dir=tmp_path)
    rows = np.genfromtxt(tmp_path / "losses.csv", delimiter=",", names=True)
    assert rows["atom_loss"][-5:].mean() < 0.7 * rows["atom_loss"][:2].mean()
    assert np.isfinite(rows["val_masked_accuracy"]).all()
    scores = reconstruction_scores(m, crystals[7:], crystals[:7], seed=1)
    assert set(scores) >= {"masked_accuracy", "masked_accuracy_majority", "position_mse",
                           "position_mse_zero"}
    assert 0 <= scores["masked_accuracy"] <= 1 and scores["position_mse_zero"] > 0


def test_bad_input():
    with pytest.raises(ConfigError, match="mmax"):
        SSLPretrainConfig(lmax=1, mmax=2).validate()
    one = CrystalSet([Crystal(np.eye(3) * 4, [[0, 0, 0]], [8]),
                      Crystal(np.eye(3) * 4, [[0, 0, 0], [0.5, 0.5, 0.5]], [8, 3])])
    m = create_model("ssl-pretrain", TINY)
    with pytest.raises(TrainingDataError, match="crystal 0 has one atom"):
        m.fit(one)


def test_finetune_surgery_keeps_the_backbone_and_drops_the_118_way_output(crystals):
    from dismai.errors import CheckpointError
    from dismai.models.ssl_finetune import evaluate_property, finetune, property_network

    m = create_model("ssl-pretrain", {**TINY, "epochs": 1})
    m.fit(crystals[:7])
    cfg = m.config.backbone()
    net, dropped = property_network(cfg, 1, m)
    assert dropped and all(k.startswith(("head.down.", "vector.")) for k in dropped)
    src = m._sampler().state_dict()
    assert torch.equal(net.state_dict()["blocks.0.attn.conv1.m0.weight"],
                       src["blocks.0.attn.conv1.m0.weight"])  # the backbone came along
    assert property_network(cfg, 2, None)[1] == []
    with pytest.raises(CheckpointError, match="ssl-pretrain model"):
        property_network(cfg, 1, object())
    with pytest.raises(CheckpointError, match="does not fit"):
        property_network(SSLPretrainConfig(**{**TINY, "channels": 16}).backbone(), 1, m)
    labelled = CrystalSet([Crystal(c.lattice, c.frac, c.numbers, {"e": float(i % 3)})
                           for i, c in enumerate(crystals)])
    for task in ("regression", "classification"):
        net, _ = property_network(cfg, 1 if task == "regression" else 2, m)
        fit = finetune(net, labelled[:7], "e", task, steps=3, batch_size=4, lr=1e-3)
        got = evaluate_property(net, fit, labelled[7:], labelled[:7])
        assert len(fit["losses"]) == 3 and all(np.isfinite(v) for v in got.values())
