"""The "image" modality: pixel tensors (N, 3, H, W) from paths, bytes or PIL images."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..config import ImageTowerConfig, TowerConfig
from ..errors import ConfigError
from ..modalities import Modality, register_modality
from .processors import image_preprocessor

IMAGE_KINDS = ("vit", "resnet", "hf", "efficientnet_lite0", "module")


def build_image_tower(cfg: ImageTowerConfig, embed_dim: int) -> nn.Module:
    """The one place that maps an image tower's ``kind`` to a class."""
    if cfg.kind == "vit":
        from .vit import VisionTransformer
        return VisionTransformer(cfg)
    if cfg.kind == "resnet":
        from .resnet import ModifiedResNet
        return ModifiedResNet(cfg, cfg.output_dim or embed_dim)
    if cfg.kind == "hf":
        from .hf_towers import HFImageTower
        return HFImageTower(cfg)
    if cfg.kind == "efficientnet_lite0":
        from .efficientnet import EfficientNetLiteTower
        return EfficientNetLiteTower(cfg)
    if cfg.kind == "module":
        raise ConfigError("towers.image.kind='module': pass the tower itself, "
                          "AlignedModel(config, towers={'image': my_module})")
    raise ConfigError(f"unknown towers.image.kind {cfg.kind!r}: expected one of {', '.join(IMAGE_KINDS)}")


def _image_processor(cfg: TowerConfig, files: Path | None):
    return image_preprocessor(cfg)


def _prepare_image(processor, item: Any):
    return processor(item)


IMAGE = Modality(name="image", config_class=ImageTowerConfig, build_tower=build_image_tower,
                 build_processor=_image_processor, input_name="pixel_values", prepare=_prepare_image)
register_modality(IMAGE)
