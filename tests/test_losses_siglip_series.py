"""The tiled SigLIP loss takes its negatives' loss from a truncated series in sigmoid(x) when the
a-posteriori error bound allows, and from exact log1p(exp(x)) otherwise. Each route is forced
here and checked against float64 truth, in float32 where the series is used."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tether.losses._siglip_sweep as sweep
from tether.losses import siglip_block, siglip_loss
from losses_common import assert_grads_close, loss_and_grads, unit

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)

EPS32 = torch.finfo(torch.float32).eps


def tile_logits(bias: float, spread: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(64, 96, generator=g, dtype=torch.float64) * spread + bias).float()


@pytest.mark.parametrize("bias,spread,order", [(-30.0, 1.0, 2), (-8.0, 0.5, 3), (-7.0, 0.3, 3), (0.0, 1.0, 0)])
def test_series_route_and_accuracy(bias, spread, order):
    """Far negatives: g + g^2/2 suffices; moderate ones need g^3/3; hard negatives are refused."""
    x = tile_logits(bias, spread)
    g = torch.sigmoid(x)
    value, g_sum, used = sweep._negatives_sum_series(g, float(g.max()), torch.empty_like(g), EPS32)
    assert used == order
    torch.testing.assert_close(g_sum, g.sum())
    if order:
        truth = F.softplus(x.double()).sum()
        assert abs(float(value) - float(truth)) <= 4 * EPS32 * float(truth)
    else:
        assert value is None


def test_exact_route_excludes_the_diagonal_and_survives_overflow():
    x = tile_logits(50.0, 40.0)[:64, :64]          # exp overflows for x > 88: softplus's branch
    got = sweep._negatives_sum_exact(x, torch.empty_like(x), True, 20.0)
    off = F.softplus(x.double()) * (1 - torch.eye(64, dtype=torch.float64))
    torch.testing.assert_close(got.double(), off.sum(), rtol=1e-6, atol=0)


@pytest.fixture
def routes(monkeypatch):
    """Record which route each tile took (2 or 3: series order, 0: exact)."""
    seen = []
    real = sweep._negatives_sum_series

    def spy(g, gmax, scratch, eps):
        out = real(g, gmax, scratch, eps)
        seen.append(out[2])
        return out
    monkeypatch.setattr(sweep, "_negatives_sum_series", spy)
    return seen


@pytest.mark.parametrize("scale,bias,route", [(10.0, -30.0, 2), (2.0, -8.0, 3), (10.0, 0.0, 0), (14.3, -10.0, None)])
def test_fp32_tiled_loss_matches_float64_on_every_route(routes, scale, bias, route):
    n, d = 96, 16
    x64, y64 = unit(n, d, seed=3), unit(n, d, seed=4)
    truth = loss_and_grads(siglip_loss, x64, y64, torch.tensor(scale, dtype=torch.float64),
                           torch.tensor(bias, dtype=torch.float64))
    got = loss_and_grads(lambda a, c, s, o: siglip_loss(a, c, s, o, chunk_size=32),
                         x64.float(), y64.float(), torch.tensor(scale), torch.tensor(bias))
    if route is not None:
        assert set(routes) == {route}
    s = x64 @ y64.T
    z = 2 * torch.eye(n, dtype=torch.float64) - 1
    gw = torch.sigmoid(-z * (scale * s + bias))
    assert_grads_close(got, truth, 1e-5, [(gw * s).abs().sum().item(), gw.sum().item()])
    assert abs(float(got[0]) - float(truth[0])) <= 2e-6 * float(truth[0])


def test_negatives_only_block_on_the_series_matches_float64(routes):
    x64, y64 = unit(40, 8, seed=5), unit(70, 8, seed=6)
    args = (torch.tensor(5.0, dtype=torch.float64), torch.tensor(-20.0, dtype=torch.float64))
    truth = loss_and_grads(lambda a, c, s, o: siglip_block(a, c, s, o, positives=False), x64, y64, *args)
    got = loss_and_grads(lambda a, c, s, o: siglip_block(a, c, s, o, positives=False, chunk_size=16),
                         x64.float(), y64.float(), *(v.float() for v in args))
    assert routes and set(routes) <= {2, 3}
    for g, w in zip(got, truth):
        torch.testing.assert_close(g.double(), w, rtol=2e-6, atol=1e-12)
