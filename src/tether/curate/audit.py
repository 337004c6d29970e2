"""``tether audit``: find probable label errors in a labelled embedding folder.

:func:`audit` (no files) computes out-of-sample class probabilities from the embeddings
(``weak_labels``: cross-validated probe, zero-shot text classifier, both averaged, the neighbour
vote, or all three averaged), cleanlab's label-quality scores and ``find_label_issues`` mask on them, the
noise-aware rank (``noise_posterior``: Bayes' rule with the confident joint's noise matrix), the
CLIP-specific text + neighbour rank, and a health summary from the confident joint: each class's
estimated share of wrong labels (1 - C[k, k] / sum_j C[k, j] of the calibrated joint) and the class
pairs most often confused (C[i, j] + C[j, i]). :func:`audit_folder` writes, in ``OUT``:

* ``review.parquet`` / ``review.csv``: every row ranked (most suspect first): key, given and
  predicted class, the scores, whether ``find_label_issues`` flags it;
* ``health.json`` / ``health.md``: per-class noise, confused pairs, issue counts;
* ``suspects.png``: the top suspects, each beside examples of its given and its predicted class;
* ``review.html`` + ``images/``: the top suspects as cards, openable from disk.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .calibration import fit_scale, softmax
from .confident_learning import estimate_joint, find_label_issues
from .label_inputs import LabelInputError, check_labels
from .label_quality import METHODS, label_quality_scores
from .noise_posterior import noise_posterior_quality
from .weak_labels import cross_val_probe_probs, neighbour_vote, text_neighbour_quality, top_k

__all__ = ["PROB_SOURCES", "RANKS", "Audit", "audit", "audit_folder", "health_summary", "write_table"]

PROB_SOURCES = ("probe", "zeroshot", "both", "neighbours", "all")
RANKS = (*METHODS, "noise_posterior", "text_neighbour")


@dataclass
class Audit:
    labels: np.ndarray
    class_names: list[str]
    pred_probs: np.ndarray
    quality: np.ndarray
    issues: np.ndarray
    order: np.ndarray
    vote: np.ndarray | None
    text_probs: np.ndarray | None
    health: dict[str, Any]
    report: dict[str, Any]
    text_neighbour: np.ndarray | None = None
    noise_posterior: np.ndarray | None = None
    files: list[Path] = field(default_factory=list)


def health_summary(labels: np.ndarray, pred_probs: np.ndarray, class_names: Sequence[str], pairs: int = 10
                   ) -> dict[str, Any]:
    """Per-class estimated noise and the most confused pairs, from the calibrated confident joint."""
    joint = estimate_joint(labels, pred_probs)
    rows = joint.sum(axis=1)
    noise = np.where(rows > 0, 1 - np.diagonal(joint) / np.maximum(rows, 1e-300), 0.0)
    counts = np.bincount(labels, minlength=len(class_names))
    per_class = [{"class": class_names[k], "examples": int(counts[k]), "estimated_noise": float(noise[k])}
                 for k in range(len(class_names))]
    sym = np.triu(joint + joint.T, 1)
    flat = np.argsort(-sym, axis=None, kind="stable")[:pairs]
    confused = [{"classes": [class_names[i], class_names[j]], "joint": float(sym[i, j]),
                 "given_first_true_second": float(joint[i, j]), "given_second_true_first": float(joint[j, i])}
                for i, j in zip(*np.unravel_index(flat, sym.shape)) if sym[i, j] > 0]
    return {"estimated_noise": float(1 - np.trace(joint)), "per_class": per_class, "confused_pairs": confused}


def audit(x: Any, labels: Any, class_names: Sequence[str], *, probs: str = "probe", classifier: Any = None,
          method: str = "self_confidence", filter_by: str = "prune_by_noise_rate", rank: str | None = None,
          neighbours: int = 10, folds: int = 5, seed: int = 0, with_vote: bool = True) -> Audit:
    """Label-error detection on embeddings ``x`` with given ``labels`` (module docstring). ``rank``:
    the order of the review list, a ``label_quality_scores`` method or ``text_neighbour`` (default:
    ``method``). The neighbour vote (the slowest part: all N x N cosines) is computed when the
    probabilities or the rank need it, or for the text + neighbour column when ``with_vote``."""
    names = list(class_names)
    if probs not in PROB_SOURCES:
        raise LabelInputError(f"probs must be one of {', '.join(PROB_SOURCES)}, got {probs!r}")
    rank = rank or method
    if rank not in RANKS:
        raise LabelInputError(f"rank must be one of {', '.join(RANKS)}, got {rank!r}")
    if len(names) < 2:
        raise LabelInputError(f"{len(names)} class(es); at least 2 are needed")
    x = np.asarray(x, dtype=np.float32)
    y = check_labels(labels, len(x), len(names), class_names=names, every_class=True)
    report: dict[str, Any] = {"rows": int(len(y)), "classes": names, "probs": probs, "method": method,
                              "filter_by": filter_by, "rank": rank, "neighbours": neighbours}
    timings: dict[str, float] = {}
    vote = None
    if probs in ("neighbours", "all") or rank == "text_neighbour" or (with_vote and classifier is not None):
        t = time.perf_counter()
        vote = neighbour_vote(x, y, len(names), k=neighbours)
        timings["neighbour_vote"] = time.perf_counter() - t
    text = None
    if classifier is not None:
        t = time.perf_counter()
        logits = classifier.logits(x).numpy()
        fit = fit_scale(logits, y, classifier.scale)   # one number fitted on all labels: negligible leakage
        text = softmax(logits, fit.scale)
        report["zeroshot"] = {"scale": fit.scale, "acc1": float((text.argmax(axis=1) == y).mean())}
        timings["zeroshot"] = time.perf_counter() - t
    elif probs in ("zeroshot", "both", "all") or rank == "text_neighbour":
        raise LabelInputError(f"probs={probs!r} / rank={rank!r} need the text classifier (a model and class names)")
    pred = _probabilities(probs, x, y, len(names), text, vote, folds, seed, report, timings)
    t = time.perf_counter()
    quality = label_quality_scores(y, pred, method=method)
    issues = find_label_issues(y, pred, filter_by=filter_by)
    tn = text_neighbour_quality(text, vote, y) if text is not None and vote is not None else None
    posterior = noise_posterior_quality(y, pred)
    key = {"text_neighbour": tn, "noise_posterior": posterior, method: quality}.get(rank)
    key = label_quality_scores(y, pred, rank) if key is None else key
    order = np.lexsort((np.arange(len(y)), key))
    health = health_summary(y, pred, names)
    health["issues"] = int(issues.sum())
    timings["scores_and_issues"] = time.perf_counter() - t
    report["acc1"] = float((pred.argmax(axis=1) == y).mean())
    report["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return Audit(y, names, pred, quality, issues, order, vote, text, health, report, tn, posterior)


def _probabilities(probs: str, x: np.ndarray, y: np.ndarray, k: int, text: np.ndarray | None, vote: np.ndarray,
                   folds: int, seed: int, report: dict, timings: dict) -> np.ndarray:
    if probs == "neighbours":
        return vote
    if probs == "zeroshot":
        return text
    t = time.perf_counter()
    probe, lam = cross_val_probe_probs(x, y, k, folds=folds, seed=seed)
    timings["probe"] = time.perf_counter() - t
    report["probe"] = {"folds": folds, "l2_lambda": lam, "acc1": float((probe.argmax(axis=1) == y).mean())}
    if probs == "probe":
        return probe
    return (probe + text) / 2 if probs == "both" else (probe + text + vote) / 3


def write_table(stem: Path, table: dict[str, Any]) -> list[Path]:
    """``stem.parquet`` and ``stem.csv`` of the same columns (atomic writes)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    t = pa.table({k: list(v) if not isinstance(v, np.ndarray) else v for k, v in table.items()})
    buf = io.BytesIO()
    pq.write_table(t, buf)
    files = [atomic_write_bytes(stem.with_suffix(".parquet"), buf.getvalue())]
    buf = io.BytesIO()
    pacsv.write_csv(t, buf)
    files.append(atomic_write_bytes(stem.with_suffix(".csv"), buf.getvalue()))
    return files


def audit_folder(data: Any, out: str | Path, class_names: Sequence[str], *, label_column: str = "label",
                 classifier: Any = None, suspects: int = 12, html_rows: int = 200, **options: Any) -> Audit:
    """Audit ``data`` (a ``label_data.LabelData``) and write the outputs (module docstring)."""
    from .label_data import labels_of

    started = time.perf_counter()
    y = labels_of(data, class_names, label_column)
    missing = np.flatnonzero(y < 0)
    if len(missing):
        raise LabelInputError(f"{data.folder}: row {int(missing[0])} ({data.keys[int(missing[0])]}) has no "
                              f"{label_column!r}; every row needs a label ({len(missing)} without)")
    result = audit(data.x, y, class_names, classifier=classifier, **options)
    result.report["seconds"]["total"] = round(time.perf_counter() - started, 3)
    out = Path(out)
    result.files = _write(out, data, result, suspects, html_rows)
    return result


def _write(out: Path, data: Any, a: Audit, suspects: int, html_rows: int) -> list[Path]:
    o, names = a.order, a.class_names
    pred = a.pred_probs.argmax(axis=1)
    table: dict[str, Any] = {"rank": np.arange(1, len(o) + 1), "row": o, "key": [data.keys[i] for i in o.tolist()]}
    if "image_path" in data.columns:
        table["image_path"] = [data.columns["image_path"][i] for i in o.tolist()]
    table.update({"given": a.labels[o], "given_name": [names[c] for c in a.labels[o].tolist()],
                  "predicted": pred[o], "predicted_name": [names[c] for c in pred[o].tolist()],
                  "quality": a.quality[o], "is_issue": a.issues[o]})
    if a.vote is not None:
        table["neighbour_vote_given"] = a.vote[o, a.labels[o]]
    if a.text_neighbour is not None:
        table["text_neighbour_quality"] = a.text_neighbour[o]
    if a.noise_posterior is not None:
        table["noise_posterior_quality"] = a.noise_posterior[o]
    files = write_table(out / "review", table)
    files.append(atomic_write_json(out / "health.json", {**a.health, "report": a.report}))
    files.append(atomic_write_text(out / "health.md", _markdown(a)))
    files += _pictures(out, data, a, suspects, html_rows)
    return files


def _pictures(out: Path, data: Any, a: Audit, suspects: int, html_rows: int) -> list[Path]:
    from .contact_sheet import RED, Tile, contact_sheet
    from .label_data import write_thumbnails
    from .review_page import ReviewItem, write_review_page

    names, pred = a.class_names, a.pred_probs.argmax(axis=1)
    top = a.order[:suspects].tolist()
    conf = a.pred_probs[np.arange(len(a.labels)), a.labels]
    examples = {}   # class -> its two most confidently labelled rows
    for c in set(a.labels[top].tolist()) | set(pred[top].tolist()):
        rows = np.flatnonzero(a.labels == c)
        examples[c] = rows[np.argsort(-conf[rows], kind="stable")[:2]].tolist()
    shown = a.order[:html_rows].tolist()
    thumbs = write_thumbnails(data, sorted(set(shown) | {r for v in examples.values() for r in v}), out)
    tiles, labels = [], []
    for r in top:
        labels.append(f"given {names[a.labels[r]]}\npredicted {names[pred[r]]}")
        tiles.append(Tile(_path(out, thumbs.get(r)), [f"suspect {data.keys[r]}", f"q={a.quality[r]:.3f}"], RED))
        for c, tag in ((a.labels[r], "given"), (pred[r], "predicted")):
            ex = examples[c] + [None] * (2 - len(examples[c]))
            tiles += [Tile(_path(out, thumbs.get(e)), [f"{tag}: {names[c]}"]) if e is not None else None for e in ex]
    sheet = contact_sheet(tiles, out / "suspects.png", columns=5, title="top suspects | 2 examples of the given "
                          "class | 2 of the predicted class", row_labels=labels)
    idx, pr = top_k(a.pred_probs[shown], 3)
    items = [ReviewItem(data.keys[r], thumbs.get(r), [(names[c], float(p)) for c, p in zip(idx[n], pr[n])],
                        "flagged" if a.issues[r] else "unflagged", given=names[a.labels[r]],
                        notes=[f"label quality {a.quality[r]:.3f}"]) for n, r in enumerate(shown)]
    page = write_review_page(out / "review.html", "tether audit: suspected label errors", _summary(a), items)
    return [sheet, page]


def _path(out: Path, rel: str | None) -> Path | None:
    return out / rel if rel else None


def _summary(a: Audit) -> str:
    h = a.health
    return (f"{len(a.labels)} labelled images, {len(a.class_names)} classes; probabilities: {a.report['probs']} "
            f"(top-1 agreement with the labels {a.report['acc1']:.1%}); {h['issues']} flagged by "
            f"{a.report['filter_by']}; estimated label noise {h['estimated_noise']:.1%}. Most suspect first.")


def _markdown(a: Audit) -> str:
    h = a.health
    lines = ["# Dataset health", "", _summary(a), "", "| class | examples | estimated noise |", "|---|---:|---:|"]
    lines += [f"| {c['class']} | {c['examples']} | {c['estimated_noise']:.1%} |" for c in h["per_class"]]
    lines += ["", "## Most confused pairs", "", "| classes | joint | given first, true second | given second, "
              "true first |", "|---|---:|---:|---:|"]
    lines += [f"| {p['classes'][0]} / {p['classes'][1]} | {p['joint']:.2%} | {p['given_first_true_second']:.2%} | "
              f"{p['given_second_true_first']:.2%} |" for p in h["confused_pairs"]]
    return "\n".join(lines) + "\n"
