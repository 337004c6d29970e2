"""Transformer text tower (CLIP and SigLIP variants).

CLIP: causal attention, pooled at the end-of-text token. SigLIP: bidirectional
attention over max-length padded text, pooled at the last position. The pooled
token goes through the final LayerNorm; projection happens in the aligned model.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import TextConfig
from .layers import Transformer

POOLS = ("argmax", "eot", "last", "first", "mean")


class TextTransformer(nn.Module):
    """Token ids (N, L) -> pooled features (N, width)."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        if cfg.pool not in POOLS:
            raise ValueError(f"text.pool={cfg.pool!r}: expected one of {POOLS}")
        if cfg.pool == "eot" and cfg.eot_token_id is None:
            raise ValueError("text.pool='eot' needs text.eot_token_id")
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.context_length, cfg.width) * 0.01)
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_dim, cfg.act, cfg.ln_eps,
                                       cfg.ls_init)
        self.ln_final = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)
        self.output_dim = cfg.width
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        if n > self.cfg.context_length:
            raise ValueError(f"input_ids has {n} positions, the text tower's context is {self.cfg.context_length}")
        x = self.token_embedding(input_ids) + self.positional_embedding[:n].to(self.token_embedding.weight.dtype)
        x = self.transformer(x, causal=self.cfg.causal)
        if self.cfg.pool == "mean":  # normalise every token before averaging
            return self._pool(self.ln_final(x), input_ids)
        return self.ln_final(self._pool(x, input_ids))  # per-token norm: pool first, it is cheaper

    def _pool(self, x: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(x.shape[0], device=x.device)
        pool = self.cfg.pool
        if pool == "argmax":
            return x[rows, input_ids.argmax(dim=-1)]
        if pool == "eot":
            return x[rows, (input_ids == self.cfg.eot_token_id).int().argmax(dim=-1)]
        if pool == "last":
            return x[:, -1]
        if pool == "first":
            return x[:, 0]
        keep = (input_ids != self.cfg.pad_token_id).unsqueeze(-1).to(x.dtype)
        return (x * keep).sum(1) / keep.sum(1).clamp(min=1)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.transformer.grad_checkpointing = enabled
