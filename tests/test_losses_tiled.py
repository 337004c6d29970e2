"""tether.losses: the tiled (chunked) losses equal the plain ones, loss and every gradient,
across sizes, chunk sizes, dtypes, scales and extreme logits."""
from __future__ import annotations

import pytest
import torch

from tether.losses import clip_loss, infonce_rows, siglip_block, siglip_loss
from losses_common import assert_grads_close, loss_and_grads, unit

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


SIZES = [  # (N, d, chunk): N % chunk != 0, chunk >= N, chunk = 1, exact multiples
    (1, 3, 1), (2, 3, 1), (7, 5, 1), (7, 5, 3), (8, 4, 4), (10, 6, 16), (33, 16, 8), (64, 32, 64),
    (100, 24, 7), (130, 32, 32), (257, 64, 100),
]
SIZES_FP32 = [(1, 3, 1), (7, 5, 3), (10, 6, 16), (33, 16, 8), (100, 24, 7), (257, 64, 100)]
CASES = ([pytest.param(n, d, c, torch.float64, id=f"N{n}-d{d}-chunk{c}-f64") for n, d, c in SIZES]
         + [pytest.param(n, d, c, torch.float32, id=f"N{n}-d{d}-chunk{c}-f32") for n, d, c in SIZES_FP32])
SCALES = (1.0, 14.3, 100.0)
BIASES = (-10.0, 0.0, 3.0)


def clip_scalar_scales(x, y, t):
    """sum |dloss/dL_ij * S_ij| for the scale gradient (fp64)."""
    x, y = x.double(), y.double()
    s = x @ y.T
    logits = t * s
    g = (logits.softmax(1) + logits.softmax(0)) / (2 * len(x)) - torch.eye(len(x), dtype=torch.float64) / len(x)
    return [(g * s).abs().sum().item()]


def siglip_scalar_scales(x, y, t, b, positives=True):
    x, y = x.double(), y.double()
    s = x @ y.T
    z = -torch.ones_like(s)
    if positives:
        z.fill_diagonal_(1.0)
    g = torch.sigmoid(-z * (t * s + b))
    return [(g * s).abs().sum().item(), g.abs().sum().item()]


@pytest.mark.parametrize("n,d,chunk,dtype", CASES)
def test_clip_chunked_equals_plain(n, d, chunk, dtype):
    x, y = unit(n, d, dtype, seed=n), unit(n, d, dtype, seed=n + 1000)
    tol = 1e-11 if dtype == torch.float64 else 1e-5
    for scale in SCALES:
        t = torch.tensor(scale, dtype=dtype)
        want = loss_and_grads(lambda a, b, s: clip_loss(a, b, s), x, y, t)
        got = loss_and_grads(lambda a, b, s: clip_loss(a, b, s, chunk_size=chunk), x, y, t)
        assert_grads_close(got, want, tol, clip_scalar_scales(x, y, scale))


@pytest.mark.parametrize("n,d,chunk,dtype", CASES)
def test_siglip_chunked_equals_plain(n, d, chunk, dtype):
    x, y = unit(n, d, dtype, seed=n + 1), unit(n, d, dtype, seed=n + 2000)
    tol = 1e-11 if dtype == torch.float64 else 1e-5
    for scale, bias in zip(SCALES, BIASES):
        t, b = torch.tensor(scale, dtype=dtype), torch.tensor(bias, dtype=dtype)
        want = loss_and_grads(lambda a, c, s, o: siglip_loss(a, c, s, o), x, y, t, b)
        got = loss_and_grads(lambda a, c, s, o: siglip_loss(a, c, s, o, chunk_size=chunk), x, y, t, b)
        assert_grads_close(got, want, tol, siglip_scalar_scales(x, y, scale, bias))


@pytest.mark.parametrize("nq,nk,chunk", [(5, 12, 4), (16, 16, 16), (9, 40, 7), (3, 3, 1), (20, 64, 100)])
def test_infonce_rows_chunked_equals_plain_with_weighted_rows(nq, nk, chunk):
    q, k = unit(nq, 8, seed=nq), unit(nk, 8, seed=nk + 7)
    targets = torch.randint(0, nk, (nq,), generator=torch.Generator().manual_seed(0))
    weights = torch.linspace(-1.0, 2.0, nq, dtype=torch.float64)   # non-uniform upstream gradient
    for scale in SCALES:
        t = torch.tensor(scale, dtype=torch.float64)
        want = loss_and_grads(lambda a, b, s: (infonce_rows(a, b, s, targets) * weights).sum(), q, k, t)
        got = loss_and_grads(lambda a, b, s: (infonce_rows(a, b, s, targets, chunk_size=chunk) * weights).sum(),
                             q, k, t)
        assert_grads_close(got, want, 1e-11)


@pytest.mark.parametrize("n,m,chunk", [(5, 12, 4), (12, 5, 4), (7, 7, 3), (1, 9, 2), (30, 17, 64)])
def test_siglip_block_negatives_rectangular_chunked_equals_plain(n, m, chunk):
    x, y = unit(n, 6, seed=n + 3), unit(m, 6, seed=m + 4)
    for scale, bias in zip(SCALES, BIASES):
        t, b = torch.tensor(scale, dtype=torch.float64), torch.tensor(bias, dtype=torch.float64)
        want = loss_and_grads(lambda a, c, s, o: siglip_block(a, c, s, o, positives=False), x, y, t, b)
        got = loss_and_grads(lambda a, c, s, o: siglip_block(a, c, s, o, positives=False, chunk_size=chunk),
                             x, y, t, b)
        assert_grads_close(got, want, 1e-11)


def test_chunked_random_scales_and_unnormalised_inputs():
    g = torch.Generator().manual_seed(11)
    for trial in range(4):
        n, d, chunk = 40 + 13 * trial, 12, 9 + trial
        x = torch.randn(n, d, generator=g, dtype=torch.float64) * 0.7   # not unit norm
        y = torch.randn(n, d, generator=g, dtype=torch.float64) * 0.7
        t = torch.rand((), generator=g, dtype=torch.float64) * 30 + 0.5
        b = torch.randn((), generator=g, dtype=torch.float64) * 5
        assert_grads_close(loss_and_grads(lambda a, c, s: clip_loss(a, c, s, chunk_size=chunk), x, y, t),
                           loss_and_grads(clip_loss, x, y, t), 1e-11)
        assert_grads_close(loss_and_grads(lambda a, c, s, o: siglip_loss(a, c, s, o, chunk_size=chunk), x, y, t, b),
                           loss_and_grads(siglip_loss, x, y, t, b), 1e-11)


def test_chunked_fp32_stays_exact_with_extreme_logits():
    """Adversarial geometry at t=100 (logits spanning [-100, 100], a far-off diagonal, duplicate
    rows) and a huge scale: the online LSE must neither overflow nor lose terms."""
    n, d = 96, 8
    x = unit(n, d, seed=21)
    y = x.clone()
    y[::3] = -x[::3]                     # anti-aligned positives: diagonal logit -t
    y[1::5] = x[0]                       # many duplicate texts
    for scale in (100.0, 1000.0):
        truth = loss_and_grads(clip_loss, x, y, torch.tensor(scale, dtype=torch.float64))
        got = loss_and_grads(lambda a, c, s: clip_loss(a, c, s, chunk_size=16),
                             x.float(), y.float(), torch.tensor(scale))
        assert all(torch.isfinite(v).all() for v in got)
        tol = 1e-5 if scale == 100.0 else 1e-4       # fp32 logits carry t * 6e-8 absolute error
        assert_grads_close(got, truth, tol, clip_scalar_scales(x, y, scale))
        truth = loss_and_grads(siglip_loss, x, y, torch.tensor(scale, dtype=torch.float64),
                               torch.tensor(-10.0, dtype=torch.float64))
        got = loss_and_grads(lambda a, c, s, o: siglip_loss(a, c, s, o, chunk_size=16),
                             x.float(), y.float(), torch.tensor(scale), torch.tensor(-10.0))
        assert all(torch.isfinite(v).all() for v in got)
        assert_grads_close(got, truth, tol, siglip_scalar_scales(x, y, scale, -10.0))


@pytest.mark.parametrize("force", ["spread", "overflow"])
def test_exact_fallback_path_alone_equals_plain(monkeypatch, force):
    """The one-exp fast path is skipped for tiles whose shifts are too spread out or whose sums
    could overflow; forcing every tile onto the fallback must give the same results."""
    import tether.losses._tiles as tiles
    if force == "spread":
        monkeypatch.setattr(tiles, "fast_path_fits", lambda *args: torch.tensor(False))
    else:
        monkeypatch.setattr(tiles, "overflow_limit", lambda dtype: 0.0)
    x, y = unit(45, 8, seed=71), unit(45, 8, seed=72)
    for scale in SCALES:
        t = torch.tensor(scale, dtype=torch.float64)
        assert_grads_close(loss_and_grads(lambda a, c, s: clip_loss(a, c, s, chunk_size=7), x, y, t),
                           loss_and_grads(clip_loss, x, y, t), 1e-11)
        w = torch.linspace(0.5, 1.5, 45, dtype=torch.float64)
        assert_grads_close(
            loss_and_grads(lambda a, c, s: (infonce_rows(a, c, s, 0, chunk_size=7) * w).sum(), x, y, t),
            loss_and_grads(lambda a, c, s: (infonce_rows(a, c, s, 0) * w).sum(), x, y, t), 1e-11)


def test_exp_floor_engages_at_a_trained_scale_and_changes_nothing():
    """At CLIP's capped scale (t = 100) most exponents lie below float32's normal range, where
    torch's CPU exp is 20-40x slower; the tiled kernels raise them to the floor first. The
    losses and gradients still equal the plain float64 computation to float32 precision."""
    from tether.losses._tiles import lse_floor
    x64, y64 = unit(300, 8, torch.float64, seed=5), unit(300, 8, torch.float64, seed=6)
    x, y = x64.float(), y64.float()
    t, b = torch.tensor(100.0), torch.tensor(-10.0)
    assert lse_floor(x * 14.3, y) is None                       # CLIP's initial scale: never engaged
    assert lse_floor(x * 100.0, y) is not None
    logits = 100.0 * x64 @ y64.T
    assert (logits - logits.max(1, keepdim=True).values < -88).float().mean() > 0.3   # the slow zone
    cases = [
        (lambda a, c, s: clip_loss(a, c, s), lambda a, c, s: clip_loss(a, c, s, chunk_size=64), (x, y, t)),
        (lambda a, c, s, bb: siglip_loss(a, c, s, bb), lambda a, c, s, bb: siglip_loss(a, c, s, bb, chunk_size=64),
         (x, y, t, b)),
        (lambda a, c, s: infonce_rows(a, c, s, 0).sum(), lambda a, c, s: infonce_rows(a, c, s, 0, chunk_size=64).sum(),
         (x, y, t)),
    ]
    for plain, tiled, inputs in cases:
        want = loss_and_grads(plain, *[v.double() for v in inputs])
        got = loss_and_grads(tiled, *inputs)
        assert_grads_close(got, want, 1e-5, names=("loss", "d_image", "d_text", "d_scale", "d_bias"))
