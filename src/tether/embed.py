"""Embed many files robustly: bad images are skipped and counted, never fatal.

``AlignedModel.embed_images`` is the strict, in-memory path (it raises on a bad
image). This module is the long-job path used by ``tether embed``: it walks
folders, decodes each image on its own so one corrupt file costs one row, and
writes embeddings with an index that says which input each row belongs to.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .io import atomic_save_safetensors, atomic_write_json

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class EmbeddingResult:
    embeddings: torch.Tensor  # (N_ok, D), float32, L2-normalised
    items: list[str]  # what each row is (file path or text)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)


def find_images(sources: Iterable[str | Path]) -> list[Path]:
    """Files given directly plus image files found recursively in folders, sorted."""
    found: list[Path] = []
    for src in map(Path, sources):
        if src.is_dir():
            found += sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif src.exists():
            found.append(src)
        else:
            raise FileNotFoundError(f"{src}: no such file or directory")
    return found


def embed_image_files(model, paths: Sequence[str | Path], batch_size: int = 64,
                      progress: bool = True) -> EmbeddingResult:
    """Embed image files; undecodable ones are recorded in ``failures``."""
    from .preprocess import ImageDecodeError

    if model.preprocessor is None:
        raise RuntimeError("the model has no image preprocessor")
    pixels, ok, failures, out = [], [], [], []
    model.eval()

    def flush() -> None:
        if pixels:
            with torch.inference_mode():
                out.append(model.encode_image(model._to_device(torch.stack(pixels)), normalize=True).float().cpu())
            pixels.clear()

    iterator = _progress(paths, progress, "images")
    for path in iterator:
        try:
            pixels.append(model.preprocessor(path))
            ok.append(str(path))
        except (ImageDecodeError, OSError) as err:
            failures.append((str(path), str(err)))
        if len(pixels) == batch_size:
            flush()
    flush()
    emb = torch.cat(out) if out else torch.empty(0, model.config.embed_dim)
    return EmbeddingResult(emb, ok, failures)


def embed_text_lines(model, texts: Sequence[str], batch_size: int = 256, progress: bool = True) -> EmbeddingResult:
    """Embed captions; empty ones are recorded in ``failures`` instead of embedded."""
    keep = [t for t in texts if t.strip()]
    failures = [(t, "empty text") for t in texts if not t.strip()]
    emb = model.embed_texts(keep, batch_size=batch_size, progress=progress) if keep else \
        torch.empty(0, model.config.embed_dim)
    return EmbeddingResult(emb, keep, failures)


def write_embeddings(result: EmbeddingResult, out_dir: str | Path, name: str) -> Path:
    """``<name>.safetensors`` (key 'embeddings') + ``<name>.json`` (items and failures)."""
    out_dir = Path(out_dir)
    atomic_save_safetensors({"embeddings": result.embeddings}, out_dir / f"{name}.safetensors")
    index = {"count": len(result.items), "dim": int(result.embeddings.shape[1]) if result.embeddings.ndim == 2 else 0,
             "items": result.items, "failures": [{"item": i, "reason": r} for i, r in result.failures]}
    atomic_write_json(out_dir / f"{name}.json", index, indent=1)
    return out_dir / f"{name}.safetensors"


def embed_pairs(model, loader) -> tuple[torch.Tensor, list[str], torch.Tensor, list[dict]]:
    """Image embeddings, captions, labels and extras of every sample a ``PairLoader`` yields.

    The loader decodes and skips bad samples (counted in ``loader.stats``); this only encodes.
    """
    device = next(model.parameters()).device
    loader.set_epoch(0)
    embs, texts, labels, extras = [], [], [], []
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            if batch["pixels"].shape[0] == 0:
                continue
            embs.append(model.encode_image(batch["pixels"].to(device), normalize=True).float().cpu())
            texts += list(batch["texts"])
            labels.append(torch.as_tensor(batch["labels"]))
            extras += list(batch.get("extra") or [{}] * batch["pixels"].shape[0])
    if not embs:
        return torch.empty(0, model.config.embed_dim), [], torch.empty(0, dtype=torch.long), []
    return torch.cat(embs), texts, torch.cat(labels), extras


def _progress(items, enabled: bool, what: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm
    return tqdm(items, desc=f"embedding {what}", unit=what[:-1])
