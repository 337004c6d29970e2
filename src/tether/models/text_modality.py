"""The "text" modality: token ids (N, L) from strings."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..config import TextTowerConfig, TowerConfig
from ..modalities import Modality, register_modality
from .processors import text_tokenizer

TEXT_KINDS = ("transformer", "hf", "module")


def build_text_tower(cfg: TextTowerConfig, embed_dim: int) -> nn.Module:
    """The one place that maps a text tower's ``kind`` to a class."""
    if cfg.kind == "transformer":
        from .text import TextTransformer
        return TextTransformer(cfg)
    if cfg.kind == "hf":
        from .hf_towers import HFTextTower
        return HFTextTower(cfg)
    if cfg.kind == "module":
        raise ValueError("towers.text.kind='module': pass the tower itself, "
                         "AlignedModel(config, towers={'text': my_module})")
    raise ValueError(f"unknown towers.text.kind {cfg.kind!r}: expected one of {', '.join(TEXT_KINDS)}")


def _text_processor(cfg: TowerConfig, files: Path | None):
    return text_tokenizer(cfg, files)


def prepare_text(processor, item: Any) -> str:
    """A text row is the string itself (the tokenizer collates a list of them)."""
    if not isinstance(item, str):
        raise ValueError(f"expected a string, got {type(item).__name__}")
    if not item.strip():
        raise ValueError("empty text")
    return item


TEXT = Modality(name="text", config_class=TextTowerConfig, build_tower=build_text_tower,
                build_processor=_text_processor, input_name="input_ids", prepare=prepare_text)
register_modality(TEXT)
