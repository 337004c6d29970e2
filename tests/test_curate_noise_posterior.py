"""The noise-aware label quality: Bayes' rule with the confident joint's noise matrix."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tether.curate import label_quality_scores, noise_posterior_quality
from tether.curate.audit import audit
from tether.curate.confident_learning import confident_joint
from tether.curate.label_inputs import LabelInputError
from tether.curate.noise_posterior import noise_matrix


def _class_conditional(seed: int, n: int = 6000, k: int = 6, rate: float = 0.1):
    """Soft probabilities of the true class; labels flipped only within the pairs (0, 1) and (2, 3)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) * 1.2
    logits[np.arange(n), truth] += 2.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    given = truth.copy()
    partner = {0: 1, 1: 0, 2: 3, 3: 2}
    flip = np.isin(truth, list(partner)) & (rng.random(n) < rate)
    given[flip] = [partner[int(t)] for t in truth[flip]]
    return given, p, flip


def test_noise_matrix_columns_are_conditional_distributions():
    joint = np.array([[90, 10, 0], [5, 80, 0], [5, 10, 100]])
    n = noise_matrix(joint, pseudo_count=0)
    np.testing.assert_allclose(n.sum(axis=0), 1.0, rtol=0, atol=1e-15)
    assert n[1, 0] == pytest.approx(5 / 100) and n[2, 2] == pytest.approx(1.0)
    smoothed = noise_matrix(joint, pseudo_count=1)
    assert smoothed[0, 2] == pytest.approx(1 / 102)          # never seen, yet possible
    assert smoothed[2, 2] == pytest.approx(100 / 102)


def test_equals_bayes_rule_by_hand():
    joint = np.array([[80.0, 30.0], [20.0, 70.0]])             # P(given | true): [[.8, .3], [.2, .7]]
    p = np.array([[0.6, 0.4], [0.1, 0.9], [0.5, 0.5]])
    given = np.array([0, 0, 1])
    q = noise_posterior_quality(given, p, joint=joint, pseudo_count=0)
    expected = [0.8 * 0.6 / (0.8 * 0.6 + 0.3 * 0.4), 0.8 * 0.1 / (0.8 * 0.1 + 0.3 * 0.9),
                0.7 * 0.5 / (0.2 * 0.5 + 0.7 * 0.5)]
    np.testing.assert_allclose(q, expected, rtol=1e-12)


def test_uniform_noise_orders_as_self_confidence():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=500)
    given = rng.integers(0, 4, 500)
    joint = 100 * (np.full((4, 4), 0.05) + np.eye(4) * 0.80)   # N: 0.85 on the diagonal, 0.05 elsewhere
    q = noise_posterior_quality(given, p, joint=joint, pseudo_count=0)
    sc = label_quality_scores(given, p)
    # q = a p_y / (b + (a - b) p_y): increasing in p_y, so the same order as self-confidence
    np.testing.assert_allclose(q, 0.85 * sc / (0.05 + 0.80 * sc), rtol=1e-12)
    assert np.all(np.diff(q[np.argsort(sc)]) >= 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_class_conditional_flips_better_than_self_confidence(seed):
    given, p, flip = _class_conditional(seed)
    q = noise_posterior_quality(given, p)
    sc = label_quality_scores(given, p)
    assert roc_auc_score(flip, -q) > roc_auc_score(flip, -sc) + 0.01
    k = int(flip.sum())
    assert flip[np.argsort(q)[:k]].mean() > flip[np.argsort(sc)[:k]].mean()


def test_default_joint_is_the_calibrated_confident_joint():
    given, p, _ = _class_conditional(0, n=800)
    np.testing.assert_allclose(noise_posterior_quality(given, p),
                               noise_posterior_quality(given, p, joint=confident_joint(given, p)), rtol=0)


def test_audit_ranks_by_it_and_checks_input():
    given, p, flip = _class_conditional(1, n=1200)
    x = np.log(p).astype(np.float32)
    a = audit(x, given, [str(c) for c in range(6)], probs="probe", rank="noise_posterior", with_vote=False)
    np.testing.assert_allclose(a.noise_posterior, noise_posterior_quality(given, a.pred_probs), rtol=0)
    assert np.all(np.diff(a.noise_posterior[a.order]) >= 0)
    with pytest.raises(LabelInputError, match="3 x 3 but pred_probs has 6 classes"):
        noise_posterior_quality(given, p, joint=np.eye(3))
    with pytest.raises(LabelInputError, match=r"labels\[0\] = 9 is outside"):
        noise_posterior_quality(np.r_[9, given[1:]], p)
