"""Label-quality scores: how likely each given label is right, cleanlab 2.9's definitions.

For an example with given label k and predicted probabilities p (K classes), lower = more likely
mislabelled, every score in [0, 1]:

* ``self_confidence``: ``p[k]``;
* ``normalized_margin``: ``(p[k] - max_{j != k} p[j] + 1) / 2``;
* ``confidence_weighted_entropy``: with ``H = -sum p log p / log K`` (normalised entropy) and
  ``s = H / max(p[k], 1e-6)``: ``log(s + 1) / max(s, 1e-6)``.

``adjust_pred_probs=True`` first subtracts the per-class thresholds (mean of p_k over the examples
labelled k), shifts by the largest threshold and renormalises each row, as cleanlab does for class
imbalance. The results equal ``cleanlab.rank.get_label_quality_scores`` on the same inputs (tested
to 1e-9); inputs are checked first (``label_inputs``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .label_inputs import LabelInputError, check_label_inputs

__all__ = ["label_quality_scores", "self_confidence", "normalized_margin", "confidence_weighted_entropy",
           "normalized_entropy", "per_class_thresholds", "adjust_for_thresholds", "rank_issues", "METHODS"]

CLIP_LOW = 1e-6            # cleanlab's CLIPPING_LOWER_BOUND
THRESHOLD_FLOOR = 2e-6     # cleanlab's CONFIDENT_THRESHOLDS_LOWER_BOUND
EMPTY_CLASS_THRESHOLD = 2  # above any probability: nobody is confidently counted into an empty class


def self_confidence(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``p[i, labels[i]]``."""
    return pred_probs[np.arange(labels.shape[0]), labels]


def normalized_margin(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``(p[label] - max over the other classes + 1) / 2``."""
    own = self_confidence(labels, pred_probs)
    others = pred_probs.copy()
    others[np.arange(labels.shape[0]), labels] = -np.inf
    return (own - others.max(axis=1) + 1) / 2


def normalized_entropy(pred_probs: np.ndarray) -> np.ndarray:
    """Entropy of each row divided by log K (0 = certain, 1 = uniform); 0 log 0 = 0."""
    try:        # scipy's xlogy, as cleanlab: the same float32 rounding as cleanlab for float32 inputs
        from scipy.special import xlogy
        plogp = xlogy(pred_probs, pred_probs)
    except ImportError:     # scipy is optional (the curate extra); float64 inputs agree to ~1e-16 either way
        plogp = np.where(pred_probs > 0, pred_probs * np.log(np.where(pred_probs > 0, pred_probs, 1)), 0)
    return -np.sum(plogp, axis=1) / np.log(pred_probs.shape[1])


def confidence_weighted_entropy(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``log(s + 1) / max(s, 1e-6)`` with ``s = normalized entropy / max(p[label], 1e-6)``."""
    own = np.clip(self_confidence(labels, pred_probs), a_min=CLIP_LOW, a_max=None)
    s = normalized_entropy(pred_probs) / own
    return np.log(s + 1) / np.clip(s, a_min=CLIP_LOW, a_max=None)


METHODS = {"self_confidence": self_confidence, "normalized_margin": normalized_margin,
           "confidence_weighted_entropy": confidence_weighted_entropy}


def per_class_thresholds(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """t_k = mean of p_k over the examples labelled k (the expected self-confidence of class k);
    2 for a class without examples; floored at 2e-6. The confident joint counts p_k >= t_k."""
    present = set(np.unique(labels).tolist())
    means = [np.mean(pred_probs[:, k][labels == k]) if k in present else EMPTY_CLASS_THRESHOLD
             for k in range(pred_probs.shape[1])]
    return np.clip(means, a_min=THRESHOLD_FLOOR, a_max=None)


def adjust_for_thresholds(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``p - t`` shifted by ``max(t)`` and renormalised per row (cleanlab's class-imbalance adjustment)."""
    t = per_class_thresholds(labels, pred_probs)
    adjusted = pred_probs - t
    adjusted += t.max()
    adjusted /= adjusted.sum(axis=1, keepdims=True)
    return adjusted


def label_quality_scores(labels: Any, pred_probs: Any, method: str = "self_confidence", *,
                         adjust_pred_probs: bool = False) -> np.ndarray:
    """One score in [0, 1] per example, lower = more likely mislabelled (module docstring).

    Same arguments and results as ``cleanlab.rank.get_label_quality_scores``. ``method`` may be
    passed by keyword or position.
    """
    if method not in METHODS:
        raise LabelInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    y, p = check_label_inputs(labels, pred_probs)
    return _scores(y, p, method, adjust_pred_probs)


def _scores(y: np.ndarray, p: np.ndarray, method: str, adjust_pred_probs: bool = False) -> np.ndarray:
    """The scores of checked inputs."""
    if adjust_pred_probs:
        if method == "confidence_weighted_entropy":
            raise LabelInputError("adjust_pred_probs is not supported with method='confidence_weighted_entropy' "
                                  "(cleanlab refuses it too)")
        p = adjust_for_thresholds(y, p)
    return METHODS[method](y, p)


def rank_issues(mask: np.ndarray, labels: np.ndarray, pred_probs: np.ndarray, rank_by: str,
                **rank_by_kwargs: Any) -> np.ndarray:
    """Indices of the ``True`` rows of ``mask``, most likely mislabelled first (lowest ``rank_by``
    score); cleanlab's ``order_label_issues``."""
    if rank_by not in METHODS:
        raise LabelInputError(f"return_indices_ranked_by must be one of {', '.join(METHODS)}, got {rank_by!r}")
    scores = _scores(labels, pred_probs, rank_by, **rank_by_kwargs)
    return np.arange(len(labels))[mask][np.argsort(scores[mask])]
