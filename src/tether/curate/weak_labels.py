"""Class probabilities from embeddings: zero-shot text classifier, cross-validated probe, neighbour vote.

Confident learning needs *out-of-sample* probabilities (cleanlab#520): a model that saw an
example's label predicts that label back. The three sources here are out-of-sample by construction:

* **zero-shot**: ``tether.metrics.ZeroShotClassifier`` (class names x prompt templates); it never
  sees a label;
* **cross-validated probe**: ``tether.metrics``' logistic regression on frozen embeddings, fitted
  on k-1 folds and predicting the held-out fold (stratified folds, lambda chosen once by the
  probe's own validation sweep on the first fold);
* **neighbour vote**: the labels of each example's k nearest labelled neighbours by cosine
  similarity, itself left out (smoothed: ``(votes + alpha / K) / (k + alpha)``).

The CLIP-specific rank (:func:`text_neighbour_quality`) combines the text classifier and the
neighbour vote: two opinions that use no held-out split, one from language, one from the labels of
look-alike images. A given label that both reject is the most suspect.

Few-shot refinement (:func:`prototype_blend`) mixes each class's text weight with the mean of a few
labelled image embeddings of that class (Tip-Adapter-like prototypes, without training).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .label_inputs import LabelInputError, check_labels

__all__ = ["normalize_rows", "cross_val_probe_probs", "neighbour_vote", "text_neighbour_quality",
           "prototype_blend", "probe_probs", "top_k", "BLOCK"]

BLOCK = 4096


def normalize_rows(x: Any) -> np.ndarray:
    """float32 rows scaled to unit length (a zero row stays zero)."""
    a = np.asarray(x, dtype=np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index of every row: each class dealt round-robin over the folds in a seeded order."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % folds
    return fold


def cross_val_probe_probs(x: Any, labels: Any, num_classes: int, *, folds: int = 5, seed: int = 0,
                          l2_lambda: float | None = None, max_iter: int = 300,
                          sweep_rows: int = 10000) -> tuple[np.ndarray, float]:
    """Out-of-sample (N, K) probabilities of a logistic probe (k-fold) -> (probs, the lambda used).
    Without ``l2_lambda`` it is chosen by ``tether.metrics.linear_probe``'s sweep on at most
    ``sweep_rows`` rows outside fold 0 (scored on fold 0): a dozen fits on a sample, not on all rows."""
    from ..metrics.linear_probe import _features, fit_logistic_regression, linear_probe

    if folds < 2:
        raise LabelInputError(f"folds must be at least 2, got {folds}")
    feats = _features(np.asarray(x), "embeddings", True)
    y = check_labels(labels, feats.shape[0], num_classes, every_class=True)
    fold = _folds(y, folds, seed)
    if l2_lambda is None:
        tr = np.flatnonzero(fold != 0)
        if len(tr) > sweep_rows:
            tr = np.sort(np.random.default_rng(seed).choice(tr, sweep_rows, replace=False))
        te = fold == 0
        result = linear_probe(feats[tr], y[tr], feats[te], y[te], num_classes=num_classes, seed=seed,
                              max_iter=max_iter)
        l2_lambda = float(result["l2_lambda"])
    probs = np.zeros((len(y), num_classes), dtype=np.float64)
    yt = torch.from_numpy(y)
    for f in range(folds):
        held = torch.from_numpy(fold == f)
        w, b, _ = fit_logistic_regression(feats[~held], yt[~held], num_classes, l2_lambda, max_iter=max_iter)
        probs[held.numpy()] = torch.softmax(feats[held] @ w.T + b, dim=1).numpy()
    return probs, l2_lambda


def probe_probs(x_train: Any, y_train: Any, x: Any, num_classes: int, *, l2_lambda: float = 1e-3,
                max_iter: int = 300) -> np.ndarray:
    """Probabilities on ``x`` of a probe fitted on a few labelled examples (fixed ``l2_lambda``)."""
    from ..metrics.linear_probe import _features, fit_logistic_regression

    xt = _features(np.asarray(x_train), "labelled embeddings", True)
    yt = torch.from_numpy(check_labels(y_train, xt.shape[0], num_classes))
    w, b, _ = fit_logistic_regression(xt, yt, num_classes, l2_lambda, max_iter=max_iter)
    return torch.softmax(_features(np.asarray(x), "embeddings", True) @ w.T + b, dim=1).numpy()


def neighbour_vote(x: Any, labels: Any, num_classes: int, *, k: int = 10, alpha: float = 1.0) -> np.ndarray:
    """(N, K) smoothed vote shares of each row's ``k`` nearest other rows (cosine), blocked over rows."""
    xs = torch.from_numpy(normalize_rows(x))
    y = torch.from_numpy(check_labels(labels, xs.shape[0], num_classes))
    n = xs.shape[0]
    if not 1 <= k < n:
        raise LabelInputError(f"k must be in [1, {n - 1}] for {n} rows, got {k}")
    votes = torch.zeros(n, num_classes, dtype=torch.float64)
    for s in range(0, n, BLOCK):
        e = min(s + BLOCK, n)
        sim = xs[s:e] @ xs.T
        sim[torch.arange(e - s), torch.arange(s, e)] = -float("inf")   # never one's own neighbour
        nn = sim.topk(k, dim=1).indices
        votes[s:e].scatter_add_(1, y[nn], torch.ones(nn.shape, dtype=torch.float64))
    return ((votes + alpha / num_classes) / (k + alpha)).numpy()


def text_neighbour_quality(text_probs: Any, vote: Any, labels: Any, weight: float = 0.5) -> np.ndarray:
    """Label quality ``weight * p_text[label] + (1 - weight) * vote[label]`` (low = both opinions
    reject the given label)."""
    p, v = np.asarray(text_probs, dtype=np.float64), np.asarray(vote, dtype=np.float64)
    if p.shape != v.shape:
        raise LabelInputError(f"text probabilities {p.shape} and neighbour votes {v.shape} differ in shape")
    y = check_labels(labels, p.shape[0], p.shape[1])
    rows = np.arange(len(y))
    return weight * p[rows, y] + (1 - weight) * v[rows, y]


def prototype_blend(text_weights: Any, x_support: Any, y_support: Any, alpha: float = 0.5) -> torch.Tensor:
    """Class weights ``normalize((1 - alpha) * w_text + alpha * normalize(mean of the class's support
    embeddings))``; a class without support keeps its text weight."""
    w = F.normalize(torch.as_tensor(np.asarray(text_weights), dtype=torch.float32), dim=-1)
    xs = torch.from_numpy(normalize_rows(x_support))
    y = torch.from_numpy(check_labels(y_support, xs.shape[0], w.shape[0]))
    if not 0 <= alpha <= 1:
        raise LabelInputError(f"alpha must be in [0, 1], got {alpha!r}")
    sums = torch.zeros_like(w).index_add_(0, y, xs)
    have = torch.bincount(y, minlength=w.shape[0]) > 0
    proto = F.normalize(sums, dim=-1)
    blended = torch.where(have[:, None], (1 - alpha) * w + alpha * proto, w)
    return F.normalize(blended, dim=-1)


def top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (indices, probabilities) of each row's ``k`` most probable classes, best first (ties: lower index)."""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)
