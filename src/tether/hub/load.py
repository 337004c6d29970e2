"""Published models by name: fetch, verify, read with the format's reader, then apply the registry.

A registry entry knows what bare files cannot say (OpenCLIP #1068: the wrong normalisation applied
silently to weights without a config): its preprocessing and tokenizer replace whatever the files
imply, and its ``load_options`` (e.g. ``quick_gelu``) go to the reader.
"""
from __future__ import annotations

import importlib
from typing import Any

from ..checkpoints.common import FORMATS, CheckpointError
from .download import Fetched, fetch
from .names import ModelName, PretrainedEntry, parse_name


def fetch_name(name: str | ModelName) -> Fetched:
    """Download (or find in the cache) and verify what a registry name or Hub id needs."""
    parsed = parse_name(name) if isinstance(name, str) else name
    if parsed.kind not in ("registry", "hub"):
        raise CheckpointError(f"{parsed.text!r} is not a published name or Hub repository id; nothing to fetch")
    entry = parsed.entry
    return fetch(parsed.repo_id, revision=parsed.revision, format=parsed.format,
                 weights=entry.files if entry else None, sha256=entry.sha256 if entry else None, name=parsed.text)


def load_pretrained(name: str | ModelName, **kwargs: Any):
    """A ready model (eval mode) from a registry name (``ViT-B-32/openai``) or a Hub id (``org/name[@rev]``)."""
    parsed = parse_name(name) if isinstance(name, str) else name
    fetched = fetch_name(parsed)
    entry = parsed.entry
    options = {**(entry.load_options if entry else {}), **kwargs}
    model = importlib.import_module(FORMATS[fetched.format]).load(fetched.target, **options)
    if entry is not None:
        apply_entry(model, entry)
    return model.eval()


def apply_entry(model, entry: PretrainedEntry) -> None:
    """Give ``model`` the entry's preprocessing and tokenizer (the registry wins over the files)."""
    from ..models.processors import clip_bpe_tokenizer, image_preprocessor

    image = model.config.towers.get("image")
    if image is not None and entry.preprocess:
        image.processor = {**image.processor, **entry.preprocess}
        model.processors["image"] = image_preprocessor(image)
    text = model.config.towers.get("text")
    if text is None or not entry.tokenizer:
        return
    context = entry.tokenizer.get("context_length")
    tower_context = getattr(text, "context_length", context)
    if context is not None and tower_context != context:
        raise CheckpointError(f"{entry.name}: the registry says context length {context}, the checkpoint's text "
                              f"tower has {tower_context}")
    text.processor = {**text.processor, "context_length": context}
    tokenizer = model.tokenizer
    if tokenizer is None:
        if entry.tokenizer.get("kind") != "clip":
            raise CheckpointError(f"{entry.name}: the repository has no tokenizer files tether reads "
                                  f"({entry.tokenizer.get('kind')} needs them, e.g. spiece.model)")
        model.tokenizer = clip_bpe_tokenizer(context or 77)
    elif context is not None and tokenizer.context_length != context:
        raise CheckpointError(f"{entry.name}: the repository's tokenizer has context length "
                              f"{tokenizer.context_length}, the registry says {context}")


__all__ = ["apply_entry", "fetch_name", "load_pretrained"]
