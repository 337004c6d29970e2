"""The evaluation tasks the driver (:mod:`tether.metrics.evaluate`) runs on embedded splits.

A task gets a :class:`Job`: the model, the test split (and the training split where it needs
one: the linear probe's features, the caption pool for captioning), the prompt templates, and
where to draw its plot. It returns its metrics under CLIP_benchmark's key names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.skips import SkipStats
from ..embedding import embed
from ..errors import DataError, InputError

TASKS = ("zeroshot", "retrieval", "linear_probe", "captioning")
TASK_NAMES = {"zeroshot": "zeroshot_classification", "retrieval": "zeroshot_retrieval",
              "linear_probe": "linear_probe", "captioning": "captioning"}
NEEDS_TRAIN = frozenset({"linear_probe", "captioning"})
TEXT_BATCH_SIZE = 256


@dataclass
class Split:
    """One data split embedded once: image embeddings with each row's caption, label and extra."""

    name: str
    images: torch.Tensor          # (N, D) float32, L2-normalised
    texts: list[str]              # the caption of each row (stripped, never empty)
    labels: torch.Tensor          # (N,) int64, -1 where unknown
    extras: list[dict]
    class_names: list[str] | None
    skips: SkipStats

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Job:
    """What a task works on."""

    model: Any
    test: Split
    train: Split | None = None
    templates: Any = "general"
    plot_prefix: str | None = None      # plots go to f"{plot_prefix}{task}.png"; None: no plots
    max_retrieval: int | None = None    # retrieval on the first rows only (training-time evaluation)
    engine: dict[str, Any] = field(default_factory=dict)  # workers, precision, device, progress

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        result = embed(self.model, "text", texts, batch_size=TEXT_BATCH_SIZE, **self.engine)
        if len(result) != len(texts):
            raise DataError(f"{self.test.name}: {result.skips.summary('texts')}; every caption must embed")
        return result.vectors

    def plot(self, task: str) -> Path | None:
        return None if self.plot_prefix is None else Path(f"{self.plot_prefix}{task}.png")


def _zeroshot(job: Job) -> dict:
    from .scores import pair_scores, plot_score_histograms
    from .zeroshot import ZeroShotClassifier
    names, images, labels = job.test.class_names, job.test.images, job.test.labels
    if not names or (labels < 0).any():
        raise InputError(f"{job.test.name}: zero-shot classification needs labelled data with class names")
    classifier = ZeroShotClassifier.build(job.model, names, job.templates,
                                          precision=job.engine.get("precision", "fp32"))
    metrics = classifier.evaluate(images, labels)
    languages = [extra.get("language") for extra in job.test.extras]
    if all(isinstance(lang, str) for lang in languages) and len(set(languages)) > 1:
        metrics["per_language"] = _accuracy_by_group(classifier.predict(images), labels, languages)
    if job.plot("zeroshot") is not None:
        scores = pair_scores(images, classifier.weights[labels])
        plot_score_histograms(scores, job.plot("zeroshot"), groups=[names[i] for i in labels.tolist()],
                              title=f"{job.test.name}: cosine(image, its class's prompt ensemble)")
    return metrics


def _accuracy_by_group(predicted: torch.Tensor, labels: torch.Tensor, groups: list[str]) -> dict[str, dict]:
    """Top-1 accuracy and count per group (the language of a spoken digit, ...)."""
    out = {}
    for group in sorted(set(groups)):
        rows = torch.tensor([g == group for g in groups])
        out[group] = {"acc1": float((predicted[rows] == labels[rows]).float().mean()), "n": int(rows.sum())}
    return out


def _retrieval(job: Job) -> dict:
    from .retrieval import retrieval_recall
    from .scores import pair_scores, plot_score_histograms, summarize_scores
    n = len(job.test) if job.max_retrieval is None else min(len(job.test), job.max_retrieval)
    images, text_embeds = job.test.images[:n], job.embed_texts(job.test.texts[:n])
    metrics = retrieval_recall(images, text_embeds, torch.arange(n), ks=(1, 5, 10))
    scores = pair_scores(images, text_embeds)
    if job.plot("retrieval") is not None:
        plot_score_histograms(scores, job.plot("retrieval"), title=f"{job.test.name}: cosine(image, caption)")
    metrics.update({f"clip_score_{k}": v for k, v in summarize_scores(scores).items()})
    return metrics


def _linear_probe(job: Job) -> dict:
    from .linear_probe import linear_probe
    if job.train is None:
        raise InputError(f"{job.test.name}: the linear probe needs a training split (--train-data)")
    return linear_probe(job.train.images, job.train.labels, job.test.images, job.test.labels,
                        class_names=job.test.class_names)


def _captioning(job: Job) -> dict:
    from .captioning import caption_by_retrieval, cider_d
    if job.train is None:
        raise InputError(f"{job.test.name}: captioning by retrieval needs a training split as caption pool")
    pool = sorted(set(job.train.texts))
    chosen = caption_by_retrieval(job.test.images, job.embed_texts(pool), pool)
    references = {i: _references(text, extra) for i, (text, extra) in enumerate(zip(job.test.texts,
                                                                                     job.test.extras))}
    score, _ = cider_d(dict(enumerate(chosen)), references)
    return {"cider_d": float(score), "n_items": len(chosen),
            "references_per_item": sum(map(len, references.values())) / max(1, len(references))}


def _references(caption: str, extra: dict) -> list[str]:
    """The caption plus any other English variants a dataset keeps (Tux Paint: en_GB, en_AU...)."""
    refs = [caption]
    for lang, text in (extra or {}).get("captions", {}).items():
        if lang.startswith("en") and text and text not in refs:
            refs.append(text)
    return refs


TASK_FUNCTIONS: dict[str, Callable[[Job], dict]] = {"zeroshot": _zeroshot, "retrieval": _retrieval,
                                                    "linear_probe": _linear_probe, "captioning": _captioning}
