"""Regenerate the tiny image fixtures used by tests/test_preprocess.py.

Run from the repository root: ``python tests/data/make_fixtures.py``. The files are
committed so the tests also exercise real on-disk files written by an encoder, and
tests check each file still has the property it exists for.

- exif_orientation6.jpg: stored 32x16 (w x h), red 8x8 block at the stored top-left,
  blue elsewhere, EXIF Orientation=6 ("rotate 90 degrees clockwise to display").
- gray16.png: 16-bit greyscale ('I;16'), 4x1, values 0, 257*64, 32768, 65535.
- palette_transparent.png: 'P' mode 4x4, palette index 0 transparent (top-left 2x2).
"""

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent


def main() -> None:
    img = Image.new("RGB", (32, 16), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(HERE / "exif_orientation6.jpg", quality=95, subsampling=0, exif=exif.tobytes())

    gray16 = np.array([[0, 257 * 64, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(gray16).save(HERE / "gray16.png")

    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 255, 0] + [200, 10, 10] + [0, 0, 0] * 254)
    pal.paste(0, (0, 0, 2, 2))
    pal.save(HERE / "palette_transparent.png", transparency=0)


if __name__ == "__main__":
    main()
