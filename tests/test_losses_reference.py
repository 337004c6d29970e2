"""tether.losses: the plain references against explicit formulas (loops, fp64), and
gradcheck of the custom autograd Functions."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tether.losses import clip_loss, infonce_rows, siglip_block, siglip_loss
from tether.losses.infonce import _InfoNCERows, _SymmetricInfoNCE
from tether.losses.siglip import _SigLIPBlock
from losses_common import leaf, unit

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


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
