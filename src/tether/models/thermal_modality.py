"""The "thermal" modality: thermal images (N, 1, S, S) through a 1-channel patch transformer."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PatchTowerConfig
from ..modalities import Modality, register_modality
from .vit import patch_tower_builder

# ImageBind's thermal tower: 224 px, patch 16, width 768, 12 blocks, 12 heads, fixed scale t = 10
PRESETS = {
    "tiny": {"input_size": [64, 64], "patch_size": 8, "width": 64, "layers": 2, "heads": 2, "act": "gelu",
             "patch_norm": True, "logit_scale": 10.0, "processor": {"image_size": 64}},
    "imagebind": {"input_size": [224, 224], "patch_size": 16, "width": 768, "layers": 12, "heads": 12, "act": "gelu",
                  "ln_eps": 1e-6, "ln_pre": False, "patch_norm": True, "attn_bias_kv": True, "logit_scale": 10.0,
                  "processor": {"image_size": 224}},
}


@dataclass
class ThermalTowerConfig(PatchTowerConfig):
    """A thermal tower: one channel; ``processor``: ``mean``, ``std`` (``image_size`` follows ``input_size``)."""

    in_channels: int = 1
    patch_size: int = 16
    logit_scale: float | None = 10.0
    processor: dict[str, Any] = field(default_factory=dict)


def _processor(cfg: ThermalTowerConfig, files: Path | None):
    from ..single_channel import ThermalProcessor
    return ThermalProcessor(**{"image_size": cfg.input_size[0], **cfg.processor})


THERMAL = Modality(name="thermal", config_class=ThermalTowerConfig, build_tower=patch_tower_builder("thermal"),
                   build_processor=_processor, input_name="thermal", presets=PRESETS,
                   file_extensions=(".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".npy", ".npz"))
register_modality(THERMAL)
