"""Fashion-MNIST (Zalando, MIT licence): 60,000 train / 10,000 test 28x28 greyscale, 10 classes.

Read from the original IDX ``.gz`` files: Debian's ``dataset-fashion-mnist`` package installs
them in ``/usr/share/datasets/fashion-mnist`` (``TETHER_FASHION_MNIST_DIR`` or ``root=`` point
elsewhere); :func:`download_fashion_mnist` fetches the official files where a network exists.

Captions are made from class names with templates.  :data:`TRAIN_TEMPLATES` are for training;
:data:`HELDOUT_TEMPLATES` are for zero-shot evaluation only and never appear in training
captions, so zero-shot accuracy does not reward memorised phrasings.

Two ways in:

* :func:`fashion_mnist_source` -> an :class:`~tether.data.ArraySource`; :class:`PairDataset`
  turns it into normalised ``(3, 28, 28)`` tensors with vectorised ops (no PNG decoding) and
  picks a training template per ``(seed, epoch, index)``.  This is the fast path for training a
  tiny CLIP on a CPU.
* :func:`build_fashion_mnist` writes PNG shards + ``index.json`` for the generic shard path.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from ..io import atomic_file
from .sample import Sample, key_fraction
from .shards import ShardWriteResult, write_shards
from .sources import ArraySource, format_caption

__all__ = [
    "FASHION_MNIST_CLASSES", "TRAIN_TEMPLATES", "HELDOUT_TEMPLATES", "FASHION_MNIST_FILES",
    "FASHION_MNIST_BASE_URL", "DEFAULT_FASHION_MNIST_DIR", "find_fashion_mnist", "read_idx",
    "fashion_mnist_arrays", "fashion_mnist_source", "download_fashion_mnist", "build_fashion_mnist",
    "fashion_mnist_captions",
]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")

#: Caption templates used for training (and for the captions stored in shards).
TRAIN_TEMPLATES = (
    "a photo of a {}.",
    "a {} on a white background.",
    "a grayscale photo of a {}.",
    "a picture of a {}.",
    "an item of clothing: {}.",
    "a low resolution photo of a {}.",
    "a black and white picture of a {}.",
    "a product photo of a {}.",
    "a small image of a {}.",
    "{}",
)

#: Templates for zero-shot evaluation prompts only; never used for training captions.
HELDOUT_TEMPLATES = (
    "an image of a {}.",
    "a centered photo of the {}.",
    "a blurry photo of a {}.",
    "a catalogue picture showing a {}.",
    "this is a {}.",
)

FASHION_MNIST_BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
#: split -> (images file, labels file); official MD5s of the gzip files as published upstream.
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_SIZES = {"train": 60000, "test": 10000}


def find_fashion_mnist(root: str | Path | None = None) -> Path:
    """The folder with the four IDX files: ``root``, ``$TETHER_FASHION_MNIST_DIR``, or Debian's."""
    folder = Path(root or os.environ.get("TETHER_FASHION_MNIST_DIR") or DEFAULT_FASHION_MNIST_DIR)
    missing = [f for pair in FASHION_MNIST_FILES.values() for f in pair if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"fashion_mnist: {folder} lacks {', '.join(missing)}; install Debian's dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist), set TETHER_FASHION_MNIST_DIR, or call "
            "tether.data.download_fashion_mnist(folder)")
    return folder


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array (uint8 data; dims from the header)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} = {int(np.prod(dims))} bytes, file has {body.size}")
    return body.reshape(dims)


@lru_cache(maxsize=4)
def _arrays(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    img_file, lbl_file = FASHION_MNIST_FILES[split]
    images = read_idx(Path(folder) / img_file)
    labels = read_idx(Path(folder) / lbl_file).astype(np.int64)
    if images.shape != (_SIZES[split], 28, 28) or labels.shape != (_SIZES[split],):
        raise DataError(f"fashion_mnist {split}: unexpected shapes {images.shape} / {labels.shape}")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"fashion_mnist {split}: labels outside 0..9")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def fashion_mnist_arrays(split: str = "train", root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 28, 28), labels int64 (N,))`` for ``"train"`` (60k) or ``"test"`` (10k).

    Cached per process and read-only (copy before modifying).
    """
    if split not in FASHION_MNIST_FILES:
        raise ConfigError(f"fashion_mnist: split must be 'train' or 'test', got {split!r}")
    return _arrays(str(find_fashion_mnist(root).resolve()), split)


def _templates(templates: str | Sequence[str]) -> list[str]:
    if isinstance(templates, str):
        if templates == "train":
            return list(TRAIN_TEMPLATES)
        if templates == "heldout":
            return list(HELDOUT_TEMPLATES)
        return [templates]
    return list(templates)


def fashion_mnist_source(split: str = "train", root: str | Path | None = None,
                         templates: str | Sequence[str] = "train") -> ArraySource:
    """Fashion-MNIST as an :class:`ArraySource` (keys ``fashion-mnist/<split>/<row>``)."""
    images, labels = fashion_mnist_arrays(split, root)
    return ArraySource(images, labels, FASHION_MNIST_CLASSES, _templates(templates), name=f"fashion-mnist/{split}")


def fashion_mnist_captions(templates: str | Sequence[str] = "heldout") -> list[list[str]]:
    """``[class][template]`` captions, e.g. zero-shot prompts (average the text embeddings per class)."""
    ts = _templates(templates)
    return [[format_caption(t, c) for t in ts] for c in FASHION_MNIST_CLASSES]


def _download(url: str, dest: Path, md5: str | None) -> None:
    with atomic_file(dest) as tmp:                     # a failed or wrong download leaves no file
        digest = hashlib.md5()
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if md5 is not None and digest.hexdigest() != md5:
            raise OSError(f"{url}: MD5 {digest.hexdigest()} != expected {md5}")


def download_fashion_mnist(dest: str | Path, *, base_url: str = FASHION_MNIST_BASE_URL,
                           overwrite: bool = False, verify: bool = True) -> Path:
    """Download the four official gzip files into ``dest`` (MD5-checked, atomic); returns ``dest``.

    Needs network access (tests never call it; Debian's package provides the same data offline,
    recompressed, so its ``.gz`` checksums differ from the official ones).
    """
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    for name, md5 in FASHION_MNIST_MD5.items():
        target = folder / name
        if target.is_file() and not overwrite:
            continue
        _download(base_url.rstrip("/") + "/" + name, target, md5 if verify else None)
    return folder


def _split_samples(split: str, root: str | Path | None, limit: int | None) -> Iterator[Sample]:
    images, labels = fashion_mnist_arrays(split, root)
    n = len(images) if limit is None else min(limit, len(images))
    for i in range(n):
        label = int(labels[i])
        key = f"fashion-mnist/{split}/{i:06d}"
        template = TRAIN_TEMPLATES[int(key_fraction(key, "fmnist-template") * len(TRAIN_TEMPLATES))]
        name = FASHION_MNIST_CLASSES[label]
        yield Sample(key, Image.fromarray(images[i], mode="L"), format_caption(template, name), label,
                     {"source": "fashion-mnist", "class_name": name, "split": split, "row": i})


def build_fashion_mnist(out_dir: str | Path, root: str | Path | None = None,
                        splits: Sequence[str] = ("train", "test"), shard_size: int = 10000,
                        limit: int | None = None) -> dict[str, ShardWriteResult]:
    """Write ``<split>-NNNNN.tar`` PNG shards and ``index.json`` (class names, splits, templates).

    Each record's caption uses one training template chosen by a hash of its key; the class name
    is in ``extra["class_name"]`` and the label in the JSON.  ``limit`` caps samples per split.
    """
    results = {}
    info: dict[str, Any] = {"source": "Fashion-MNIST (Zalando Research, MIT licence)",
                            "train_templates": list(TRAIN_TEMPLATES), "heldout_templates": list(HELDOUT_TEMPLATES),
                            "image_size": [28, 28], "mode": "L"}
    for split in splits:
        results[split] = write_shards(_split_samples(split, root, limit), out_dir, shard_size, split=split,
                                      name="fashion-mnist", class_names=FASHION_MNIST_CLASSES, info=info)
    return results
