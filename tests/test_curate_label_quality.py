"""Label-quality scores and confident learning against cleanlab 2.9 (the reference), and input checks."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from tether.curate import find_label_issues, label_quality_scores
from tether.curate.confident_learning import FILTERS, confident_joint, estimate_joint, num_label_issues
from tether.curate.label_inputs import LabelInputError
from tether.curate.label_quality import METHODS, per_class_thresholds

cleanlab_filter = pytest.importorskip("cleanlab.filter")
cleanlab_rank = pytest.importorskip("cleanlab.rank")
cleanlab_count = pytest.importorskip("cleanlab.count")

COUNT_FILTERS = ("prune_by_noise_rate", "prune_by_class", "both")


def _case(rng: np.random.Generator, trial: int) -> tuple[np.ndarray, np.ndarray]:
    """Random and structured inputs: ties (rounded logits), float32, a one-example class, labels that
    mostly agree with the prediction, every class present."""
    k = int(rng.integers(2, 9))
    n = int(rng.integers(2 * k, 160))
    logits = rng.normal(size=(n, k)) * rng.uniform(0.3, 6)
    if trial % 3 == 0:
        logits = np.round(logits)                       # many exact ties
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    if trial % 4 == 0:
        p = p.astype(np.float32)
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    if trial % 2:
        y = np.where(rng.random(n) < 0.7, p.argmax(axis=1), y)
    if trial % 5 == 0:                                 # a class with a single example
        y[y == k - 1] = 0
        y[-1] = k - 1
    for c in range(k):
        if not (y == c).any():
            y[c] = c
    return y, p


CASES = [_case(np.random.default_rng(seed), seed) for seed in range(60)]


@pytest.mark.parametrize("method", list(METHODS))
def test_scores_equal_cleanlab(method):
    for y, p in CASES:
        ours = label_quality_scores(y, p, method=method)
        ref = cleanlab_rank.get_label_quality_scores(y, p, method=method)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
        if method != "confidence_weighted_entropy":
            ours = label_quality_scores(y, p, method, adjust_pred_probs=True)
            ref = cleanlab_rank.get_label_quality_scores(y, p, method=method, adjust_pred_probs=True)
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


def test_scores_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    y = np.array([0, 1])
    np.testing.assert_allclose(label_quality_scores(y, p), [0.7, 0.3])
    np.testing.assert_allclose(label_quality_scores(y, p, "normalized_margin"), [(0.7 - 0.2 + 1) / 2, (0.3 - 0.6 + 1) / 2])


@pytest.mark.parametrize("filter_by", FILTERS)
def test_masks_equal_cleanlab(filter_by):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y, p in CASES:
            ref = cleanlab_filter.find_label_issues(y, p, filter_by=filter_by, n_jobs=1)
            np.testing.assert_array_equal(find_label_issues(y, p, filter_by=filter_by), ref)
            if filter_by in COUNT_FILTERS:
                for kw in ({"frac_noise": 0.4}, {"min_examples_per_class": 4}):
                    ref = cleanlab_filter.find_label_issues(y, p, filter_by=filter_by, n_jobs=1, **kw)
                    np.testing.assert_array_equal(find_label_issues(y, p, filter_by=filter_by, **kw), ref)


def test_num_to_remove_and_ranked_indices_equal_cleanlab():
    rng = np.random.default_rng(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y, p in CASES[:30]:
            k = p.shape[1]
            remove = [int(min((y == c).sum() - 1, rng.integers(0, 3))) for c in range(k)]
            for f in COUNT_FILTERS:
                try:
                    ref = cleanlab_filter.find_label_issues(y, p, filter_by=f, n_jobs=1, num_to_remove_per_class=remove)
                except Exception:       # cleanlab divides by a zero noise rate on some inputs
                    continue
                np.testing.assert_array_equal(find_label_issues(y, p, f, num_to_remove_per_class=remove), ref)
            for rank_by in METHODS:
                ref = cleanlab_filter.find_label_issues(y, p, return_indices_ranked_by=rank_by, n_jobs=1)
                np.testing.assert_array_equal(find_label_issues(y, p, return_indices_ranked_by=rank_by), ref)


def test_confident_joint_thresholds_and_count_equal_cleanlab():
    for y, p in CASES:
        np.testing.assert_array_equal(per_class_thresholds(y, p), cleanlab_count.get_confident_thresholds(y, p))
        for calibrate in (True, False):
            ours, off = confident_joint(y, p, calibrate=calibrate, return_indices_of_off_diagonals=True)
            ref, ref_off = cleanlab_count.compute_confident_joint(y, p, calibrate=calibrate,
                                                                  return_indices_of_off_diagonals=True)
            np.testing.assert_array_equal(ours, ref)
            np.testing.assert_array_equal(off, ref_off)
        assert num_label_issues(y, p) == cleanlab_count.num_label_issues(y, p)
        np.testing.assert_allclose(estimate_joint(y, p), cleanlab_count.estimate_joint(y, p), atol=1e-12)


def test_flipped_labels_are_found():
    """Confident probabilities with 10% of labels flipped: the flips are what the filters find."""
    rng = np.random.default_rng(3)
    n, k = 2000, 5
    truth = rng.integers(0, k, n)
    p = np.full((n, k), 0.05)
    p[np.arange(n), truth] = 0.8
    given = truth.copy()
    flip = rng.random(n) < 0.1
    given[flip] = (truth[flip] + 1 + rng.integers(0, k - 1, flip.sum())) % k
    mask = find_label_issues(given, p)
    np.testing.assert_array_equal(mask, flip)
    assert label_quality_scores(given, p)[flip].max() < label_quality_scores(given, p)[~flip].min()


@pytest.mark.parametrize("labels, probs, message", [
    ([0, 1, 5], np.eye(3), r"labels\[2\] = 5 is outside the 3 classes"),
    ([0, 1], np.eye(3), "labels has 2 entries but pred_probs has 3 rows"),
    ([0, 1, 1], [[0.5, 0.5, 0], [0.2, 0.2, 0.2], [0, 1, 0]], "pred_probs row 1 sums to 0.6"),
    ([0, 1, 1], [[0.5, 0.5, 0], [np.nan, 0.5, 0.5], [0, 1, 0]], "pred_probs row 1 has NaN"),
    ([0, 1, 1], [[1.5, -0.5, 0], [0, 1, 0], [0, 1, 0]], r"pred_probs row 0 has values outside \[0, 1\]"),
    ([0, 0], [[1.0], [1.0]], "at least 2 classes"),
    ([0.5, 1, 1], np.eye(3), r"labels\[0\] = 0.5 is not an integer"),
])
def test_bad_input_is_one_line_naming_the_row(labels, probs, message):
    for call in (lambda: label_quality_scores(labels, np.asarray(probs, dtype=float)),
                 lambda: find_label_issues(labels, np.asarray(probs, dtype=float))):
        with pytest.raises(LabelInputError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_class_without_examples_is_refused_by_the_filters():
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
    with pytest.raises(LabelInputError, match=r"class 2 has no examples in labels"):
        find_label_issues([0, 1, 0], p)
    assert label_quality_scores([0, 1, 0], p).shape == (3,)   # scores do not need every class
    with pytest.raises(LabelInputError, match="filter_by must be one of"):
        find_label_issues([0, 1, 2], p, filter_by="prune_by_magic")
    with pytest.raises(LabelInputError, match="method must be one of"):
        label_quality_scores([0, 1, 2], p, method="vibes")
