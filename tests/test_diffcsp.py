"""DiffCSP: wrapped-normal score, sigma tables, denoiser symmetries, sampler, training state."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from dismai.models import ConfigError, GenerativeModel, create_model, resolve_config
from dismai.models.diffcsp import (
    CSPNet,
    DiffCSP,
    DiffCSPConfig,
    lattice_schedule,
    pair_blocks,
    reference_forward,
    sigma_norm_table,
    sigma_schedule,
    wrapped_normal_score,
)
from dismai.models.training import TrainingInterrupted
from dismai.testing import (
    check_generative_model,
    model_state,
    requires_dataset,
    toy_structures,
)

TINY = {"batch_size": 4, "hidden_dim": 8, "num_layers": 2, "num_freqs": 4, "time_dim": 8,
        "timesteps": 10, "device": "cpu", "n_sample_dump": 2, "checkpoint_minutes": 0.0,
        "val_every": 1, "sample_batch_size": 3, "seed": 3}


def tiny_net(n_atoms=12, dtype=torch.float32, seed=0) -> CSPNet:
    torch.manual_seed(seed)
    s = toy_structures(1)
    z = [26] * 3 + [28] * 5 + [24] * 4
    net = CSPNet(z[:n_atoms], s.lattice, 28, hidden=16, num_layers=2, num_freqs=6,
                 time_dim=8, timesteps=50)
    net.n_blocks = pair_blocks(n_atoms, min_block=2)  # exercise the triangular layout
    return net.to(dtype)


def test_pair_blocks():
    assert [pair_blocks(n) for n in (12, 64, 256, 264, 257)] == [1, 4, 8, 8, 1]
    assert pair_blocks(12, min_block=2) == 6 and pair_blocks(7, min_block=2) == 1


# ---------------------------------------------------------------------------- wrapped normal
def _log_p_wn(x, sigma):
    n = np.arange(-10, 11)
    y = np.asarray(x)[..., None] + n
    return np.log(np.exp(-y * y / (2 * sigma ** 2)).sum(-1))


@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.3, 0.5])
def test_wrapped_normal_score_is_minus_dlogp(sigma):
    x = np.linspace(-0.49, 0.49, 57) + 3.0  # any period: s is periodic
    h = 1e-6
    num = -(_log_p_wn(x + h, sigma) - _log_p_wn(x - h, sigma)) / (2 * h)
    s_np = wrapped_normal_score(x, sigma)
    s_t = wrapped_normal_score(torch.tensor(x, dtype=torch.float64), sigma).numpy()
    scale = np.abs(num).max()
    assert np.allclose(s_np, num, atol=1e-6 * scale) and np.allclose(s_t, s_np, atol=1e-9)
    # huge |x| / sigma: softmax weights, never 0/0
    assert np.isfinite(wrapped_normal_score(np.array([0.49, 7.3]), 0.005)).all()


def test_sigma_tables_values_and_bit_reproducibility():
    sig = sigma_schedule(0.005, 0.1, 1000)
    assert sig[0] == 0 and sig[1] == pytest.approx(0.005) and sig[-1] == pytest.approx(0.1)
    assert np.allclose(np.diff(np.log(sig[1:])), np.log(20) / 999)
    a, b = sigma_norm_table(sig), sigma_norm_table(sig.copy())
    assert a.tobytes() == b.tobytes() and a[0] == 1.0
    # values computed in spec graph-models.md §1.3
    lam = sigma_norm_table(np.array([0.005, 0.01, 0.05, 0.1, 0.2, 0.5]))
    assert np.allclose(lam, [40000, 10000, 400.0, 99.996, 19.08, 0.004084], rtol=5e-4)
    # the normalised target has unit second moment (Monte Carlo, seeded)
    rng = np.random.default_rng(0)
    for s, lm in zip([0.05, 0.2, 0.5], lam[[2, 4, 5]], strict=True):
        x = s * rng.standard_normal(200_000)
        assert np.mean(wrapped_normal_score(x, s) ** 2) / lm == pytest.approx(1.0, abs=0.02)


def test_sigma_tables_are_saved_and_loaded_with_the_model(toy, tmp_path):
    m = create_model("diffcsp", {**TINY, "epochs": 1})
    m.fit(toy[:8], toy[8:])
    sig, norm = sigma_schedule(0.005, 0.1, 10), sigma_norm_table(sigma_schedule(0.005, 0.1, 10))
    assert torch.equal(m.schedule.sigmas_norm, torch.tensor(norm))
    assert "schedule.sigmas_norm" in m.state_dict() and "schedule.sigmas" in m.state_dict()
    m.schedule.sigmas_norm[5] = 123.0  # a loaded model reuses the stored table
    m.save(tmp_path / "m.pt")
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    assert data["state"]["schedule.sigmas_norm"][5] == 123.0
    loaded = GenerativeModel.load(tmp_path / "m.pt", device="cpu")
    assert torch.equal(loaded.schedule.sigmas_norm, m.schedule.sigmas_norm)
    assert torch.equal(loaded.schedule.sigmas, torch.tensor(sig))
    assert np.array_equal(loaded.sample(3, seed=2).frac, m.sample(3, seed=2).frac)


# ---------------------------------------------------------------------------- denoiser
def test_efficient_equals_reference_values_and_gradients():
    x = torch.rand(3, 12, 3, dtype=torch.float64)
    t = torch.tensor([1, 25, 50])
    net = tiny_net(dtype=torch.float64)
    out = net(x, t)
    ref = reference_forward(net, x, t, exact_phases=True)
    assert (out - ref).abs().max() < 1e-10
    g_eff = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    g_ref = torch.autograd.grad(ref.square().sum(), list(net.parameters()))
    for a, b in zip(g_eff, g_ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-10)
    net32 = tiny_net(dtype=torch.float32)
    x32 = x.float()
    assert (net32(x32, t) - reference_forward(net32, x32, t, exact_phases=True)).abs().max() \
        < 1e-5
    # the as-coded fp32 phases differ a little (spec §1.8), but not more than that
    assert (net32(x32, t) - reference_forward(net32, x32, t)).abs().max() < 1e-3


def test_chunked_pair_loop_equals_one_chunk(monkeypatch):
    """Large sampling batches run the block pairs in chunks (features rebuilt per chunk)."""
    import dismai.models.diffcsp as dc

    net = tiny_net(dtype=torch.float64)
    x, t = torch.rand(2, 12, 3, dtype=torch.float64), torch.tensor([4, 44])
    with torch.no_grad():
        whole = net(x, t)
    monkeypatch.setattr(dc, "CHUNK_ROWS", 8)  # one 2x2 block pair per chunk
    with torch.no_grad():
        assert (net(x, t) - whole).abs().max() < 1e-12
    out = net(x, t)  # autograd on: cached features, chunked pair loop
    ref = reference_forward(net, x, t, exact_phases=True)
    assert (out - whole).abs().max() < 1e-12
    g_eff = torch.autograd.grad(out.sum(), list(net.parameters()))
    g_ref = torch.autograd.grad(ref.sum(), list(net.parameters()))
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-10)
               for a, b in zip(g_eff, g_ref, strict=True))


@pytest.mark.parametrize("n_atoms", [12, 7])  # 12: 6 blocks of 2; 7 (prime): one block
def test_periodic_translation_invariance(n_atoms):
    net = tiny_net(n_atoms)
    x = torch.rand(2, n_atoms, 3)
    t = torch.tensor([3, 40])
    shift = torch.tensor([0.37, -0.81, 2.26])
    with torch.no_grad():
        a = net(x, t)
        b = net(x + shift, t)
        c = net(torch.remainder(x + shift, 1.0), t)
    assert (a - b).abs().max() < 1e-5 and (a - c).abs().max() < 1e-5


def test_permutation_equivariance_within_species_blocks():
    net = tiny_net()
    x = torch.rand(2, 12, 3)
    t = torch.tensor([7, 33])
    perm = torch.cat([torch.tensor([2, 0, 1]), 3 + torch.randperm(5), 8 + torch.randperm(4)])
    with torch.no_grad():
        a, b = net(x, t), net(x[:, perm], t)
    assert (a[:, perm] - b).abs().max() < 1e-5
    assert (a[0] - net(x[:1], t[:1])[0]).abs().max() < 1e-5  # batch members independent


def test_parameter_count_matches_the_spec():
    """spec graph-models.md §1.10: 2,516,736 for the alloys, minus the 2,304 of the unused
    lattice head, which is not built."""
    net = CSPNet([26] * 4, np.eye(3) * 14.4, 28, hidden=256, num_layers=4, num_freqs=128)
    assert sum(p.numel() for p in net.parameters()) == 2_516_736 - 2_304
    assert sum(p.numel() for p in net.layers[0].parameters()) == 593_664


# ---------------------------------------------------------------------------- configs
def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'hiden_dim' \(did you mean 'hidden_dim'"):
        create_model("diffcsp", {"hiden_dim": 64})
    with pytest.raises(ConfigError, match="cost_lattice must be >= 0"):
        create_model("diffcsp", {"cost_lattice": -1.0})
    with pytest.raises(ConfigError, match="teacher_forcing_lattice needs lattice diffusion"):
        create_model("diffcsp", {"teacher_forcing_lattice": True})
    with pytest.raises(ConfigError, match="denoiser must be one of"):
        create_model("diffcsp", {"denoiser": "fast"})
    with pytest.raises(ConfigError, match="sigma_begin"):
        create_model("diffcsp", {"sigma_begin": 0.2, "sigma_end": 0.1})
    f = tmp_path / "c.yaml"
    f.write_text("num_layers: 2\nsigma_max: 0.5\n")
    with pytest.raises(ConfigError, match="c.yaml: unknown key 'sigma_max'"):
        resolve_config("diffcsp", DiffCSPConfig, preset="quick", config_file=f)


def test_presets():
    paper = resolve_config("diffcsp", DiffCSPConfig, preset="paper", family="alloy")
    assert (paper.batch_size, paper.epochs, paper.hidden_dim, paper.num_layers) == (4, 1000,
                                                                                  256, 4)
    assert (paper.sigma_begin, paper.sigma_end, paper.step_lr, paper.timesteps) == (
        0.005, 0.1, 1e-5, 1000)
    assert resolve_config("diffcsp", DiffCSPConfig, preset="paper", family="a-si").sigma_end \
        == 0.05
    quick = resolve_config("diffcsp", DiffCSPConfig, preset="quick", family="alloy")
    assert quick.hidden_dim < 64 and quick.epochs <= 5


def test_bf16_is_cuda_only(toy):
    m = DiffCSP({**TINY, "bf16": True})
    with pytest.warns(UserWarning, match="CUDA-only"):
        m._build(toy)
    assert not m._amp


# ---------------------------------------------------------------------------- sampler
def test_sampler_with_exact_score_follows_the_noised_marginals(toy):
    """One training structure and the exact normalised score of its noised marginal: the
    predictor-corrector loop (signs, schedule, lambda) must reach level t = 1 with a spread
    of about sigma_1 = sigma_begin, and the last predictor step (Tweedie) lands on the data."""
    m = DiffCSP({**TINY, "timesteps": 1000, "sample_batch_size": 8})
    m._build(toy)
    x0 = torch.as_tensor(toy.frac[0], dtype=torch.float64)
    at_level_1 = []

    def oracle(x, t):
        if int(t[0]) == 1 and not at_level_1:
            at_level_1.append(x.clone())
        sig = m.schedule.sigmas[t][:, None, None]
        lam = m.schedule.sigmas_norm[t][:, None, None]
        return (wrapped_normal_score(x - x0, sig) / lam.sqrt()).float()

    m.denoise = oracle
    out = m.sample(8, seed=0).frac
    dev1 = ((at_level_1[0] - x0 + 0.5) % 1.0 - 0.5).numpy()
    assert 0.7 * 0.005 < dev1.std() < 1.4 * 0.005 and np.abs(dev1).max() < 0.05
    dev = (out - toy.frac[0] + 0.5) % 1.0 - 0.5
    assert np.abs(dev).max() < 1e-5


def test_denoise_from_runs_the_sampler_from_a_given_state(toy):
    from dismai.errors import InputError

    m = create_model("diffcsp", {**TINY, "epochs": 1})
    m.fit(toy[:8])
    x = toy.frac[:3] % 1.0
    a, b = m.denoise_from(x, 1, seed=2), m.denoise_from(x, 1, seed=2)
    assert a.shape == x.shape and np.array_equal(a, b) and (a >= 0).all() and (a < 1).all()
    # one last predictor step (no noise at t = 1) moves atoms by sigma_1^2 * score: tiny
    assert np.abs((a - x + 0.5) % 1.0 - 0.5).max() < 0.05
    for bad in (0, m.config.timesteps + 1):
        with pytest.raises(InputError, match="t_start must lie in"):
            m.denoise_from(x, bad)


def test_sample_determinism(toy):
    m = create_model("diffcsp", {**TINY, "epochs": 1})
    m.fit(toy[:8])
    a, b, c = m.sample(5, seed=11), m.sample(5, seed=11), m.sample(5, seed=12)
    assert np.array_equal(a.frac, b.frac) and not np.array_equal(a.frac, c.frac)
    assert a.species == toy.species and (a.frac >= 0).all() and (a.frac < 1).all()
    ref = DiffCSP({**TINY, "epochs": 1, "denoiser": "reference"})
    ref._build(toy)
    ref.load_state_dict(m.state_dict())
    diff = (ref.sample(5, seed=11).frac - a.frac + 0.5) % 1.0 - 0.5
    assert np.abs(diff).max() < 1e-4


# ---------------------------------------------------------------------------- training
def _train(data, run, on_step=None, resume=False, **extra):
    cfg = {**TINY, "epochs": 4, "checkpoint_every": 2, "plateau_patience": 1,
           "plateau_factor": 0.5, "min_lr": 1e-5, **extra}
    m = create_model("diffcsp", cfg)
    m.fit(data[:10], data[10:], run_dir=run, resume=resume, on_step=on_step)
    return m


def test_model_contract(toy, tmp_path):
    """dismai.testing: determinism, round trip, translation invariance and permutation
    equivariance of the score, SIGINT mid-epoch then resume (with validation and plateau
    steps every epoch), bit-identical."""
    cfg = {**TINY, "epochs": 4, "checkpoint_every": 2, "plateau_patience": 1,
           "plateau_factor": 0.5, "min_lr": 1e-5}
    check_generative_model("diffcsp", cfg, toy[:10], tmp_path, val=toy[10:], interrupt_at=5)
    log = (tmp_path / "ref" / "losses.csv").read_text().splitlines()
    assert log[0] == "epoch,coord_loss,val_coord_loss,lr" and len(log) == 5
    assert all(np.isfinite([float(v) for v in row.split(",")]).all() for row in log[1:])


def test_plateau_scheduler_follows_the_validation_loss(toy, monkeypatch):
    """Constant validation loss -> one reduction after `patience` bad epochs (spec §1.4)."""
    monkeypatch.setattr(DiffCSP, "validation_terms", lambda self, epoch: {"coord": 1.0})
    m = _train(toy, None, epochs=5, plateau_patience=2, plateau_factor=0.5, val_every=2,
               lr=1e-3, min_lr=4e-4)
    # validation at the end of epochs 1 and 3; plateau steps at epochs 1..4 with the stale
    # value: best at epoch 1, bad epochs 2, 3, 4 -> 1e-3 * 0.5 after epoch 4, min_lr 4e-4
    assert m.optimizers["adam"].param_groups[0]["lr"] == pytest.approx(5e-4)


def test_nan_loss_skips_the_step(toy, monkeypatch):
    m = create_model("diffcsp", {**TINY, "epochs": 1})
    m.fit(toy[:4])
    before = {k: v.clone() for k, v in m.state_dict().items()}
    monkeypatch.setattr(DiffCSP, "loss_terms",
                        lambda self, x0, gen, keep: {"coord": torch.tensor(float("nan"))})
    m.set_train_mode(True)
    stats = m.train_step(np.arange(4), 0)
    assert "coord_loss" not in stats
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


# ---------------------------------------------------------------------------- lattice diffusion
def test_lattice_schedule_values():
    """Cosine DDPM tables of spec §1.3: beta_1..3 clipped to 1e-4, beta_T 0.9999,
    alpha_bar_T about 2.4e-10, posterior sigma_0 = 0 and sigma_t <= sqrt(beta_t)."""
    tab = lattice_schedule(1000)
    assert tab["betas"][0] == 0 and np.allclose(tab["betas"][1:4], 1e-4)
    assert tab["betas"][-1] == pytest.approx(0.9999)
    assert tab["alphas_cumprod"][-1] == pytest.approx(2.4e-10, rel=0.02)
    assert tab["sigmas"][0] == 0 and (tab["sigmas"][1:] <= np.sqrt(tab["betas"][1:]) + 1e-15).all()
    assert np.array_equal(tab["alphas_cumprod"], np.cumprod(1 - tab["betas"]))


def _lattice_net(dtype=torch.float64):
    torch.manual_seed(1)
    z = [26] * 3 + [28] * 5 + [24] * 4
    return CSPNet(z, toy_structures(1).lattice, 28, hidden=16, num_layers=2, num_freqs=6,
                  time_dim=8, timesteps=50, lattice_head=True).to(dtype)


def test_lattice_head_equals_reference_and_is_rotation_equivariant():
    net = _lattice_net()
    x = torch.rand(2, 12, 3, dtype=torch.float64)
    t = torch.tensor([3, 40])
    lat = torch.randn(2, 3, 3, dtype=torch.float64) + 5 * torch.eye(3, dtype=torch.float64)
    s, e = net.forward_joint(x, t, lat)
    rs, re_ = reference_forward(net, x, t, exact_phases=True, lattice=lat, joint=True)
    assert (s - rs).abs().max() < 1e-10 and (e - re_).abs().max() < 1e-10
    # with the template lattice fed explicitly, the coordinate score equals the default path
    tmpl = torch.as_tensor(toy_structures(1).lattice).expand(2, 3, 3)
    assert (net.forward_joint(x, t, tmpl)[0] - net(x, t)).abs().max() < 1e-5
    # a rotation acting on the lattice from the right: score invariant, eps_L -> eps_L R
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    s2, e2 = net.forward_joint(x, t, lat @ q)
    assert (s2 - s).abs().max() < 1e-9 and (e2 - e @ q).abs().max() < 1e-9


def test_lattice_diffusion_with_teacher_forcing_trains_samples_and_resumes(toy, tmp_path):
    """Forced epochs feed the true lattice and log no lattice loss (paper §2.2); later epochs
    train the head; samples carry the generated lattices; resume is still exact."""
    extra = {"cost_lattice": 1.0, "teacher_forcing_lattice": True,
             "teacher_forcing_max_epoch": 1}
    ref = _train(toy, tmp_path / "ref", **extra)
    log = [r.split(",") for r in (tmp_path / "ref" / "losses.csv").read_text().splitlines()]
    assert log[0] == ["epoch", "coord_loss", "lattice_loss", "val_coord_loss",
                      "val_lattice_loss", "lr"]
    assert [r[2] for r in log[1:3]] == ["nan", "nan"]  # epochs 0 and 1 forced
    assert all(np.isfinite(float(r[2])) and np.isfinite(float(r[4])) for r in log[3:])
    head = ref.net.lattice_out.weight
    assert head.abs().sum() > 0

    def interrupt(step):
        if step == 7:  # inside epoch 2, after teacher forcing ended
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        _train(toy, tmp_path / "run", on_step=interrupt, **extra)
    got = _train(toy, tmp_path / "run", resume=True, **extra)
    a, b = model_state(ref), model_state(got)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    s1, s2 = ref.sample(3, seed=4), got.sample(3, seed=4)
    assert np.array_equal(s1.frac, s2.frac)
    gl = s1.properties["generated_lattice"]
    assert gl.shape == (3, 9) and np.isfinite(gl).all()
    assert np.array_equal(gl, s2.properties["generated_lattice"])
    assert np.array_equal(s1.lattice, toy.lattice)  # coordinates stay on the dataset cell


def test_lattice_sampler_with_exact_noise_recovers_the_lattice(toy):
    """Plug in the exact eps_L of a single training lattice (and the exact coordinate score):
    the ancestral DDPM steps must end on that lattice."""
    m = DiffCSP({**TINY, "timesteps": 200, "cost_lattice": 1.0, "sample_batch_size": 4})
    m._build(toy)
    x0 = torch.as_tensor(toy.frac[0], dtype=torch.float64)
    l0 = torch.as_tensor(toy.lattice, dtype=torch.float64)
    abar = m._lat_tab["alphas_cumprod"]
    calls = []

    def oracle(x, t, lattice=None):
        sig = m.schedule.sigmas[t][:, None, None]
        lam = m.schedule.sigmas_norm[t][:, None, None]
        score = (wrapped_normal_score(x - x0, sig) / lam.sqrt()).float()
        a = abar[t][:, None, None]
        calls.append(int(t[0]))
        eps_l = (lattice.double() - a.sqrt() * l0) / (1 - a).sqrt()
        return score, eps_l.float()

    m.denoise = oracle
    out = m.sample(4, seed=0)
    gl = out.properties["generated_lattice"].reshape(-1, 3, 3)
    assert np.abs(gl - toy.lattice).max() < 1e-3
    assert len(calls) == 2 * 200


# ---------------------------------------------------------------------------- bench
@requires_dataset("alloy-1500K-narrow")
def test_bench_diffcsp_end_to_end(tmp_path):
    """CI-sized `dismai bench diffcsp` on the shipped alloy set: translated lattice match."""
    from typer.testing import CliRunner

    from dismai.cli import app
    cfg = tmp_path / "ci.yaml"
    cfg.write_text("epochs: 1\nbatch_size: 48\nhidden_dim: 4\nnum_layers: 1\nnum_freqs: 2\n"
                   "time_dim: 4\ntimesteps: 2\nval_every: 0\nsample_batch_size: 6\n"
                   "n_sample_dump: 0\n")
    out = tmp_path / "bench"
    r = CliRunner().invoke(app, ["bench", "diffcsp", "--dataset", "alloy-1500K-narrow",
                                 "--preset", "quick", "--config", str(cfg), "--n", "6",
                                 "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_generated"] == 6 and m["lattice_match"] == "translated"
    assert "d_cluster" in m["metrics"] and "shuffled-lattice" in r.output
    report = (out / "report.md").read_text()
    assert report.startswith("# dismai bench: diffcsp") and "lattice_match=translated" in report
    assert (out / "run" / "model.pt").exists() and (out / "run" / "losses.csv").exists()
    # a rerun resumes: the finished training and the samples are reused, not redone
    state = json.loads((out / "bench_state.json").read_text())
    assert state["samples"]["key"]["n"] == 6 and len(state["train"]) == 2
    before = (out / "samples.extxyz").stat().st_mtime_ns
    r = CliRunner().invoke(app, ["bench", "diffcsp", "--dataset", "alloy-1500K-narrow",
                                 "--preset", "quick", "--config", str(cfg), "--n", "6",
                                 "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert (out / "samples.extxyz").stat().st_mtime_ns == before
    assert json.loads((out / "metrics.json").read_text())["metrics"] == m["metrics"]
    assert json.loads((out / "bench_state.json").read_text())["train"] == state["train"]


class _Subset:
    """A shipped dataset with fewer training structures (CI time); evaluation data unchanged."""

    def __init__(self, ds, m: int):
        self._ds, self.train, self.val = ds, ds.train[:m], ds.val[:m // 4]

    def __getattr__(self, name):
        return getattr(self._ds, name)


@requires_dataset("a-si")
def test_bench_diffcsp_asi_tiny(tmp_path):
    """`dismai bench diffcsp` plumbing on a-Si: 2 samples, relaxed with LAMMPS (sw-vink)."""
    from dismai import workflows
    from dismai.datasets import load

    cfg = tmp_path / "ci.yaml"
    cfg.write_text("epochs: 1\nbatch_size: 16\nhidden_dim: 4\nnum_layers: 1\nnum_freqs: 2\n"
                   "time_dim: 4\ntimesteps: 2\nval_every: 1\nn_sample_dump: 0\n")
    res = workflows.bench("diffcsp", _Subset(load("a-si"), 32), preset="quick", config_file=cfg,
                       n=2, out=tmp_path / "bench", progress=False)
    m = json.loads((tmp_path / "bench" / "metrics.json").read_text())
    assert m["dataset"] == "a-si" and m["n_generated"] == 2 and m["relaxed"]
    assert {"d_motif", "d_rdf", "d_angle"} <= set(m["metrics"]) and "random" in res["baselines"]
    # relaxed families: the bench also scores the structures as generated (learning gate)
    assert {"d_motif", "d_rdf", "d_angle"} <= set(m["metrics_as_generated"])
    assert any(r[0] == "d_rdf (as generated)" for r in res["rows"])
    assert DiffCSP.eval_options.get("a-si") is None  # a-Si: the dataset's default pipeline
