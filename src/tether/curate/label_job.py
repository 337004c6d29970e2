"""``tether label``: weak labels for unlabelled images from class names, ready for human review.

:func:`weak_labels` (no files): the text classifier's cosines, turned into probabilities with the
scale fitted on a labelled validation set (else the model's own), optionally refined with a
few labelled images per class (prototype blend, gain measured on the rest of the validation set),
then the abstain rule. :func:`label_folder` writes, in ``OUT``:

* ``candidates.parquet`` / ``candidates.csv``: every row's top-k candidates and probabilities, the
  margin, the decision (``accept`` / ``review``), sorted by need of review (review first, smallest
  margin first);
* ``report.json`` / ``report.md``: scale and its source, ECE before/after fitting, validation
  accuracy, thresholds, share auto-accepted (and its precision on validation), few-shot gain;
* ``review.html`` + ``images/``: the first ``html_rows`` rows as cards, openable from disk.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_json, atomic_write_text
from .calibration import (ACCEPT, ScaleFit, accepted_share, decide, fit_scale, per_class_thresholds_for_precision,
                          softmax, threshold_for_precision)
from .label_inputs import LabelInputError, check_labels
from .weak_labels import probe_probs, prototype_blend, top_k

__all__ = ["WeakLabels", "weak_labels", "label_folder", "few_shot_split"]


@dataclass
class WeakLabels:
    class_names: list[str]
    probs: np.ndarray
    decisions: np.ndarray
    scale: ScaleFit
    report: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    def need_order(self) -> np.ndarray:
        """Rows, most in need of a person first: ``review`` before ``accept``, smallest margin first."""
        top = np.sort(self.probs, axis=1)[:, ::-1]
        margin = top[:, 0] - top[:, 1]
        return np.lexsort((np.arange(len(margin)), margin, self.decisions == ACCEPT))


def few_shot_split(y: np.ndarray, shots: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """-> (support rows: ``shots`` per class, the rest), seeded; a class needs more than ``shots`` rows."""
    rng = np.random.default_rng(seed)
    support = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) <= shots:
            raise LabelInputError(f"class {int(c)} has {len(idx)} labelled row(s); --few-shot {shots} needs more "
                                  "(the rest measure the gain)")
        support.append(rng.choice(idx, shots, replace=False))
    s = np.sort(np.concatenate(support))
    return s, np.setdiff1d(np.arange(len(y)), s)


def _refine(clf: Any, x: np.ndarray, y: np.ndarray, shots: int, blend: float, seed: int) -> tuple[Any, dict, np.ndarray]:
    """Few-shot refinement: -> (classifier with blended weights, gain report, validation rows left)."""
    from ..metrics.zeroshot import ZeroShotClassifier

    support, rest = few_shot_split(y, shots, seed)
    weights = prototype_blend(clf.weights, x[support], y[support], blend)
    refined = ZeroShotClassifier(weights, clf.class_names, clf.templates, clf.scale, clf.scale_source)
    acc = lambda c: float((c.predict(x[rest]).numpy() == y[rest]).mean())  # noqa: E731
    probe = probe_probs(x[support], y[support], x[rest], len(clf.class_names))
    report = {"shots_per_class": shots, "blend": blend, "support_rows": int(len(support)),
              "measured_on": int(len(rest)), "text_acc1": acc(clf), "blend_acc1": acc(refined),
              "probe_acc1": float((probe.argmax(axis=1) == y[rest]).mean())}
    report["gain"] = report["blend_acc1"] - report["text_acc1"]
    return refined, report, rest


def weak_labels(x: Any, classifier: Any, *, val_x: Any = None, val_y: Any = None, few_shot: int = 0,
                blend: float = 0.5, min_confidence: float | None = None, min_margin: float = 0.0,
                target_precision: float | None = 0.95, per_class: bool = False, seed: int = 0) -> WeakLabels:
    """Candidates and decisions for embeddings ``x`` (module docstring). ``classifier``: a
    ``tether.metrics.ZeroShotClassifier``; ``val_x``/``val_y``: labelled validation embeddings."""
    names = list(classifier.class_names)
    report: dict[str, Any] = {"rows": int(len(x)), "classes": names}
    have_val = val_x is not None
    if have_val:
        val_x = np.asarray(val_x, dtype=np.float32)
        val_y = check_labels(val_y, len(val_x), len(names), class_names=names, name="validation labels")
        if few_shot:
            classifier, report["few_shot"], rest = _refine(classifier, val_x, val_y, few_shot, blend, seed)
            val_x, val_y = val_x[rest], val_y[rest]
    elif few_shot:
        raise LabelInputError("--few-shot needs labelled examples (--labelled)")
    logits = classifier.logits(x).numpy()
    if have_val:
        val_logits = classifier.logits(val_x).numpy()
        scale = fit_scale(val_logits, val_y, classifier.scale)
        val_probs = softmax(val_logits, scale.scale)
        ranks = np.argsort(-val_probs, axis=1, kind="stable")
        report["validation"] = {"rows": int(len(val_y)), "acc1": float((ranks[:, 0] == val_y).mean()),
                                "acc3": float((ranks[:, :3] == val_y[:, None]).any(axis=1).mean())}
    else:
        scale = ScaleFit(classifier.scale, classifier.scale_source, classifier.scale)
    report["scale"] = scale.as_dict()
    rule, report["threshold_rule"] = _rule(val_probs if have_val else None, val_y, min_confidence, min_margin,
                                           target_precision, per_class)
    probs = softmax(logits, scale.scale)
    decisions = decide(probs, **rule)
    report["accepted"] = {"share": float((decisions == ACCEPT).mean()), "rows": int((decisions == ACCEPT).sum())}
    if have_val:
        report["validation"]["accepted"] = accepted_share(val_probs, val_y, **rule)
    return WeakLabels(names, probs, decisions, scale, report)


def _rule(val_probs: np.ndarray | None, val_y: Any, min_confidence: float | None, min_margin: float,
          target: float | None, per_class: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The abstain rule's arguments and how they were chosen."""
    if min_confidence is not None or val_probs is None or target is None:
        t = 0.5 if min_confidence is None else float(min_confidence)
        how = "given" if min_confidence is not None else "default 0.5 (no validation set or target)"
        return {"min_confidence": t, "min_margin": min_margin}, {"min_confidence": t, "min_margin": min_margin,
                                                                  "chosen": how}
    if per_class:
        t = per_class_thresholds_for_precision(val_probs, val_y, target)
        return ({"class_thresholds": t, "min_margin": min_margin},
                {"class_thresholds": [None if not np.isfinite(v) else float(v) for v in t], "min_margin": min_margin,
                 "chosen": f"per class, precision >= {target:g} on validation"})
    conf = val_probs.max(axis=1)
    t = threshold_for_precision(conf, val_probs.argmax(axis=1) == val_y, target)
    return ({"min_confidence": t, "min_margin": min_margin},
            {"min_confidence": None if not np.isfinite(t) else float(t), "min_margin": min_margin,
             "chosen": f"lowest with precision >= {target:g} on validation"})


def label_folder(data: Any, out: str | Path, classifier: Any, *, labelled: Any = None, label_column: str = "label",
                 top: int = 3, html_rows: int = 300, **options: Any) -> WeakLabels:
    """Weak labels for every row of ``data`` (a ``label_data.LabelData``); ``labelled``: another
    LabelData whose ``label_column`` holds the validation labels. Writes the outputs (module docstring)."""
    from .label_data import labels_of

    started = time.perf_counter()
    out = Path(out)
    val_x = val_y = None
    if labelled is not None:
        y = labels_of(labelled, classifier.class_names, label_column)
        keep = y >= 0
        val_x, val_y = labelled.x[keep], y[keep]
    result = weak_labels(data.x, classifier, val_x=val_x, val_y=val_y, **options)
    result.report["seconds"] = round(time.perf_counter() - started, 3)
    result.files = _write(out, data, result, top, html_rows)
    return result


def _write(out: Path, data: Any, result: WeakLabels, top: int, html_rows: int) -> list[Path]:
    from .audit import write_table
    from .label_data import write_thumbnails
    from .review_page import ReviewItem, write_review_page

    order = result.need_order()
    idx, pr = top_k(result.probs[order], top)
    names = result.class_names
    table: dict[str, Any] = {"need_rank": np.arange(1, len(order) + 1), "row": order,
                             "key": [data.keys[i] for i in order.tolist()]}
    if "image_path" in data.columns:
        table["image_path"] = [data.columns["image_path"][i] for i in order.tolist()]
    table["decision"] = result.decisions[order]
    for j in range(idx.shape[1]):
        table[f"candidate_{j + 1}"] = [names[c] for c in idx[:, j].tolist()]
        table[f"probability_{j + 1}"] = pr[:, j]
    files = write_table(out / "candidates", table)
    files.append(atomic_write_json(out / "report.json", result.report))
    files.append(atomic_write_text(out / "report.md", _markdown(result.report)))
    shown = order[:html_rows].tolist()
    thumbs = write_thumbnails(data, shown, out)
    items = [ReviewItem(data.keys[r], thumbs.get(r), [(names[c], float(p)) for c, p in zip(idx[n], pr[n])],
                        str(result.decisions[r])) for n, r in enumerate(shown)]
    files.append(write_review_page(out / "review.html", "tether label: weak labels for review",
                                   _summary(result.report), items))
    return files


def _summary(r: dict[str, Any]) -> str:
    s = r["scale"]
    lines = [f"{r['rows']} images, {len(r['classes'])} classes; {r['accepted']['rows']} auto-accepted "
             f"({r['accepted']['share']:.1%}), the rest need review (shown first).",
             f"scale {s['scale']:.4g} ({s['source']})."]
    if "validation" in r:
        v = r["validation"]
        lines.append(f"validation: {v['rows']} labelled rows, top-1 {v['acc1']:.1%}, top-3 {v['acc3']:.1%}; ECE "
                     f"{s['ece_before']:.3f} at the model's scale, {s['ece_after']:.3f} fitted.")
    return "\n".join(lines)


def _markdown(r: dict[str, Any]) -> str:
    s, t = r["scale"], r["threshold_rule"]
    lines = ["# Weak labels", "", _summary(r), "", "| quantity | value |", "|---|---|",
             f"| scale | {s['scale']:.4g} ({s['source']}; model's {s['model_scale']:.4g}) |",
             f"| threshold rule | {t['chosen']} |",
             f"| auto-accepted | {r['accepted']['rows']} of {r['rows']} ({r['accepted']['share']:.1%}) |"]
    if "validation" in r:
        v = r["validation"]
        a = v["accepted"]
        prec = "n/a" if a.get("precision") is None else f"{a['precision']:.1%}"
        lines += [f"| validation top-1 / top-3 | {v['acc1']:.1%} / {v['acc3']:.1%} |",
                  f"| validation NLL before / after | {s['nll_before']:.4f} / {s['nll_after']:.4f} |",
                  f"| validation ECE before / after | {s['ece_before']:.4f} / {s['ece_after']:.4f} |",
                  f"| validation auto-accepted (precision) | {a['share']:.1%} ({prec}) |"]
    if "few_shot" in r:
        f = r["few_shot"]
        lines += [f"| few-shot ({f['shots_per_class']}/class) text / blend / probe top-1 | {f['text_acc1']:.1%} / "
                  f"{f['blend_acc1']:.1%} / {f['probe_acc1']:.1%} (gain {f['gain']:+.1%}) |"]
    return "\n".join(lines) + "\n"

