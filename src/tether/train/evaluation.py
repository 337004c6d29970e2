"""Held-out evaluation during training: zero-shot accuracy and retrieval recall.

The validation batches are embedded once per evaluation. Zero-shot runs when the
validation source knows its class names (prompts: the ``eval_templates`` given,
else the source's own templates); retrieval pairs each image with its caption.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..embed import embed_pairs


def make_evaluator(loader, class_names: Sequence[str] | None = None,
                   templates: Sequence[str] | str | None = None, max_retrieval: int = 5000,
                   ) -> Callable[[Any], dict[str, float]]:
    """A callable ``evaluate(model) -> metrics`` over a validation ``PairLoader``."""

    def evaluate(model) -> dict[str, float]:
        from ..metrics.retrieval import retrieval_recall
        from ..metrics.zeroshot import ZeroShotClassifier
        images, texts, labels, _ = embed_pairs(model, loader)
        out: dict[str, float] = {"val_samples": float(images.shape[0])}
        if class_names and (labels >= 0).all() and images.shape[0]:
            classifier = ZeroShotClassifier.build(model, list(class_names), templates or "general")
            metrics = classifier.evaluate(images, labels)
            out["zeroshot_acc1"] = float(metrics["acc1"])
            if metrics.get("acc5") is not None:  # None when there are fewer than 5 classes
                out["zeroshot_acc5"] = float(metrics["acc5"])
            out["zeroshot_mean_per_class_recall"] = float(metrics["mean_per_class_recall"])
        n = min(images.shape[0], max_retrieval)
        if n > 1:
            with torch.inference_mode():
                text_emb = model.embed_texts(texts[:n])
            recall = retrieval_recall(images[:n], text_emb, torch.arange(n), ks=(1, 5, 10))
            out.update({k: float(v) for k, v in recall.items() if "recall@" in k})
        return out

    return evaluate
