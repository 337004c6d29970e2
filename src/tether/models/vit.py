"""The patch transformer: images, spectrograms, depth maps and sensor series as patch tokens.

One class covers CLIP, SigLIP and ImageBind's towers through config switches: class-token or
attention-pool (MAP) pooling, LayerNorm before the blocks or not, QuickGELU or GELU, a bias on
the patch projection or not. The stem (:class:`tether.config.PatchStem`) says how an input
becomes tokens: a Conv2d over (C, H, W) inputs, square or rectangular, with overlapping patches
when the stride is below the patch size (ImageBind's audio: 16 / 10 over 128 x 204
spectrograms), or a Linear over unfolded windows of a (C, T) series (ImageBind's IMU: 6 x 8 = 48
values per patch). Patch dropout (FLIP) and stochastic depth apply in training only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PatchStem, ViTConfig
from ..errors import ConfigError
from .layers import AttentionPoolHead, Transformer
from .tower import Tower


class VisionTransformer(Tower, nn.Module):
    """Inputs (N, C, H, W) or series (N, C, T) -> pooled features (N, width)."""

    uses_every_parameter = True
    supports_patch_dropout = True

    def __init__(self, cfg: ViTConfig, modality: str = "image") -> None:
        super().__init__()
        self.cfg = cfg
        self.stem: PatchStem = cfg.patch_stem()
        stem, width = self.stem, cfg.width
        self.grid = stem.grid()
        self.input_ndim = 2 + len(stem.input_size)  # (N, C, H, W) or (N, C, T): one more dim means clips
        if len(stem.input_size) == 2:
            self.patch_embed = nn.Conv2d(stem.in_channels, width, stem.patch_size, stride=stem.stride,
                                         bias=cfg.patch_bias)
        else:  # ImageBind's IMU stem: Linear(C * k -> width) over unfolded windows, channel-major
            self.patch_embed = nn.Linear(stem.in_channels * stem.patch_size, width, bias=cfg.patch_bias)
        self.patch_norm = nn.LayerNorm(width) if stem.norm else None  # ImageBind's stems: torch's default eps
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width)) if cfg.class_token else None
        n_tokens = math.prod(self.grid) + (1 if cfg.class_token else 0)
        self.positional_embedding = nn.Parameter(scale * torch.randn(n_tokens, width))
        self.ln_pre = nn.LayerNorm(width, eps=cfg.ln_eps) if cfg.ln_pre else nn.Identity()
        self.transformer = Transformer(width, cfg.layers, cfg.heads, cfg.mlp_dim, cfg.act, cfg.ln_eps, cfg.ls_init,
                                       cfg.attn_bias_kv, cfg.drop_path)
        self.ln_post = nn.LayerNorm(width, eps=cfg.ln_eps) if cfg.ln_post else nn.Identity()
        self.head = (
            AttentionPoolHead(width, cfg.heads, cfg.mlp_dim, cfg.act, cfg.ln_eps) if cfg.pool == "map" else None
        )
        if cfg.pool not in ("cls", "map", "mean"):
            raise ConfigError(f"towers.{modality}.pool={cfg.pool!r}: expected 'cls', 'map' or 'mean'")
        if cfg.pool == "cls" and not cfg.class_token:
            raise ConfigError(f"towers.{modality}.pool='cls' needs towers.{modality}.class_token=true")
        self.output_dim = width

    def patchify(self, inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Inputs -> patch tokens (N, L, width) and the patch grid they came from."""
        stem = self.stem
        if inputs.ndim != self.input_ndim or inputs.shape[1] != stem.in_channels:
            shape = "(N, C, H, W)" if len(stem.input_size) == 2 else "(N, C, T)"
            raise ValueError(f"expected inputs {shape} with C={stem.in_channels}, got {tuple(inputs.shape)}")
        if len(stem.input_size) == 2:
            x = self.patch_embed(inputs)
            grid = tuple(x.shape[2:])
            x = x.flatten(2).transpose(1, 2)
        else:
            windows = inputs.unfold(-1, stem.patch_size, stem.stride)  # (N, C, L, k)
            grid = (windows.shape[2],)
            x = self.patch_embed(windows.permute(0, 2, 1, 3).flatten(2))
        return (x if self.patch_norm is None else self.patch_norm(x)), grid

    def tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        """Patch + position embeddings, with patch dropout in training."""
        x, grid = self.patchify(inputs)
        pos = self._positions(grid)
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

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.tokens(inputs)
        if self.cfg.pool == "cls":  # only the class token leaves the last block: compute just it
            return self.ln_post(self.transformer(x, pool_index=torch.zeros_like(x[:, 0, 0], dtype=torch.long)))
        x = self.transformer(x)
        if self.cfg.pool == "mean" and self.cfg.final_ln_after_pool:
            return self.ln_post(x[:, 1:].mean(1) if self.class_embedding is not None else x.mean(1))
        x = self.ln_post(x)
        if self.cfg.pool == "map":
            return self.head(x)
        return x[:, 1:].mean(1) if self.class_embedding is not None else x.mean(1)

    def _positions(self, grid: tuple[int, ...]) -> torch.Tensor:
        """Position embeddings, interpolated when the input grid differs from training."""
        pos = self.positional_embedding
        extra = 1 if self.class_embedding is not None else 0
        if pos.shape[0] - extra == math.prod(grid):
            return pos
        return resize_pos_embed(pos, grid, extra, old_grid=self.grid)

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


def resize_pos_embed(pos: torch.Tensor, new_grid: int | tuple[int, ...], extra_tokens: int = 1,
                     old_grid: tuple[int, ...] | None = None) -> torch.Tensor:
    """Resize a (extra + patches, D) position table to a new patch grid: bicubic over 2-D grids
    (an int means a square one), linear over 1-D series. ``old_grid`` defaults to a square."""
    prefix, table = pos[:extra_tokens], pos[extra_tokens:]
    if old_grid is None:
        old = int(math.isqrt(table.shape[0]))
        if old * old != table.shape[0]:
            raise ValueError(f"position embedding has {table.shape[0]} patch rows, not a square grid")
        old_grid = (old, old)
    new_grid = (new_grid, new_grid) if isinstance(new_grid, int) else tuple(new_grid)
    if tuple(old_grid) == new_grid:
        return pos
    mode = "bicubic" if len(new_grid) == 2 else "linear"
    table = table.reshape(1, *old_grid, -1).movedim(-1, 1).float()
    table = F.interpolate(table, size=new_grid, mode=mode, align_corners=False)
    table = table.movedim(1, -1).reshape(math.prod(new_grid), -1).to(pos.dtype)
    return torch.cat([prefix, table], dim=0)


def patch_tower_builder(modality: str):
    """``build_tower`` for a modality whose towers are patch transformers (kind "vit"): audio,
    depth, thermal, IMU. Register it with ``Modality(build_tower=patch_tower_builder(name), ...)``."""
    from ..modalities import tower_builder
    return tower_builder(modality, {"vit": lambda cfg, embed_dim: VisionTransformer(cfg, modality)})
