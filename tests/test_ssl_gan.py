"""The masked-atom model's GAN stage (ssl-gan): the model contract, where the adversarial
term's gradient goes in each mode, the discriminator's step schedule, initialisation from
a saved ssl-pretrain file, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dismai.crystals import Crystal, CrystalSet
from dismai.errors import CheckpointError, ConfigError, TrainingDataError
from dismai.models import create_model
from dismai.models.ssl_gan import SSLGANConfig, discriminator_due
from dismai.testing import check_generative_model, toy_crystals

BACKBONE = {"layers": 1, "channels": 8, "hidden": 8, "heads": 2, "alpha_channels": 4,
            "value_channels": 4, "ffn_hidden": 8, "lmax": 1, "mmax": 1, "edge_channels": 8,
            "n_distance": 8, "activation": "gate"}
PRE = {**BACKBONE, "epochs": 1, "batch_size": 3, "lr": 1e-3, "sample_steps": 2,
       "checkpoint_minutes": 0.0, "n_sample_dump": 2, "device": "cpu", "seed": 2}
TINY = {**PRE, "epochs": 2, "lr_d": 1e-3, "d_every": 2}


@pytest.fixture(scope="module")
def crystals():
    return CrystalSet([c for c in toy_crystals(16, seed=5) if c.n_atoms >= 2], "toy")


@pytest.fixture(scope="module")
def pretrained(crystals, tmp_path_factory):
    """A tiny ssl-pretrain model file (with best weights from validation)."""
    d = tmp_path_factory.mktemp("pre")
    m = create_model("ssl-pretrain", PRE)
    m.fit(crystals[:7], crystals[7:], run_dir=d / "run")
    return m, str(d / "run" / "model.pt")


def _built(crystals, **over):
    m = create_model("ssl-gan", {**TINY, **over})
    m._build(crystals[:7])
    m.prepare_data(crystals[:7], None)
    return m


def test_contract(crystals, tmp_path):
    for mode in ("as-published", "fixed"):
        check_generative_model("ssl-gan", {**TINY, "adversarial": mode}, crystals[:7],
                               tmp_path / mode, val=crystals[7:], interrupt_at=3)


def _generator_grads(crystals, mode: str, weight_label: float) -> dict:
    torch.manual_seed(0)
    m = _built(crystals, adversarial=mode, weight_label=weight_label)
    terms = m.generator_terms(list(crystals[:5]), torch.Generator().manual_seed(1))
    terms["loss"].backward()
    assert all(p.grad is None for p in m.disc.parameters()), "D is not frozen in G's step"
    return {k: p.grad.clone() for k, p in m.net.named_parameters() if p.grad is not None}


def test_as_published_adversarial_term_does_not_reach_the_generator(crystals):
    with_label = _generator_grads(crystals, "as-published", 0.1)
    without = _generator_grads(crystals, "as-published", 0.0)
    assert with_label.keys() == without.keys()
    assert all(torch.equal(with_label[k], without[k]) for k in with_label)


def test_fixed_adversarial_term_reaches_the_generator(crystals):
    with_label = _generator_grads(crystals, "fixed", 0.1)
    without = _generator_grads(crystals, "fixed", 0.0)
    differ = [k for k in with_label if not torch.equal(with_label[k], without[k])]
    assert any(k.startswith("head.") for k in differ)  # through the soft types
    assert any(k.startswith("vector.") for k in differ)  # through the denoised positions


def test_fixed_mode_gradients_are_finite_on_a_cubic_cell():
    """Edges to an atom's own image along y sit at the pole of the edge frames' angles,
    whose derivatives are infinite: the gradient must stay finite (equiformer._pole_safe)."""
    cubic = CrystalSet([Crystal(np.eye(3) * 3.9, [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0],
                                                  [0.5, 0, 0.5], [0, 0.5, 0.5]],
                                [38, 22, 8, 8, 8])] * 4, "cubic")
    m = _built(cubic, adversarial="fixed", sigma_ratio=1e-9)
    terms = m.generator_terms(list(cubic[:3]), torch.Generator().manual_seed(0))
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in m.net.parameters() if p.grad is not None)


def test_discriminator_schedule(crystals):
    due = [[b for b in range(25) if discriminator_due(b, e)] for e in (0, 1, 10)]
    assert due == [[0, 10, 20], [9, 19], [0, 10, 20]]  # the offset grows by one per epoch
    # 3 batches per epoch, d_every 2: epoch 0 steps D at batches 0 and 2, epoch 1 at 1
    m = create_model("ssl-gan", TINY)
    m.fit(crystals[:7])
    steps = {int(s["step"]) for s in m.optimizers["disc"].state.values()}
    assert steps == {3}
    assert {int(s["step"]) for s in m.optimizers["net"].state.values()} == {6}


def test_starts_from_a_saved_pretraining(crystals, pretrained):
    pre, path = pretrained
    m = create_model("ssl-gan", {**TINY, "generator_from": path})
    m._build(crystals[:7])
    src = pre._sampler().state_dict()
    assert pre.best.filled
    assert all(torch.equal(v, src[k]) for k, v in m.net.state_dict().items())
    d = m.disc.state_dict()
    backbone = [k for k in d if not k.startswith("head.down.")]
    assert backbone and all(torch.equal(d[k], src[k]) for k in backbone)
    # discriminator_from "none": a random discriminator, the same generator
    m2 = create_model("ssl-gan", {**TINY, "generator_from": path,
                                  "discriminator_from": "none"})
    m2._build(crystals[:7])
    assert not torch.equal(m2.disc.state_dict()["embed.weight"], src["embed.weight"])
    assert torch.equal(m2.net.state_dict()["embed.weight"], src["embed.weight"])


def test_real_labels_from_a_property(crystals):
    labelled = CrystalSet([Crystal(c.lattice, c.frac, c.numbers, {"e": float(i % 3)})
                           for i, c in enumerate(crystals)])
    m = _built(labelled, real_label_property="e", real_label_threshold=1.0,
               real_label_when="below")
    assert m._labels.tolist() == [1, 1, 0, 1, 1, 0, 1]
    m = create_model("ssl-gan", {**TINY, "real_label_property": "missing"})
    with pytest.raises(TrainingDataError, match="no property 'missing'"):
        m.fit(labelled[:7])


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_bad_input(crystals, pretrained, tmp_path):
    _, path = pretrained
    with pytest.raises(ConfigError, match="adversarial must be one of") as e:
        SSLGANConfig(adversarial="wgan").validate()
    _one_line(e)
    with pytest.raises(CheckpointError, match="no such model file") as e:
        create_model("ssl-gan", {**TINY, "generator_from": str(tmp_path / "x.pt")}).fit(
            crystals[:7])
    _one_line(e)
    gan = create_model("ssl-gan", {**TINY, "epochs": 1})
    gan.fit(crystals[:7])
    gan.save(tmp_path / "gan.pt")
    with pytest.raises(CheckpointError, match="must be an ssl-pretrain model file") as e:
        create_model("ssl-gan", {**TINY, "generator_from": str(tmp_path / "gan.pt")}).fit(
            crystals[:7])
    _one_line(e)
    with pytest.raises(CheckpointError, match=r"backbone differs.*channels 8 vs 16") as e:
        create_model("ssl-gan", {**TINY, "channels": 16, "generator_from": path}).fit(
            crystals[:7])
    _one_line(e)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(CheckpointError) as e:
        create_model("ssl-gan", {**TINY, "discriminator_from": str(tmp_path / "junk.pt")}
                     ).fit(crystals[:7])
    _one_line(e)


def test_gan_training_keeps_reconstructing(crystals, pretrained):
    """From the pre-trained file, a few GAN epochs in either mode leave finite losses and
    held-out scores the pre-training's scorer can read."""
    from dismai.models.ssl import reconstruction_scores

    _, path = pretrained
    for mode in ("as-published", "fixed"):
        m = create_model("ssl-gan", {**TINY, "generator_from": path, "adversarial": mode})
        m.fit(crystals[:7], crystals[7:])
        s = reconstruction_scores(m, crystals[7:], crystals[:7], seed=1)
        assert 0 <= s["masked_accuracy"] <= 1 and np.isfinite(s["position_mse"])


def test_presets_match_the_pretraining_backbones():
    from dismai.models import resolve_config
    from dismai.models.ssl import SSLPretrainConfig

    for preset in ("cpu", "quick", "paper"):
        gan = resolve_config("ssl-gan", SSLGANConfig, preset=preset)
        pre = resolve_config("ssl-pretrain", SSLPretrainConfig, preset=preset)
        assert gan.backbone() == pre.backbone(), preset
