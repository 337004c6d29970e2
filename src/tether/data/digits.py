"""scikit-learn's 8x8 handwritten digits (1,797 images, UCI ML hand-written digits, 10 classes).

``sklearn.datasets.load_digits`` ships the data inside scikit-learn (no download).  Pixel values
0..16 are scaled to uint8 0..255.  There is no official split; :func:`digits_arrays` makes a
deterministic 80/20 ``train``/``test`` split from a hash of each row's key.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .sample import Sample, key_fraction
from .shards import ShardWriteResult, write_shards
from .sources import ArraySource, format_caption

__all__ = ["DIGIT_CLASSES", "DIGIT_TEMPLATES", "digits_arrays", "digits_source", "build_digits"]

DIGIT_CLASSES = tuple(str(i) for i in range(10))
DIGIT_TEMPLATES = ("a photo of the number {}.",)
_SPLITS = ("all", "train", "test")


@lru_cache(maxsize=1)
def _all() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("digits: needs scikit-learn (pip install scikit-learn, or pip install 'tether[data]')"
                          ) from exc
    d = load_digits()
    images = np.clip(np.rint(np.asarray(d.images, dtype=np.float64) * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = np.asarray(d.target, dtype=np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _rows(split: str) -> np.ndarray:
    if split not in _SPLITS:
        raise ConfigError(f"digits: split must be one of {_SPLITS}, got {split!r}")
    n = len(_all()[1])
    if split == "all":
        return np.arange(n)
    is_test = np.array([key_fraction(f"digits/{i:06d}", "digits-split") >= 0.8 for i in range(n)])
    return np.flatnonzero(is_test if split == "test" else ~is_test)


def digits_arrays(split: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 8, 8), labels int64 (N,))``; split ``all`` (1797), ``train`` or ``test``."""
    images, labels = _all()
    rows = _rows(split)
    return images[rows], labels[rows]


def digits_source(split: str = "all", templates: Sequence[str] = DIGIT_TEMPLATES) -> ArraySource:
    """The digits as an :class:`ArraySource`; keys ``digits/<row>`` keep the original row numbers."""
    images, labels = _all()
    rows = _rows(split)
    return ArraySource(images[rows], labels[rows], DIGIT_CLASSES, templates, name=f"digits/{split}",
                       key_prefix="digits", indices=rows)


def build_digits(out_dir: str | Path, shard_size: int = 1000) -> dict[str, ShardWriteResult]:
    """Write ``train``/``test`` PNG shards (8x8 greyscale) and ``index.json``."""
    images, labels = _all()
    results = {}
    for split in ("train", "test"):
        def samples(split: str = split):
            for i in _rows(split).tolist():
                label = int(labels[i])
                yield Sample(f"digits/{i:06d}", Image.fromarray(images[i], mode="L"),
                             format_caption(DIGIT_TEMPLATES[0], DIGIT_CLASSES[label]), label,
                             {"source": "sklearn-digits", "class_name": DIGIT_CLASSES[label], "split": split})
        results[split] = write_shards(samples(), out_dir, shard_size, split=split, name="sklearn-digits",
                                      class_names=DIGIT_CLASSES,
                                      info={"split_rule": "sha1('digits-split' + key) < 0.8 -> train",
                                            "templates": list(DIGIT_TEMPLATES)})
    return results
