"""Held-out evaluation during training: zero-shot accuracy and retrieval recall.

A thin call to the evaluation driver (:mod:`tether.metrics.evaluate`): the validation source is
embedded once per evaluation through the embedding engine. Zero-shot runs when the validation
source knows its class names (prompts: the ``eval_templates`` given, else the source's own
templates); retrieval pairs each image with its caption (the first ``max_retrieval`` pairs).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence


def make_evaluator(loader, class_names: Sequence[str] | None = None,
                   templates: Sequence[str] | str | None = None, max_retrieval: int = 5000,
                   ) -> Callable[[Any], dict[str, float]]:
    """A callable ``evaluate(model) -> metrics`` over the source of a validation ``PairLoader``."""
    source, batch_size, workers = loader.dataset.source, loader.dataset.batch_size, loader.num_workers

    def evaluate(model) -> dict[str, float]:
        from ..metrics.evaluate import embed_split, evaluate_splits
        split = embed_split(model, source, batch_size=batch_size, workers=workers)
        if class_names:
            split.class_names = list(class_names)
        n = len(split)
        tasks = (["zeroshot"] if class_names and n and bool((split.labels >= 0).all()) else []) + \
            (["retrieval"] if min(n, max_retrieval) > 1 else [])
        metrics = evaluate_splits(model, split, None, tasks, templates=templates or "general",
                                  max_retrieval=max_retrieval)
        out: dict[str, float] = {"val_samples": float(n)}
        if "zeroshot" in metrics:
            zs = metrics["zeroshot"]
            out["zeroshot_acc1"] = float(zs["acc1"])
            if zs.get("acc5") is not None:  # None when there are fewer than 5 classes
                out["zeroshot_acc5"] = float(zs["acc5"])
            out["zeroshot_mean_per_class_recall"] = float(zs["mean_per_class_recall"])
        if "retrieval" in metrics:
            out.update({k: float(v) for k, v in metrics["retrieval"].items() if "recall@" in k})
        return out

    return evaluate
