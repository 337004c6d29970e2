"""Build a tower from its config: the one place that maps ``kind`` to a class.

Plugging in your own tower: any ``nn.Module`` whose forward takes the batch
(pixel tensors or token ids) and returns pooled features (N, output_dim), with an
integer ``output_dim`` attribute, can be passed to ``AlignedModel(config,
visual=..., text=...)``; set the tower's config ``kind`` to "module".
"""
from __future__ import annotations

from torch import nn

from ..config import TextConfig, VisionConfig


def build_vision_tower(cfg: VisionConfig, embed_dim: int) -> nn.Module:
    if cfg.kind == "vit":
        from .vit import VisionTransformer
        return VisionTransformer(cfg)
    if cfg.kind == "resnet":
        from .resnet import ModifiedResNet
        return ModifiedResNet(cfg, cfg.output_dim or embed_dim)
    if cfg.kind == "hf":
        from .hf_towers import HFVisionTower
        return HFVisionTower(cfg)
    if cfg.kind == "efficientnet_lite0":
        from .efficientnet import EfficientNetLiteTower
        return EfficientNetLiteTower(cfg)
    if cfg.kind == "module":
        raise ValueError("vision.kind='module': pass the tower itself, AlignedModel(config, visual=my_module)")
    raise ValueError(f"unknown vision.kind {cfg.kind!r}: expected vit, resnet, hf, efficientnet_lite0 or module")


def build_text_tower(cfg: TextConfig) -> nn.Module:
    if cfg.kind == "transformer":
        from .text import TextTransformer
        return TextTransformer(cfg)
    if cfg.kind == "hf":
        from .hf_towers import HFTextTower
        return HFTextTower(cfg)
    if cfg.kind == "module":
        raise ValueError("text.kind='module': pass the tower itself, AlignedModel(config, text=my_module)")
    raise ValueError(f"unknown text.kind {cfg.kind!r}: expected transformer, hf or module")
