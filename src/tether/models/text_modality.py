"""The "text" modality: token ids (N, L) from strings."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..config import TextTowerConfig, TowerConfig
from ..errors import InputError, TokenizerError
from ..modalities import Modality, register_modality, tower_builder
from .processors import text_tokenizer

def _transformer(cfg: TextTowerConfig, embed_dim: int) -> nn.Module:
    from .text import TextTransformer
    return TextTransformer(cfg)


def _hf(cfg: TextTowerConfig, embed_dim: int) -> nn.Module:
    from .hf_towers import HFTextTower
    return HFTextTower(cfg)


build_text_tower = tower_builder("text", {"transformer": _transformer, "hf": _hf})


def _text_processor(cfg: TowerConfig, files: Path | None):
    return text_tokenizer(cfg, files)


def prepare_text(processor, item: Any) -> str:
    """A text row is the string itself (the tokenizer collates a list of them)."""
    if not isinstance(item, str):
        raise InputError(f"expected a string, got {type(item).__name__}")
    if not item.strip():
        raise InputError("empty text")
    return item


def check_tokenizer(cfg: TowerConfig, tokenizer: Any) -> None:
    """Refuse a tokenizer whose ids or context tether's text transformer cannot take.

    Caught here, when the tokenizer is attached, not as an ``IndexError`` at the first step that
    meets a large id. Towers of other kinds (Hugging Face, modules) own their vocabulary: not checked.
    """
    if getattr(cfg, "kind", None) != "transformer":
        return
    vocab, context = getattr(tokenizer, "vocab_size", None), getattr(tokenizer, "context_length", None)
    if isinstance(vocab, int) and vocab > cfg.vocab_size:
        raise TokenizerError(f"the tokenizer has {vocab} ids, the text tower's vocabulary (towers.text.vocab_size) "
                             f"has {cfg.vocab_size}: expected a tokenizer of at most {cfg.vocab_size} ids")
    if isinstance(context, int) and context > cfg.context_length:
        raise TokenizerError(f"the tokenizer's context_length is {context}, the text tower's "
                             f"(towers.text.context_length) is {cfg.context_length}: expected at most "
                             f"{cfg.context_length}")


TEXT = Modality(name="text", config_class=TextTowerConfig, build_tower=build_text_tower,
                build_processor=_text_processor, input_name="input_ids", prepare=prepare_text,
                check_processor=check_tokenizer)
register_modality(TEXT)
