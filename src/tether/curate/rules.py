"""DataComp's basic filtering rules, each switchable, evaluated on metadata.

The rules (DataComp ``baselines/apply_filter.py``, basic filter) a pair must pass:

* ``caption_words``: the caption has more than 2 words (``len(caption.split()) > 2``);
* ``caption_chars``: more than 5 characters;
* ``image_min_side``: the shorter image side is >= 200 pixels;
* ``aspect_ratio``: longer side / shorter side <= 3;
* ``language`` (off by default): the caption's detected language is the one asked for (DataComp:
  English). Detected with ``lingua-language-detector`` (``pip install lingua-language-detector``):
  maintained, its models ship inside the wheel, nothing is downloaded at run time. On Tux Paint's
  short captions it calls 62% of the English captions English and 99% of the French, German,
  Spanish, Italian, Portuguese and Dutch ones not English (measured here): short captions are hard,
  so check the report before using it. fastText's ``lid.176`` (DataComp's choice, through
  ``fasttext-langdetect``) downloads its model at run time and is not used.

Image sizes come from the metadata's ``width``/``height`` (or img2dataset's
``original_width``/``original_height``) columns, else from the image file's header (Pillow reads
only the header). Rows whose size cannot be known are not judged by the size rules and are
counted as ``size_unknown``.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from .contact_sheet import image_file

__all__ = ["BASIC_RULES", "RULE_DESCRIPTIONS", "caption_rules", "image_sizes", "size_rules", "language_rule"]

BASIC_RULES = ("caption_words", "caption_chars", "image_min_side", "aspect_ratio")
RULE_DESCRIPTIONS = {
    "caption_words": "caption has more than {min_words} words",
    "caption_chars": "caption has more than {min_chars} characters",
    "language": "caption language is {language}",
    "image_min_side": "shorter image side >= {min_side} px",
    "aspect_ratio": "aspect ratio (long / short side) <= {max_aspect}",
    "clip_score": "CLIP score >= the threshold",
}
SIZE_COLUMNS = (("width", "height"), ("original_width", "original_height"))


def caption_rules(captions: Sequence[Any], min_words: int = 2, min_chars: int = 5) -> dict[str, np.ndarray]:
    """Pass masks of the caption rules (a missing caption fails both)."""
    text = ["" if c is None else str(c) for c in captions]
    return {"caption_words": np.array([len(t.split()) > min_words for t in text], dtype=bool),
            "caption_chars": np.array([len(t) > min_chars for t in text], dtype=bool)}


def _size_from_header(path) -> tuple[float, float]:
    from PIL import Image
    try:
        with Image.open(path) as img:
            return float(img.width), float(img.height)
    except (OSError, ValueError, SyntaxError):
        return np.nan, np.nan


def image_sizes(columns: Mapping[str, Sequence[Any]], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(width, height) per row as float arrays, NaN where unknown: metadata columns, else image headers."""
    n = len(next(iter(columns.values()))) if columns else 0
    for wc, hc in SIZE_COLUMNS:
        if wc in columns and hc in columns:
            w = np.array([np.nan if v is None else float(v) for v in columns[wc]])
            h = np.array([np.nan if v is None else float(v) for v in columns[hc]])
            return w, h
    w, h = np.full(n, np.nan), np.full(n, np.nan)
    rows: Iterable[int] = range(n)
    if progress:
        from tqdm import tqdm
        rows = tqdm(rows, desc="image sizes", unit="image", leave=False)
    names = list(columns)
    for r in rows:
        path = image_file({c: columns[c][r] for c in names})
        if path is not None:
            w[r], h[r] = _size_from_header(path)
    return w, h


def size_rules(width: np.ndarray, height: np.ndarray, min_side: int = 200, max_aspect: float = 3.0
               ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Pass masks of the size rules (unknown sizes pass) and the mask of rows whose size is unknown."""
    unknown = ~(np.isfinite(width) & np.isfinite(height) & (width > 0) & (height > 0))
    short = np.where(unknown, 1.0, np.minimum(width, height))
    long = np.where(unknown, 1.0, np.maximum(width, height))
    return ({"image_min_side": unknown | (short >= min_side),
             "aspect_ratio": unknown | (long / short <= max_aspect)}, unknown)


def language_rule(captions: Sequence[Any], language: str = "en", progress: bool = False) -> np.ndarray:
    """Pass mask: lingua detects ``language`` (ISO 639-1 code) as the caption's language."""
    try:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
    except ImportError as e:
        raise ImportError("the language rule needs lingua: pip install lingua-language-detector") from e
    try:
        wanted = Language.from_iso_code_639_1(IsoCode639_1.from_str(language.lower()))
    except ValueError as e:
        raise ConfigError(f"--language {language!r}: not an ISO 639-1 code lingua knows") from e
    detector = LanguageDetectorBuilder.from_all_languages().build()
    text = ["" if c is None else str(c) for c in captions]
    found = []
    batch = range(0, len(text), 1024)
    if progress:
        from tqdm import tqdm
        batch = tqdm(batch, desc="language", unit="batch", leave=False)
    for s in batch:
        found += detector.detect_languages_in_parallel_of(text[s:s + 1024])
    return np.array([f == wanted for f in found], dtype=bool)
