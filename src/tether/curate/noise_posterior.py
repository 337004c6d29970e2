"""The noise-aware label quality: the probability that a given label is right, by Bayes' rule.

cleanlab's scores rank every example by its own probabilities alone: a "Sandal" that the model
thinks is a Bag ranks as suspect as one it thinks is a Sneaker. Real label noise is
class-conditional (annotators confuse look-alike classes), and confident learning already estimates
how: the confident joint C[i, j] counts examples labelled i that are confidently of class j. Its
columns give the noise matrix

    N[i, j] = P(given = i | true = j) = (C[i, j] + a [i != j]) / sum_i' (C[i', j] + a [i' != j])

(``a``: a pseudo-count on the off-diagonal, Laplace smoothing, so a confusion never seen is unlikely
rather than impossible). With p(x) the example's class probabilities and y its given label,

    quality = P(true = y | x, given = y) = N[y, y] p_y / sum_j N[y, j] p_j,

low for a label the model doubts *and* that is a confusion the data set is known to make. Under
uniform noise (all off-diagonal N equal) it orders examples as self-confidence does. On Fashion-MNIST
with class-conditional noise it finds more of the flipped labels at cleanlab's own budget than any
of cleanlab's filters (BENCHMARKS.md, "Labels").
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .confident_learning import confident_joint
from .label_inputs import LabelInputError, check_label_inputs

__all__ = ["noise_matrix", "noise_posterior_quality"]


def noise_matrix(joint: Any, pseudo_count: float = 1.0) -> np.ndarray:
    """P(given = i | true = j) from a (K, K) confident joint C[given, true]; columns sum to 1."""
    c = np.asarray(joint, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise LabelInputError(f"the confident joint must be a square (K, K) matrix, got shape {c.shape}")
    if pseudo_count < 0 or not np.isfinite(c).all() or (c < 0).any():
        raise LabelInputError("the confident joint needs finite counts >= 0 and pseudo_count >= 0")
    c = c + pseudo_count * (1.0 - np.eye(len(c)))
    totals = c.sum(axis=0, keepdims=True)
    return c / np.where(totals > 0, totals, 1.0)


def noise_posterior_quality(labels: Any, pred_probs: Any, *, joint: Any = None,
                            pseudo_count: float = 1.0) -> np.ndarray:
    """Per example, P(the given label is the true class | its probabilities, the data set's noise).

    ``joint``: the confident joint C[given, true] to take the noise matrix from (default: cleanlab's
    calibrated confident joint of ``labels`` and ``pred_probs``)."""
    y, p = check_label_inputs(labels, pred_probs, every_class=True)
    n = noise_matrix(confident_joint(y, p) if joint is None else joint, pseudo_count)
    if len(n) != p.shape[1]:
        raise LabelInputError(f"the confident joint is {len(n)} x {len(n)} but pred_probs has {p.shape[1]} classes")
    rows = np.arange(len(y))
    evidence = np.einsum("nk,nk->n", n[y], p)
    return n[y, y] * p[rows, y] / np.maximum(evidence, np.finfo(np.float64).tiny)
