"""Spoken digits 0-9: real recordings from Tux Paint (evaluation) and speech synthesised with espeak-ng (training).

ImageBind's claim, measured on digits: an audio tower bound only to digit *images* classifies
spoken digits through the *text* classifier ("the number 7.") without one audio-text pair.
This module supplies the audio:

* :func:`tuxpaint_spoken_digits`: Debian's ``tuxpaint-stamps-default`` ships people saying the
  digits in about 20 languages (``symbols/math/<d>_<lang>.ogg``; ``<d>.ogg`` is the stamp's own
  sound, the English name; ``<d>_desc_<lang>.ogg`` are its description, the number again, for
  fr/ro/ru). Real voices no training step sees: the evaluation set, per language.
* :func:`asterisk_spoken_digits`: Debian's ``asterisk-core-sounds-*`` and ``asterisk-prompt-*``
  packages ship professional speakers saying the digits for telephone menus (en, es, fr, it, ru;
  8 kHz, ``<voice>/digits/<d>.wav`` or raw GSM ``.gsm``): real voices to train with beside the
  synthetic ones, disjoint from Tux Paint's speakers.
* :func:`espeak_digits`: the same digits synthesised by espeak-ng in the same languages and
  several voice variants, speeds and pitches, written once as WAV files with a ``manifest.csv``
  (rerunning reuses what is there). The training set; hold languages out with
  :func:`split_by_language`.

Both give :class:`SpokenDigit` records; :func:`spoken_digit_source` turns them into a data source
whose samples carry the file in ``extra["audio"]`` (what the embedding engine and ``tether
embed`` read), the digit as label and a caption from a template, ``extra["language"]`` and
``extra["speaker"]``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from ..errors import DataError
from ..io import atomic_file, atomic_write_text
from .digits import DIGIT_CLASSES
from .sample import Sample
from .sources import ListSource, format_caption

__all__ = ["ASTERISK_SOUNDS", "DIGIT_READINGS", "ESPEAK_VARIANTS", "RECORDING_SETS", "SPOKEN_DIGIT_TEMPLATES",
           "TUXPAINT_VOICES", "SpokenDigit", "asterisk_spoken_digits", "espeak_digits", "read_spoken_digit_manifest",
           "recordings", "split_by_language", "spoken_digit_source", "synthesise_wav", "tuxpaint_spoken_digits",
           "write_spoken_digit_manifest"]

SPOKEN_DIGIT_TEMPLATES = ("the number {}.",)
TUXPAINT_MATH = Path("/usr/share/tuxpaint/stamps/symbols/math")
#: Tux Paint's language suffix -> the espeak-ng voice for the same language ("en": the stamps' own sound).
TUXPAINT_VOICES = {"en": "en-us", "en_GB": "en-gb", "be": "be", "bg": "bg", "ca": "ca", "de": "de", "el": "el",
                   "es": "es", "fr": "fr-fr", "it": "it", "ja": "ja", "ko": "ko", "lt": "lt", "nb": "nb",
                   "nl": "nl", "nn": "nb",  # espeak-ng has no Nynorsk voice: Bokmål stands in
                   "pt": "pt", "ro": "ro", "ru": "ru", "sl": "sl", "sv": "sv", "zh_tw": "cmn"}
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
_ASTERISK_NAME = re.compile(r"^(\d)([A-Za-z]?)\.(wav|gsm)$")  # 1F / 1M / 1n: the word's other gender
#: espeak-ng voice variants (``-v LANG+VARIANT``): male and female, younger and older, whispered.
ESPEAK_VARIANTS = ("m1", "m3", "m7", "f1", "f3", "f4", "croak", "whisper")
_NAME = re.compile(r"^(\d)(?:_(desc)_([A-Za-z_]+)|_([A-Za-z_]+))?\.ogg$")
#: Other common words for a digit, beside the one espeak-ng reads from the numeral: languages that count
#: in two systems or say some digits two ways. Korean has native numbers (hana, dul, set, ...) beside the
#: Sino-Korean ones espeak-ng reads ("7" -> chil); Japanese says yon/shi, nana/shichi, kyuu/ku, zero/rei;
#: Greek efta/epta, ochto/okto, ennia/ennea; Nynorsk ein where Bokmål says en; German zwo for zwei in
#: digit strings; English "oh" and "nought" for 0. And where espeak-ng reads a numeral unlike the
#: word it stands for, the word itself: Russian (its numerals come out as "nojl", "sejm"), Catalan "un"
#: (the numeral: "u"), Bulgarian "четири" (stress). Without them a bound tower never hears the word a
#: speaker of that language may use.
DIGIT_READINGS: dict[str, dict[int, tuple[str, ...]]] = {
    "ko": {0: ("공",), 1: ("하나",), 2: ("둘",), 3: ("셋",), 4: ("넷",), 5: ("다섯",), 6: ("여섯",), 7: ("일곱",),
           8: ("여덟",), 9: ("아홉",)},
    "ja": {0: ("ゼロ",), 4: ("よん",), 7: ("なな",), 9: ("く",)},
    "el": {7: ("εφτά",), 8: ("οχτώ",), 9: ("εννιά",)},
    "nn": {1: ("ein",)},
    "de": {2: ("zwo",)},
    "ru": {0: ("ноль", "нуль"), 1: ("один",), 2: ("два",), 3: ("три",), 4: ("четыре",), 5: ("пять",),
           6: ("шесть",), 7: ("семь",), 8: ("восемь",), 9: ("девять",)},
    "bg": {4: ("четири",)},
    "ca": {1: ("un",)},
    "en": {0: ("oh",)},
    "en_GB": {0: ("oh", "nought")},
}


@dataclass(frozen=True)
class SpokenDigit:
    """One recording of one digit: the file, the digit, its language and who (or what) speaks it."""

    path: Path
    label: int
    language: str
    speaker: str  # "tuxpaint", "tuxpaint-desc", or the espeak voice "de+f3 s130 p35"


def tuxpaint_spoken_digits(root: str | Path | None = None,
                           languages: Iterable[str] | None = None) -> list[SpokenDigit]:
    """The Tux Paint recordings of the digits (``root``: the stamps' ``symbols/math`` folder or the stamps
    folder), sorted by language then digit; ``languages`` keeps only those (Tux Paint's suffixes)."""
    folder = Path(root) if root is not None else TUXPAINT_MATH
    if (folder / "symbols" / "math").is_dir():
        folder = folder / "symbols" / "math"
    if not folder.is_dir():
        raise DataError(f"{folder}: no Tux Paint digits (install Debian's tuxpaint-stamps-default, or give the "
                        "stamps folder)")
    wanted = set(languages) if languages is not None else None
    found = []
    for path in folder.iterdir():
        m = _NAME.match(path.name)
        if not m:
            continue
        language = m.group(3) or m.group(4) or "en"
        if wanted is None or language in wanted:
            found.append(SpokenDigit(path, int(m.group(1)), language, "tuxpaint-desc" if m.group(2) else "tuxpaint"))
    if not found:
        raise DataError(f"{folder}: no spoken digits (<d>_<lang>.ogg) for languages {sorted(wanted or [])}")
    return sorted(found, key=lambda d: (d.language, d.label, d.speaker))


def asterisk_spoken_digits(root: str | Path | None = None,
                           languages: Iterable[str] | None = None) -> list[SpokenDigit]:
    """Asterisk's recordings of the digits 0-9 under ``root`` (default /usr/share/asterisk/sounds):
    every ``<voice>/digits/<d>[variant].wav|gsm``, the language from the voice folder's name
    (``fr_CA_f_June`` -> ``fr``, ``es`` -> ``es``), the speaker ``asterisk:<voice>``; a folder
    reached twice through a link counts once."""
    folder = Path(root) if root is not None else ASTERISK_SOUNDS
    wanted = set(languages) if languages is not None else None
    found, seen = [], set()
    for digits in sorted(folder.glob("*/digits")):
        real = digits.resolve()
        if real in seen or not digits.is_dir():
            continue
        seen.add(real)
        voice = digits.parent.name
        language = voice.split("_")[0]
        if wanted is not None and language not in wanted:
            continue
        for path in sorted(digits.iterdir()):
            m = _ASTERISK_NAME.match(path.name)
            if m:
                found.append(SpokenDigit(path, int(m.group(1)), language, f"asterisk:{voice}"))
    if not found:
        raise DataError(f"{folder}: no Asterisk digits (<voice>/digits/<d>.wav or .gsm; install Debian's "
                        "asterisk-core-sounds-en-wav, -es-wav, -fr-wav, -it-wav, -ru-wav)")
    return found


#: named sets of real recordings, for data specs (a folder name otherwise means a manifest folder)
RECORDING_SETS = {"tuxpaint": tuxpaint_spoken_digits, "asterisk": asterisk_spoken_digits}


def recordings(where: str | Path) -> list[SpokenDigit]:
    """``"tuxpaint"`` or ``"asterisk"`` (the packaged real recordings) or a folder :func:`espeak_digits`
    wrote (its manifest)."""
    if isinstance(where, str) and where in RECORDING_SETS:
        return RECORDING_SETS[where]()
    return read_spoken_digit_manifest(where)


def espeak_digits(out_dir: str | Path, languages: Sequence[str] = tuple(TUXPAINT_VOICES),
                  variants: Sequence[str] = ESPEAK_VARIANTS, speeds: Sequence[int] = (130, 175),
                  pitches: Sequence[int] = (35, 65),
                  readings: Mapping[str, Mapping[int, Sequence[str]]] | None = None) -> list[SpokenDigit]:
    """Synthesise every digit in every language (Tux Paint's suffixes, mapped by :data:`TUXPAINT_VOICES`,
    or espeak-ng voice names) x variant x speed (words per minute) x pitch (0-99) into
    ``out_dir/<language>/<digit>_<variant>_s<speed>_p<pitch>.wav``, and ``out_dir/manifest.csv``.

    espeak-ng reads the numeral itself ("7"), so each language's own word is spoken; each other
    reading in ``readings`` (default :data:`DIGIT_READINGS`; ``{}``: none) is spoken too, into
    ``<digit>w<hash of the word>_<variant>_...wav``. Files already there are kept (a rerun only fills gaps); each
    is written atomically.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    out = Path(out_dir)
    items = []
    readings = DIGIT_READINGS if readings is None else readings
    for language, variant, speed, pitch, digit in itertools.product(languages, variants, speeds, pitches, range(10)):
        voice = TUXPAINT_VOICES.get(language, language)
        words = [str(digit), *readings.get(language, {}).get(digit, ())]
        for word in words:  # a reading's file is named by its word's hash: editing the table never reuses a file
            tag = "" if word == str(digit) else "w" + hashlib.sha1(word.encode()).hexdigest()[:8]
            path = out / language / f"{digit}{tag}_{variant}_s{speed}_p{pitch}.wav"
            if not path.is_file():
                _speak(exe, f"{voice}+{variant}", speed, pitch, word, path)
            items.append(SpokenDigit(path, digit, language, f"{voice}+{variant} s{speed} p{pitch}"))
    write_spoken_digit_manifest(out / "manifest.csv", items)
    return items


def _speak(exe: str, voice: str, speed: int, pitch: int, text: str, path: Path) -> None:
    synthesise_wav(path, lambda tmp: [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(tmp), text],
                   f"espeak-ng -v {voice}", text)


def synthesise_wav(path: Path, command: Callable[[Path], list[str]], who: str, text: str,
                   stdin: str | None = None) -> None:
    """Run a speech synthesiser's ``command(tmp)``, which writes a WAV file to ``tmp``, and move it to
    ``path`` atomically; an exit status, no file or an empty one is a one-line error naming ``who``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        done = subprocess.run(command(tmp), input=stdin, capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size <= 44:
            raise DataError(f"{who} could not speak {text!r} into {path}: "
                            f"{' '.join(done.stderr.split()) or f'exit status {done.returncode}'}")


def write_spoken_digit_manifest(path: Path, items: Sequence[SpokenDigit]) -> None:
    """``manifest.csv`` of ``items`` (paths relative to its folder), as :func:`read_spoken_digit_manifest` reads it."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["audio", "label", "language", "speaker"])
    for d in items:
        writer.writerow([d.path.relative_to(path.parent).as_posix(), d.label, d.language, d.speaker])
    atomic_write_text(path, buf.getvalue())


def read_spoken_digit_manifest(folder: str | Path) -> list[SpokenDigit]:
    """The recordings :func:`espeak_digits` wrote into ``folder`` (its ``manifest.csv``), without
    running espeak-ng: the cached training set, as a data spec names it."""
    path = Path(folder) / "manifest.csv"
    if not path.is_file():
        raise DataError(f"{path}: no manifest (write the recordings first with tether.data.spoken_digits."
                        "espeak_digits)")
    items = []
    with open(path, newline="", encoding="utf-8") as f:
        for row_number, row in enumerate(csv.DictReader(f), start=2):
            try:
                items.append(SpokenDigit(path.parent / row["audio"], int(row["label"]), row["language"],
                                         row["speaker"]))
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}, row {row_number}: expected audio, label (0-9), language, speaker; "
                                f"found {dict(row)}") from None
    return items


def split_by_language(items: Sequence[SpokenDigit],
                      held_out: Iterable[str]) -> tuple[list[SpokenDigit], list[SpokenDigit]]:
    """(items in other languages, items in ``held_out`` languages): keep evaluation languages unseen."""
    held = set(held_out)
    return [d for d in items if d.language not in held], [d for d in items if d.language in held]


def spoken_digit_source(items: Sequence[SpokenDigit], templates: Sequence[str] = SPOKEN_DIGIT_TEMPLATES,
                        name: str = "spoken-digits") -> ListSource:
    """A data source of ``items``: key ``<language>/<file name>``, the file in ``extra["audio"]``, the digit
    as label (class names ``"0"`` .. ``"9"``, as the digit images'), a caption from the first template."""
    samples = [Sample(f"{d.language}/{d.path.name}", None, format_caption(templates[0], DIGIT_CLASSES[d.label]),
                      d.label, {"audio": str(d.path), "language": d.language, "speaker": d.speaker})
               for d in items]
    return ListSource(samples, name=name, class_names=DIGIT_CLASSES)
