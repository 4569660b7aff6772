"""UniMat's space-time U-Net: shapes, the causal temporal attention, identity-initialised
temporal convolutions, and that it trains on the shared diffusion loss."""

from __future__ import annotations

import torch

from dismai.models.image_diffusion import diffusion_loss
from dismai.models.unet3d import SpaceTimeConv, TemporalAttention, UNet3D


def _tiny():
    torch.manual_seed(0)
    return UNet3D(3, 8, (1, 2), (1, 1), (False, True), (False, True), heads=2, dim_head=4,
                  groups=4)


def test_shapes_and_the_grid_multiple():
    net = _tiny()
    x = torch.randn(2, 3, 6, 4, 4)
    assert net(x, torch.zeros(2)).shape == x.shape
    try:
        net(torch.randn(1, 3, 6, 3, 3), torch.zeros(1))
    except ValueError as exc:
        assert "multiples of 2" in str(exc)
    else:
        raise AssertionError("a 3 x 3 grid was accepted")


def test_temporal_attention_is_causal():
    torch.manual_seed(1)
    attn = TemporalAttention(8, 2, 4, chunk=3)
    torch.nn.init.ones_(attn.to_out[1].g)  # zero-initialised output: make it non-trivial
    x = torch.randn(2, 8, 7, 2, 2)
    y = attn(x)
    x2 = x.clone()
    x2[:, :, 4:] = torch.randn(2, 8, 3, 2, 2)  # change frames 4-6
    y2 = attn(x2)
    assert torch.allclose(y[:, :, :4], y2[:, :, :4], atol=1e-6)  # frames 0-3 unchanged
    assert not torch.allclose(y[:, :, 4:], y2[:, :, 4:])
    # chunking over spatial positions does not change the result
    attn.chunk = 10_000
    assert torch.allclose(attn(x), y, atol=1e-6)


def test_temporal_parts_start_as_the_identity():
    torch.manual_seed(2)
    conv = SpaceTimeConv(3, 5)
    x = torch.randn(2, 3, 4, 4, 4)
    spatial = torch.stack([conv.spatial(x[:, :, f]) for f in range(4)], 2)
    assert torch.allclose(conv(x), spatial, atol=1e-6)
    attn = TemporalAttention(8, 2, 4)
    x = torch.randn(1, 8, 5, 2, 2)
    assert torch.equal(attn(x), x)  # zero-initialised output gain


def test_trains_on_the_diffusion_loss():
    net = _tiny()
    x0 = (torch.rand(1, 3, 6, 4, 4) * 2 - 1).expand(4, -1, -1, -1, -1).contiguous()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def held_out():
        with torch.no_grad():
            return sum(float(diffusion_loss(net, x0, torch.Generator().manual_seed(k)))
                       for k in range(6))

    first = held_out()
    g = torch.Generator().manual_seed(0)
    for _ in range(60):  # one video, memorised: 4.36 -> 2.90 measured
        loss = diffusion_loss(net, x0, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out() < 0.8 * first


def test_temporal_attention_equals_the_straightforward_form():
    """The stacked-heads multi-query form against per-head einsum similarities with the
    (S, h, F, F + 1) weights materialised (benchmarks/unimat_speed.py times the two)."""
    from dismai.models.image_diffusion import _l2norm

    torch.manual_seed(3)
    attn = TemporalAttention(8, 3, 4)
    torch.nn.init.ones_(attn.to_out[1].g)
    seq, mask = torch.randn(5, 7, 8), attn.mask(7, "cpu")
    x = attn.norm(seq)
    q = attn.to_q(x).reshape(5, 7, 3, -1).transpose(1, 2)
    k, v = attn.to_kv(x).chunk(2, dim=-1)
    k = torch.cat([attn.null_kv[0].expand(5, 1, -1), k], 1)
    v = torch.cat([attn.null_kv[1].expand(5, 1, -1), v], 1)
    q, k = _l2norm(q) * attn.q_scale, _l2norm(k) * attn.k_scale
    w = (torch.einsum("shid,sjd->shij", q, k) * attn.scale + mask).softmax(-1)
    want = attn.to_out(torch.einsum("shij,sjd->shid", w, v).transpose(1, 2).reshape(5, 7, -1))
    assert torch.allclose(attn.attend(seq, mask), want, atol=1e-5)
