"""CryinGAN: layers, pooling, invariances, periodic kNN, gradient penalty, training state."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dismai.models import create_model
from dismai.models import cryingan as cg
from dismai.models.cryingan import Critic, CryinGAN, Generator, gradient_penalty
from dismai.models.periodic_knn import neighbour_distances, periodic_knn
from dismai.structures import StructureSet
from dismai.testing import check_generative_model, model_state

TINY = {"batch_size": 8, "gen_channels_1": 4, "gen_channels": [8, 16, 8],
        "critic_channels": [8, 8, 8], "critic_hidden": [16, 8], "device": "cpu",
        "n_sample_dump": 2, "checkpoint_minutes": 0.0, "g_lr": 1e-3, "coord_lr": 1e-3,
        "dist_lr": 1e-3, "seed": 5}
BLOCKS = [(0, 5), (5, 12), (12, 16)]


def triclinic_cell() -> np.ndarray:
    a, b, c, gamma = 12.46997, 17.19967, 40.0, np.radians(75.6674)
    return np.array([[a, 0, 0], [b * np.cos(gamma), b * np.sin(gamma), 0], [0, 0, c]])


# ---------------------------------------------------------------------------- networks
def test_shapes_and_output_range():
    g = Generator(16, latent_dim=64, channels_1=4, channels=(8, 16, 8))
    x = g(torch.randn(5, 64))
    assert x.shape == (5, 16, 3) and x.min() > 0 and x.max() < 1
    for pooling, factor in (("avg", 1), ("max", 1), ("mix", 2)):
        c = Critic(BLOCKS, 6, channels=(8, 8, 4), hidden=(16, 8), outputs=10, pooling=pooling)
        assert c.fcs[0].in_features == 3 * 4 * factor
        assert c(torch.rand(5, 16, 6)).shape == (5, 10)


def test_per_species_pooling():
    c = Critic(BLOCKS, 3, pooling="mix")
    h = torch.randn(2, 16, 7)
    pooled = c.pool(h).view(2, 3, 14)
    for e, (a, b) in enumerate(BLOCKS):
        assert torch.allclose(pooled[:, e, :7], h[:, a:b].mean(1), atol=1e-6)
        assert torch.equal(pooled[:, e, 7:], h[:, a:b].amax(1))


@pytest.mark.parametrize("pooling", ["avg", "max", "mix"])
@pytest.mark.parametrize("width", [3, 6])
def test_critic_permutation_invariance_within_species(pooling, width):
    torch.manual_seed(0)
    c = Critic(BLOCKS, width, channels=(16, 16, 8), hidden=(16, 8), pooling=pooling)
    x = torch.rand(4, 16, width, dtype=torch.float64)
    c = c.double()
    perm = torch.cat([a + torch.randperm(b - a) for a, b in BLOCKS])
    assert torch.allclose(c(x), c(x[:, perm]), atol=1e-12)
    swap = torch.arange(16)
    swap[[0, 15]] = swap[[15, 0]]  # exchange atoms of two different species
    assert not torch.allclose(c(x), c(x[:, swap]), atol=1e-6)


def test_parameter_counts_match_the_published_model():
    """Hand counts of the published layers (spec models.md §1.3-1.5)."""
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n_params(Generator(264)) == 2_560_257
    assert n_params(Generator(256)) == 2_493_697
    int_blocks = [(0, 72), (72, 84), (84, 120), (120, 192), (192, 264)]
    assert n_params(Critic(int_blocks, 3)) == 1_879_242
    assert n_params(Critic(int_blocks, 6)) == 1_880_778
    assert n_params(Critic([(0, 51), (51, 205), (205, 256)], 3)) == 1_367_242


def test_xavier_bounds_follow_the_conv_layers():
    torch.manual_seed(0)
    g, c = Generator(20), Critic(BLOCKS, 3)
    # ConvTranspose2d(128, 256, (1, 3)): fans 3*256 and 3*128; Conv2d(1, 512, (1, 3)): 3, 1536
    for w, bound in ((g.expand_weight, np.sqrt(6 / (768 + 384))),
                     (c.convs[0].weight, np.sqrt(6 / (3 + 1536))),
                     (c.convs[1].weight, np.sqrt(6 / 1024))):
        assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert all(torch.count_nonzero(m.bias) == 0 for m in (*c.convs, *c.fcs, c.out))


def test_custom_leaky_relu_matches_builtin_including_double_backward(monkeypatch):
    torch.manual_seed(1)
    critic = Critic(BLOCKS, 3, channels=(16, 16, 8), hidden=(16, 8)).double()
    real, fake = torch.rand(4, 16, 3, dtype=torch.float64), torch.rand(4, 16, 3,
                                                                        dtype=torch.float64)
    alpha = torch.rand(4, 1, 1, dtype=torch.float64)

    def grads():
        critic.zero_grad()
        (critic(fake).mean() + gradient_penalty(critic, real, fake, alpha)).backward()
        return [p.grad.clone() for p in critic.parameters()]

    ours = grads()
    monkeypatch.setattr(cg, "leaky_relu", lambda x, slope=0.2: F.leaky_relu(x, slope))
    builtin = grads()
    for a, b in zip(ours, builtin, strict=True):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)


# ---------------------------------------------------------------------------- gradient penalty
def test_gradient_penalty_known_values():
    # linear critic: every output is a.x, so d(sum of 10 outputs)/dx = 10 a everywhere
    a = torch.zeros(2, 3, dtype=torch.float64)
    a[0, 0] = 0.3  # ||10 a|| = 3  ->  GP = 10 (3 - 1)^2 = 40

    def linear(x):
        return (x * a).sum(dim=(1, 2))[:, None].expand(-1, 10)

    real, fake = torch.rand(5, 2, 3, dtype=torch.float64), torch.rand(5, 2, 3,
                                                                       dtype=torch.float64)
    alpha = torch.rand(5, 1, 1, dtype=torch.float64)
    assert gradient_penalty(linear, real, fake, alpha).item() == pytest.approx(40.0)
    assert gradient_penalty(linear, real, fake, alpha, weight=1.0).item() == pytest.approx(4.0)

    # quadratic critic, one output: grad = 2 x_hat, x_hat = alpha r + (1 - alpha) f
    def quad(x):
        return (x ** 2).sum(dim=(1, 2))[:, None]

    x_hat = (alpha * real + (1 - alpha) * fake).numpy()
    norms = np.linalg.norm(2 * x_hat.reshape(5, -1), axis=1)
    expected = 10 * np.mean((norms - 1) ** 2)
    assert gradient_penalty(quad, real, fake, alpha).item() == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------- periodic kNN
def brute_force_knn(frac, lattice, k, reach=2):
    """Distances to the k nearest points over (2 reach + 1)^3 images, self excluded."""
    shifts = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)))
    out = []
    for f in frac:
        pts = (f[None, :, :] + shifts[:, None, :]).reshape(-1, 3) @ lattice
        d = np.linalg.norm((f @ lattice)[:, None, :] - pts[None], axis=-1)
        d[np.arange(len(f)), (shifts == 0).all(1).argmax() * len(f) + np.arange(len(f))] = np.inf
        out.append(np.sort(d, axis=1)[:, :k])
    return np.array(out)


@pytest.mark.parametrize("cell", ["cubic", "triclinic", "skewed"])
def test_periodic_knn_matches_brute_force(cell):
    rng = np.random.default_rng(7)
    lattice = {"cubic": np.eye(3) * 14.4, "triclinic": triclinic_cell(),
               "skewed": np.array([[8.0, 0, 0], [6.5, 6.0, 0], [3.0, 2.5, 7.0]])}[cell]
    frac = rng.random((3, 60, 3))
    # atoms within ~0.003 of a cell face (one coordinate), and 4 near corners (all three)
    for i in range(20):
        frac[:, i, i % 3] = np.where(rng.random(3) < 0.5, 0.002, 0.998)
    frac[:, 20:24] = np.where(rng.random((3, 4, 3)) < 0.5, 0.001, 0.999)
    frac[:, :24] += rng.normal(0, 1e-3, (3, 24, 3))
    frac %= 1.0
    d, idx, shift = periodic_knn(torch.tensor(frac), torch.tensor(lattice), 6)
    assert np.allclose(d.numpy(), brute_force_knn(frac, lattice, 6), atol=1e-9)
    again = neighbour_distances(torch.tensor(frac), torch.tensor(lattice), idx, shift)
    assert torch.allclose(again, d, atol=1e-9)


def test_periodic_knn_small_cell_falls_back_to_27_images():
    rng = np.random.default_rng(3)
    lattice = np.array([[3.0, 0, 0], [0.5, 3.2, 0], [0, 0.4, 2.8]])
    frac = rng.random((2, 4, 3))  # 4 atoms: neighbours include several images of each atom
    d, idx, shift = periodic_knn(torch.tensor(frac), torch.tensor(lattice), 6)
    assert np.allclose(d.numpy(), brute_force_knn(frac, lattice, 6, reach=1), atol=1e-9)
    assert (shift.abs() <= 1).all()
    assert torch.allclose(neighbour_distances(torch.tensor(frac), torch.tensor(lattice), idx,
                                              shift), d, atol=1e-9)


def test_periodic_knn_isolated_atoms_use_the_27_image_search():
    """A clump plus atoms far from it in a skewed cell: only those rows take the slow path."""
    rng = np.random.default_rng(5)
    lattice = np.array([[12.0, 0, 0], [7.0, 10.0, 0], [2.0, 3.0, 11.0]])
    frac = 0.4 + 0.08 * rng.random((2, 30, 3))
    frac[:, :3] = rng.random((2, 3, 3))  # isolated: 6th neighbour beyond w / 2
    d, idx, shift = periodic_knn(torch.tensor(frac), torch.tensor(lattice), 6)
    assert np.allclose(d.numpy(), brute_force_knn(frac, lattice, 6, reach=1), atol=1e-9)
    assert torch.allclose(neighbour_distances(torch.tensor(frac), torch.tensor(lattice), idx,
                                              shift), d, atol=1e-9)


def test_knn_gradient_equals_27_image_reference():
    """Gradients of the selected distances equal those of cdist over all 27N images."""
    rng = np.random.default_rng(0)
    lattice = torch.tensor(triclinic_cell())
    frac = torch.tensor(rng.random((2, 40, 3)), requires_grad=True)
    weights = torch.tensor(rng.random((2, 40, 6)))
    _, idx, shift = periodic_knn(frac, lattice, 6)
    (neighbour_distances(frac, lattice, idx, shift) * weights).sum().backward()
    ours = frac.grad.clone()
    frac.grad = None
    shifts = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=frac.dtype)
    shifts = torch.cat([torch.zeros(1, 3, dtype=frac.dtype), shifts[(shifts != 0).any(1)]])
    images = (frac[:, None] + shifts[None, :, None]).reshape(2, -1, 3)
    ref = torch.cdist(frac @ lattice, images @ lattice).topk(7, largest=False).values[..., 1:]
    (ref * weights).sum().backward()
    assert torch.allclose(ours, frac.grad, atol=1e-10)


def test_coincident_atoms_give_finite_gradients():
    frac = torch.rand(1, 10, 3, dtype=torch.float64)
    frac[0, 1] = frac[0, 0]
    frac.requires_grad_(True)
    lattice = torch.eye(3, dtype=torch.float64) * 5
    _, idx, shift = periodic_knn(frac, lattice, 3)
    neighbour_distances(frac, lattice, idx, shift).sum().backward()
    assert torch.isfinite(frac.grad).all()


# ---------------------------------------------------------------------------- data and model
def test_translations_and_epoch_items(alloy):
    shifts = cg.translation_shifts([4, 4, 4])
    assert shifts.shape == (64, 3) and np.all(shifts[0] == 0)
    assert np.allclose(shifts * 4, np.round(shifts * 4)) and len(np.unique(shifts, axis=0)) == 64
    m = CryinGAN({**TINY, "translation_grid": [4, 4, 4]})
    m._build(alloy)
    m.prepare_data(alloy, None)
    items = m.epoch_items(np.random.default_rng(0))
    assert m.epoch_size() == len(items) == 16 * 64
    assert len({tuple(r) for r in items}) == 16 * 64  # every (structure, shift) exactly once
    # lattice translations leave the distance features unchanged (so they are computed once)
    moved = torch.remainder(m._frac + m._shifts[37], 1.0)
    assert torch.allclose(m.distances(moved), m._real_dist, atol=1e-4)
    m1 = CryinGAN({**TINY, "translation_grid": [4, 4, 4], "augment_copies": 1})
    m1._build(alloy)
    m1.prepare_data(alloy, None)
    items = m1.epoch_items(np.random.default_rng(0))
    assert sorted(items[:, 0]) == list(range(16)) and items[:, 1].max() < 64


def test_sample_determinism(alloy):
    m = create_model("cryingan", {**TINY, "epochs": 1})
    m.fit(alloy)
    a, b, c = m.sample(300, seed=11), m.sample(300, seed=11), m.sample(300, seed=12)
    assert np.array_equal(a.frac, b.frac) and not np.array_equal(a.frac, c.frac)
    # a prefix of the same noise: equal up to float32 GEMM rounding (batch-size dependent)
    assert np.allclose(m.sample(5, seed=11).frac, a.frac[:5], atol=1e-5)
    assert a.species == alloy.species and (a.frac >= 0).all() and (a.frac < 1).all()


@pytest.mark.parametrize("variant", [
    {"weight_dist": 0.0},
    {"coord_pooling": "max", "weight_dist": 0.0},
    {"dist_pooling": "mix"},
    {"critic": "comb"},
])
def test_variants_train(alloy, variant, tmp_path):
    m = create_model("cryingan", {**TINY, "epochs": 1, "gen_int": 1, **variant})
    m.fit(alloy, run_dir=tmp_path / "run")
    assert set(m.modules()) == ({"generator", "coord_critic", "dist_critic"}
                                if variant.get("weight_dist", 0.05) > 0
                                and variant.get("critic") != "comb"
                                else {"generator", "coord_critic"})
    header, row = (tmp_path / "run" / "losses.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert np.isfinite(float(values["cost_gen"])) and np.isfinite(float(values["cost_dis"]))
    assert (values["D_dist_real"] == "nan") == (len(m.modules()) == 2)
    if variant.get("critic") == "comb":
        assert m.coord_critic.convs[0].in_features == 3 + 6


def _train(alloy, run, on_step=None, resume=False, **extra):
    cfg = {**TINY, "epochs": 3, "translation_grid": [4, 4, 4], "augment_copies": 2,
           "gen_int": 3, "checkpoint_every": 4, **extra}
    m = create_model("cryingan", cfg)
    m.fit(alloy[:12], alloy[12:], run_dir=run, resume=resume, on_step=on_step)
    return m


def test_model_contract(alloy, tmp_path):
    """dismai.testing: determinism, round trip, permutation invariance of the critic, and
    SIGINT mid-epoch (step 5 of 3 epochs x 3 batches) then resume, bit-identical."""
    cfg = {**TINY, "epochs": 3, "translation_grid": [4, 4, 4], "augment_copies": 2,
           "gen_int": 3, "checkpoint_every": 4}
    check_generative_model("cryingan", cfg, alloy[:12], tmp_path, val=alloy[12:],
                           interrupt_at=5)


def test_resume_after_crash_truncates_log_and_equals_uninterrupted(alloy, tmp_path):
    """A crash at step 7 (after epoch 2 was logged, checkpoint from step 4) then --resume."""
    ref = _train(alloy, tmp_path / "ref")

    def crash(step):
        if step == 7:
            raise RuntimeError("simulated crash (kill -9)")

    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(alloy, tmp_path / "run", on_step=crash)
    assert len((tmp_path / "run" / "losses.csv").read_text().splitlines()) == 3  # header + 2
    got = _train(alloy, tmp_path / "run", resume=True)
    a, b = model_state(ref), model_state(got)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "run" / "losses.csv").read_text()
    assert log == (tmp_path / "ref" / "losses.csv").read_text()
    assert len(log.splitlines()) == 4


def test_generator_trained_every_gen_int_batches(alloy):
    m = CryinGAN({**TINY, "gen_int": 3})
    m._build(alloy)
    m.optimizers = m.make_optimizers()
    m.prepare_data(alloy, None)
    items = m.epoch_items(np.random.default_rng(0))
    before = m.generator.out.weight.clone()
    stats = [m.train_step(items[:4], i) for i in range(4)]
    assert ["cost_gen" in s for s in stats] == [True, False, False, True]
    assert not torch.equal(before, m.generator.out.weight)


def test_learning_rate_steps_per_epoch(alloy):
    m = CryinGAN({**TINY, "lr_step_size": 2, "lr_gamma": 0.5, "dist_lr": 3e-4})
    m._build(alloy)
    m.optimizers = m.make_optimizers()
    for epoch, factor in ((0, 1.0), (1, 1.0), (2, 0.5), (5, 0.25)):
        m.start_epoch(epoch)
        assert m.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-3 * factor)
        assert m.optimizers["dist_critic"].param_groups[0]["lr"] == pytest.approx(3e-4 * factor)


def test_atoms_of_one_species_set(tmp_path):
    """Single-species structures (a-Si-like) in a triclinic cell train and sample."""
    rng = np.random.default_rng(0)
    s = StructureSet(triclinic_cell(), ["Si"] * 24, rng.random((10, 24, 3)))
    m = create_model("cryingan", {**TINY, "epochs": 1})
    m.fit(s)
    assert m.sample(3).species == s.species
