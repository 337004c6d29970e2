"""Vision Transformer image tower (CLIP and SigLIP variants).

One class covers both families through config switches: class-token or
attention-pool (MAP) pooling, LayerNorm before the blocks or not, QuickGELU or
GELU, a bias on the patch projection or not. Patch dropout (FLIP) is applied in
training only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ImageTowerConfig
from ..errors import ConfigError
from .layers import AttentionPoolHead, Transformer
from .tower import Tower


class VisionTransformer(Tower, nn.Module):
    """Images (N, 3, H, W) -> pooled features (N, width)."""

    uses_every_parameter = True
    supports_patch_dropout = True

    def __init__(self, cfg: ImageTowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.width
        self.grid = cfg.image_size // cfg.patch_size
        self.patch_embed = nn.Conv2d(3, width, cfg.patch_size, stride=cfg.patch_size, bias=cfg.patch_bias)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width)) if cfg.class_token else None
        n_tokens = self.grid**2 + (1 if cfg.class_token else 0)
        self.positional_embedding = nn.Parameter(scale * torch.randn(n_tokens, width))
        self.ln_pre = nn.LayerNorm(width, eps=cfg.ln_eps) if cfg.ln_pre else nn.Identity()
        self.transformer = Transformer(width, cfg.layers, cfg.heads, cfg.mlp_dim, cfg.act, cfg.ln_eps, cfg.ls_init)
        self.ln_post = nn.LayerNorm(width, eps=cfg.ln_eps) if cfg.ln_post else nn.Identity()
        self.head = (
            AttentionPoolHead(width, cfg.heads, cfg.mlp_dim, cfg.act, cfg.ln_eps) if cfg.pool == "map" else None
        )
        if cfg.pool not in ("cls", "map", "mean"):
            raise ConfigError(f"towers.image.pool={cfg.pool!r}: expected 'cls', 'map' or 'mean'")
        if cfg.pool == "cls" and not cfg.class_token:
            raise ConfigError("towers.image.pool='cls' needs towers.image.class_token=true")
        self.output_dim = width

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch + position embeddings, with patch dropout in training."""
        x = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)
        pos = self._positions(x.shape[1])
        if self.class_embedding is not None:
            x = x + pos[1:]
            cls = (self.class_embedding + pos[0]).expand(x.shape[0], 1, -1)
        else:
            x = x + pos
        if self.training and self.cfg.patch_dropout > 0:
            x = _drop_patches(x, self.cfg.patch_dropout)
        if self.class_embedding is not None:
            x = torch.cat([cls.to(x.dtype), x], dim=1)
        return self.ln_pre(x)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.tokens(pixel_values)
        if self.cfg.pool == "cls":  # only the class token leaves the last block: compute just it
            return self.ln_post(self.transformer(x, pool_index=torch.zeros_like(x[:, 0, 0], dtype=torch.long)))
        x = self.transformer(x)
        if self.cfg.pool == "mean" and self.cfg.final_ln_after_pool:
            return self.ln_post(x[:, 1:].mean(1) if self.class_embedding is not None else x.mean(1))
        x = self.ln_post(x)
        if self.cfg.pool == "map":
            return self.head(x)
        return x[:, 1:].mean(1) if self.class_embedding is not None else x.mean(1)

    def _positions(self, n_patches: int) -> torch.Tensor:
        """Position embeddings, interpolated when the input grid differs from training."""
        pos = self.positional_embedding
        extra = 1 if self.class_embedding is not None else 0
        if pos.shape[0] - extra == n_patches:
            return pos
        return resize_pos_embed(pos, int(math.isqrt(n_patches)), extra)

    def blocks(self) -> list[nn.Module]:
        return list(self.transformer.blocks)

    def set_patch_dropout(self, fraction: float) -> None:
        self.cfg.patch_dropout = fraction

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.transformer.grad_checkpointing = enabled


def _drop_patches(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep a random subset of patch tokens per sample (FLIP)."""
    b, n, d = x.shape
    keep = max(1, int(n * (1 - fraction)))
    idx = torch.rand(b, n, device=x.device).argsort(dim=1)[:, :keep]
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, d))


def resize_pos_embed(pos: torch.Tensor, new_grid: int, extra_tokens: int = 1) -> torch.Tensor:
    """Bicubically resize a (extra + g*g, D) position table to a new grid size."""
    prefix, grid = pos[:extra_tokens], pos[extra_tokens:]
    old = int(math.isqrt(grid.shape[0]))
    if old * old != grid.shape[0]:
        raise ValueError(f"position embedding has {grid.shape[0]} patch rows, not a square grid")
    if old == new_grid:
        return pos
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid * new_grid, -1).to(pos.dtype)
    return torch.cat([prefix, grid], dim=0)
