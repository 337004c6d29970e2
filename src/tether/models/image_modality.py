"""The "image" modality: pixel tensors (N, 3, H, W) from paths, bytes or PIL images."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..config import ImageTowerConfig, TowerConfig
from ..modalities import Modality, register_modality, tower_builder
from .processors import image_preprocessor

def _vit(cfg: ImageTowerConfig, embed_dim: int) -> nn.Module:
    from .vit import VisionTransformer
    return VisionTransformer(cfg)


def _resnet(cfg: ImageTowerConfig, embed_dim: int) -> nn.Module:
    from .resnet import ModifiedResNet
    return ModifiedResNet(cfg, cfg.output_dim or embed_dim)


def _hf(cfg: ImageTowerConfig, embed_dim: int) -> nn.Module:
    from .hf_towers import HFImageTower
    return HFImageTower(cfg)


def _efficientnet_lite0(cfg: ImageTowerConfig, embed_dim: int) -> nn.Module:
    from .efficientnet import EfficientNetLiteTower
    return EfficientNetLiteTower(cfg)


build_image_tower = tower_builder("image", {"vit": _vit, "resnet": _resnet, "hf": _hf,
                                            "efficientnet_lite0": _efficientnet_lite0})


def _image_processor(cfg: TowerConfig, files: Path | None):
    return image_preprocessor(cfg)


def _prepare_image(processor, item: Any):
    return processor(item)


IMAGE = Modality(name="image", config_class=ImageTowerConfig, build_tower=build_image_tower,
                 build_processor=_image_processor, input_name="pixel_values", prepare=_prepare_image)
register_modality(IMAGE)
