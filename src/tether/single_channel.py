"""Single-channel images in: depth (as disparity, ImageBind's preprocessing) and thermal.

Depth (ImageBind, as its authors give it for NYU-D): the depth map in metres is resized to
``image_size`` squared (``scipy.ndimage.zoom`` order 1: bilinear with aligned corners, no
crop), clipped to [``min_depth``, ``max_depth``] and turned into disparity
``baseline * focal_length / depth`` (Kinect v1: baseline 0.075 m, focal length 518.858 px), one
channel, no further normalisation. A disparity map (``input: "disparity"``, e.g. Middlebury's,
in pixels) is resized and multiplied by ``disparity_scale``. Pixels that are not finite or not
positive (holes, occlusions: Middlebury marks them inf) carry no measurement: they count as
``max_depth`` (depth) or disparity 0 before resizing; a map with no valid pixel is refused.

Thermal: ImageBind does not publish its thermal preprocessing; tether resizes the shorter side to
``image_size`` and centre-crops (as for images), scales integer images to [0, 1] by their type's
range (8 or 16 bit), and normalises with ``mean`` / ``std``. Tested on synthetic data only.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .arrays import check_finite, load_array
from .errors import InputError

KINECT_V1 = {"baseline": 0.075, "focal_length": 518.8579}


def as_map(item: Any, what: str, keep_dtype: bool = False) -> np.ndarray:
    """A 2-D array from an (H, W), (1, H, W) or (H, W, 1) input."""
    array = load_array(item, what, keep_dtype=keep_dtype)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:2])
    if array.ndim != 2 or min(array.shape) < 2:
        raise InputError(f"{what}: expected one channel (H, W), got shape {tuple(array.shape)}")
    return array


def resize(map2d: torch.Tensor, size: int, crop: bool) -> torch.Tensor:
    """(H, W) -> (1, size, size): bilinear squash, or shorter side to ``size`` then a centre crop."""
    x = map2d[None, None]
    h, w = map2d.shape
    if crop:
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        top, left = (nh - size) // 2, (nw - size) // 2
        return x[0, :, top:top + size, left:left + size].contiguous()
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0]


class DepthProcessor:
    """A depth or disparity map -> (1, image_size, image_size) disparity (ImageBind's preprocessing)."""

    def __init__(self, image_size: int = 224, input: str = "depth", baseline: float = KINECT_V1["baseline"],
                 focal_length: float = KINECT_V1["focal_length"], min_depth: float = 0.01, max_depth: float = 50.0,
                 disparity_scale: float = 1.0) -> None:
        if input not in ("depth", "disparity"):
            raise InputError(f"depth processor: input must be 'depth' or 'disparity', got {input!r}")
        self.image_size, self.input = int(image_size), input
        self.baseline, self.focal_length = float(baseline), float(focal_length)
        self.min_depth, self.max_depth, self.disparity_scale = float(min_depth), float(max_depth), float(disparity_scale)

    def __call__(self, item: Any) -> torch.Tensor:
        values = as_map(item, f"{self.input} map")
        valid = np.isfinite(values) & (values > 0)
        if not valid.any():
            raise InputError(f"{self.input} map: no valid pixel (every value is 0, negative, NaN or inf)")
        # holes: far away (max_depth) for depth, no disparity (0) for disparity; then resized as
        # ImageBind's authors do (scipy.ndimage.zoom, order 1 = bilinear with aligned corners)
        filled = np.where(valid, values, self.max_depth if self.input == "depth" else 0.0).astype(np.float32)
        size = (self.image_size, self.image_size)
        resized = F.interpolate(torch.from_numpy(filled)[None, None], size=size, mode="bilinear",
                                align_corners=True)[0]
        if self.input == "depth":
            return self.baseline * self.focal_length / resized.clamp(self.min_depth, self.max_depth)
        return resized * self.disparity_scale

    def collate(self, rows: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(rows))


class ThermalProcessor:
    """A thermal image (8/16-bit or float, one channel) -> (1, image_size, image_size), normalised."""

    def __init__(self, image_size: int = 224, mean: float = 0.5, std: float = 0.5) -> None:
        if std <= 0:
            raise InputError(f"thermal processor: std must be positive, got {std}")
        self.image_size, self.mean, self.std = int(image_size), float(mean), float(std)

    def __call__(self, item: Any) -> torch.Tensor:
        values = as_map(item, "thermal image", keep_dtype=True)
        top = (255.0 if values.dtype.itemsize == 1 else 65535.0) if np.issubdtype(values.dtype, np.integer) else None
        values = values.astype(np.float32)
        check_finite(values, "thermal image")
        scaled = torch.from_numpy(values / top if top else values)
        return (resize(scaled, self.image_size, crop=True) - self.mean) / self.std

    def collate(self, rows: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(rows))

