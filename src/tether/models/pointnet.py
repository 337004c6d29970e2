"""A PointNet-style point cloud tower: a shared per-point MLP, then order-free pooling.

Every point goes through the same MLP (Linear -> LayerNorm -> GELU per stage; LayerNorm, not
BatchNorm, so a cloud's features never depend on the rest of its batch); the cloud's feature is
the max and the mean over its points, concatenated and projected. Max and mean are symmetric
functions, so permuting the points leaves the output unchanged (up to float rounding).
"""
from __future__ import annotations

import torch
from torch import nn

from .tower import Tower


class PointNetTower(Tower, nn.Module):
    """Point clouds (B, P, C) -> pooled features (B, width)."""

    uses_every_parameter = True

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (64, 128, 256), width: int = 256) -> None:
        super().__init__()
        stages, last = [], in_channels
        for size in widths:
            stages += [nn.Linear(last, size), nn.LayerNorm(size), nn.GELU()]
            last = size
        self.point_mlp = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.Linear(2 * last, width), nn.GELU(), nn.Linear(width, width))
        self.ln_post = nn.LayerNorm(width)
        self.in_channels, self.output_dim = in_channels, width

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.dim() != 3 or points.shape[-1] != self.in_channels:
            raise ValueError(f"the point tower takes (batch, points, {self.in_channels}) tensors, got shape "
                             f"{tuple(points.shape)}")
        feats = self.point_mlp(points)
        pooled = torch.cat([feats.amax(dim=1), feats.mean(dim=1)], dim=-1)
        return self.ln_post(self.head(pooled))
