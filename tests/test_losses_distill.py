"""tether.losses distillation: cosine / L2 and similarity-KL losses against hand formulas,
chunked equal to plain."""
from __future__ import annotations

import math

import pytest
import torch

from tether.losses import cosine_distill_loss, distill_loss, l2_distill_loss, similarity_kl_loss
from losses_common import assert_grads_close, leaf, loss_and_grads, unit

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


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


def test_distill_loss_by_name_is_the_loss_it_names_and_leaves_the_teacher_alone():
    g = torch.Generator().manual_seed(62)
    s = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    others = torch.randn(9, 4, generator=g, dtype=torch.float64)
    assert torch.equal(distill_loss("cosine", s, t, 20.0), cosine_distill_loss(s, t))
    assert torch.equal(distill_loss("l2", s, t, 20.0), l2_distill_loss(s, t))
    assert torch.equal(distill_loss("kl", s, t, torch.tensor(20.0, dtype=torch.float64)),
                      similarity_kl_loss(s, t, t, t, temperature=1 / 20.0))
    assert torch.equal(distill_loss("kl", s, t, 20.0, batch_teacher=others),
                      similarity_kl_loss(s, others, t, others, temperature=1 / 20.0))
    distill_loss("kl", s, t, 20.0).backward()
    assert s.grad is not None and t.grad is None  # the teacher is detached
    with pytest.raises(ValueError, match="expected one of cosine, l2, kl"):
        distill_loss("mse", s, t, 20.0)
