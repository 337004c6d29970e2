"""BasicMotions: 80 real smart-watch recordings (6 x 100: accelerometer xyz, gyroscope xyz at
10 Hz; 40 train + 40 test) of four activities, as IMU-text pairs.

The recordings ship inside the aeon and sktime wheels (``datasets/data/BasicMotions/*.ts``).
tether installs neither (aeon pins an older pandas and pulls numba): it reads the ``.ts`` files
from, in order, ``$TETHER_BASIC_MOTIONS`` (a folder with the two files), an installed aeon or
sktime package (found without importing it), or an aeon/sktime wheel in
``<tether cache>/wheels`` (``pip download --no-deps aeon==1.6.0 -d ~/.cache/tether/wheels``;
scripts/install-test-deps.sh does this). Each sample carries ``extra["imu"]`` (6, 100) float32
and a caption describing the activity, from templates.
"""
from __future__ import annotations

import importlib.util
import io
import os
import random
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from .sample import Sample
from .sources import Source, format_caption

ACTIVITIES = ("Standing", "Running", "Walking", "Badminton")
#: what each activity looks like to a wrist sensor: the class names the text tower sees
ACTIVITY_DESCRIPTIONS = {
    "Standing": "standing still", "Running": "running", "Walking": "walking", "Badminton": "playing badminton",
}
TEMPLATES = ("a person {}.", "someone {} with a smart watch.", "a recording of a person {}.",
             "motion sensor data of someone {}.", "a wrist sensor while {}.")
_MEMBER = "datasets/data/BasicMotions/BasicMotions_{}.ts"


def read_ts(text: str, where: str) -> tuple[np.ndarray, list[str]]:
    """A UEA/UCR ``.ts`` file's equal-length multivariate series -> ((N, dims, T) float32, labels)."""
    lines = iter(text.splitlines())
    for line in lines:
        if line.strip().lower() == "@data":
            break
    else:
        raise DataError(f"{where}: no @data line; not a .ts file")
    series, labels = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        *dims, label = line.strip().split(":")
        try:
            rows = [np.array(d.split(","), dtype=np.float32) for d in dims]
            series.append(np.stack(rows))
        except ValueError as err:
            raise DataError(f"{where}: data row {number}: expected equal-length numeric series ({err})") from None
        labels.append(label.strip())
    return np.stack(series), labels


def _package_dirs() -> list[Path]:
    dirs = []
    for package in ("aeon", "sktime"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            dirs += [Path(p) / "datasets/data/BasicMotions" for p in spec.submodule_search_locations]
    return dirs


def _wheels() -> list[Path]:
    from ..hub.verify import tether_cache_dir
    folder = tether_cache_dir() / "wheels"
    return sorted(folder.glob("aeon-*.whl")) + sorted(folder.glob("sktime-*.whl")) if folder.is_dir() else []


def read_basic_motions(split: str) -> tuple[np.ndarray, list[str]]:
    """The ``split`` ("train" | "test") recordings (N, 6, 100) and their activity names."""
    if split not in ("train", "test"):
        raise DataError(f"BasicMotions: split must be 'train' or 'test', got {split!r}")
    name = f"BasicMotions_{split.upper()}.ts"
    folders = ([Path(os.environ["TETHER_BASIC_MOTIONS"])] if os.environ.get("TETHER_BASIC_MOTIONS") else []) \
        + _package_dirs()
    for folder in folders:
        if (folder / name).is_file():
            return read_ts((folder / name).read_text(encoding="utf-8"), str(folder / name))
    for wheel in _wheels():
        with zipfile.ZipFile(wheel) as archive:
            member = f"{wheel.name.split('-')[0]}/{_MEMBER.format(split.upper())}"
            if member in archive.namelist():
                return read_ts(io.TextIOWrapper(archive.open(member), encoding="utf-8").read(), f"{wheel}:{member}")
    raise DataError(f"BasicMotions {split}: {name} not found in $TETHER_BASIC_MOTIONS, an installed aeon/sktime, "
                    "or a wheel in <tether cache>/wheels; run: pip download --no-deps aeon==1.6.0 -d "
                    "~/.cache/tether/wheels")


class BasicMotionsSource(Source):
    """IMU-text pairs: ``extra["imu"]`` (6, 100) float32, caption from ``templates``, label = activity."""

    def __init__(self, split: str = "train", templates: Sequence[str] = TEMPLATES) -> None:
        super().__init__()
        self.series, names = read_basic_motions(split)
        self.labels = [ACTIVITIES.index(n) for n in names]
        self.class_names = [ACTIVITY_DESCRIPTIONS[a] for a in ACTIVITIES]
        self.templates = list(templates)
        self.name = f"basic-motions/{split}"

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, index: int, rng: random.Random | None = None) -> Sample:
        template = self.templates[0] if rng is None else self.templates[rng.randrange(len(self.templates))]
        label = self.labels[index]
        caption = format_caption(template, self.class_names[label])
        return Sample(f"{self.name}/{index:03d}", None, caption, label,
                      {"imu": self.series[index], "activity": ACTIVITIES[label], "source": self.name})
