"""Zero-shot classification with prompt ensembles, CLIP_benchmark's definitions.

Building the classifier (``ZeroShotClassifier.build``), for classes c = 1..C and templates
t = 1..T::

    e[c, t] = normalize(embed_text(template_t with {} -> class_c))
    w[c]    = normalize(mean_t e[c, t])                      # weights W: (C, D)

Classifying image embeddings x (N, D)::

    logits = normalize(x) @ W.T                              # cosine similarities, (N, C)
    proba  = softmax(scale * logits)                         # scale: the model's multiplier t

``evaluate`` returns ``acc1``, ``acc5``, ``mean_per_class_recall`` under CLIP_benchmark's key
names, plus per-class accuracy and the confusion matrix.  Accuracy does not depend on the
scale.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_save_safetensors, atomic_write_json
from .retrieval import as_embeddings
from .templates import fill_template, resolve_templates

__all__ = ["ZeroShotClassifier", "zero_shot_eval", "classification_metrics", "DEFAULT_SCALE"]

FORMAT = "tether.zeroshot/1"
WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier.json"
# CLIP_benchmark multiplies cosines by 100 (the trained CLIP logit scale, capped) before softmax.
DEFAULT_SCALE = 100.0
_EVAL_BLOCK = 8192


def as_labels(labels: Any, n: int, num_classes: int, name: str = "labels") -> torch.Tensor:
    """Check integer class labels: length ``n``, each in ``[0, num_classes)``."""
    y = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class index per example), got shape {tuple(y.shape)}")
    if y.numel() != n:
        raise ValueError(f"{name} has {y.numel()} entries but there are {n} examples")
    if y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.is_floating_point():
        whole = torch.isfinite(y) & (y == y.round())
        if not bool(whole.all()):
            i = int((~whole).nonzero()[0])
            raise ValueError(f"{name} must hold integer class indices; example {i} has {y[i].item()!r}")
    y = y.to(torch.int64)
    bad = (y < 0) | (y >= num_classes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"{name}[{i}] = {int(y[i])} is out of range for {num_classes} classes "
                         f"(valid 0..{num_classes - 1}); {int(bad.sum())} example(s) out of range")
    return y


def classification_metrics(logits: torch.Tensor, labels: Any, *, class_names: Sequence[str] | None = None,
                           prefix: str = "") -> dict[str, Any]:
    """Top-1/top-5 accuracy, mean per-class recall, per-class accuracy and confusion matrix.

    ``logits`` (N, C); ``labels`` (N,) in ``[0, C)``.  Classes are ranked by logit with ties going
    to the lower class index (as ``argmax``), so the rank of the true class is
    ``1 + #{c : l_c > l_y} + #{c < y : l_c = l_y}`` and top-k accuracy is ``mean(rank <= k)``.
    ``acc5`` is None with an ``acc5_note`` when C < 5 (CLIP_benchmark writes NaN there).
    ``mean_per_class_recall`` averages recall over the classes that occur in ``labels``
    (sklearn's ``balanced_accuracy_score``, which CLIP_benchmark calls).  ``per_class_accuracy[c]``
    is None for a class without examples.  ``confusion_matrix[i][j]`` counts examples of true class
    i predicted as j.  Keys get ``prefix`` (``"lp_"`` for linear probes) on the three headline metrics.
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits must be (N, C) with C >= 1, got shape {tuple(logits.shape)}")
    n, c = logits.shape
    if n == 0:
        raise ValueError("no examples to evaluate")
    y = as_labels(labels, n, c).to(logits.device)
    ranks = torch.empty(n, dtype=torch.int64)
    preds = torch.empty(n, dtype=torch.int64)
    cls = torch.arange(c, device=logits.device)
    for s in range(0, n, _EVAL_BLOCK):
        e = min(s + _EVAL_BLOCK, n)
        block, yb = logits[s:e], y[s:e]
        true = block.gather(1, yb[:, None])
        ahead = (block > true) | ((block == true) & (cls[None, :] < yb[:, None]))
        ranks[s:e] = (ahead.sum(dim=1) + 1).cpu()
        preds[s:e] = block.argmax(dim=1).cpu()
    y = y.cpu()
    confusion = torch.bincount(y * c + preds, minlength=c * c).view(c, c)
    support = confusion.sum(dim=1)
    correct = confusion.diagonal()
    present = support > 0
    per_class = [float(correct[i]) / float(support[i]) if support[i] > 0 else None for i in range(c)]
    recall = (correct[present].double() / support[present].double()).mean().item()
    out: dict[str, Any] = {
        f"{prefix}acc1": float((ranks <= 1).double().mean()),
        f"{prefix}acc5": float((ranks <= 5).double().mean()) if c >= 5 else None,
    }
    if c < 5:
        out[f"{prefix}acc5_note"] = f"not applicable: {c} classes (top-5 needs at least 5)"
    out[f"{prefix}mean_per_class_recall"] = float(recall)
    out["n_samples"] = int(n)
    out["n_classes"] = int(c)
    if class_names is not None:
        out["class_names"] = list(class_names)
    out["per_class_accuracy"] = per_class
    out["per_class_count"] = [int(v) for v in support]
    out["confusion_matrix"] = confusion.tolist()
    return out


def _is_aligned_model(model: Any) -> bool:
    """A model the embedding engine can run (``encode`` + ``processors``), as opposed to a plain callable."""
    return hasattr(model, "encode") and hasattr(model, "processors")


def _text_embedder(model: Any, batch_size: int, progress: bool,
                   precision: str = "fp32") -> Callable[[list[str]], torch.Tensor]:
    if _is_aligned_model(model):
        from ..embedding import embed
        return lambda prompts: embed(model, "text", prompts, batch_size=batch_size, progress=progress,
                                     precision=precision).vectors
    if callable(model):
        def run(prompts: list[str]) -> torch.Tensor:
            out = []
            for i in range(0, len(prompts), batch_size):
                emb = model(prompts[i:i + batch_size])
                out.append(emb.detach().float().cpu() if isinstance(emb, torch.Tensor)
                           else torch.as_tensor(np.asarray(emb), dtype=torch.float32))
            return torch.cat(out)
        return run
    raise TypeError("model must be an AlignedModel (encode + processors) or a callable mapping a list of "
                    "strings to a (N, D) embedding matrix")


def _capture_scale(model: Any) -> tuple[float, str]:
    scale = getattr(model, "scale", None)
    if callable(scale):
        with torch.no_grad():
            value = float(torch.as_tensor(scale()).detach().cpu())
        if math.isfinite(value) and value > 0:
            return value, "model"
    return DEFAULT_SCALE, "default"


class ZeroShotClassifier:
    """Class weights built from prompt ensembles; reusable on any image embeddings of width D."""

    def __init__(self, weights: torch.Tensor, class_names: Sequence[str],
                 templates: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                 scale: float = DEFAULT_SCALE, scale_source: str = "given") -> None:
        w, _ = as_embeddings(weights, "weights", dtype=torch.float32)
        class_names = [str(c) for c in class_names]
        if len(class_names) != w.shape[0]:
            raise ValueError(f"{len(class_names)} class names for {w.shape[0]} weight rows")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.weights = F.normalize(w.cpu(), dim=-1)
        self.class_names = class_names
        self.templates = templates if templates is None or isinstance(templates, Mapping) else list(templates)
        self.scale = float(scale)
        self.scale_source = scale_source

    # ---- building ---------------------------------------------------------------------
    @classmethod
    def build(cls, model: Any, class_names: Sequence[str], templates: Any = "general", batch_size: int = 256,
              *, scale: float | None = None, progress: bool = False,
              precision: str = "fp32") -> "ZeroShotClassifier":
        """Embed every (class, template) prompt, L2-normalise, average per class, renormalise.

        ``model``: an :class:`~tether.models.AlignedModel` (prompts go through the embedding engine,
        in ``precision``) or any callable ``list[str] -> (N, D)`` embeddings.  ``templates``: a set name (default ``"general"``), a
        list of templates with ``{}``, a template file, or a mapping ``class name -> prompts``
        (class-specific prompts used verbatim).  ``scale``: the multiplier t that
        :meth:`predict_proba` uses by default; when omitted, ``model.scale()`` at build time, or
        100 (CLIP_benchmark's constant) for a model without one.
        """
        class_names = [str(c) for c in class_names]
        if not class_names:
            raise ValueError("class_names is empty")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        templates = resolve_templates(templates)
        if isinstance(templates, dict):
            missing = [c for c in class_names if c not in templates]
            if missing:
                raise ValueError(f"class-specific prompts are missing for {len(missing)} class(es), e.g. {missing[:5]}")
            per_class = [list(templates[c]) for c in class_names]
        else:
            per_class = [[fill_template(t, c) for t in templates] for c in class_names]
        prompts = [p for ps in per_class for p in ps]
        embed = _text_embedder(model, batch_size, progress, precision)
        emb = embed(prompts)
        emb = emb.detach() if isinstance(emb, torch.Tensor) else torch.as_tensor(np.asarray(emb))
        if emb.ndim != 2 or emb.shape[0] != len(prompts):
            raise ValueError(f"the text embedder returned shape {tuple(emb.shape)} for {len(prompts)} prompts")
        try:
            emb, norms = as_embeddings(emb, "prompt embeddings", device="cpu", dtype=torch.float32)
        except ValueError as e:
            raise ValueError(f"{e} (prompt order: class-major, e.g. row 0 = {prompts[0]!r})") from None
        emb = emb / norms[:, None]
        owner = torch.repeat_interleave(torch.arange(len(class_names)), torch.tensor([len(p) for p in per_class]))
        sums = torch.zeros(len(class_names), emb.shape[1], dtype=torch.float32).index_add_(0, owner, emb)
        means = sums / torch.tensor([len(p) for p in per_class], dtype=torch.float32)[:, None]
        zero = torch.linalg.vector_norm(means, dim=1) == 0
        if bool(zero.any()):
            raise ValueError(f"the prompt embeddings of class(es) {[class_names[i] for i in zero.nonzero().flatten()]} "
                             "average to zero; cannot normalise")
        if scale is None:
            scale, source = _capture_scale(model)
        else:
            scale, source = float(scale), "given"
        return cls(F.normalize(means, dim=-1), class_names, templates, scale, source)

    # ---- using ------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.weights.shape[0]

    @property
    def embed_dim(self) -> int:
        return self.weights.shape[1]

    def logits(self, image_embeds: Any) -> torch.Tensor:
        """Cosine similarity of each (L2-normalised) image embedding with each class: (N, C)."""
        x, norms = as_embeddings(image_embeds, "image_embeds")
        if x.shape[1] != self.embed_dim:
            raise ValueError(f"image_embeds has dimension {x.shape[1]}, the classifier {self.embed_dim}")
        w = self.weights.to(device=x.device, dtype=x.dtype)
        return (x / norms[:, None]) @ w.T

    def predict_proba(self, image_embeds: Any, scale: float | None = None) -> torch.Tensor:
        """``softmax(scale * logits)`` over classes; ``scale`` defaults to ``self.scale``.

        ``scale`` multiplies the cosine similarities, like CLIP's logit scale (about 100 for a
        trained CLIP).  Any constant logit bias (SigLIP) cancels in the softmax.
        """
        t = self.scale if scale is None else float(scale)
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        return torch.softmax(t * self.logits(image_embeds), dim=-1)

    def predict(self, image_embeds: Any) -> torch.Tensor:
        """Index of the best class per image (ties: the lower index)."""
        return self.logits(image_embeds).argmax(dim=-1)

    def evaluate(self, image_embeds: Any, labels: Any) -> dict[str, Any]:
        """Metrics of :func:`classification_metrics` on these embeddings and labels."""
        logits = self.logits(image_embeds)
        return classification_metrics(logits, labels, class_names=self.class_names)

    # ---- files ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path/classifier.safetensors`` (key ``weights``) and ``path/classifier.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_save_safetensors({"weights": self.weights}, path / WEIGHTS_FILE, metadata={"format": FORMAT})
        config = {"format": FORMAT, "num_classes": self.num_classes, "embed_dim": self.embed_dim,
                  "class_names": self.class_names, "templates": self.templates,
                  "scale": self.scale, "scale_source": self.scale_source}
        atomic_write_json(path / CONFIG_FILE, config, ensure_ascii=False)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ZeroShotClassifier":
        from safetensors.torch import load_file
        path = Path(path)
        cfg_path, w_path = path / CONFIG_FILE, path / WEIGHTS_FILE
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise FileNotFoundError(f"{path} is not a saved zero-shot classifier: {p.name} is missing")
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{cfg_path}: format {cfg.get('format')!r}, expected {FORMAT!r}")
        weights = load_file(str(w_path)).get("weights")
        if weights is None:
            raise ValueError(f"{w_path}: no 'weights' tensor")
        return cls(weights, cfg["class_names"], cfg.get("templates"), cfg["scale"],
                   cfg.get("scale_source", "given"))

    def __repr__(self) -> str:
        return (f"ZeroShotClassifier({self.num_classes} classes, dim {self.embed_dim}, "
                f"scale {self.scale:.4g} ({self.scale_source}))")


def _image_embeddings(model: Any, images: Any, batch_size: int, progress: bool) -> torch.Tensor:
    """Precomputed (N, D) embeddings as they are; anything else through the embedding engine."""
    if isinstance(images, np.ndarray) and images.ndim == 2:
        return torch.from_numpy(images)
    if isinstance(images, torch.Tensor) and images.ndim == 2 and images.is_floating_point():
        return images
    if not _is_aligned_model(model):
        raise TypeError("images (not embeddings) need an AlignedModel to embed them")
    from ..embedding import embed
    result = embed(model, "image", images, batch_size=batch_size, progress=progress)
    if result.skips.skipped:  # the labels would no longer line up with the rows
        raise ValueError(f"zero_shot_eval: {result.skips.summary('images')}")
    return result.vectors


def zero_shot_eval(model: Any, images_or_embeddings: Any, labels: Any, class_names: Sequence[str],
                   templates: Any = "general", *, batch_size: int = 64, text_batch_size: int = 256,
                   scale: float | None = None, progress: bool = False,
                   return_classifier: bool = False) -> dict[str, Any] | tuple[dict[str, Any], ZeroShotClassifier]:
    """Build a classifier from ``class_names`` x ``templates`` and evaluate it.

    ``images_or_embeddings``: an (N, D) embedding matrix (torch/numpy), an (N, 3, H, W) tensor of
    preprocessed pixels, a list of images/paths or a data source (embedded by the engine; an input
    that cannot be read is an error here, since the labels must line up).
    Returns :meth:`ZeroShotClassifier.evaluate`'s dict (and the classifier when asked).
    """
    clf = ZeroShotClassifier.build(model, class_names, templates, batch_size=text_batch_size,
                                   scale=scale, progress=progress)
    emb = _image_embeddings(model, images_or_embeddings, batch_size, progress)
    metrics = clf.evaluate(emb, labels)
    return (metrics, clf) if return_classifier else metrics
