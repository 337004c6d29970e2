"""How far a lower-precision job is from fp32: per-row cosine, and Recall@K with each.

The first N inputs of the job's source are embedded twice, in the job's precision and in fp32,
through the same path as the job (``part.embed_samples``). Per modality: the cosine of each row to
its fp32 row (min, mean); with images and captions, image<->text Recall@1/5/10 among those N
pairs in both precisions, and the largest change.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .part import embed_samples, read_part

KS = (1, 5, 10)


def precision_agreement(job: Any, n: int, *, batch_size: int = 64, device: Any = None) -> dict[str, Any]:
    """The agreement of ``job.precision`` with fp32 on the first ``n`` inputs (see the module docstring)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"compare_fp32 must be a positive number of inputs, got {n!r}")
    samples, _ = read_part(job.source, 0, min(n, job.n_inputs))
    runs = {p: embed_samples(job.model, samples, job.modalities, base=job.source, batch_size=batch_size,
                             precision=p, device=device) for p in dict.fromkeys(("fp32", job.precision))}
    low, ref = runs[job.precision], runs["fp32"]
    if [p for p, _ in low.kept] != [p for p, _ in ref.kept]:
        raise RuntimeError("the two precisions kept different inputs; cannot compare them row by row")
    out: dict[str, Any] = {"precision": job.precision, "inputs": len(samples), "rows": len(ref.kept), "cosine": {}}
    for modality in job.modalities:
        cos = np.sum(low.vectors[modality].astype(np.float64) * ref.vectors[modality], axis=1)
        out["cosine"][modality] = {"min": float(cos.min()) if cos.size else None,
                                   "mean": float(cos.mean()) if cos.size else None}
    if {"image", "text"} <= set(job.modalities) and len(ref.kept) > 1:
        recall = {p: _recall(r.vectors["image"], r.vectors["text"]) for p, r in (("fp32", ref), (job.precision, low))}
        out["recall"] = recall
        out["recall_max_abs_change"] = max(abs(recall["fp32"][k] - recall[job.precision][k]) for k in recall["fp32"])
    return out


def _recall(image: np.ndarray, text: np.ndarray) -> dict[str, float]:
    from ..metrics.retrieval import retrieval_recall

    metrics = retrieval_recall(image, text, list(range(len(image))), ks=KS)
    return {k: float(v) for k, v in metrics.items() if "recall@" in k}


__all__ = ["precision_agreement"]
