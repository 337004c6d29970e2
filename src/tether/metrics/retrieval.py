"""Image-text retrieval: Recall@K and mean/median rank, computed in blocks.

Definitions follow CLIP_benchmark (``clip_benchmark/metrics/zeroshot_retrieval.py``):

* ``image_retrieval_recall@K`` -- text -> image.  For every caption, rank all images by cosine
  similarity; a hit when the caption's own image is among the top K.  Averaged over captions.
* ``text_retrieval_recall@K`` -- image -> text.  For every image, rank all captions; a hit when
  *any* of the image's captions is among the top K.  Averaged over images.

Ranks are 1-based and counted as ``1 + (number of candidates scoring strictly higher)``:

* text -> image: ``rank_j = 1 + #{i : s(i, j) > s(image(j), j)}``
* image -> text: ``rank_i = 1 + #{j : s(i, j) > max_{j' in captions(i)} s(i, j')}``

so ``recall@K = mean(rank <= K)``.  Ties are resolved in the retrieved item's favour (a candidate
with exactly the same score does not push the correct item down).  CLIP_benchmark uses
``torch.topk``, whose order among tied scores is unspecified; with float embeddings exact ties
have probability zero, so the two agree, and this rule is deterministic.

The full (captions x images) score matrix is never built: text -> image walks blocks of captions
against all images, image -> text walks blocks of images against all captions.  Every score a
rank is compared with comes from the same block product as the scores it is compared against,
so rounding can never make a correct item outrank (or be outranked by) itself.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch

__all__ = ["retrieval_recall", "retrieval_ranks", "as_embeddings"]

# Elements of one (rows x candidates) score block (float32: 64 MiB) when chunk_size is not given.
_BLOCK_ELEMENTS = 1 << 24


def _describe_rows(rows: torch.Tensor) -> str:
    n = int(rows.numel())
    shown = [int(r) for r in rows[:10]]
    more = f" (and {n - len(shown)} more)" if n > len(shown) else ""
    return f"{n} row(s): {shown}{more}"


def as_embeddings(x: Any, name: str, *, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a 2-D embedding matrix; return it (float, on ``device``) and its row L2 norms.

    Accepts torch tensors, numpy arrays and nested lists.  Raises ``ValueError`` naming the
    offending rows for NaN/inf values and zero-norm rows, and for empty or non-2-D input.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (rows, dim) matrix, got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if dtype is None:
        dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    t = t.to(device=device if device is not None else t.device, dtype=dtype)
    norms = torch.linalg.vector_norm(t, dim=1)
    bad = ~torch.isfinite(norms)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().cpu()
        nonfinite = ~torch.isfinite(t[rows]).all(dim=1)
        if bool(nonfinite.any()):
            rows = rows[nonfinite.cpu()]
            raise ValueError(f"{name} has NaN or infinite values in {_describe_rows(rows)}")
        raise ValueError(f"{name} has rows whose norm overflows {dtype}: {_describe_rows(rows)}")
    zero = norms == 0
    if bool(zero.any()):
        raise ValueError(f"{name} has zero-norm rows (cannot be L2-normalised): "
                         f"{_describe_rows(zero.nonzero().flatten().cpu())}")
    return t, norms


def _as_index(text_to_image: Any, n_captions: int, n_images: int) -> torch.Tensor:
    idx = text_to_image.detach().cpu() if isinstance(text_to_image, torch.Tensor) \
        else torch.as_tensor(np.asarray(text_to_image))
    if idx.ndim != 1:
        raise ValueError(f"text_to_image must be 1-D (one image index per caption), got shape {tuple(idx.shape)}")
    if idx.numel() != n_captions:
        raise ValueError(f"text_to_image has {idx.numel()} entries but there are {n_captions} captions "
                         "(text_embeds rows); they must match")
    if idx.dtype == torch.bool or idx.is_complex():
        raise ValueError(f"text_to_image must hold integer image indices, got dtype {idx.dtype}")
    if idx.is_floating_point():
        whole = torch.isfinite(idx) & (idx == idx.round())
        if not bool(whole.all()):
            j = int((~whole).nonzero()[0])
            raise ValueError(f"text_to_image must hold integer image indices; caption {j} has {idx[j].item()!r}")
    idx = idx.to(torch.int64)
    bad = (idx < 0) | (idx >= n_images)
    if bool(bad.any()):
        where = bad.nonzero().flatten()
        j = int(where[0])
        raise ValueError(f"text_to_image[{j}] = {int(idx[j])} is out of range for {n_images} images "
                         f"(valid 0..{n_images - 1}); {where.numel()} caption(s) out of range, "
                         f"first ones: {[int(k) for k in where[:10]]}")
    return idx


def _block_rows(chunk_size: int | None, n_candidates: int) -> int:
    if chunk_size is None:
        return max(1, _BLOCK_ELEMENTS // max(1, n_candidates))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def _prepare(image_embeds: Any, text_embeds: Any, text_to_image: Any, normalize: bool,
             device: torch.device | str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    img, img_norm = as_embeddings(image_embeds, "image_embeds", device=device)
    txt, txt_norm = as_embeddings(text_embeds, "text_embeds", device=img.device)
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"image_embeds has dimension {img.shape[1]} but text_embeds has {txt.shape[1]}")
    if txt.dtype != img.dtype:
        img, txt = img.double(), txt.double()
        img_norm, txt_norm = img_norm.double(), txt_norm.double()
    t2i = _as_index(text_to_image, txt.shape[0], img.shape[0])
    if normalize:
        img = img / img_norm[:, None]
        txt = txt / txt_norm[:, None]
    return img, txt, t2i


def _ranks(img: torch.Tensor, txt: torch.Tensor, t2i: torch.Tensor,
           chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    n_img, n_txt = img.shape[0], txt.shape[0]
    dev = img.device
    t2i_dev = t2i.to(dev)

    # text -> image: blocks of captions against every image.
    t2i_ranks = torch.empty(n_txt, dtype=torch.int64)
    rows = _block_rows(chunk_size, n_img)
    for s in range(0, n_txt, rows):
        e = min(s + rows, n_txt)
        scores = txt[s:e] @ img.T                                  # (b, n_img)
        pos = scores.gather(1, t2i_dev[s:e, None])                 # the same numbers as in `scores`
        t2i_ranks[s:e] = ((scores > pos).sum(dim=1) + 1).cpu()

    # image -> text: blocks of images against every caption; each image's best positive caption
    # score is taken from the same block, then the captions strictly above it are counted.
    order = torch.argsort(t2i, stable=True)                        # caption rows grouped by image
    offsets = torch.zeros(n_img + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.bincount(t2i, minlength=n_img), 0)
    i2t_ranks = torch.empty(n_img, dtype=torch.int64)
    rows = _block_rows(chunk_size, n_txt)
    for s in range(0, n_img, rows):
        e = min(s + rows, n_img)
        scores = img[s:e] @ txt.T                                  # (b, n_txt)
        caps = order[offsets[s]:offsets[e]].to(dev)
        owner = t2i_dev[caps] - s
        best = torch.full((e - s,), float("-inf"), dtype=scores.dtype, device=dev)
        best.scatter_reduce_(0, owner, scores[owner, caps], reduce="amax")
        i2t_ranks[s:e] = ((scores > best[:, None]).sum(dim=1) + 1).cpu()
    return t2i_ranks, i2t_ranks


def retrieval_ranks(image_embeds: Any, text_embeds: Any, text_to_image: Any, *, chunk_size: int | None = None,
                    normalize: bool = True, device: torch.device | str | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based ranks of the correct item in both directions, computed in blocks.

    Returns ``(text_to_image_ranks, image_to_text_ranks)``, int64 CPU tensors of shapes
    ``(n_captions,)`` and ``(n_images,)``.  ``text_to_image_ranks[j]`` is the rank of caption j's
    image among all images; ``image_to_text_ranks[i]`` is the rank of image i's best-ranked
    caption among all captions (``n_captions + 1`` for an image without captions).
    ``chunk_size`` is the number of query rows scored at once (default: as many as fit in
    2**24 scores).  With ``normalize`` (default) similarities are cosines; otherwise raw dot
    products.  Arguments are checked as in :func:`retrieval_recall`.
    """
    chunk_size = None if chunk_size is None else _block_rows(chunk_size, 1)
    img, txt, t2i = _prepare(image_embeds, text_embeds, text_to_image, normalize, device)
    return _ranks(img, txt, t2i, chunk_size)


def _check_ks(ks: Iterable[int]) -> list[int]:
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    out: list[int] = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"recall ks must be positive integers, got {k!r}")
        if int(k) not in out:
            out.append(int(k))
    if not out:
        raise ValueError("ks is empty: give at least one K for Recall@K")
    return out


def retrieval_recall(image_embeds: Any, text_embeds: Any, text_to_image: Sequence[int] | Any,
                     ks: Iterable[int] = (1, 5, 10), chunk_size: int | None = None, *,
                     images_without_captions: str = "error", normalize: bool = True,
                     device: torch.device | str | None = None) -> dict[str, float | int]:
    """Recall@K and mean/median rank for image<->text retrieval, CLIP_benchmark's definitions.

    Parameters
    ----------
    image_embeds : (n_images, D) embeddings (torch, numpy or lists); L2-normalised here.
    text_embeds : (n_captions, D) embeddings.
    text_to_image : length n_captions; ``text_to_image[j]`` is the row of caption j's image.
        An image may have any number of captions.
    ks : the K of Recall@K (K larger than the candidate count simply gives recall 1).
    chunk_size : query rows scored at once; None picks a block of about 2**24 scores.
    images_without_captions : ``"error"`` (default) raises when an image has no caption;
        ``"exclude"`` leaves such images out of the image -> text averages and reports their
        number as ``text_retrieval_images_excluded``.  (They still take part as candidates in
        text -> image retrieval.)  CLIP_benchmark assumes every image has a caption.
    normalize : cosine similarity (default); False ranks by raw dot products.
    device : where to compute (default: where ``image_embeds`` lives).

    Returns
    -------
    dict with ``image_retrieval_recall@K`` (text -> image, averaged over captions),
    ``text_retrieval_recall@K`` (image -> text, averaged over images), ``image_retrieval_mean_rank``,
    ``image_retrieval_median_rank``, ``text_retrieval_mean_rank``, ``text_retrieval_median_rank``
    (1-based rank of the first correct item; the median is numpy's, i.e. the mean of the two
    middle ranks for an even count), ``n_images`` and ``n_captions``.
    """
    ks = _check_ks(ks)
    if images_without_captions not in ("error", "exclude"):
        raise ValueError(f"images_without_captions must be 'error' or 'exclude', got {images_without_captions!r}")
    chunk_size = None if chunk_size is None else _block_rows(chunk_size, 1)
    img, txt, t2i = _prepare(image_embeds, text_embeds, text_to_image, normalize, device)
    n_img, n_txt = img.shape[0], txt.shape[0]
    has_caption = torch.bincount(t2i, minlength=n_img) > 0
    n_missing = int((~has_caption).sum())
    if n_missing and images_without_captions == "error":
        rows = (~has_caption).nonzero().flatten()
        raise ValueError(
            f"{n_missing} image(s) have no caption, so image -> text recall is undefined for them: "
            f"{_describe_rows(rows)}. Pass images_without_captions='exclude' to leave them out of the "
            "text_retrieval_* averages (they stay candidates for text -> image retrieval).")
    t2i_ranks, i2t_ranks = _ranks(img, txt, t2i, chunk_size)
    i2t_used = i2t_ranks[has_caption]

    t2i_np = t2i_ranks.numpy()
    i2t_np = i2t_used.numpy()
    metrics: dict[str, float | int] = {}
    for k in ks:
        metrics[f"image_retrieval_recall@{k}"] = float((t2i_np <= k).mean())
        metrics[f"text_retrieval_recall@{k}"] = float((i2t_np <= k).mean())
    metrics["image_retrieval_mean_rank"] = float(t2i_np.mean())
    metrics["image_retrieval_median_rank"] = float(np.median(t2i_np))
    metrics["text_retrieval_mean_rank"] = float(i2t_np.mean())
    metrics["text_retrieval_median_rank"] = float(np.median(i2t_np))
    metrics["n_images"] = int(n_img)
    metrics["n_captions"] = int(n_txt)
    if images_without_captions == "exclude":
        metrics["text_retrieval_images_excluded"] = n_missing
    return metrics
