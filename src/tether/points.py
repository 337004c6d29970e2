"""Point clouds in: (N, 3 + features) arrays -> fixed-size, normalised (P, C) rows.

The processor centres the xyz coordinates on their mean and scales them into the unit ball
(features are kept as they are), then brings the cloud to exactly ``num_points`` points:
farthest point sampling when there are more (it starts from the point farthest from the
centroid, so the chosen set does not depend on the order of the input), whole copies of the
cloud plus a farthest-point sample of the remainder when there are fewer (which points repeat
depends on the shape, never on the input order).
A cloud with fewer than ``min_points`` points is refused: the encoder cannot see a shape in it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .arrays import check_finite, load_array
from .errors import InputError

WHAT = "point cloud"


class PointCloudProcessor:
    """One point cloud (array, tensor or .npy/.npz/.txt/.xyz/.csv file) -> (num_points, channels) float32."""

    def __init__(self, channels: int = 3, num_points: int = 256, min_points: int = 16) -> None:
        if channels < 3 or num_points < 1 or not 1 <= min_points:
            raise InputError(f"point cloud processor: need channels >= 3 (xyz first), num_points >= 1 and "
                             f"min_points >= 1; got {channels}, {num_points}, {min_points}")
        self.channels, self.num_points, self.min_points = channels, num_points, min_points

    def __call__(self, item: Any) -> torch.Tensor:
        points = load_array(item, WHAT, key="points")
        if points.ndim != 2 or points.shape[1] != self.channels:
            raise InputError(f"{WHAT}: expected an (N, {self.channels}) array (x, y, z"
                             f"{' + features' if self.channels > 3 else ''}), got shape {tuple(points.shape)}")
        if points.shape[0] < self.min_points:
            raise InputError(f"{WHAT}: {points.shape[0]} points, the encoder needs at least {self.min_points} "
                             "(processor.min_points)")
        check_finite(points, WHAT)
        points = normalize_points(torch.from_numpy(points.copy()))
        return resample_points(points, self.num_points)

    def collate(self, rows: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(rows))


def normalize_points(points: torch.Tensor) -> torch.Tensor:
    """xyz centred on their mean and scaled so the farthest point is at distance 1 (features untouched)."""
    xyz = points[:, :3] - points[:, :3].mean(0)
    radius = xyz.norm(dim=1).max()
    xyz = xyz / radius if radius > 0 else xyz
    return torch.cat([xyz, points[:, 3:]], dim=1)


def resample_points(points: torch.Tensor, count: int) -> torch.Tensor:
    """Exactly ``count`` points: farthest point sampling down; up, whole copies plus a farthest-point
    sample of the rest."""
    n = points.shape[0]
    if n == count:
        return points
    if n < count:  # whole copies, the rest by farthest point sampling: no input order decides which repeat
        copies, rest = divmod(count, n)
        extra = points[farthest_point_sample(points[:, :3], rest)] if rest else points[:0]
        return torch.cat([points.repeat(copies, 1), extra])
    return points[farthest_point_sample(points[:, :3], count)]


def farthest_point_sample(xyz: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of ``count`` points, each the farthest from those chosen before; the first is the
    farthest from the centroid (ties aside, the chosen set is independent of the input order)."""
    chosen = torch.empty(count, dtype=torch.long)
    dist = (xyz - xyz.mean(0)).pow(2).sum(1)
    nearest = torch.full((xyz.shape[0],), float("inf"))
    current = int(dist.argmax())
    for i in range(count):
        chosen[i] = current
        nearest = torch.minimum(nearest, (xyz - xyz[current]).pow(2).sum(1))
        current = int(nearest.argmax())
    return chosen


def image_to_points(image: np.ndarray, count: int, rng: np.random.Generator, *, jitter: float = 0.0,
                    rotate_degrees: float = 0.0, scale_range: tuple[float, float] = (1.0, 1.0),
                    relief: float = 0.2) -> np.ndarray:
    """A grey image (H, W) -> ``count`` points (x, y, z) drawn with probability proportional to
    pixel intensity, anywhere inside the drawn pixel; z is ``relief`` x intensity. Augmentation:
    Gaussian ``jitter`` (in pixel units / H), an in-plane rotation of up to ``rotate_degrees``,
    a uniform scale in ``scale_range``. Coordinates are in [-1, 1] before augmentation."""
    grey = np.asarray(image, dtype=np.float64)
    if grey.ndim != 2 or grey.max() <= 0:
        raise InputError(f"image_to_points: expected a non-blank grey image (H, W), got shape {grey.shape}")
    h, w = grey.shape
    weights = grey.ravel() / grey.sum()
    cells = rng.choice(grey.size, size=count, p=weights)
    rows, cols = np.divmod(cells, w)
    x = (cols + rng.random(count)) / w * 2 - 1
    y = 1 - (rows + rng.random(count)) / h * 2
    z = relief * grey.ravel()[cells] / grey.max()
    points = np.stack([x, y, z], axis=1)
    if jitter:
        points[:, :2] += rng.normal(0.0, jitter, size=(count, 2))
    if rotate_degrees:
        angle = np.deg2rad(rng.uniform(-rotate_degrees, rotate_degrees))
        c, s = np.cos(angle), np.sin(angle)
        points[:, :2] = points[:, :2] @ np.array([[c, -s], [s, c]]).T
    if scale_range != (1.0, 1.0):
        points *= rng.uniform(*scale_range)
    return points.astype(np.float32)
