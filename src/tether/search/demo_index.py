"""The demo's search index: the 10,000 Fashion-MNIST test images, embedded by the model the demo just
trained, indexed, ready for ``tether serve --index DIR/index``.

The images are written as PNG files with their captions as sidecars (a ``folder:`` source), so the
index's metadata names real image files the server can show; then ``tether embed`` and
``tether index`` run as a user would run them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_file


def write_test_images(out: Path, root: Any = None, limit: int | None = None) -> Path:
    """``out/<row>-<class>.png`` + ``.txt`` ("an image of a <class>.") for the test split; kept if present."""
    from PIL import Image

    from ..data import FASHION_MNIST_CLASSES
    from ..data.fashion_mnist import fashion_mnist_arrays

    images, labels = fashion_mnist_arrays("test", root)
    n = len(images) if limit is None else min(limit, len(images))
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = FASHION_MNIST_CLASSES[int(labels[i])].lower()
        stem = out / f"{i:05d}-{name.replace(' ', '_').replace('/', '_')}"
        if stem.with_suffix(".txt").is_file():
            continue
        with atomic_file(stem.with_suffix(".png")) as tmp:
            Image.fromarray(images[i], mode="L").save(tmp, format="PNG")
        with atomic_file(stem.with_suffix(".txt")) as tmp:
            tmp.write_text(f"an image of a {name}.\n")
    return out


def build_demo_index(demo_dir: str | Path, progress: bool = True, limit: int | None = None) -> dict[str, Any]:
    """DIR/test_images/ -> DIR/embeddings/ (tether embed with DIR/model) -> DIR/index/ (tether index)."""
    from ..curate.embed_job import embed_dataset
    from .build import build_index

    demo = Path(demo_dir)
    images = write_test_images(demo / "test_images", limit=limit)
    embed_dataset(str((demo / "model").resolve()), f"folder:{images.resolve()}", demo / "embeddings",
                  batch_size=500, progress=progress)
    return build_index(demo / "embeddings", demo / "index", log=print if progress else None)


__all__ = ["build_demo_index", "write_test_images"]
