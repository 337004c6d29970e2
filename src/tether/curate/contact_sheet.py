"""Contact sheets: a grid of thumbnails with captions and scores (Pillow), for a person to judge a cut.

Used by ``tether filter`` (the lowest-scoring rejected and kept pairs) and ``tether dedup`` (the
largest duplicate groups, one row per group). Images are found through the metadata's
``image_path`` (or ``image`` / ``path``) column; rows whose image is not a readable local file
(a URL, a record inside a shard) get a grey tile with their text.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

from ..io import atomic_file

__all__ = ["Tile", "IMAGE_COLUMNS", "image_file", "contact_sheet"]

IMAGE_COLUMNS = ("image_path", "image", "path", "filepath")
GREEN, RED, GREY = (46, 160, 67), (207, 34, 46), (200, 200, 200)


@dataclass
class Tile:
    """One cell: an image file (or None), lines of text under it, an optional border colour."""

    image: Path | None
    lines: Sequence[str]
    border: tuple[int, int, int] | None = None


def image_file(row: Mapping[str, Any]) -> Path | None:
    """The local image file a metadata row names, if any."""
    for column in IMAGE_COLUMNS:
        value = row.get(column)
        if isinstance(value, str) and value and "://" not in value:
            path = Path(value)
            if path.is_file():
                return path
    return None


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _thumbnail(path: Path | None, size: int) -> Image.Image:
    from ..preprocess import ImageDecodeError, load_image
    if path is None:
        return Image.new("RGB", (size, size), GREY)
    try:
        img = load_image(path)
    except (ImageDecodeError, OSError):
        return Image.new("RGB", (size, size), GREY)
    canvas = Image.new("RGB", (size, size), "white")
    img.thumbnail((size, size))
    canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return canvas


def contact_sheet(tiles: Sequence[Tile | None], path: str | Path, *, columns: int = 6, thumb: int = 160,
                  title: str | None = None, text_lines: int = 4, row_labels: Sequence[str] | None = None) -> Path:
    """Write a PNG grid of ``tiles`` (``columns`` per row, None for an empty cell); ``row_labels``
    are written in a margin at the start of each row."""
    font, title_font = _font(12), _font(16)
    line_h, pad = 14, 6
    cell_w, cell_h = thumb + 2 * pad, thumb + 2 * pad + text_lines * line_h
    rows = max(1, -(-len(tiles) // columns))
    label_w = 90 if row_labels else 0
    top = 28 if title else 0
    sheet = Image.new("RGB", (label_w + columns * cell_w, top + rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 6), title, fill="black", font=title_font)
    chars = max(8, thumb // 7)
    for k, tile in enumerate(tiles):
        if tile is None:  # an empty cell
            continue
        r, c = divmod(k, columns)
        x, y = label_w + c * cell_w, top + r * cell_h
        if tile.border:
            draw.rectangle([x + 1, y + 1, x + cell_w - 2, y + thumb + 2 * pad - 2], outline=tile.border, width=4)
        sheet.paste(_thumbnail(tile.image, thumb), (x + pad, y + pad))
        text = [w for line in tile.lines for w in textwrap.wrap(str(line), chars) or [""]][:text_lines]
        for n, line in enumerate(text):
            draw.text((x + pad, y + thumb + 2 * pad + n * line_h), line, fill="black", font=font)
    for r, label in enumerate(row_labels or []):
        draw.text((pad, top + r * cell_h + pad), label, fill="black", font=font)
    path = Path(path)
    with atomic_file(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
