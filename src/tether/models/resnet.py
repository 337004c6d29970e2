"""CLIP's modified ResNet image tower.

Differences from a torchvision ResNet, as in the CLIP paper: a three-convolution
stem with average pooling, anti-aliased strided blocks (average pool before the
stride instead of a strided convolution) and a final attention pool over the
spatial grid instead of global average pooling.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ImageTowerConfig
from ..errors import ConfigError
from .tower import Tower
from .vit import resize_pos_embed


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class AttentionPool2d(nn.Module):
    """Attention pooling: the mean token attends over the spatial grid."""

    def __init__(self, grid: int, width: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) / width**0.5)
        self.k_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, output_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        x = torch.cat([x.mean(1, keepdim=True), x], dim=1)
        pos = self.positional_embedding
        if pos.shape[0] != h * w + 1:
            pos = resize_pos_embed(pos, int(math.isqrt(h * w)), 1)
        x = x + pos.to(x.dtype)
        hd = c // self.heads
        q = self.q_proj(x[:, :1]).view(b, 1, self.heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, h * w + 1, self.heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, h * w + 1, self.heads, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, c)
        return self.c_proj(out)


class ModifiedResNet(Tower, nn.Module):
    """Images (N, 3, H, W) -> pooled features (N, output_dim)."""

    uses_every_parameter = True

    def __init__(self, cfg: ImageTowerConfig, output_dim: int) -> None:
        super().__init__()
        width = cfg.resnet_width
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        stages = cfg.resnet_layers
        if len(stages) != 4:
            raise ConfigError(f"towers.image.resnet_layers needs 4 stage depths, got {list(stages)}")
        self.layer1 = self._make_layer(width, stages[0])
        self.layer2 = self._make_layer(width * 2, stages[1], stride=2)
        self.layer3 = self._make_layer(width * 4, stages[2], stride=2)
        self.layer4 = self._make_layer(width * 8, stages[3], stride=2)
        embed = width * 32
        self.attnpool = AttentionPool2d(cfg.image_size // 32, embed, cfg.heads, output_dim)
        self.output_dim = output_dim

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(pixel_values)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)

    def blocks(self) -> list[nn.Module]:
        return [m for layer in (self.layer1, self.layer2, self.layer3, self.layer4) for m in layer]

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """ResNets here are small enough not to need it; accepted for a uniform API."""
