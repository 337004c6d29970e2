"""Evaluation tasks over datasets: what ``tether eval`` runs.

Each (dataset, model, task) gives one result record in CLIP_benchmark's JSON
format (see ``result_record``), written as ``<dataset>__<model>__<task>.json``
with a plot beside it. Built-in datasets use their held-out split for testing and
their training split where a task needs one (linear probe features, the caption
pool for captioning); a user's own data is named ``TYPE:PATH`` (manifest,
webdataset, folder), for example ``manifest:data/val.csv``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

TASKS = ("zeroshot", "retrieval", "linear_probe", "captioning")
TASK_NAMES = {"zeroshot": "zeroshot_classification", "retrieval": "zeroshot_retrieval",
              "linear_probe": "linear_probe", "captioning": "captioning"}


@dataclass
class EvalDataset:
    name: str
    test: dict[str, Any]
    train: dict[str, Any] | None = None
    templates: str = "general"


BUILTIN = {
    "fashion_mnist": EvalDataset("fashion_mnist", {"type": "fashion_mnist", "split": "test"},
                                 {"type": "fashion_mnist", "split": "train"}, "clothing"),
    "tuxpaint": EvalDataset("tuxpaint", {"type": "tuxpaint", "split": "validation"},
                            {"type": "tuxpaint", "split": "train"}, "clipart"),
    "digits": EvalDataset("digits", {"type": "digits", "split": "test"}, {"type": "digits", "split": "train"},
                          "digits"),
}


def resolve_dataset(spec: str, train_spec: str | None = None) -> EvalDataset:
    """A built-in name, or ``TYPE:PATH`` for a user's manifest, shards or folder."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    if ":" not in spec:
        raise ValueError(f"unknown dataset {spec!r}: use one of {', '.join(BUILTIN)} or TYPE:PATH "
                         "(manifest:pairs.csv, webdataset:shards/, folder:images/)")
    kind, path = spec.split(":", 1)
    train = None
    if train_spec:
        train_kind, train_path = train_spec.split(":", 1) if ":" in train_spec else (kind, train_spec)
        train = {"type": train_kind, "path": train_path}
    return EvalDataset(_slug(Path(path).stem or kind), {"type": kind, "path": path}, train)


def run_tasks(model, model_name: str, dataset: EvalDataset, tasks: list[str], out_dir: str | Path,
              templates: Any = None, batch_size: int = 256, workers: int = 0) -> list[Path]:
    """Run ``tasks`` on ``dataset``; returns the result files written."""
    from .results import result_record, write_result
    for task in tasks:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    out_dir = Path(out_dir)
    test = _Split(model, dataset.test, batch_size, workers)
    train = _Split(model, dataset.train, batch_size, workers) if dataset.train else None
    written = []
    for task in tasks:
        stem = out_dir / f"{dataset.name}__{_slug(model_name)}__{task}"
        metrics = TASK_FUNCTIONS[task](model, test, train, templates or dataset.templates, stem)
        metrics["skipped_samples"] = test.skipped()
        record = result_record(dataset.name, model_name, TASK_NAMES[task], metrics)
        written.append(write_result(stem.with_suffix(".json"), record))
    return written


class _Split:
    """A data split embedded once, lazily, and shared by the tasks that need it."""

    def __init__(self, model, spec: dict, batch_size: int, workers: int) -> None:
        from ..data import PairDataset, PairLoader, build_source
        self.model, self.source = model, build_source(spec)
        dataset = PairDataset(self.source, model.preprocessor, None, batch_size=batch_size, shuffle=False,
                              return_extra=True)
        self.loader = PairLoader(dataset, num_workers=workers)
        self._cache = None

    def embedded(self) -> tuple[torch.Tensor, list[str], torch.Tensor, list[dict]]:
        if self._cache is None:
            from ..embed import embed_pairs
            self._cache = embed_pairs(self.model, self.loader)
        return self._cache

    @property
    def class_names(self) -> list[str] | None:
        return getattr(self.source, "class_names", None)

    def skipped(self) -> int:
        return int(self.loader.stats.skipped)


def _zeroshot(model, test: _Split, train, templates, stem: Path) -> dict:
    from .scores import pair_scores, plot_score_histograms
    from .zeroshot import ZeroShotClassifier
    images, _, labels, _ = test.embedded()
    names = test.class_names
    if not names or (labels < 0).any():
        raise ValueError(f"{test.source.name}: zero-shot classification needs labelled data with class names")
    classifier = ZeroShotClassifier.build(model, names, templates)
    metrics = classifier.evaluate(images, labels)
    scores = pair_scores(images, classifier.weights[labels])
    plot_score_histograms(scores, stem.with_suffix(".png"), groups=[names[i] for i in labels.tolist()],
                          title=f"{test.source.name}: cosine(image, its class's prompt ensemble)")
    return metrics


def _retrieval(model, test: _Split, train, templates, stem: Path) -> dict:
    from .retrieval import retrieval_recall
    from .scores import pair_scores, plot_score_histograms, summarize_scores
    images, texts, _, _ = test.embedded()
    text_emb = model.embed_texts(texts)
    metrics = retrieval_recall(images, text_emb, torch.arange(len(texts)), ks=(1, 5, 10))
    scores = pair_scores(images, text_emb)
    plot_score_histograms(scores, stem.with_suffix(".png"), title=f"{test.source.name}: cosine(image, caption)")
    metrics.update({f"clip_score_{k}": v for k, v in summarize_scores(scores).items()})
    return metrics


def _linear_probe(model, test: _Split, train, templates, stem: Path) -> dict:
    from .linear_probe import linear_probe
    if train is None:
        raise ValueError(f"{test.source.name}: the linear probe needs a training split (--train-data)")
    x_test, _, y_test, _ = test.embedded()
    x_train, _, y_train, _ = train.embedded()
    return linear_probe(x_train, y_train, x_test, y_test, class_names=test.class_names)


def _captioning(model, test: _Split, train, templates, stem: Path) -> dict:
    from .captioning import caption_by_retrieval, cider_d
    if train is None:
        raise ValueError(f"{test.source.name}: captioning by retrieval needs a training split as caption pool")
    images, texts, _, extras = test.embedded()
    _, pool, _, _ = train.embedded()
    pool = sorted(set(pool))
    chosen = caption_by_retrieval(images, model.embed_texts(pool), pool)
    references = {i: _references(text, extra) for i, (text, extra) in enumerate(zip(texts, extras))}
    score, per_item = cider_d(dict(enumerate(chosen)), references)
    return {"cider_d": float(score), "n_items": len(chosen),
            "references_per_item": sum(map(len, references.values())) / max(1, len(references))}


def _references(caption: str, extra: dict) -> list[str]:
    """The caption plus any other English variants a dataset keeps (Tux Paint: en_GB, en_AU...)."""
    refs = [caption]
    for lang, text in (extra or {}).get("captions", {}).items():
        if lang.startswith("en") and text and text not in refs:
            refs.append(text)
    return refs


TASK_FUNCTIONS = {"zeroshot": _zeroshot, "retrieval": _retrieval, "linear_probe": _linear_probe,
                  "captioning": _captioning}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"
