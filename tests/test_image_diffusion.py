"""The Imagen-style diffusion core: schedule values, min-SNR weighting, dynamic thresholding,
the posterior, nearest resizing, EMA, U-Net shapes and sampling determinism."""

from __future__ import annotations

import math

import pytest
import torch

from dismai.models.image_diffusion import (
    EMA,
    UNet,
    alpha_sigma,
    cosine_log_snr,
    diffusion_loss,
    dynamic_threshold,
    linear_log_snr,
    min_snr_weight,
    posterior,
    predicted_x0,
    resize_nearest,
    sample_images,
    uniform_posterior_mean,
)


def _tiny(**kw):
    torch.manual_seed(0)
    args = {"channels": 4, "dim": 8, "dim_mults": (1, 2), "resnet_blocks": (1, 1),
            "attns": (False, True), "cross_attns": (False, True), "linear_attn": True,
            "heads": 2, "dim_head": 4, "groups": 4}
    args.update(kw)
    return UNet(**args)


def test_cosine_log_snr_known_values():
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    got = cosine_log_snr(t)
    # by hand: -log(cos((t + 0.008)/1.008 * pi/2)^-2 - 1)
    want = [-math.log(math.cos(0.008 / 1.008 * math.pi / 2) ** -2 - 1),
            -math.log(math.cos(0.508 / 1.008 * math.pi / 2) ** -2 - 1)]
    assert got[0].item() == pytest.approx(want[0], rel=1e-12)  # 8.77: nearly clean
    assert got[1].item() == pytest.approx(want[1], rel=1e-12)  # about -0.025 at t = 0.5
    assert got[2] < -30  # t = 1: pure noise
    a, s = alpha_sigma(got)
    assert torch.allclose(a ** 2 + s ** 2, torch.ones(3, dtype=torch.float64))


def test_linear_log_snr_known_value():
    t = torch.tensor([0.2], dtype=torch.float64)
    assert linear_log_snr(t).item() == pytest.approx(-math.log(math.expm1(1e-4 + 0.4)),
                                                     rel=1e-12)


def test_min_snr_weight():
    log_snr = torch.log(torch.tensor([0.5, 5.0, 20.0], dtype=torch.float64))
    # SNR below gamma: weight 1; above: gamma / SNR
    assert torch.allclose(min_snr_weight(log_snr, 5.0),
                          torch.tensor([1.0, 1.0, 0.25], dtype=torch.float64))
    # v-prediction: min(SNR, gamma) / (SNR + 1)
    assert torch.allclose(min_snr_weight(log_snr, 5.0, "v"),
                          torch.tensor([0.5 / 1.5, 5 / 6, 5 / 21], dtype=torch.float64))


class _Oracle(torch.nn.Module):
    """The exact network for a data set of one image X: eps = (x_t - alpha X) / sigma,
    v = alpha eps - sigma X."""

    def __init__(self, image, objective):
        super().__init__()
        self.image, self.objective = image, objective

    def forward(self, x, log_snr):
        a, s = (v.reshape(-1, 1, 1, 1) for v in alpha_sigma(log_snr.double()))
        eps = (x.double() - a * self.image) / s
        return (a * eps - s * self.image if self.objective == "v" else eps).float()


@pytest.mark.parametrize("objective", ["eps", "v"])
def test_oracle_has_zero_loss_and_samples_its_image(objective):
    image = torch.rand(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    oracle = _Oracle(image, objective)
    loss = diffusion_loss(oracle, image.expand(3, -1, -1, -1).float(),
                          torch.Generator().manual_seed(1), objective=objective)
    assert float(loss) < 1e-8
    x_t = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    ls = torch.tensor([-2.0, 3.0], dtype=torch.float64)
    assert torch.allclose(predicted_x0(x_t, oracle(x_t, ls).double(), ls, objective),
                          image.expand(2, -1, -1, -1).double(), atol=1e-5)
    out = sample_images(oracle, (2, 4, 8, 8), 20, torch.Generator().manual_seed(2), "cpu",
                        objective=objective)
    # the chain ends at t = 0 of the cosine schedule, where sigma is still 0.012
    assert torch.allclose(out, image.expand(2, -1, -1, -1), atol=0.05)


class _UniformOracle(torch.nn.Module):
    """The exact network for data uniform on [0, 1] per entry."""

    def __init__(self, objective):
        super().__init__()
        self.objective = objective

    def forward(self, x, log_snr):
        a, s = (v.reshape(-1, 1) for v in alpha_sigma(log_snr))
        x0 = uniform_posterior_mean(x, log_snr)
        eps = (x - a * x0) / s
        return eps if self.objective == "eps" else a * eps - s * x0


@pytest.mark.parametrize("objective", ["eps", "v"])
def test_sampler_with_the_exact_denoiser_reproduces_a_uniform_marginal(objective):
    """Ancestral sampling with E[x0 | x_t] of U[0, 1] data gives U[0, 1] samples (the
    reference for UniMat's under-dispersed a-Si samples: docs/unimat.md).  Measured: std
    0.279 in 100 steps, 0.253 in 25 (uniform: 0.289); a sampler that drops the posterior
    variance collapses every sample to 1/2 (std 6e-6, checked)."""
    out = sample_images(_UniformOracle(objective), (4000, 1), 100,
                        torch.Generator().manual_seed(0), "cpu", objective=objective)
    assert 0.27 < float(out.std()) < 0.295 and abs(float(out.mean()) - 0.5) < 0.02
    counts = torch.histc(out, bins=5, min=0, max=1)
    assert float(counts.min()) > 0.8 * 4000 / 5 and float(counts.max()) < 1.2 * 4000 / 5
    # the exact denoiser itself: a clean input is returned, a very noisy one goes to 1/2
    ls = torch.tensor([12.0, -12.0])
    x0 = uniform_posterior_mean(torch.tensor([[0.3], [5.0]]), ls)
    assert float(x0[0, 0]) == pytest.approx(0.3, abs=1e-3)
    assert float(x0[1, 0]) == pytest.approx(0.5, abs=1e-2)


def test_dynamic_threshold_known_tensor():
    # sample 0 within [-1, 1]: unchanged (s floored at 1); sample 1: clamp at its 95th
    # percentile of |x| and divide by it
    x = torch.stack([torch.linspace(-0.9, 0.9, 21), torch.linspace(-4.0, 4.0, 21)])
    got = dynamic_threshold(x, 0.95)
    assert torch.allclose(got[0], x[0])
    s = torch.quantile(x[1].abs(), 0.95)
    assert torch.allclose(got[1], x[1].clamp(-s, s) / s)
    assert got[1].abs().max() == pytest.approx(1.0)


def test_posterior_reaches_x0_at_the_end():
    x_t, x0 = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    ls = cosine_log_snr(torch.full((2,), 0.5))
    mean, var = posterior(x_t, x0, ls, torch.full((2,), 40.0))  # next time: essentially clean
    assert torch.allclose(mean, x0, atol=1e-6)
    assert var.max() < 1e-12
    _, var = posterior(x_t, x0, ls, ls)  # no step: no variance, mean = x_t
    assert var.abs().max() == 0


def test_nearest_resize_keeps_the_documented_lines():
    x = torch.arange(280.0)[None, None, :, None].expand(1, 1, 280, 280)
    small = resize_nearest(x, 64, clamp=False)
    lines = small[0, 0, :, 0].long().tolist()
    assert lines[:5] == [0, 4, 8, 13, 17]  # floor(m 280 / 64), spec 3.2
    assert resize_nearest(torch.full((1, 1, 8, 8), 3.0), 8).max() == 1.0  # clamped


@pytest.mark.parametrize("size,kw", [(16, {}), (24, {"memory_efficient": True,
                                                     "lowres_cond": True})])
def test_unet_shapes(size, kw):
    net = _tiny(**kw)
    x = torch.randn(2, 4, size, size)
    extra = {"lowres": torch.randn_like(x), "lowres_log_snr": torch.zeros(2)} \
        if kw.get("lowres_cond") else {}
    out = net(x, torch.zeros(2), **extra)
    assert out.shape == x.shape
    assert out.abs().max() == 0  # zero-initialised output convolution
    bad = torch.randn(2, 4, size + 1, size + 1)
    if extra:
        extra["lowres"] = torch.randn_like(bad)
    with pytest.raises(ValueError, match="multiple of"):
        net(bad, torch.zeros(2), **extra)


def test_paper_unets_have_the_published_layout():
    base = UNet(4, 64, (1, 2, 4), (3, 3, 3), (False, True, True), (False, True, True), True)
    sr = UNet(4, 64, (1, 2, 4), (2, 4, 8), (False, False, True), (False, False, True), False,
              lowres_cond=True, memory_efficient=True)
    assert base.side_multiple == 4 and sr.side_multiple == 8  # 64 -> 16; L -> L/8
    assert "attn" not in base.downs[0] or "Linear" in type(base.downs[0]["attn"]).__name__
    assert [len(lv["blocks"]) for lv in sr.downs] == [2, 4, 8]


def test_loss_trains_and_sampling_is_deterministic():
    net = _tiny()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 4, 16, 16) * 2 - 1
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def held_out():  # the same times and noise every call
        with torch.no_grad():
            return sum(float(diffusion_loss(net, x0, torch.Generator().manual_seed(k)))
                       for k in range(8))

    first = held_out()
    for _ in range(60):
        loss = diffusion_loss(net, x0, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out() < 0.8 * first
    a = sample_images(net, (2, 4, 16, 16), 5, torch.Generator().manual_seed(3), "cpu")
    b = sample_images(net, (2, 4, 16, 16), 5, torch.Generator().manual_seed(3), "cpu")
    c = sample_images(net, (2, 4, 16, 16), 5, torch.Generator().manual_seed(4), "cpu")
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() <= 1.0  # clamped to the data range at the end


def test_ema_follows_ema_pytorch_rules():
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, beta=0.9999, after=100, every=10, power=2 / 3)
    for _ in range(101):  # copied outright while step <= after
        with torch.no_grad():
            net.weight.add_(1.0)
        ema.update(net)
    assert torch.equal(ema.shadow.weight, net.weight)  # the copy at step 100
    ema.step.fill_(110)
    ema.update(net)  # step 110, the first past `after`: copies, then averages -> the weights
    assert torch.equal(ema.shadow.weight, net.weight) and bool(ema.initted)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.step.fill_(120)
    before = ema.shadow.weight.clone()
    ema.update(net)  # step 120: the counter is now 121, e = 121 - 100 - 1 = 20
    d = 1 - (1 + 20) ** (-2 / 3)
    assert ema.decay() == pytest.approx(d)
    assert torch.allclose(ema.shadow.weight, d * before + (1 - d) * net.weight)
    assert int(ema.step) == 121
    ema.step.fill_(10 ** 9)
    assert ema.decay() == 0.9999  # capped at beta
    ema.step.fill_(121)
    other = EMA(torch.nn.Linear(2, 1))
    other.load_state_dict(ema.state_dict())
    assert int(other.step) == 121 and torch.equal(other.shadow.weight, ema.shadow.weight)


def test_fused_attention_equals_the_einsum_form():
    from dismai.models.image_diffusion import Attention, _l2norm

    torch.manual_seed(0)
    att = Attention(16, heads=4, dim_head=8, context_dim=12).double()
    x, ctx = torch.randn(3, 10, 16, dtype=torch.float64), torch.randn(3, 2, 12,
                                                                      dtype=torch.float64)
    b, n, _ = x.shape
    h = att.norm(x)
    q = att.to_q(h).reshape(b, n, 4, -1).transpose(1, 2)
    k, v = att.to_kv(h).chunk(2, dim=-1)
    nk, nv = (t.expand(b, 1, -1) for t in att.null_kv.unbind(0))
    ck, cv = att.to_context(ctx).chunk(2, dim=-1)
    k, v = torch.cat([ck, nk, k], 1), torch.cat([cv, nv, v], 1)
    q, k = _l2norm(q) * att.q_scale, _l2norm(k) * att.k_scale
    w = (torch.einsum("bhid,bjd->bhij", q, k) * 8.0).softmax(-1)
    want = att.to_out(torch.einsum("bhij,bjd->bhid", w, v).transpose(1, 2).reshape(b, n, -1))
    assert torch.allclose(att(x, ctx), want, atol=1e-12)
