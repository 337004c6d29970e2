"""The "points" modality: point clouds (N, 3 + features) through a PointNet-style tower (kind
"pointnet") or a pillar tower (kind "pillars": point features scattered into a 2-D grid, then a CNN)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..config import TowerConfig
from ..errors import ConfigError
from ..modalities import Modality, register_modality, tower_builder


@dataclass
class PointTowerConfig(TowerConfig):
    """Point cloud tower. ``processor``: ``num_points`` (every cloud is resampled to it) and
    ``min_points`` (fewer is refused)."""

    kind: str = "pointnet"  # or "pillars"
    in_channels: int = 3  # x, y, z (+ per-point features)
    widths: tuple[int, ...] = (64, 128, 256)  # the shared per-point MLP
    width: int = 256  # pooled feature width (output_dim)
    grid: int = 16  # pillars: cells per side of the x-y grid
    conv_widths: tuple[int, ...] = (32, 64)  # pillars: channels of the CNN's stages
    processor: dict[str, Any] = field(default_factory=lambda: {"num_points": 256, "min_points": 16})

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.in_channels < 3:
            raise ConfigError(f"{where}.in_channels={self.in_channels}: points need x, y, z (3) at least")
        if self.kind == "pillars" and (self.grid < 2 or not self.conv_widths or not self.widths):
            raise ConfigError(f"{where}: a pillar tower needs grid >= 2 and at least one of widths and conv_widths; "
                              f"got grid={self.grid}, widths={list(self.widths)}, conv_widths={list(self.conv_widths)}")
        unknown = sorted(set(self.processor) - {"num_points", "min_points"})
        if unknown:
            raise ConfigError(f"{where}.processor: unknown key {unknown[0]!r} (known: min_points, num_points)")


def _pointnet(cfg: PointTowerConfig, embed_dim: int) -> nn.Module:
    from .pointnet import PointNetTower
    return PointNetTower(cfg.in_channels, tuple(cfg.widths), cfg.width)


def _pillars(cfg: PointTowerConfig, embed_dim: int) -> nn.Module:
    from .pillars import PillarTower
    return PillarTower(cfg.in_channels, tuple(cfg.widths), cfg.grid, tuple(cfg.conv_widths), cfg.width)


def _processor(cfg: PointTowerConfig, files: Path | None):
    from ..points import PointCloudProcessor
    return PointCloudProcessor(cfg.in_channels, **cfg.processor)


PRESETS = {
    "tiny": {"kind": "pointnet", "widths": [32, 64, 128], "width": 128,
             "processor": {"num_points": 128, "min_points": 16}},
    "small": {"kind": "pointnet", "widths": [64, 128, 256], "width": 256,
              "processor": {"num_points": 256, "min_points": 16}},
    "base": {"kind": "pointnet", "widths": [64, 128, 256, 512, 1024], "width": 1024,
             "processor": {"num_points": 1024, "min_points": 32}},
    # PointPillars-style: 16 x 16 pillars over x-y, a two-stage CNN (186 k parameters); the
    # Fashion-MNIST point cloud student of BENCHMARKS.md
    "pillars": {"kind": "pillars", "widths": [32], "grid": 16, "conv_widths": [32, 64], "width": 256,
                "processor": {"num_points": 512, "min_points": 16}},
}

POINTS = Modality(name="points", config_class=PointTowerConfig,
                  build_tower=tower_builder("points", {"pointnet": _pointnet, "pillars": _pillars}),
                  build_processor=_processor, input_name="points", presets=PRESETS,
                  file_extensions=(".npy", ".npz", ".xyz", ".pts", ".txt", ".csv"))
register_modality(POINTS)
