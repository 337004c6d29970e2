"""Fashion-MNIST as point clouds: each image also as points drawn from its pixel intensities.

A benchmark for binding and distilling a point cloud tower: every sample keeps its image (the
teacher's input) and caption, and carries ``extra["points"]``: ``num_points`` points (x, y, z)
drawn with probability proportional to intensity (z = relief x intensity; see
:func:`tether.points.image_to_points`). With ``augment`` the points are redrawn each epoch with
jitter, an in-plane rotation and a scale (from the pipeline's per-(seed, epoch, index) random
numbers); without it, each image's cloud is fixed (drawn from its index), as evaluation wants.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import numpy as np

from ..points import image_to_points
from .fashion_mnist import FASHION_MNIST_CLASSES, _templates, fashion_mnist_arrays
from .sample import Sample
from .sources import ArraySource

AUGMENT = {"jitter": 0.02, "rotate_degrees": 15.0, "scale_range": (0.85, 1.15)}


class PointCloudArraySource(ArraySource):
    """An :class:`ArraySource` whose samples also carry a point cloud of their image."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                 templates: Sequence[str], name: str, num_points: int = 256, augment: bool = False) -> None:
        super().__init__(images, labels, class_names, templates, name=name)
        self.num_points, self.augment = int(num_points), bool(augment)

    def points(self, index: int, rng: random.Random | None = None) -> np.ndarray:
        seed = rng.getrandbits(63) if (self.augment and rng is not None) else int(self.indices[index])
        options = AUGMENT if (self.augment and rng is not None) else {}
        return image_to_points(self.images[index], self.num_points, np.random.default_rng(seed), **options)

    def sample(self, index: int, rng: random.Random | None = None) -> Sample:
        sample = super().sample(index, rng)
        sample.extra["points"] = self.points(index, rng)
        return sample


def fashion_mnist_points_source(split: str = "train", root: str | Path | None = None,
                                templates: str | Sequence[str] = "train", num_points: int = 256,
                                augment: bool = False, limit: int | None = None) -> PointCloudArraySource:
    """Fashion-MNIST ``split`` with point clouds (keys ``fashion-mnist/<split>/<row>``, as the images')."""
    images, labels = fashion_mnist_arrays(split, root)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return PointCloudArraySource(images, labels, FASHION_MNIST_CLASSES, _templates(templates),
                                 name=f"fashion-mnist-points/{split}", num_points=num_points, augment=augment)
