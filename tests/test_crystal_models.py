"""The models of the original CrysTens image (the GAN baselines, dismai.models.crystens_gan,
and the diffusion cascade, dismai.models.crystens_diffusion) and the general-crystal model
interface they run on (dismai.models.crystal_model)."""

import numpy as np
import pytest
import torch

from dismai.crystals import Crystal, CrystalSet
from dismai.errors import TrainingDataError
from dismai.testing import check_generative_model, toy_crystals, toy_structures

TINY = {"batch_size": 4, "epochs": 1, "critic_width": 2, "gen_width": 2, "n_critic": 1,
        "latent_dim": 8, "checkpoint_minutes": 0.0, "n_sample_dump": 2}


def test_published_shapes():
    """The critic's valid-padding chain ends at 3 x 3 x 1 x 128 = 1152 features (spec
    §2.5); the generator reaches 64 x 64 x 4 x 1 through 32 x 32 x 20 and 64 x 64 x 40."""
    from dismai.models.crystens_gan import Critic, Generator

    critic, gen = Critic(16), Generator(128, 32)
    x = torch.rand(2, 1, 64, 64, 4)
    assert critic.body(x).shape == (2, 128, 3, 3, 1)
    assert critic.head.in_features == 1152
    assert critic(x).shape == (2,)
    h = gen.dense(torch.randn(2, 128)).reshape(-1, 1, 16, 16, 4)
    h = gen.body[:24](h)
    assert h.shape == (2, 32, 32, 32, 20)
    assert gen.body[24](h).shape == (2, 32, 64, 64, 40)
    y = gen(torch.randn(2, 128))
    assert y.shape == (2, 1, 64, 64, 4) and ((y > 0) & (y < 1)).all()


def test_volume_view_is_the_keras_layout():
    from dismai.models.crystens_gan import from_volume, to_volume

    img = torch.randn(3, 4, 64, 64)
    vol = to_volume(img)
    assert vol[1, 0, 5, 7, 2] == img[1, 2, 5, 7]
    assert torch.equal(from_volume(vol), img)


def test_gradient_penalty_of_a_linear_critic():
    """grad of w.x is w everywhere, so the penalty is exactly (|w| - 1)^2."""
    from dismai.models.crystens_gan import gradient_penalty

    w = torch.randn(1, 4, 4, 2)

    def critic(x):
        return (x * w).flatten(1).sum(1)

    real, fake = torch.rand(5, 1, 4, 4, 2), torch.rand(5, 1, 4, 4, 2)
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    assert torch.allclose(gp, (w.norm() - 1) ** 2, rtol=1e-5)


TINY_DIFFUSION = {"batch_size": 4, "epochs": 1, "base_dim": 8, "base_dim_mults": [1, 2],
                  "base_resnet_blocks": [1, 1], "base_attns": [False, True],
                  "base_cross_attns": [False, False], "sr_dim": 8, "sr_dim_mults": [1, 2],
                  "sr_resnet_blocks": [1, 1], "sr_attns": [False, False],
                  "sr_cross_attns": [False, False], "heads": 2, "dim_head": 8, "ema_after": 0,
                  "ema_every": 1, "sample_steps": 3, "checkpoint_minutes": 0.0,
                  "n_sample_dump": 2, "objective": "v"}  # eps: the crystens contract


@pytest.mark.parametrize("name, cfg", [("crystens-wgan", TINY), ("crystens-gan", TINY),
                                       ("crystens-diffusion", TINY_DIFFUSION)])
def test_contract(name, cfg, tmp_path):
    check_generative_model(name, cfg, toy_crystals(8, seed=1), tmp_path)


def test_diffusion_is_the_published_cascade():
    """Base U-Net at 32 x 32, super-resolution at 64 x 64 (image_sizes (32, 64)); the paper
    preset keeps the published sizes."""
    from dismai.models import create_model, get_model_class, resolve_config

    m = create_model("crystens-diffusion", {**TINY_DIFFUSION, "device": "cpu"})
    m._build(toy_crystals(2))
    assert (m._base_side, m.side, m.cascade) == (32, 64, True)
    paper = resolve_config("crystens-diffusion", get_model_class("crystens-diffusion").Config,
                           preset="paper")
    assert (paper.base_dim, paper.sr_dim, paper.batch_size, paper.sample_steps) == \
        (256, 256, 4, 1000)
    assert paper.base_resnet_blocks == [3, 3, 3] and paper.sr_resnet_blocks == [2, 4, 8]
    assert paper.base_attns == [False, True, True] and paper.sr_attns == [False, False, True]
    assert paper.base_linear_attn and (paper.lr, paper.beta1, paper.beta2) == (1e-4, 0.9, 0.99)
    assert paper.objective == "eps"  # as published; the cpu preset predicts v
    cpu = resolve_config("crystens-diffusion", get_model_class("crystens-diffusion").Config,
                         preset="cpu")
    assert (cpu.objective, cpu.lr) == ("v", 1e-3)


def test_samples_are_crystals_with_the_paper_statistics(tmp_path):
    from dismai.models import create_model

    m = create_model("crystens-wgan", {**TINY, "device": "cpu"})
    m.fit(toy_crystals(8, seed=1), run_dir=tmp_path / "run")
    tries = m.generate(6, seed=0)
    assert len(tries) == 6
    for crystal, reason in tries:
        assert (crystal is None) == bool(reason)
        if crystal is not None:
            assert 1 <= crystal.n_atoms <= 52
            assert {"lattice_param_variance", "pairwise_distance_difference",
                    "space_group"} <= set(crystal.properties)
    dump = tmp_path / "run" / "samples" / "epoch_000001.csv"
    assert len(CrystalSet.from_csv(dump)) == len(m.sample(2, seed=m.config.seed))


def test_bad_training_data_is_refused_in_one_line():
    from dismai.models import create_model

    m = create_model("crystens-wgan", {**TINY, "device": "cpu"})
    with pytest.raises(TrainingDataError, match="must be a CrystalSet, got StructureSet"):
        m.fit(toy_structures(4))
    big = Crystal(np.eye(3) * 20, np.random.default_rng(0).random((53, 3)), [6] * 53)
    with pytest.raises(TrainingDataError, match="crystal 1 has 53 atoms; this model takes "
                                                "at most 52"):
        m.fit(CrystalSet([toy_crystals(1)[0], big]))
    with pytest.raises(TrainingDataError, match="training set is empty"):
        m.fit(CrystalSet([]))


def test_crystal_models_stay_out_of_the_dismai_bench_list():
    from dismai.models.registry import available_models, crystal_models, trainable_models

    assert {"crystens-wgan", "crystens-gan", "crystens-diffusion", "ssl-pretrain",
            "ssl-gan"} == set(crystal_models())
    assert not set(crystal_models()) & set(trainable_models())
    assert set(crystal_models()) <= set(available_models())
    # the registry tag (what `bench` lists) and the class (what `train` dispatches on)
    # must agree for every registered model
    from dismai.models import get_model_class
    from dismai.models.crystal_model import CrystalModel

    for name in available_models():
        assert issubclass(get_model_class(name), CrystalModel) == (name in crystal_models()), name


def test_train_and_sample_workflows_take_crystal_data(tmp_path):
    from dismai.errors import InputError
    from dismai.workflows import sample, train

    toy_crystals(8, seed=1).to_csv(tmp_path / "toy.csv")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in {**TINY, "device": "cpu"}.items()))
    run, _, m = train("crystens-wgan", str(tmp_path / "toy.csv"), "quick", cfg,
                      tmp_path / "run", progress=False)
    crystals, _ = sample(run, 3, seed=0, output=tmp_path / "s.csv")
    assert len(CrystalSet.from_csv(tmp_path / "s.csv")) == len(crystals) <= 3
    with pytest.raises(InputError, match="give a .csv output"):
        sample(run, 3, output=tmp_path / "s.extxyz")
    with pytest.raises(InputError, match="learns general crystals: use --dataset perov-5 or "
                                         "carbon-24"):
        train("crystens-wgan", "a-si-64", "quick", None, tmp_path / "run2", progress=False)
    assert not (tmp_path / "run2").exists()
