"""Tux Paint's spoken stamp descriptions paired with the stamp images: audio-image pairs in 12 languages.

Beside many stamps, Debian's ``tuxpaint-stamps-default`` ships ``NAME_desc_<lang>.ogg``: a person
reading the stamp's description aloud (about 7,400 recordings). Paired with the stamp image they
bind an audio tower to an image anchor (ImageBind's recipe) with real speech; the English caption
rides along for the emergent audio -> text evaluation, which never trains on it.

One sample per recording: the stamp's image (as :class:`~tether.data.tuxpaint.TuxPaintSource`
gives it, same split by stamp), the English caption, ``extra["audio"]`` the recording,
``extra["language"]`` and ``extra["spoken_caption"]`` (the description in that language, when
the stamp's ``.txt`` has it). Keys are ``<stamp key>/<language>``. Hold out stamps with
``split`` and languages with ``languages`` / ``exclude_languages``.
"""
from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path
from typing import Iterable

from .sample import Sample
from .sources import Source
from .tuxpaint import TuxPaintSource

__all__ = ["TuxPaintSpeechSource"]


class TuxPaintSpeechSource(Source):
    """Spoken descriptions x stamp images; ``split``: "all", "train" or "validation" (by stamp)."""

    def __init__(self, root: str | Path | None = None, split: str = "all", *, languages: Iterable[str] | None = None,
                 exclude_languages: Iterable[str] = (), svg: str = "auto", validation_fraction: float = 0.2,
                 render_size: int = 256) -> None:
        super().__init__()
        self.stamps = TuxPaintSource(root, split, svg=svg, validation_fraction=validation_fraction,
                                     render_size=render_size)
        self.root, self.name = self.stamps.root, f"tuxpaint-speech/{split}"
        self.class_names = self.stamps.class_names
        wanted = set(languages) if languages is not None else None
        excluded = set(exclude_languages)
        self.items: list[tuple[int, str, Path]] = []  # (stamp index, language, recording)
        listings: dict[Path, list[str]] = {}
        for index, stamp in enumerate(self.stamps.stamps):
            folder, stem = stamp.path.parent, stamp.path.with_suffix("").name
            names = listings.setdefault(folder, sorted(os.listdir(folder)))
            prefix = f"{stem}_desc_"
            for name in names:
                if name.startswith(prefix) and name.endswith(".ogg"):
                    language = name[len(prefix):].split(".")[0]  # one file is NAME_desc_da.ogg.ogg
                    if (wanted is None or language in wanted) and language not in excluded:
                        self.items.append((index, language, folder / name))
        self.language_counts = Counter(language for _, language, _ in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def describe_empty(self) -> str:
        return f"no spoken stamp descriptions (NAME_desc_<lang>.ogg) under {self.root} for the languages asked"

    def sample(self, index: int, rng: random.Random | None = None) -> Sample:
        stamp_index, language, recording = self.items[index]
        base = self.stamps.sample(stamp_index, rng)
        translations = self.stamps.stamps[stamp_index].translations
        extra = {**base.extra, "audio": str(recording), "language": language,
                 "spoken_caption": translations.get(language, base.caption if language.startswith("en") else None)}
        return Sample(f"{base.key}/{language}", base.image, base.caption, base.label, extra)
