"""Tux Paint's stamp collection (Debian ``tuxpaint-stamps-default``) as captioned images.

Layout: ``/usr/share/tuxpaint/stamps/<category>/<sub>/.../NAME.png`` (or ``NAME.svg``) with
``NAME.txt`` whose first line is the English description and whose other lines are
translations ``lang.utf8=...``; ``NAME.dat`` (stamp options), ``NAME.ogg`` / ``NAME_desc_<lang>.ogg``
(sound effect, spoken descriptions) are ignored.

What is counted rather than used (``source.listing_skips``, also written to the index):

* ``svg_only`` - stamps drawn only as SVG, skipped unless ``cairosvg`` is importable;
* ``mirror_variant`` - ``NAME_mirror.png``: a hand-made mirrored version of another stamp, no text;
* ``no_caption`` - other images without a ``.txt``;
* ``caption_without_image`` - a ``.txt`` with no image (e.g. stamps whose image is missing);
* ``empty_caption`` - an empty first line.

Labels are the top-level category (``animals``, ``food``... the 16 folders, sorted).  The
train/validation split is deterministic: SHA-1 of ``"tuxpaint-split" + key`` below 0.8 -> train.
Transparency is composited on white by :func:`tether.preprocess.load_image` when decoded.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .sample import Sample, SkipSample, key_fraction
from .shards import ShardWriteResult, write_shards
from .sources import Source

__all__ = ["DEFAULT_TUXPAINT_DIR", "TuxPaintSource", "tuxpaint_split", "build_tuxpaint", "parse_stamp_text"]

DEFAULT_TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
_RASTER = (".png", ".jpg", ".jpeg", ".webp")


def tuxpaint_split(key: str, validation_fraction: float = 0.2) -> str:
    """``"train"`` or ``"validation"`` for a stamp key, stable under additions/removals of stamps."""
    return "validation" if key_fraction(key, "tuxpaint-split") >= 1.0 - validation_fraction else "train"


def parse_stamp_text(text: str) -> tuple[str, dict[str, str]]:
    """``NAME.txt`` -> (English caption, {lang: translation}); ``de.utf8=...`` gives lang ``de``."""
    lines = text.splitlines()
    caption = lines[0].strip() if lines else ""
    translations: dict[str, str] = {}
    for line in lines[1:]:
        lang, sep, value = line.partition("=")
        if sep and value.strip():
            translations[lang.strip().removesuffix(".utf8").removesuffix(".UTF-8")] = value.strip()
    return caption, translations


def _have_cairosvg() -> bool:
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError):  # OSError: the package is there but libcairo is not
        return False
    return True


class TuxPaintStamp:
    __slots__ = ("key", "path", "caption", "translations", "category", "split")

    def __init__(self, key: str, path: Path, caption: str, translations: dict[str, str], category: str,
                 split: str) -> None:
        self.key, self.path, self.caption, self.translations = key, path, caption, translations
        self.category, self.split = category, split


class TuxPaintSource(Source):
    """Stamp images with their English captions; ``split`` is ``"all"``, ``"train"`` or ``"validation"``.

    ``svg="auto"`` renders SVG-only stamps with cairosvg when it is installed (else they are
    counted as ``svg_only``); ``"skip"`` never renders them.  Captions are read while listing
    (952 small files), images lazily in the worker.
    """

    def __init__(self, root: str | Path | None = None, split: str = "all", *, svg: str = "auto",
                 validation_fraction: float = 0.2, render_size: int = 256):
        super().__init__()
        self.root = Path(root) if root is not None else DEFAULT_TUXPAINT_DIR
        self.name = f"tuxpaint/{split}"
        if split not in ("all", "train", "validation"):
            raise ConfigError(f"tuxpaint: split must be 'all', 'train' or 'validation', got {split!r}")
        if svg not in ("auto", "skip"):
            raise ConfigError(f"tuxpaint: svg must be 'auto' or 'skip', got {svg!r}")
        if not self.root.is_dir():
            raise FileNotFoundError(f"tuxpaint: {self.root} does not exist; install Debian's tuxpaint-stamps-default "
                                    "(apt-get install tuxpaint-stamps-default) or pass root=")
        self.split, self.render_size = split, render_size
        self.render_svg = svg == "auto" and _have_cairosvg()
        self.class_names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        self._lookup = {n: i for i, n in enumerate(self.class_names)}
        self.stamps: list[TuxPaintStamp] = []
        self.split_counts: Counter[str] = Counter()
        self._scan(validation_fraction)

    def _scan(self, validation_fraction: float) -> None:
        by_stem: dict[Path, dict[str, Path]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in filenames:
                p = Path(dirpath) / fn
                by_stem.setdefault(p.with_suffix(""), {})[p.suffix.lower()] = p
        for stem in sorted(by_stem):
            files = by_stem[stem]
            raster = next((files[e] for e in _RASTER if e in files), None)
            svg = files.get(".svg")
            txt = files.get(".txt")
            key = stem.relative_to(self.root).as_posix()
            if raster is None and svg is None:
                if txt is not None:
                    self.listing_skips["caption_without_image"] += 1
                continue
            if txt is None:
                self.listing_skips["mirror_variant" if stem.name.endswith("_mirror") else "no_caption"] += 1
                continue
            if raster is None and not self.render_svg:
                self.listing_skips["svg_only"] += 1
                continue
            caption, translations = parse_stamp_text(txt.read_text(encoding="utf-8", errors="replace"))
            if not caption:
                self.listing_skips["empty_caption"] += 1
                continue
            rel = stem.relative_to(self.root)
            category = rel.parts[0] if len(rel.parts) > 1 else ""
            split = tuxpaint_split(key, validation_fraction)
            self.split_counts[split] += 1
            if self.split != "all" and split != self.split:
                continue
            self.stamps.append(TuxPaintStamp(key, raster or svg, caption, translations, category, split))

    def __len__(self) -> int:
        return len(self.stamps)

    def describe_empty(self) -> str:
        return f"no captioned stamp images under {self.root} ({super().describe_empty()})"

    def _image(self, stamp: TuxPaintStamp) -> Any:
        if stamp.path.suffix.lower() != ".svg":
            return stamp.path
        import cairosvg

        try:
            return cairosvg.svg2png(url=str(stamp.path), output_width=self.render_size)
        except Exception as exc:
            raise SkipSample("corrupt_image", f"SVG render failed: {exc}", stamp.key) from exc

    def sample(self, index: int, rng: random.Random | None = None) -> Sample:
        s = self.stamps[index]
        extra = {"source": "tuxpaint", "category": s.category, "split": s.split, "captions": dict(s.translations),
                 "path": s.path.relative_to(self.root).as_posix()}
        return Sample(s.key, self._image(s), s.caption, self._lookup.get(s.category), extra)


def _readable(src: TuxPaintSource, max_size: int | None):
    from PIL import Image

    from ..preprocess import ImageDecodeError, load_image

    for i in range(len(src)):
        try:
            sample = src.sample(i)
        except SkipSample:  # an SVG that cairosvg cannot render
            continue
        if max_size is not None:
            try:
                img = load_image(sample.image)  # RGB, transparency on white
            except ImageDecodeError:
                pass  # written as is; the reader skips and counts it
            else:
                if max(img.size) > max_size:
                    img.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
                    sample.image = img
        yield sample


def build_tuxpaint(out_dir: str | Path, root: str | Path | None = None, shard_size: int = 100,
                   svg: str = "auto", max_size: int | None = None) -> dict[str, ShardWriteResult]:
    """Write ``train``/``validation`` shards of the stamps + ``index.json``.

    Images are stored as their original PNG bytes; with ``max_size`` the ones larger than that
    are composited on white, shrunk to fit ``max_size`` (Lanczos) and stored as RGB PNG, which
    makes decoding for small training resolutions several times faster.
    """
    results = {}
    for split in ("train", "validation"):
        src = TuxPaintSource(root, split, svg=svg)
        info = {"source": f"Tux Paint stamps ({src.root})",
                "split_rule": "sha1('tuxpaint-split' + key) >= 0.8 -> validation",
                "labels": "top-level category folder",
                "listing_skips": dict(sorted(src.listing_skips.items())),
                "split_counts": dict(sorted(src.split_counts.items())), "svg_rendered": src.render_svg,
                "max_size": max_size}
        results[split] = write_shards(_readable(src, max_size), out_dir, shard_size, split=split,
                                      name="tuxpaint-stamps", class_names=src.class_names, info=info)
    return results
