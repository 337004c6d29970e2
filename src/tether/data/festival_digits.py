"""Spoken digits from Festival and Flite: voices built from recordings of real speakers.

espeak-ng's formant voices are all one synthesiser's sound; Festival's diphone and HTS voices and
Flite's voices are stitched or modelled from a real person's recordings (Debian's ``festival``,
``festvox-*`` and ``flite`` packages: English, Italian, Catalan), so they add voices that sound
like people. :func:`festival_digits` writes each digit in each installed voice once, in the
layout and ``manifest.csv`` of :func:`~tether.data.spoken_digits.espeak_digits` (a rerun keeps
what is there), so a data spec mixes them with the espeak-ng recordings by folder.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from .spoken_digits import SpokenDigit, synthesise_wav, write_spoken_digit_manifest

__all__ = ["FESTIVAL_VOICES", "festival_digits", "installed_festival_voices"]

#: (engine, voice, Tux Paint language suffix): Flite's built-in voices and Debian's festvox voices
FESTIVAL_VOICES = (
    ("flite", "kal16", "en"), ("flite", "awb", "en"), ("flite", "rms", "en"), ("flite", "slt", "en"),
    ("festival", "kal_diphone", "en"), ("festival", "ked_diphone", "en"),
    ("festival", "cmu_us_slt_arctic_hts", "en"), ("festival", "pc_diphone", "it"),
    ("festival", "lp_diphone", "it"), ("festival", "upc_ca_ona_hts", "ca"),
)
_FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")


def installed_festival_voices(voices: Sequence[tuple[str, str, str]] = FESTIVAL_VOICES) -> list[tuple[str, str, str]]:
    """The entries of ``voices`` this machine can speak with (its engine on PATH, its voice installed)."""
    found = []
    flite = shutil.which("flite")
    flite_voices = _flite_voices(flite) if flite else set()
    festival = shutil.which("text2wave") is not None
    for engine, voice, language in voices:
        if engine == "flite" and voice in flite_voices:
            found.append((engine, voice, language))
        elif engine == "festival" and festival and any(_FESTIVAL_VOICE_DIR.glob(f"*/{voice}")):
            found.append((engine, voice, language))
    return found


def _flite_voices(exe: str) -> set[str]:
    done = subprocess.run([exe, "-lv"], capture_output=True, text=True, timeout=30)
    return set(done.stdout.split(":", 1)[-1].split())


def festival_digits(out_dir: str | Path,
                    voices: Sequence[tuple[str, str, str]] | None = None) -> list[SpokenDigit]:
    """Speak the digits 0-9 in every voice (default: every installed one of :data:`FESTIVAL_VOICES`)
    into ``out_dir/<language>/<digit>_<engine>-<voice>.wav`` and ``out_dir/manifest.csv``."""
    chosen = list(voices) if voices is not None else installed_festival_voices()
    if not chosen:
        raise DataError("no Festival or Flite voice is installed (Debian/Ubuntu: apt-get install flite, or "
                        "festival festvox-kallpc16k festvox-italp16k)")
    out = Path(out_dir)
    items = []
    for engine, voice, language in chosen:
        for digit in range(10):
            path = out / language / f"{digit}_{engine}-{voice}.wav"
            if not path.is_file():
                _speak(engine, voice, str(digit), path)
            items.append(SpokenDigit(path, digit, language, f"{engine}:{voice}"))
    write_spoken_digit_manifest(out / "manifest.csv", items)
    return items


def _speak(engine: str, voice: str, text: str, path: Path) -> None:
    if engine == "flite":
        synthesise_wav(path, lambda tmp: ["flite", "-voice", voice, "-t", text, "-o", str(tmp)], f"flite voice {voice}",
                       text)
    elif engine == "festival":
        synthesise_wav(path, lambda tmp: ["text2wave", "-eval", f"(voice_{voice})", "-o", str(tmp)],
                       f"festival voice {voice}", text, stdin=text)
    else:
        raise DataError(f"festival_digits: unknown engine {engine!r}; expected 'flite' or 'festival'")
