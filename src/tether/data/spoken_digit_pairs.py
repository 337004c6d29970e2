"""Spoken digits paired with handwritten digit images: the training pairs of an audio tower bound
to a digit-image anchor (ImageBind's recipe on digits).

Each recording of the digit d (synthesised by espeak-ng, or a real one) is paired with one of
scikit-learn's handwritten images of d: a fresh one per epoch (from the pipeline's per-(seed,
epoch, index) random numbers), a fixed one when indexed without them. The pair carries no text:
the caption is there for logs and for the text classifier's class names, and binding against
the image tower never reads it. With ``augment`` the recording is decoded here and augmented
(:class:`tether.audio_augment.WaveAugment`) with a generator seeded from the same random
numbers, and handed on as a ``(waveform, sample_rate)`` pair, which the audio processor takes
like a path.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..audio import load_audio, resample
from ..audio_augment import WaveAugment
from ..errors import AudioDecodeError, ConfigError
from .digits import DIGIT_CLASSES, digits_arrays
from .sample import Sample, SkipSample
from .sources import Source, format_caption
from .spoken_digits import SPOKEN_DIGIT_TEMPLATES, SpokenDigit, recordings

__all__ = ["SpokenDigitImageSource", "spoken_digit_image_source"]


class SpokenDigitImageSource(Source):
    """(spoken digit, handwritten image of the same digit) pairs; ``extra["audio"]`` is the recording."""

    def __init__(self, items: Sequence[SpokenDigit], image_split: str = "train", augment: WaveAugment | None = None,
                 templates: Sequence[str] = SPOKEN_DIGIT_TEMPLATES, name: str = "spoken-digit-images",
                 sample_rate: int | None = None, preload: bool = False) -> None:
        super().__init__()
        self.items, self.augment, self.templates, self.name = list(items), augment, list(templates), name
        self.sample_rate = sample_rate  # augment at this rate (the tower's): cheaper than at the file's
        self._waves: dict[Path, tuple[torch.Tensor, int]] = {}  # per process (each loader worker its own)
        self.class_names = list(DIGIT_CLASSES)
        self.images, labels = digits_arrays(image_split)
        self.rows = [np.flatnonzero(labels == d) for d in range(len(DIGIT_CLASSES))]
        self.image_split = image_split
        if preload:  # decoded once here, before the loader's workers fork (they share it)
            for item in self.items:
                try:
                    self._waveform(item)
                except SkipSample:  # raised again, and counted, when the sample is drawn
                    pass

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, index: int, rng: random.Random | None = None) -> Sample:
        item = self.items[index]
        rows = self.rows[item.label]
        row = int(rows[rng.randrange(len(rows)) if rng is not None else index % len(rows)])
        audio: Any = str(item.path)
        if self.augment is not None and rng is not None:
            wave, rate = self._waveform(item)
            generator = torch.Generator().manual_seed(rng.getrandbits(63))
            audio = (self.augment(wave, rate, generator), rate)
        caption = format_caption(self.templates[0], DIGIT_CLASSES[item.label])
        return Sample(self._key(item), Image.fromarray(self.images[row], mode="L"), caption, item.label,
                      {"audio": audio, "language": item.language, "speaker": item.speaker,
                       "image": f"digits/{self.image_split}/{row}"})

    def _waveform(self, item: SpokenDigit) -> tuple[torch.Tensor, int]:
        """The decoded recording (at ``sample_rate``), kept in this process's memory once read, by
        file (a recording repeated in ``items`` is decoded once): a short word is a few kB, and
        decoding and resampling it again cost more than augmenting it. Loader workers start afresh
        each epoch, so ``preload`` reads everything before they fork."""
        if item.path not in self._waves:
            try:
                wave, rate = load_audio(item.path)
            except AudioDecodeError as err:
                raise SkipSample(err.skip_reason, err.reason, key=self._key(item)) from None
            if self.sample_rate is not None and self.sample_rate != rate:
                wave, rate = resample(wave.mean(0, keepdim=True), rate, self.sample_rate), self.sample_rate
            self._waves[item.path] = (wave, rate)
        return self._waves[item.path]

    @staticmethod
    def _key(item: SpokenDigit) -> str:
        return f"{item.language}/{item.path.name}"


def _recording_list(path: Any) -> list[SpokenDigit]:
    """``path``: None (Tux Paint's), a folder or set name, or a list of them, each optionally
    ``{"path": ..., "repeat": n, "languages": [...], "exclude_languages": [...]}`` (its recordings
    in those languages, n times: a few real voices beside thousands of synthetic ones)."""
    if path is None:
        return recordings("tuxpaint")
    if isinstance(path, (str, Path)):
        return recordings(path)
    items: list[SpokenDigit] = []
    for given in path:
        entry = dict(given) if isinstance(given, Mapping) else {"path": given}
        where, repeat = entry.pop("path", None), entry.pop("repeat", 1)
        wanted, excluded = entry.pop("languages", None), set(entry.pop("exclude_languages", ()))
        if where is None or not isinstance(repeat, int) or repeat < 1 or entry:
            raise ConfigError(f"spoken_digit_images.path: expected a folder, 'asterisk', 'tuxpaint' or "
                              f"{{'path': ..., 'repeat': n >= 1, 'languages': [...], 'exclude_languages': [...]}}; "
                              f"found {given!r}")
        chosen = [d for d in recordings(where)
                  if (wanted is None or d.language in wanted) and d.language not in excluded]
        items.extend(chosen * repeat)
    return items


def spoken_digit_image_source(path: Any = None, languages: Iterable[str] | None = None,
                              exclude_languages: Iterable[str] = (), image_split: str = "train",
                              augment: bool | Mapping[str, Any] = False, templates: Sequence[str] | None = None,
                              sample_rate: int | None = None, preload: bool = False) -> SpokenDigitImageSource:
    """The data spec ``{"type": "spoken_digit_images", ...}``: recordings from ``path`` (a folder
    :func:`~tether.data.spoken_digits.espeak_digits` wrote, read from its manifest; ``"asterisk"``
    or ``"tuxpaint"``, the packaged real ones; or a list of these, each optionally with a
    ``repeat`` count) or, without it, Tux Paint's real ones; ``augment``: true for
    :class:`WaveAugment`'s defaults, or its settings;
    ``sample_rate``: resample each recording to this rate (mono) before augmenting it; ``preload``:
    decode every recording up front (augmented training over many epochs)."""
    items = _recording_list(path)
    wanted, excluded = (set(languages) if languages is not None else None), set(exclude_languages)
    items = [d for d in items if (wanted is None or d.language in wanted) and d.language not in excluded]
    if isinstance(augment, Mapping):
        try:
            augment = WaveAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in augment.items()})
        except TypeError as err:
            raise ConfigError(f"spoken_digit_images.augment: {err} (keys: WaveAugment's fields)") from None
    elif augment:
        augment = WaveAugment()
    return SpokenDigitImageSource(items, image_split, augment or None, templates or SPOKEN_DIGIT_TEMPLATES,
                                  sample_rate=sample_rate, preload=preload)
