"""A pillar (grid-scatter) point cloud tower, after PointPillars: per-point features averaged into
the cells of a 2-D grid over x, y, then a small CNN.

A PointNet pools every point into one vector at once, so it must learn the cloud's layout from
coordinates alone. Scattering point features into a bird's-eye grid first gives a CNN the
layout for free (which cells are dense, what lies next to what), the way PointPillars turns a
lidar sweep into a pseudo-image. Here:

1. each point's input is its channels (x, y, z, features) plus its offset from its cell's centre
   (in cell units, [-1, 1]), through a shared MLP (Linear -> LayerNorm -> GELU per stage);
2. the features of the points in a cell are averaged (a sum, then a division by the count) and
   a ``log(1 + count)`` density channel is added; empty cells are zero;
3. a CNN of stages (3x3 conv -> GroupNorm(1) -> GELU, twice; the second conv halves the grid,
   except in the last stage), then max and mean over the grid, an MLP head and a LayerNorm.

Sums and counts are symmetric in the points, so the output does not depend on their order (up
to float rounding of the sums). Normalisation is per cloud (LayerNorm, GroupNorm with one group),
never over the batch. The grid spans [-1, 1] in x and y, where the points processor puts every
cloud (centred, scaled into the unit ball); a point outside falls into the border cell. z and
the features are not gridded: they travel in the point features, so a pillar tower suits clouds
with a meaningful up axis (scans seen from above, shapes drawn in a plane); a full 3-D voxel grid
would cost a cube of cells.
"""
from __future__ import annotations

import torch
from torch import nn

from .tower import Tower


class PillarTower(Tower, nn.Module):
    """Point clouds (B, P, C) -> pooled features (B, width), through a grid of ``grid`` x ``grid`` pillars."""

    uses_every_parameter = True

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (32,), grid: int = 16,
                 conv_widths: tuple[int, ...] = (32, 64), width: int = 256) -> None:
        super().__init__()
        if grid < 2 or not widths or not conv_widths:
            raise ValueError(f"a pillar tower needs grid >= 2 and at least one point and conv width; got grid={grid}, "
                             f"widths={widths}, conv_widths={conv_widths}")
        stages, last = [], in_channels + 2
        for size in widths:
            stages += [nn.Linear(last, size), nn.LayerNorm(size), nn.GELU()]
            last = size
        self.point_mlp = nn.Sequential(*stages)
        layers, channels = [], last + 1  # + the density channel
        for i, size in enumerate(conv_widths):
            stride = 2 if i < len(conv_widths) - 1 else 1
            layers += [nn.Conv2d(channels, size, 3, padding=1), nn.GroupNorm(1, size), nn.GELU(),
                       nn.Conv2d(size, size, 3, padding=1, stride=stride), nn.GroupNorm(1, size), nn.GELU()]
            channels = size
        self.cnn = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * channels, width), nn.GELU(), nn.Linear(width, width))
        self.ln_post = nn.LayerNorm(width)
        self.in_channels, self.grid, self.output_dim = in_channels, grid, width

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.dim() != 3 or points.shape[-1] != self.in_channels:
            raise ValueError(f"the pillar tower takes (batch, points, {self.in_channels}) tensors, got shape "
                             f"{tuple(points.shape)}")
        return self.pool(self.cnn(self.scatter(points)))

    def scatter(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, C) points -> (B, F + 1, grid, grid): mean point features per cell and log(1 + count)."""
        batch, count, _ = points.shape
        g = self.grid
        cell_xy = ((points[..., :2] + 1) * (g / 2)).clamp(0, g - 1e-3)  # x, y in [-1, 1] -> [0, g)
        col_row = cell_xy.floor()
        offset = (cell_xy - col_row) * 2 - 1  # where in its cell, [-1, 1)
        feats = self.point_mlp(torch.cat([points, offset.to(points.dtype)], dim=-1))
        # row 0 at the top (largest y), as an image's: the CNN sees the cloud as it is drawn
        cells = (g - 1 - col_row[..., 1].long()) * g + col_row[..., 0].long()
        flat = (cells + torch.arange(batch, device=points.device)[:, None] * (g * g)).reshape(-1)
        width = feats.shape[-1]
        sums = feats.new_zeros(batch * g * g, width).index_add_(0, flat, feats.reshape(-1, width))
        counts = feats.new_zeros(batch * g * g).index_add_(0, flat, feats.new_ones(batch * count))
        means = sums / counts.clamp(min=1)[:, None]
        grid = torch.cat([means, torch.log1p(counts)[:, None]], dim=1)
        return grid.view(batch, g, g, width + 1).permute(0, 3, 1, 2)

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([maps.amax(dim=(2, 3)), maps.mean(dim=(2, 3))], dim=-1)
        return self.ln_post(self.head(pooled))
