"""The "imu" modality: accelerometer + gyroscope series (N, 6, T), kernel-8 patches, a transformer."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PatchTowerConfig
from ..modalities import Modality, register_modality
from .vit import patch_tower_builder

# ImageBind's IMU tower: 6 x 2000, kernel 8 (Linear 48 -> 512), 6 blocks, 8 heads, drop path 0.7, t = 5
PRESETS = {
    "tiny": {"input_size": [128], "patch_size": 8, "width": 64, "layers": 2, "heads": 2, "act": "gelu",
             "patch_norm": True, "logit_scale": 5.0},
    "imagebind": {"input_size": [2000], "patch_size": 8, "width": 512, "layers": 6, "heads": 8, "act": "gelu",
                  "ln_eps": 1e-6, "ln_pre": False, "patch_norm": True, "attn_bias_kv": True, "drop_path": 0.7,
                  "logit_scale": 5.0},
}


@dataclass
class IMUTowerConfig(PatchTowerConfig):
    """An IMU tower: 6 channels x ``input_size`` samples; ``processor``: ``standardize``."""

    in_channels: int = 6
    input_size: tuple[int, ...] = (2000,)
    patch_size: int = 8
    logit_scale: float | None = 5.0
    processor: dict[str, Any] = field(default_factory=dict)


def _processor(cfg: IMUTowerConfig, files: Path | None):
    from ..imu import IMUProcessor
    return IMUProcessor(cfg.in_channels, cfg.input_size[0], **cfg.processor)


IMU = Modality(name="imu", config_class=IMUTowerConfig, build_tower=patch_tower_builder("imu"),
               build_processor=_processor, input_name="series", presets=PRESETS,
               file_extensions=(".npy", ".npz", ".csv", ".txt"))
register_modality(IMU)
