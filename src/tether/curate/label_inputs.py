"""Checks of labels and predicted probabilities, shared by label-quality scores and confident learning.

cleanlab accepts a class without examples and probabilities that do not sum to 1 and then gives
quietly odd results (a threshold of 2 for an empty class, scores that are not probabilities);
tether refuses them with a one-line error that names the row or class, so a mistake upstream
(a shifted label column, logits passed as probabilities) is caught where it happens.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["LabelInputError", "check_pred_probs", "check_labels", "check_label_inputs", "SUM_TOLERANCE"]

# A row of probabilities must sum to 1 within this (a float32 softmax over 10k classes is off by ~1e-5).
SUM_TOLERANCE = 1e-3
# cleanlab's slack on the [0, 1] range of a probability (its FLOATING_POINT_COMPARISON).
RANGE_SLACK = 1e-6


class LabelInputError(InputError):
    """Labels or predicted probabilities that cannot be scored: the message names the row or class."""


def _class(k: int, class_names: Sequence[str] | None) -> str:
    return f"class {k} ({class_names[k]!r})" if class_names is not None and k < len(class_names) else f"class {k}"


def check_pred_probs(pred_probs: Any, name: str = "pred_probs") -> np.ndarray:
    """(N, K) probabilities with K >= 2, finite, in [0, 1], each row summing to 1 (within
    ``SUM_TOLERANCE``). Float arrays are returned as they are (float32 stays float32, so results
    match cleanlab's bit for bit); other numbers become float64."""
    p = np.asarray(pred_probs.detach().cpu() if hasattr(pred_probs, "detach") else pred_probs)
    if p.ndim != 2:
        raise LabelInputError(f"{name} must be a 2-D (examples, classes) array, got shape {p.shape}")
    if p.shape[1] < 2:
        raise LabelInputError(f"{name} has {p.shape[1]} class column(s); at least 2 classes are needed")
    if p.shape[0] == 0:
        raise LabelInputError(f"{name} has no rows")
    if not np.issubdtype(p.dtype, np.floating):
        if not (np.issubdtype(p.dtype, np.integer) or p.dtype == np.bool_):
            raise LabelInputError(f"{name} must hold numbers, got dtype {p.dtype}")
        p = p.astype(np.float64)
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LabelInputError(f"{name} row {i} has NaN or infinite values ({int(bad.sum())} such row(s))")
    out = ((p < -RANGE_SLACK) | (p > 1 + RANGE_SLACK)).any(axis=1)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise LabelInputError(f"{name} row {i} has values outside [0, 1] (min {p[i].min():.6g}, max "
                              f"{p[i].max():.6g}); expected probabilities (softmax of the logits)")
    sums = p.sum(axis=1, dtype=np.float64)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise LabelInputError(f"{name} row {i} sums to {sums[i]:.6g}, expected 1 (within {SUM_TOLERANCE:g}); "
                              f"{int(off.sum())} row(s) do not sum to 1")
    return p


def check_labels(labels: Any, n: int, num_classes: int, *, class_names: Sequence[str] | None = None,
                 every_class: bool = False, name: str = "labels") -> np.ndarray:
    """Integer labels in [0, num_classes), one per row (``n``); ``every_class``: each class has an example."""
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if y.ndim != 1:
        raise LabelInputError(f"{name} must be 1-D (one class index per example), got shape {y.shape}")
    if len(y) != n:
        raise LabelInputError(f"{name} has {len(y)} entries but pred_probs has {n} rows; they must match")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)) or y.dtype == np.bool_:
        raise LabelInputError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise LabelInputError(f"{name}[{i}] = {float(y[i])!r} is not an integer class index")
        y = y.astype(np.int64)
    outside = (y < 0) | (y >= num_classes)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        names = f" ({', '.join(map(repr, class_names))})" if class_names is not None and len(class_names) <= 12 else ""
        raise LabelInputError(f"{name}[{i}] = {int(y[i])} is outside the {num_classes} classes 0..{num_classes - 1}"
                              f"{names}; {int(outside.sum())} label(s) outside")
    if every_class:
        counts = np.bincount(y, minlength=num_classes)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            raise LabelInputError(f"{_class(int(empty[0]), class_names)} has no examples in {name} "
                                  f"({len(empty)} empty class(es)); drop it from the classes or add examples")
    return y


def check_label_inputs(labels: Any, pred_probs: Any, *, class_names: Sequence[str] | None = None,
                       every_class: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Both checks; -> (labels as integers, pred_probs). ``class_names`` (optional) must match K."""
    p = check_pred_probs(pred_probs)
    if class_names is not None and len(class_names) != p.shape[1]:
        raise LabelInputError(f"{len(class_names)} class names for {p.shape[1]} pred_probs columns")
    return check_labels(labels, p.shape[0], p.shape[1], class_names=class_names, every_class=every_class), p
