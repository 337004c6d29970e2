"""Finding the image files of an embedding job (``tether embed --images``). Embeddings are written in
clip-retrieval's layout by :mod:`tether.curate.layout`."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..data.sample import IMAGE_EXTENSIONS


def find_images(sources: Iterable[str | Path]) -> list[Path]:
    """Files given directly plus image files found recursively in folders, sorted."""
    found: list[Path] = []
    for src in map(Path, sources):
        if src.is_dir():
            found += sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        elif src.exists():
            found.append(src)
        else:
            raise FileNotFoundError(f"{src}: no such file or directory")
    return found
