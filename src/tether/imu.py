"""IMU series in: accelerometer xyz + gyroscope xyz as (6, T) rows of ``length`` samples.

ImageBind's IMU input is 6 x 2000 (10 s at 200 Hz), cut by its tower into kernel-8 patches. The
processor takes a (channels, T) array (or a .npy/.npz/.csv file of one), refuses a wrong channel
count or a non-finite value in one line, and brings the series to ``length`` samples by linear
interpolation over its whole duration (a 10 Hz recording of 100 samples becomes the same 10 s
at the tower's rate). ``standardize`` (off by default, as in ImageBind) centres and scales each
channel of each series.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .arrays import check_finite, load_array
from .errors import InputError

WHAT = "IMU series"


class IMUProcessor:
    """One (channels, T) series -> (channels, length) float32."""

    def __init__(self, channels: int = 6, length: int = 2000, standardize: bool = False, min_length: int = 2) -> None:
        self.channels, self.length, self.standardize, self.min_length = channels, int(length), standardize, min_length

    def __call__(self, item: Any) -> torch.Tensor:
        series = load_array(item, WHAT)
        if series.ndim != 2 or series.shape[0] != self.channels:
            raise InputError(f"{WHAT}: expected {self.channels} channels x T samples (accelerometer xyz, gyroscope "
                             f"xyz), got shape {tuple(series.shape)}")
        if series.shape[1] < self.min_length:
            raise InputError(f"{WHAT}: {series.shape[1]} samples, expected at least {self.min_length}")
        check_finite(series, WHAT)
        x = torch.from_numpy(series.copy())
        if x.shape[1] != self.length:
            x = F.interpolate(x[None], size=self.length, mode="linear", align_corners=True)[0]
        if self.standardize:
            x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True).clamp_min(1e-6)
        return x

    def collate(self, rows: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(rows))
