"""Confident learning (Northcutt et al., 2021): which given labels are probably wrong, cleanlab 2.9's rules.

With per-class thresholds t_k (``label_quality.per_class_thresholds``), an example is *confidently*
of class j when p_j >= t_j - 1e-6 (of the largest p among several such classes; of none: not
counted). The **confident joint** C[i, j] counts examples labelled i confidently of class j (each
diagonal entry at least 1); *calibrated*, its rows are rescaled to the label counts and the
whole to N, then rounded keeping row totals.

``find_label_issues`` (a boolean mask) removes, per filter:

* ``prune_by_class``: in each class k, the ``n_k - C[k, k]`` examples with the lowest p_k;
* ``prune_by_noise_rate``: for each off-diagonal C[k, j], the C[k, j] examples labelled k with the
  largest margin p_j - p_k;
* ``both``: flagged by both; ``confident_learning``: the off-diagonal examples of the joint;
* ``predicted_neq_given``: argmax != label; ``low_self_confidence`` / ``low_normalized_margin``: the
  ``num_label_issues`` lowest-scoring examples.

The count matrix is first adjusted to leave ``min_examples_per_class`` per class and scaled by
``frac_noise`` (or set by ``num_to_remove_per_class``); a flagged example whose own label is
(within 1e-6) the predicted class is unflagged, except by the two ``low_*`` filters. Ties are
broken by numpy's default ``argsort`` on the same values, so the masks equal
``cleanlab.filter.find_label_issues`` on the same inputs (tested on random and structured cases).
Unlike cleanlab, a class without examples is refused (``label_inputs``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .label_inputs import LabelInputError, check_label_inputs
from .label_quality import _scores, per_class_thresholds, rank_issues

__all__ = ["FILTERS", "confident_joint", "calibrate_joint", "estimate_joint", "find_label_issues",
           "num_label_issues", "round_preserving_row_totals"]

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_normalized_margin", "low_self_confidence")
_COUNT_FILTERS = ("prune_by_noise_rate", "prune_by_class", "both")
FUZZ = 1e-6            # cleanlab's FLOATING_POINT_COMPARISON
TINY = 1e-100


def _round_preserving_sum(row: np.ndarray) -> np.ndarray:
    """Round to integers keeping the (rounded) sum: the entries with the largest rounding loss move."""
    floats = np.asarray(row, dtype=float)
    ints = floats.round()
    target, total = np.sum(floats).round(), np.sum(ints).round()
    while abs(total - target) > FUZZ:
        diff = np.round(target - total)
        step = -1 if diff < 0 else 1
        changes = min(int(abs(diff)), len(row))
        ints[np.argsort(floats - ints)[::-step][:changes]] += step
        total = np.sum(ints).round()
    return ints.astype(int)


def round_preserving_row_totals(matrix: np.ndarray) -> np.ndarray:
    """Each row rounded to integers with its total kept."""
    return np.apply_along_axis(_round_preserving_sum, 1, matrix).astype(int)


def calibrate_joint(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows rescaled to the label counts, the total to N, rounded keeping row totals."""
    counts = np.bincount(labels, minlength=len(joint))
    out = (joint.T / np.clip(joint.sum(axis=1), a_min=TINY, a_max=None) * counts).T
    out = out / np.clip(np.sum(out), a_min=TINY, a_max=None) * counts.sum()
    return round_preserving_row_totals(out)


def _confident_counts(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (uncalibrated confident joint, indices of the confidently counted off-diagonal examples)."""
    k = pred_probs.shape[1]
    confident = pred_probs >= per_class_thresholds(labels, pred_probs) - 1e-6
    n_confident = confident.sum(axis=1)
    guess = np.where(n_confident > 1, pred_probs.argmax(axis=1), confident.argmax(axis=1))
    counted = n_confident > 0
    given, true = labels[counted], guess[counted]
    by_true = np.zeros((k, k), dtype=np.int64)
    np.add.at(by_true, (true, given), 1)
    # Stored transposed (column-major), as cleanlab's transposed confusion matrix is: the calibration's
    # float sums then add in the same order, so halves round the same way.
    joint = by_true.T
    np.fill_diagonal(joint, joint.diagonal().clip(min=1))
    return joint, np.arange(len(labels))[counted][true != given]


def confident_joint(labels: Any, pred_probs: Any, *, calibrate: bool = True,
                    return_indices_of_off_diagonals: bool = False) -> Any:
    """The (K, K) confident joint C[given, true] (``cleanlab.count.compute_confident_joint``);
    with ``return_indices_of_off_diagonals`` also the indices of the off-diagonal examples."""
    y, p = check_label_inputs(labels, pred_probs, every_class=True)
    joint, off = _confident_counts(y, p)
    if calibrate:
        joint = calibrate_joint(joint, y)
    return (joint, off) if return_indices_of_off_diagonals else joint


def estimate_joint(labels: Any, pred_probs: Any) -> np.ndarray:
    """P(given label i, true label j): the calibrated confident joint divided by N."""
    joint = confident_joint(labels, pred_probs)
    return joint / np.clip(float(np.sum(joint)), a_min=TINY, a_max=None)


def _agrees(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Rows whose given label is the predicted class once it gets +1e-6 (never flagged)."""
    nudged = np.copy(pred_probs)
    nudged[np.arange(len(labels)), labels] += FUZZ
    return nudged.argmax(axis=1) == labels


def num_label_issues(labels: Any, pred_probs: Any) -> int:
    """Estimated number of label issues: off-diagonal examples of the confident joint not agreeing
    with the prediction (cleanlab's default ``estimation_method="off_diagonal"``)."""
    y, p = check_label_inputs(labels, pred_probs, every_class=True)
    return _num_issues(y, p)


def _num_issues(y: np.ndarray, p: np.ndarray) -> int:
    _, off = _confident_counts(y, p)
    mask = np.zeros(len(y), dtype=bool)
    mask[off] = True
    mask[_agrees(y, p)] = False
    return int(mask.sum())


def _prune_matrix(joint: np.ndarray, min_examples: int, frac_noise: float) -> np.ndarray:
    """The transposed joint with each diagonal raised to ``min_examples`` (taken evenly from the
    column's non-zero noise counts) and the noise counts scaled by ``frac_noise``."""
    pcm = joint.T
    diag = np.diagonal(pcm)
    new_diag = np.maximum(diag, min_examples)
    per_entry = (new_diag - diag) / np.maximum(np.count_nonzero(pcm, axis=0) - 1.0, 1.0)
    new = pcm - per_entry
    new[new < 0] = 0
    np.fill_diagonal(new, new_diag)
    scaled = new * frac_noise
    np.fill_diagonal(scaled, new.diagonal())
    np.fill_diagonal(scaled, new.diagonal() + np.sum(new - scaled, axis=0))
    return round_preserving_row_totals(scaled.astype(int)).astype(int)


def _remove_per_class(pcm: np.ndarray, counts: np.ndarray, num_to_remove: Sequence[int]) -> np.ndarray:
    """Noise counts redistributed so class k loses ``num_to_remove[k]`` examples."""
    remove = np.asarray(num_to_remove)
    psy = pcm / np.sum(pcm, axis=1)
    noise = psy.sum(axis=1) - psy.diagonal()
    tmp = (psy.T * remove / noise).T
    np.fill_diagonal(tmp, counts - remove)
    return round_preserving_row_totals(tmp)


def _per_class(y: np.ndarray, p: np.ndarray, pcm: np.ndarray, min_examples: int, pick: Any) -> np.ndarray:
    """The mask made class by class: ``pick(probs of the rows labelled k, k)`` marks rows of classes with
    more than ``min_examples`` rows; a class of one row is never marked (cleanlab's rule)."""
    mask = np.zeros(len(y), dtype=bool)
    for k in range(p.shape[1]):
        rows = y == k
        probs = p[rows]
        part = np.zeros(len(probs), dtype=bool)
        if len(probs) > min_examples:
            pick(part, probs, k)
        if len(part) > 1:
            mask[rows] = part
    return mask


def _by_class(y: np.ndarray, p: np.ndarray, pcm: np.ndarray, min_examples: int) -> np.ndarray:
    def pick(part: np.ndarray, probs: np.ndarray, k: int) -> None:   # the n_k - C[k, k] lowest p_k
        if len(probs) - pcm[k, k] >= 1:
            part[np.argsort(probs[:, k])[:len(probs) - pcm[k, k]]] = True
    return _per_class(y, p, pcm, min_examples, pick)


def _by_noise_rate(y: np.ndarray, p: np.ndarray, pcm: np.ndarray, min_examples: int) -> np.ndarray:
    def pick(part: np.ndarray, probs: np.ndarray, k: int) -> None:   # per true class j: largest p_j - p_k
        for j in range(p.shape[1]):
            if j != k and pcm[j, k] > 0:
                part[np.argsort(-(probs[:, j] - probs[:, k]))[:pcm[j, k]]] = True
    return _per_class(y, p, pcm, min_examples, pick)


def find_label_issues(labels: Any, pred_probs: Any, filter_by: str = "prune_by_noise_rate", *,
                      return_indices_ranked_by: str | None = None, rank_by_kwargs: dict | None = None,
                      frac_noise: float = 1.0, num_to_remove_per_class: Sequence[int] | None = None,
                      min_examples_per_class: int = 1, confident_joint: np.ndarray | None = None,
                      n_jobs: int | None = None, verbose: bool = False) -> np.ndarray:
    """Boolean mask of the examples whose label is probably wrong (module docstring); with
    ``return_indices_ranked_by`` (a ``label_quality_scores`` method) their indices, worst first.

    Same arguments and results as ``cleanlab.filter.find_label_issues`` (multi-label aside);
    ``n_jobs`` and ``verbose`` are accepted for compatibility and change nothing.
    """
    if filter_by not in FILTERS:
        raise LabelInputError(f"filter_by must be one of {', '.join(FILTERS)}, got {filter_by!r}")
    if num_to_remove_per_class is not None and filter_by not in _COUNT_FILTERS:
        raise LabelInputError(f"num_to_remove_per_class works with filter_by {', '.join(_COUNT_FILTERS)}, "
                              f"not {filter_by!r}")
    if not 0 <= frac_noise <= 1:
        raise LabelInputError(f"frac_noise must be in [0, 1], got {frac_noise!r}")
    y, p = check_label_inputs(labels, pred_probs, every_class=True)
    k = p.shape[1]
    if num_to_remove_per_class is not None and len(num_to_remove_per_class) != k:
        raise LabelInputError(f"num_to_remove_per_class has {len(num_to_remove_per_class)} entries for {k} classes")
    off = None
    if confident_joint is None or filter_by == "confident_learning":
        joint, off = _confident_counts(y, p)
        joint = calibrate_joint(joint, y)
    else:
        joint = np.asarray(confident_joint)
        if joint.shape != (k, k):
            raise LabelInputError(f"confident_joint has shape {joint.shape}, expected ({k}, {k})")
    if filter_by in _COUNT_FILTERS:
        pcm = _prune_matrix(joint, min_examples_per_class, frac_noise)
        if num_to_remove_per_class is not None:
            pcm = _remove_per_class(pcm, np.bincount(y, minlength=k), num_to_remove_per_class)
        if filter_by == "prune_by_class":
            mask = _by_class(y, p, pcm, min_examples_per_class)
        elif filter_by == "prune_by_noise_rate":
            mask = _by_noise_rate(y, p, pcm, min_examples_per_class)
        else:
            mask = _by_class(y, p, pcm, min_examples_per_class) & _by_noise_rate(y, p, pcm, min_examples_per_class)
    elif filter_by == "predicted_neq_given":
        mask = np.argmax(p, axis=1) != y
    else:
        mask = np.zeros(len(y), dtype=bool)
        if filter_by == "confident_learning":
            mask[off] = True
        else:
            scores = _scores(y, p, filter_by[len("low_"):])
            mask[np.argsort(scores)[:_num_issues(y, p)]] = True
    if not filter_by.startswith("low_"):
        mask[_agrees(y, p)] = False
    if return_indices_ranked_by is not None:
        return rank_issues(mask, y, p, return_indices_ranked_by, **(rank_by_kwargs or {}))
    return mask
