"""TEMP shim for the embedding engine (the lead drops it at merge): a minimal modality registry.

Only ``get_modality(name).prepare(processor, item)`` is provided, as the final registry defines it:
one raw input -> one row for ``processor.collate``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Modality:
    name: str
    prepare: Callable[[Any, Any], Any]


def _prepare_image(processor: Any, item: Any) -> Any:
    if isinstance(item, np.ndarray):  # (H, W) or (H, W, 3) uint8
        from PIL import Image
        item = Image.fromarray(item)
    return processor(item)


def _prepare_text(processor: Any, item: Any) -> str:
    if not isinstance(item, str):
        raise ValueError(f"expected a string, got {type(item).__name__}")
    if not item.strip():
        raise ValueError("empty text")
    return item


MODALITIES = {"image": Modality("image", _prepare_image), "text": Modality("text", _prepare_text)}


def get_modality(name: str) -> Modality:
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; registered: {', '.join(MODALITIES)}")
    return MODALITIES[name]
