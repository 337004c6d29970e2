"""tether.losses: plain references vs explicit formulas, tiled vs plain (loss and every
gradient), gradcheck of the custom autograd Functions, distributed decompositions,
distillation losses against hand formulas, and input validation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from tether.losses import (DEFAULT_CHUNK_SIZE, clip_loss, cosine_distill_loss, infonce_rows, l2_distill_loss,
                           siglip_block, siglip_loss, similarity_kl_loss)
from tether.losses.infonce import _InfoNCERows, _SymmetricInfoNCE
from tether.losses.siglip import _SigLIPBlock


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one thread avoids OpenMP hand-offs (slow on a busy 2-core box)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def unit(n, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).to(dtype)


def leaf(t):
    return t.detach().clone().requires_grad_(True)


def loss_and_grads(fn, *inputs):
    """Loss value and the gradients of every input (fresh leaves each call)."""
    leaves = [leaf(t) for t in inputs]
    loss = fn(*leaves)
    loss.backward()
    return [loss.detach()] + [t.grad for t in leaves]


# --------------------------------------------------------------------------------------------
# Explicit formulas (loops, fp64) that the plain references are checked against
# --------------------------------------------------------------------------------------------

def naive_clip(x, y, t):
    n = x.shape[0]
    logits = t * (x @ y.T)
    i2t = sum(torch.logsumexp(logits[i], 0) - logits[i, i] for i in range(n)) / n
    t2i = sum(torch.logsumexp(logits[:, j], 0) - logits[j, j] for j in range(n)) / n
    return (i2t + t2i) / 2


def naive_siglip_sum(x, y, t, b, positives):
    total = 0.0
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            z = 1.0 if (positives and i == j) else -1.0
            total = total - F.logsigmoid(z * (t * torch.dot(x[i], y[j]) + b))
    return total


def test_clip_plain_matches_explicit_formula_and_cross_entropy():
    x, y = unit(9, 5, seed=1), unit(9, 5, seed=2)
    for t in (1.0, 14.3, 100.0):
        t = torch.tensor(t, dtype=torch.float64)
        ours = clip_loss(x, y, t)
        torch.testing.assert_close(ours, naive_clip(x, y, t), rtol=1e-12, atol=0)
        logits = t * x @ y.T
        ce = (F.cross_entropy(logits, torch.arange(9)) + F.cross_entropy(logits.T, torch.arange(9))) / 2
        torch.testing.assert_close(ours, ce, rtol=1e-12, atol=0)


@pytest.mark.parametrize("positives", [True, False])
def test_siglip_plain_matches_explicit_double_loop(positives):
    x, y = unit(6, 4, seed=3), unit(6 if positives else 4, 4, seed=4)
    for t, b in ((1.0, -10.0), (14.3, 0.0), (100.0, 3.0)):
        t, b = torch.tensor(t, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        expected = naive_siglip_sum(x, y, t, b, positives)
        torch.testing.assert_close(siglip_block(x, y, t, b, positives=positives), expected, rtol=1e-12, atol=0)
        if positives:
            torch.testing.assert_close(siglip_loss(x, y, t, b), expected / 6, rtol=1e-12, atol=0)


def test_infonce_rows_plain_is_cross_entropy():
    q, k = unit(5, 6, seed=5), unit(12, 6, seed=6)
    targets = torch.tensor([3, 0, 11, 7, 7])
    t = torch.tensor(7.0, dtype=torch.float64)
    logits = t * q @ k.T
    expected = torch.stack([torch.logsumexp(logits[i], 0) - logits[i, targets[i]] for i in range(5)])
    torch.testing.assert_close(infonce_rows(q, k, t, targets), expected, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------
# Tiled == plain: loss and all gradients
# --------------------------------------------------------------------------------------------

SIZES = [  # (N, d, chunk): N % chunk != 0, chunk >= N, chunk = 1, exact multiples
    (1, 3, 1), (2, 3, 1), (7, 5, 1), (7, 5, 3), (8, 4, 4), (10, 6, 16), (33, 16, 8), (64, 32, 64),
    (100, 24, 7), (130, 32, 32), (257, 64, 100),
]
SIZES_FP32 = [(1, 3, 1), (7, 5, 3), (10, 6, 16), (33, 16, 8), (100, 24, 7), (257, 64, 100)]
CASES = ([pytest.param(n, d, c, torch.float64, id=f"N{n}-d{d}-chunk{c}-f64") for n, d, c in SIZES]
         + [pytest.param(n, d, c, torch.float32, id=f"N{n}-d{d}-chunk{c}-f32") for n, d, c in SIZES_FP32])
SCALES = (1.0, 14.3, 100.0)
BIASES = (-10.0, 0.0, 3.0)


def assert_grads_close(got, want, tol, scalar_scale=None, names=("loss", "d_image", "d_text", "d_scale", "d_bias")):
    """Relative error per tensor (against its largest entry). Scalar gradients (the scale/bias
    derivatives) are sums with cancellation; ``scalar_scale`` gives the sum of their absolute
    terms, the natural yardstick of their rounding error. Quantities that are exactly 0 in
    exact arithmetic (N = 1) are compared absolutely (the loss against 1, gradients 1e-3)."""
    for k, (a, b) in enumerate(zip(got, want)):
        a, b = a.double(), b.double()
        ref = b.abs().max().item()
        if k >= 3 and scalar_scale is not None:
            ref = max(ref, scalar_scale[k - 3])
        err = (a - b).abs().max().item() / max(ref, 1.0 if k == 0 else 1e-3)
        assert err <= tol, f"{names[k]}: relative error {err:.2e} > {tol:.0e} (|ref| {ref:.3e})"


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


# --------------------------------------------------------------------------------------------
# gradcheck of the custom Functions (fp64, small)
# --------------------------------------------------------------------------------------------

def test_gradcheck_symmetric_infonce():
    x, y = leaf(unit(7, 4, seed=31) * 1.3), leaf(unit(7, 4, seed=32))
    t = leaf(torch.tensor(3.7, dtype=torch.float64))
    for chunk in (1, 3, 7, 10):
        assert torch.autograd.gradcheck(lambda a, b, s: _SymmetricInfoNCE.apply(a, b, s, chunk), (x, y, t))


def test_gradcheck_infonce_rows():
    q, k = leaf(unit(5, 4, seed=33)), leaf(unit(9, 4, seed=34))
    t = leaf(torch.tensor(5.0, dtype=torch.float64))
    targets = torch.tensor([8, 0, 3, 3, 5])
    for chunk in (2, 4, 16):
        assert torch.autograd.gradcheck(lambda a, b, s: _InfoNCERows.apply(a, b, s, targets, chunk), (q, k, t))


@pytest.mark.parametrize("positives,n,m", [(True, 6, 6), (False, 5, 8)])
def test_gradcheck_siglip_block(positives, n, m):
    x, y = leaf(unit(n, 4, seed=35)), leaf(unit(m, 4, seed=36))
    t, b = leaf(torch.tensor(4.0, dtype=torch.float64)), leaf(torch.tensor(-2.0, dtype=torch.float64))
    for chunk in (1, 4, 16):
        fn = lambda a, c, s, o: _SigLIPBlock.apply(a, c, s, o, positives, chunk, (True, True, True))  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, y, t, b))


# --------------------------------------------------------------------------------------------
# Building blocks for the distributed variants
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [None, 3])
def test_clip_loss_from_infonce_rows_per_rank(chunk):
    """World of 4 ranks, 5 rows each: every rank's local rows against the gathered columns
    (offset = rank * n) add up to the single-process clip_loss, loss and gradients."""
    world, n, d = 4, 5, 6
    x, y = unit(world * n, d, seed=41), unit(world * n, d, seed=42)
    t = torch.tensor(9.0, dtype=torch.float64)

    def distributed(a, b, s):
        total = 0
        for rank in range(world):
            rows = slice(rank * n, (rank + 1) * n)
            i2t = infonce_rows(a[rows], b, s, rank * n, chunk_size=chunk)
            t2i = infonce_rows(b[rows], a, s, rank * n, chunk_size=chunk)
            total = total + (i2t.sum() + t2i.sum()) / (2 * world * n)
        return total

    assert_grads_close(loss_and_grads(distributed, x, y, t), loss_and_grads(clip_loss, x, y, t), 1e-12)


@pytest.mark.parametrize("chunk", [None, 2])
def test_siglip_loss_from_blocks_per_rank(chunk):
    world, n, d = 3, 4, 5
    x, y = unit(world * n, d, seed=43), unit(world * n, d, seed=44)
    t, b = torch.tensor(10.0, dtype=torch.float64), torch.tensor(-5.0, dtype=torch.float64)

    def ring(a, c, s, o):
        total = 0
        for rank in range(world):
            mine = slice(rank * n, (rank + 1) * n)
            total = total + siglip_block(a[mine], c[mine], s, o, positives=True, chunk_size=chunk)
            for other in range(world):
                if other != rank:
                    theirs = slice(other * n, (other + 1) * n)
                    total = total + siglip_block(a[mine], c[theirs], s, o, positives=False, chunk_size=chunk)
        return total / (world * n)

    assert_grads_close(loss_and_grads(ring, x, y, t, b), loss_and_grads(siglip_loss, x, y, t, b), 1e-12)


def test_empty_blocks_for_uneven_ranks():
    x, y = unit(0, 4), unit(5, 4)
    for chunk in (None, 2):
        assert float(siglip_block(x, y, 2.0, -1.0, positives=False, chunk_size=chunk)) == 0.0
        assert float(siglip_block(y, x, 2.0, -1.0, positives=False, chunk_size=chunk)) == 0.0
        assert infonce_rows(x, y, 2.0, 0, chunk_size=chunk).shape == (0,)
    with pytest.raises(ValueError, match="image_emb is empty"):
        clip_loss(x, x, 1.0)


# --------------------------------------------------------------------------------------------
# Modes: no_grad, partial requires_grad, half precision, auto chunk, memory
# --------------------------------------------------------------------------------------------

def test_no_grad_and_partial_requires_grad():
    x, y = unit(20, 8, seed=51), unit(20, 8, seed=52)
    t, b = torch.tensor(5.0, dtype=torch.float64), torch.tensor(-3.0, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(siglip_loss(x, y, t, b, chunk_size=6), siglip_loss(x, y, t, b))
        torch.testing.assert_close(clip_loss(x, y, t, chunk_size=6), clip_loss(x, y, t))
    pairs = ((lambda a, c, s, k=None: siglip_loss(a, c, s, b, chunk_size=k)),
             (lambda a, c, s, k=None: clip_loss(a, c, s, chunk_size=k)))
    for fn in pairs:
        xa, xr = leaf(x), leaf(x)                        # only the image side is trained
        fn(xa, y, t, 6).backward()
        fn(xr, y, t).backward()
        torch.testing.assert_close(xa.grad, xr.grad, rtol=1e-11, atol=1e-14)
    for fn in pairs:                                     # only the text side (locked image tower)
        ya, yr = leaf(y), leaf(y)
        fn(x, ya, t, 6).backward()
        fn(x, yr, t).backward()
        torch.testing.assert_close(ya.grad, yr.grad, rtol=1e-11, atol=1e-14)
    for fn in pairs:                                     # only the scale (both towers frozen)
        ta, tr = leaf(t), leaf(t)
        fn(x, y, ta, 7).backward()
        fn(x, y, tr).backward()
        torch.testing.assert_close(ta.grad, tr.grad, rtol=1e-11, atol=0)
    for k_side in (True, False):                         # infonce_rows with one side trained
        q, k = (leaf(x), y) if k_side else (x, leaf(y))
        q2, k2 = (leaf(x), y) if k_side else (x, leaf(y))
        infonce_rows(q, k, t, 0, chunk_size=6).sum().backward()
        infonce_rows(q2, k2, t, 0).sum().backward()
        got, want = (q.grad, q2.grad) if k_side else (k.grad, k2.grad)
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-14)


def test_python_number_scale_and_auto_chunk():
    x, y = unit(30, 8, seed=53), unit(30, 8, seed=54)
    torch.testing.assert_close(clip_loss(x, y, 10.0, chunk_size="auto"), clip_loss(x, y, 10.0))
    torch.testing.assert_close(siglip_loss(x, y, 10.0, -10, chunk_size="auto"), siglip_loss(x, y, 10.0, -10.0))
    assert DEFAULT_CHUNK_SIZE >= 256


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_are_computed_in_float32(dtype):
    x, y = unit(24, 16, dtype, seed=55), unit(24, 16, dtype, seed=56)
    t = torch.tensor(14.3, dtype=dtype)
    xa, ya = leaf(x), leaf(y)
    loss = clip_loss(xa, ya, t, chunk_size=5)
    loss.backward()
    assert loss.dtype == dtype and xa.grad.dtype == dtype
    ref = clip_loss(x.float(), y.float(), t.float())
    torch.testing.assert_close(loss.float(), ref, rtol=1e-2, atol=0)
    loss = siglip_loss(xa, ya, t, torch.tensor(-10.0, dtype=dtype), chunk_size=5)
    assert loss.dtype == dtype and torch.isfinite(loss)


class _LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("which", ["clip", "siglip", "rows"])
def test_chunked_never_creates_an_n_by_n_tensor(which):
    n, d, chunk = 512, 16, 64
    x, y = leaf(unit(n, d, torch.float32, seed=57)), leaf(unit(n, d, torch.float32, seed=58))
    t, b = leaf(torch.tensor(10.0)), leaf(torch.tensor(-5.0))
    with _LargestTensor() as probe:
        if which == "clip":
            loss = clip_loss(x, y, t, chunk_size=chunk)
        elif which == "siglip":
            loss = siglip_loss(x, y, t, b, chunk_size=chunk)
        else:
            loss = infonce_rows(x, y, t, 0, chunk_size=chunk).mean()
        loss.backward()
    assert probe.largest <= max(chunk * chunk, n * d), probe.largest
    with _LargestTensor() as probe:
        clip_loss(x, y, t).backward()
    assert probe.largest >= n * n                      # the probe does see the plain path's matrix


# --------------------------------------------------------------------------------------------
# Distillation
# --------------------------------------------------------------------------------------------

def test_cosine_and_l2_distill_against_hand_formulas():
    g = torch.Generator().manual_seed(61)
    s = torch.randn(7, 5, generator=g, dtype=torch.float64)
    t = torch.randn(7, 5, generator=g, dtype=torch.float64)
    cos = [float(torch.dot(s[i], t[i]) / (s[i].norm() * t[i].norm())) for i in range(7)]
    assert math.isclose(float(cosine_distill_loss(s, t)), sum(1 - c for c in cos) / 7, rel_tol=1e-12)
    sn, tn = s / s.norm(dim=1, keepdim=True), t / t.norm(dim=1, keepdim=True)
    hand = sum(float(((sn[i] - tn[i]) ** 2).sum()) for i in range(7)) / 7
    assert math.isclose(float(l2_distill_loss(s, t)), hand, rel_tol=1e-12)
    assert math.isclose(float(l2_distill_loss(s, t)), 2 * float(cosine_distill_loss(s, t)), rel_tol=1e-12)
    raw = sum(float(((s[i] - t[i]) ** 2).sum()) for i in range(7)) / 7
    assert math.isclose(float(l2_distill_loss(s, t, normalize=False)), raw, rel_tol=1e-12)
    assert float(cosine_distill_loss(t * 3, t)) == pytest.approx(0, abs=1e-12)
    sl = leaf(s)
    cosine_distill_loss(sl, t).backward()
    assert sl.grad is not None and torch.isfinite(sl.grad).all()


def test_similarity_kl_against_hand_formula_and_chunked():
    sa, sb = unit(6, 4, seed=62), unit(9, 4, seed=63)
    ta, tb = unit(6, 7, seed=64), unit(9, 7, seed=65)           # teacher is wider than the student
    tau = 0.2
    hand = 0.0
    for i in range(6):
        p = torch.tensor([math.exp(float(ta[i] @ tb[j]) / tau) for j in range(9)], dtype=torch.float64)
        q = torch.tensor([math.exp(float(sa[i] @ sb[j]) / tau) for j in range(9)], dtype=torch.float64)
        p, q = p / p.sum(), q / q.sum()
        hand += float((p * (p / q).log()).sum())
    hand /= 6
    assert math.isclose(float(similarity_kl_loss(sa, sb, ta, tb, tau)), hand, rel_tol=1e-12)
    for chunk in (1, 4, 6, 50):
        want = loss_and_grads(lambda a, b: similarity_kl_loss(a, b, ta, tb, tau), sa, sb)
        got = loss_and_grads(lambda a, b: similarity_kl_loss(a, b, ta, tb, tau, chunk_size=chunk), sa, sb)
        assert_grads_close(got, want, 1e-12, names=("loss", "d_a", "d_b"))
    assert float(similarity_kl_loss(ta, tb, ta, tb, torch.tensor(0.5, dtype=torch.float64))) == pytest.approx(0, abs=1e-14)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

def test_shape_errors_name_both_shapes():
    x, y = unit(4, 3), unit(5, 3)
    with pytest.raises(ValueError, match=r"image_emb has shape \(4, 3\) but text_emb has shape \(5, 3\)"):
        clip_loss(x, y, 1.0)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 6\)"):
        siglip_loss(x, unit(4, 6), 1.0, 0.0, chunk_size=2)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\)"):
        siglip_block(x, y, 1.0, 0.0, positives=True)
    siglip_block(x, y, 1.0, 0.0, positives=False)                   # negatives: any row counts
    with pytest.raises(ValueError, match=r"student has shape \(4, 3\) but teacher has shape \(4, 2\)"):
        cosine_distill_loss(x, unit(4, 2))
    with pytest.raises(ValueError, match=r"student_a has shape \(4, 3\) but teacher_a has shape \(5, 3\)"):
        similarity_kl_loss(x, x, y, y, 1.0)
    with pytest.raises(ValueError, match=r"query has shape \(4, 3\) but keys has shape \(5, 2\)"):
        infonce_rows(x, unit(5, 2), 1.0, 0)


def test_rank_dtype_nan_and_argument_errors():
    x = unit(4, 3)
    with pytest.raises(ValueError, match=r"image_emb must be 2-D.*\(4, 3, 1\)"):
        clip_loss(x[..., None], x, 1.0)
    with pytest.raises(ValueError, match=r"text_emb must be 2-D.*\(3,\)"):
        siglip_loss(x, x[0], 1.0, 0.0)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="text_emb contains NaN"):
        clip_loss(x, bad, 1.0, chunk_size=2)
    with pytest.raises(ValueError, match="teacher contains NaN"):
        l2_distill_loss(x, bad)
    bad[2, 1] = float("inf")
    with pytest.raises(ValueError, match="image_emb contains inf"):
        siglip_loss(bad, x, 1.0, 0.0)
    with pytest.raises(ValueError, match="logit_scale contains NaN"):
        clip_loss(x, x, torch.tensor(float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="logit_bias must be a scalar"):
        siglip_loss(x, x, 1.0, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32"):
        clip_loss(x, x.float(), 1.0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        clip_loss(x, x, 1.0, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size must be None"):
        clip_loss(x, x, 1.0, chunk_size="big")
    with pytest.raises(ValueError, match=r"targets must index the 4 keys"):
        infonce_rows(x, x, 1.0, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match=r"offset 2 with 4 queries"):
        infonce_rows(x, x, 1.0, 2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        similarity_kl_loss(x, x, x, x, 0.0)
    with pytest.raises(TypeError, match="positives must be a bool"):
        siglip_block(x, x, 1.0, 0.0, positives=1)
