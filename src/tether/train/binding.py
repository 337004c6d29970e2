"""Binding and distillation inside the trainer: what stays frozen, and the distillation losses.

With ``train.bind`` set, exactly three things may change: the bound (student) tower, its
projection and, with ``learn_scale``, its own logit scale. Everything else (the anchor tower,
locked by ``lock``, its projection, the shared logit scale and bias, every other tower) loses its
gradients here, so AdamW never touches it and the saved model holds the loaded weights bit for bit.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import ConfigError
from .config import BindConfig, TrainConfig


def trains(bind: BindConfig, name: str) -> bool:
    """Whether a bind run trains the parameter called ``name`` (a state-dict key)."""
    return name.startswith((f"towers.{bind.modality}.", f"projections.{bind.modality}.")) or \
        (bind.learn_scale and name == f"logit_scales.{bind.modality}")


def freeze_all_but_bound(model: torch.nn.Module, bind: BindConfig) -> None:
    """Turn off gradients for every parameter outside the bound tower, its projection (and scale)."""
    if bind.modality not in model.towers:
        raise ConfigError(f"train.bind.modality: the model has no {bind.modality!r} tower; its towers: "
                          f"{', '.join(model.towers)} (give train.bind.tower to add one)")
    if bind.learn_scale and bind.modality not in getattr(model, "logit_scales", {}):
        raise ConfigError(f"train.bind.learn_scale: the model has no scale of its own for {bind.modality!r} "
                          f"(logit_scales: {', '.join(model.logit_scales) or 'none'}); add the tower with "
                          "train.bind.tower, which gives it one")
    for name, param in model.named_parameters():
        param.requires_grad_(trains(bind, name))


def distill_loss(cfg: TrainConfig) -> Callable:
    """``loss(student, teacher, scale, bias)`` for ``cfg.loss`` in cosine | l2 | kl.

    The trainer's pair is [student, anchor]: the first embeddings are the student's. ``kl``
    compares each student row's softmax over the batch's teacher embeddings with the teacher's own
    (temperature 1/t of the pair), which places the student in the teacher's space, not merely
    its relative geometry (a rotation of it would match teacher-teacher similarities too).
    """
    from ..losses import DISTILL_LOSSES, distill_loss as loss_of
    if cfg.loss in DISTILL_LOSSES:
        return lambda student, teacher, scale, bias: loss_of(cfg.loss, student, teacher, scale,
                                                             chunk_size=cfg.loss_chunk_size)
    raise ConfigError(f"train.loss={cfg.loss!r} is not a distillation loss")


def bind_evaluator(source, cfg: TrainConfig, templates=None, max_items: int = 5000) -> Callable:
    """``evaluate(model) -> metrics`` for a bind/distill run on a held-out source (see
    :func:`evaluate_binding`), with the source's class names and prompt templates."""
    templates = templates or cfg.eval_templates or getattr(source, "templates", None) or "general"

    def evaluate(model) -> dict[str, float]:
        return evaluate_binding(model, source, cfg.bind.modality, cfg.bind.anchor, templates=templates,
                                max_items=max_items)
    return evaluate


def evaluate_binding(model, source, modality: str, anchor: str, *, templates="general", max_items: int = 5000,
                     batch_size: int = 64) -> dict[str, float]:
    """Held-out metrics of a bound (or distilled) tower, with the model's own text classifier.

    - ``zeroshot_acc1`` (and mean per-class recall): the bound modality's embeddings classified by
      the text tower's prompt ensembles, when the model has a text tower and the source labels
      and class names: for an image anchor this is the emergent ability, no (modality, text) pair
      was seen;
    - ``<modality>_to_<anchor>_recall@K`` / ``<anchor>_to_<modality>_recall@K``: retrieval
      between the pair on the first ``max_items`` samples (the anchor's embeddings are fixed).
    """
    from ..embedding import embed
    from ..metrics.evaluate import _Head
    from ..metrics.retrieval import retrieval_recall
    from ..metrics.zeroshot import ZeroShotClassifier
    head = _Head(source, max_items)
    ours = embed(model, modality, head, batch_size=batch_size)
    theirs = embed(model, anchor, head, batch_size=batch_size)
    out: dict[str, float] = {"val_samples": float(len(ours))}
    labels = torch.tensor([-1 if s.label is None else int(s.label) for s in ours.samples])
    names = getattr(source, "class_names", None)
    if names and "text" in model.towers and model.tokenizer is not None and len(labels) and bool((labels >= 0).all()):
        classifier = ZeroShotClassifier.build(model, list(names), templates)
        metrics = classifier.evaluate(ours.vectors, labels)
        out["zeroshot_acc1"] = float(metrics["acc1"])
        out["zeroshot_mean_per_class_recall"] = float(metrics["mean_per_class_recall"])
    row_a, row_b = {k: i for i, k in enumerate(ours.ids)}, {k: i for i, k in enumerate(theirs.ids)}
    common = [k for k in ours.ids if k in row_b]  # samples both sides could embed
    if len(common) > 1:
        a = ours.vectors[[row_a[k] for k in common]]
        b = theirs.vectors[[row_b[k] for k in common]]
        recall = retrieval_recall(b, a, torch.arange(len(common)), ks=(1, 5))
        for k in (1, 5):  # "image retrieval" = queries of the bound modality finding their anchor item
            out[f"{modality}_to_{anchor}_recall@{k}"] = float(recall[f"image_retrieval_recall@{k}"])
            out[f"{anchor}_to_{modality}_recall@{k}"] = float(recall[f"text_retrieval_recall@{k}"])
    return out

