"""Temperature (logit scale) fitting, ECE, the abstain rule, precision targets and the probability sources."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tether.curate.calibration import (ACCEPT, REVIEW, accepted_share, decide, expected_calibration_error,
                                       fit_scale, nll, per_class_thresholds_for_precision, softmax,
                                       threshold_for_precision)
from tether.curate.label_inputs import LabelInputError
from tether.curate.weak_labels import (cross_val_probe_probs, neighbour_vote, prototype_blend,
                                       text_neighbour_quality, top_k)


def _sampled(scale: float, n: int = 20000, k: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine-like logits and labels drawn from softmax(scale * logits): the true scale is known."""
    rng = np.random.default_rng(seed)
    logits = rng.uniform(-0.3, 0.3, size=(n, k))
    p = softmax(logits, scale)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, y


def test_fit_scale_recovers_the_generating_scale_and_lowers_nll():
    logits, y = _sampled(12.0)
    fit = fit_scale(logits, y, model_scale=100.0)
    assert fit.source == "fitted"
    assert abs(fit.scale - 12.0) / 12.0 < 0.05          # 20k samples: a few percent of sampling error
    grid = np.exp(np.linspace(math.log(1), math.log(100), 400))
    assert fit.nll_after <= min(nll(logits, y, s) for s in grid) + 1e-9
    assert fit.nll_after < fit.nll_before
    assert fit.ece_after < 0.02 < fit.ece_before         # overconfident at 100, calibrated after
    assert fit.temperature == pytest.approx(1 / fit.scale)


def test_ece_by_hand():
    # bin (0.6, 0.6667]: two rows at 0.65, one right -> |0.5 - 0.65| * 2/4; bin (0.9333, 1]: two at 0.95, both right
    p = np.array([[0.65, 0.35], [0.65, 0.35], [0.95, 0.05], [0.05, 0.95]])
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.15 + 0.5 * 0.05)


def test_abstain_rule_and_per_class_thresholds():
    p = np.array([[0.9, 0.05, 0.05], [0.5, 0.45, 0.05], [0.3, 0.3, 0.4], [0.1, 0.7, 0.2]])
    assert decide(p, min_confidence=0.6).tolist() == [ACCEPT, REVIEW, REVIEW, ACCEPT]
    assert decide(p, min_margin=0.2).tolist() == [ACCEPT, REVIEW, REVIEW, ACCEPT]
    assert decide(p, class_thresholds=[0.95, 0.5, 0.35]).tolist() == [REVIEW, REVIEW, ACCEPT, ACCEPT]
    share = accepted_share(p, [0, 0, 2, 2], min_confidence=0.6)
    assert share == {"rows": 4, "accepted": 2, "share": 0.5, "precision": 0.5}
    with pytest.raises(LabelInputError, match="class_thresholds has 2 entries for 3 classes"):
        decide(p, class_thresholds=[0.5, 0.5])


def test_threshold_for_precision_by_hand():
    conf = np.array([0.99, 0.95, 0.9, 0.9, 0.8, 0.7])
    right = np.array([1, 1, 1, 0, 1, 0])
    assert threshold_for_precision(conf, right, 1.0) == 0.95        # ties at 0.9 enter together
    assert threshold_for_precision(conf, right, 0.8) == 0.8          # 4 of 5
    assert threshold_for_precision(conf, np.zeros(6), 0.5) == math.inf
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    t = per_class_thresholds_for_precision(p, [0, 0, 1, 1, 1], 1.0)
    assert per_class_thresholds_for_precision(p, [0, 0, 1, 1, 0], 1.0)[1] == math.inf   # its most confident is wrong
    assert t[0] == 0.8 and t[1] == 0.7


def test_neighbour_vote_matches_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8))
    y = rng.integers(0, 4, 300)
    v = neighbour_vote(x, y, 4, k=5, alpha=0.0)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argsort(-sim, axis=1)[:, :5]
    ref = np.stack([np.bincount(y[r], minlength=4) / 5 for r in nn])
    np.testing.assert_allclose(v, ref)
    smoothed = neighbour_vote(x, y, 4, k=5, alpha=1.0)
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0)


def test_cross_validated_probe_is_out_of_sample():
    """Random labels on 200 points in 64 dimensions: an in-sample probe memorises them; the
    cross-validated probabilities must not (accuracy near chance)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 64))
    y = rng.integers(0, 2, 200)
    probs, lam = cross_val_probe_probs(x, y, 2, folds=5, l2_lambda=1e-6)
    assert lam == 1e-6
    assert (probs.argmax(axis=1) == y).mean() < 0.65
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # with signal it predicts well
    centres = rng.normal(size=(3, 64)) * 3
    y3 = rng.integers(0, 3, 300)
    x3 = centres[y3] + rng.normal(size=(300, 64))
    probs3, _ = cross_val_probe_probs(x3, y3, 3, folds=3)
    assert (probs3.argmax(axis=1) == y3).mean() > 0.9


def test_text_neighbour_quality_and_prototypes():
    p = np.array([[0.8, 0.2], [0.1, 0.9]])
    v = np.array([[0.6, 0.4], [0.5, 0.5]])
    np.testing.assert_allclose(text_neighbour_quality(p, v, [0, 0]), [0.7, 0.3])
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    xs = np.array([[0.0, 1.0], [0.0, 2.0]])
    assert torch.allclose(prototype_blend(w, xs, [0, 0], alpha=0.0), w)
    blended = prototype_blend(w, xs, [0, 0], alpha=1.0)
    assert torch.allclose(blended[0], torch.tensor([0.0, 1.0])) and torch.allclose(blended[1], w[1])
    idx, pr = top_k(np.array([[0.2, 0.5, 0.3]]), 2)
    assert idx.tolist() == [[1, 2]] and pr.tolist() == [[0.5, 0.3]]
