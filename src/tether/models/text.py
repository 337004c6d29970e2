"""Transformer text tower (CLIP and SigLIP variants).

CLIP: causal attention, pooled at the end-of-text token. SigLIP: bidirectional
attention over max-length padded text, pooled at the last position. The pooled
token goes through the final LayerNorm; projection happens in the aligned model.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import TextTowerConfig
from ..errors import ConfigError, InputError
from .layers import Transformer, clip_text_init_
from .tower import Tower

POOLS = ("argmax", "eot", "last", "first", "mean")


class TextTransformer(Tower, nn.Module):
    """Token ids (N, L) -> pooled features (N, width)."""

    uses_every_parameter = True

    def __init__(self, cfg: TextTowerConfig) -> None:
        super().__init__()
        if cfg.pool not in POOLS:
            raise ConfigError(f"towers.text.pool={cfg.pool!r}: expected one of {POOLS}")
        if cfg.pool == "eot" and cfg.eot_token_id is None:
            raise ConfigError("towers.text.pool='eot' needs towers.text.eot_token_id")
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.context_length, cfg.width) * 0.01)
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_dim, cfg.act, cfg.ln_eps,
                                       cfg.ls_init)
        self.ln_final = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)
        self.output_dim = cfg.width
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        clip_text_init_(self.transformer)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        if n > self.cfg.context_length:
            raise InputError(f"input_ids has {n} positions, the text tower's context is {self.cfg.context_length}")
        index = self.pool_index(input_ids)
        if index is not None and self.cfg.causal and not torch.compiler.is_compiling():
            # Causal attention: tokens after the pooled one cannot change it, so drop
            # them. Captions are short and contexts are padded, so this is most of the work.
            # Not under torch.compile: a length read from the data breaks the graph and
            # recompiles for every new caption length; the full context gives the same result.
            n = int(index.max()) + 1 if index.numel() else 1
            input_ids = input_ids[:, :n]
        x = self.token_embedding(input_ids) + self.positional_embedding[:n].to(self.token_embedding.weight.dtype)
        if index is None:  # mean pooling: normalise every token, then average the real ones
            x = self.ln_final(self.transformer(x, causal=self.cfg.causal))
            keep = (input_ids != self.cfg.pad_token_id).unsqueeze(-1).to(x.dtype)
            return (x * keep).sum(1) / keep.sum(1).clamp(min=1)
        return self.ln_final(self.transformer(x, causal=self.cfg.causal, pool_index=index))

    def pool_index(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """The position each row is pooled at; None for mean pooling."""
        pool = self.cfg.pool
        if pool == "argmax":
            return input_ids.argmax(dim=-1)
        if pool == "eot":
            return (input_ids == self.cfg.eot_token_id).int().argmax(dim=-1)
        if pool == "last":
            return torch.full_like(input_ids[:, 0], input_ids.shape[1] - 1)
        if pool == "first":
            return torch.zeros_like(input_ids[:, 0])
        return None

    def blocks(self) -> list[nn.Module]:
        return list(self.transformer.blocks)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.transformer.grad_checkpointing = enabled
