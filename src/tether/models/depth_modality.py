"""The "depth" modality: disparity maps (N, 1, S, S) through a 1-channel patch transformer."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PatchTowerConfig
from ..modalities import Modality, register_modality
from .vit import patch_tower_builder

# ImageBind's depth tower: 224 px, patch 16, width 384, 12 blocks, 8 heads, fixed scale t = 5
IMAGEBIND = {"input_size": [224, 224], "patch_size": 16, "width": 384, "layers": 12, "heads": 8, "act": "gelu",
             "ln_eps": 1e-6, "ln_pre": False, "patch_norm": True, "attn_bias_kv": True, "logit_scale": 5.0,
             "processor": {"image_size": 224}}
PRESETS = {
    "tiny": {"input_size": [64, 64], "patch_size": 8, "width": 64, "layers": 2, "heads": 2, "act": "gelu",
             "patch_norm": True, "logit_scale": 5.0, "processor": {"image_size": 64}},
    "imagebind": IMAGEBIND,
}


@dataclass
class DepthTowerConfig(PatchTowerConfig):
    """A depth tower: one channel; ``processor``: tether.single_channel.DepthProcessor's settings
    (``input`` "depth" in metres or "disparity", ``baseline``, ``focal_length``, ``min_depth``,
    ``max_depth``, ``disparity_scale``; ``image_size`` follows ``input_size``)."""

    in_channels: int = 1
    patch_size: int = 16
    logit_scale: float | None = 5.0
    processor: dict[str, Any] = field(default_factory=dict)


def _processor(cfg: DepthTowerConfig, files: Path | None):
    from ..single_channel import DepthProcessor
    return DepthProcessor(**{"image_size": cfg.input_size[0], **cfg.processor})


DEPTH = Modality(name="depth", config_class=DepthTowerConfig, build_tower=patch_tower_builder("depth"),
                 build_processor=_processor, input_name="disparity", presets=PRESETS,
                 file_extensions=(".npy", ".npz", ".png", ".tif", ".tiff", ".pgm", ".pfm"))
register_modality(DEPTH)
