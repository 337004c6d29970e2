"""Calibrated weak labels: the scale fitted by NLL, calibration error, abstaining, precision targets.

A zero-shot classifier's probabilities are ``softmax(scale * cosine)``. The model's own
scale (about 100 for a trained CLIP) is chosen for contrastive training, not for calibrated
probabilities; given a labelled validation set, :func:`fit_scale` picks the scale that minimises
the mean negative log-likelihood there (temperature scaling, Guo et al. 2017: T = 1 / scale).
NLL is convex in the scale, so a golden-section search over log(scale) finds the optimum.

:func:`expected_calibration_error` is the usual top-label ECE: confidences cut into equal-width
bins, ``sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|``.

The abstain rule (:func:`decide`) accepts a top-1 candidate when its probability reaches the
confidence threshold (per class when given) and leads the runner-up by the margin; everything else
"needs review". :func:`threshold_for_precision` finds, on validation data, the lowest confidence
threshold whose accepted set still has the target precision, globally or per predicted class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .label_inputs import LabelInputError, check_labels, check_pred_probs

__all__ = ["ScaleFit", "fit_scale", "nll", "softmax", "expected_calibration_error", "decide",
           "threshold_for_precision", "per_class_thresholds_for_precision", "accepted_share",
           "ACCEPT", "REVIEW"]

ACCEPT, REVIEW = "accept", "review"
SCALE_RANGE = (1e-2, 1e4)
ECE_BINS = 15


def softmax(logits: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(scale * logits)`` in float64."""
    z = scale * np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, scale: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(scale * logits)``."""
    z = scale * np.asarray(logits, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    log_norm = (m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


@dataclass
class ScaleFit:
    """The scale used for probabilities and where it came from (``"fitted"`` or ``"model"``)."""

    scale: float
    source: str
    model_scale: float
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale

    def as_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "temperature": self.temperature, "source": self.source,
                "model_scale": self.model_scale, "nll_before": self.nll_before, "nll_after": self.nll_after,
                "ece_before": self.ece_before, "ece_after": self.ece_after}


def fit_scale(logits: Any, labels: Any, model_scale: float, *, iterations: int = 80) -> ScaleFit:
    """The scale minimising validation NLL (golden section over log scale in [1e-2, 1e4]), with NLL
    and ECE before (at ``model_scale``) and after."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise LabelInputError(f"validation logits must be (N, K) with K >= 2, got shape {z.shape}")
    y = check_labels(labels, z.shape[0], z.shape[1], name="validation labels")
    lo, hi = math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(z, y, math.exp(a)), nll(z, y, math.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(z, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(z, y, math.exp(b))
    scale = math.exp((lo + hi) / 2)
    return ScaleFit(scale, "fitted", float(model_scale), nll(z, y, model_scale), nll(z, y, scale),
                    expected_calibration_error(softmax(z, model_scale), y),
                    expected_calibration_error(softmax(z, scale), y))


def expected_calibration_error(probs: Any, labels: Any, bins: int = ECE_BINS) -> float:
    """Top-label ECE with ``bins`` equal-width confidence bins ((lo, hi], the first also takes 0)."""
    p = check_pred_probs(probs, "probabilities")
    y = check_labels(labels, p.shape[0], p.shape[1])
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(total)


def _top2(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (top-1 class, its probability, top-1 minus top-2 probability)."""
    order = np.argsort(-p, axis=1, kind="stable")[:, :2]
    rows = np.arange(len(p))
    first, second = p[rows, order[:, 0]], p[rows, order[:, 1]]
    return order[:, 0], first, first - second


def decide(probs: Any, *, min_confidence: float = 0.0, min_margin: float = 0.0,
           class_thresholds: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """``"accept"`` where the top-1 probability reaches the threshold of its class (``class_thresholds``
    when given, else ``min_confidence``) and beats the runner-up by ``min_margin``; else ``"review"``."""
    p = check_pred_probs(probs, "probabilities")
    top, conf, margin = _top2(p)
    if class_thresholds is not None:
        t = np.asarray(class_thresholds, dtype=np.float64)
        if t.shape != (p.shape[1],):
            raise LabelInputError(f"class_thresholds has {t.size} entries for {p.shape[1]} classes")
        need = t[top]
    else:
        need = np.full(len(p), float(min_confidence))
    ok = (conf >= need) & (margin >= min_margin)
    return np.where(ok, ACCEPT, REVIEW)


def threshold_for_precision(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The lowest threshold t such that the examples with confidence >= t are at least ``target``
    correct (ties enter together); ``inf`` when no non-empty set reaches it."""
    if not 0 < target <= 1:
        raise LabelInputError(f"target precision must be in (0, 1], got {target!r}")
    conf = np.asarray(confidence, dtype=np.float64)
    if conf.size == 0:
        return math.inf
    order = np.argsort(-conf, kind="stable")
    c, hits = conf[order], np.cumsum(np.asarray(correct, dtype=np.float64)[order])
    last = np.r_[c[1:] != c[:-1], True]          # the end of each run of equal confidences
    precision = hits / np.arange(1, len(c) + 1)
    good = np.flatnonzero(last & (precision >= target - 1e-12))
    return float(c[good[-1]]) if len(good) else math.inf


def per_class_thresholds_for_precision(probs: Any, labels: Any, target: float) -> np.ndarray:
    """:func:`threshold_for_precision` among the validation examples predicted as each class
    (``inf`` for a class never predicted or never precise enough)."""
    p = check_pred_probs(probs, "probabilities")
    y = check_labels(labels, p.shape[0], p.shape[1])
    top, conf, _ = _top2(p)
    return np.array([threshold_for_precision(conf[top == k], top[top == k] == y[top == k], target)
                     for k in range(p.shape[1])])


def accepted_share(probs: Any, labels: Any | None = None, **rule: Any) -> dict[str, Any]:
    """Share of rows :func:`decide` accepts under ``rule``; with ``labels``, also the accepted precision."""
    p = check_pred_probs(probs, "probabilities")
    accepted = decide(p, **rule) == ACCEPT
    out: dict[str, Any] = {"rows": int(len(p)), "accepted": int(accepted.sum()),
                           "share": float(accepted.mean())}
    if labels is not None:
        y = check_labels(labels, p.shape[0], p.shape[1])
        right = p.argmax(axis=1)[accepted] == y[accepted]
        out["precision"] = float(right.mean()) if accepted.any() else None
    return out
