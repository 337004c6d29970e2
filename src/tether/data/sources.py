"""Map-style (indexable) sources: in-memory lists and arrays, CSV/Parquet manifests, folders.

A source is cheap to index: ``source.sample(i, rng)`` returns a :class:`Sample` whose image is
still a path or bytes (or a small PIL image for arrays); decoding happens later, in the
DataLoader worker that :class:`tether.data.PairDataset` runs.  Because these sources have a
known length and random access, :class:`PairDataset` can shuffle them with a fixed permutation
per ``(seed, epoch)`` and resume at any sample offset exactly.

Sources may raise :class:`SkipSample` from ``sample()`` (for example a missing caption
sidecar); the pipeline counts it and moves on.  Problems found while *listing* (files that are
not usable at all) are counted in ``source.listing_skips``.
"""

from __future__ import annotations

import csv
import math
import random
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConfigError, DataError
from .sample import IMAGE_EXTENSIONS, Sample, SkipSample

__all__ = ["Source", "ListSource", "ArraySource", "ManifestSource", "FolderSource", "format_caption"]


class Source:
    """Base class of map-style sources: ``len(source)`` samples, ``source.sample(i, rng)``.

    ``rng`` is a ``random.Random`` seeded per ``(seed, epoch, index)`` by the pipeline; sources
    with several possible captions per item (templates) use it to pick one.  ``rng=None``
    (plain indexing, ``source[i]``) must give a fixed, default choice.
    """

    name: str = "source"
    class_names: list[str] | None = None

    def __init__(self) -> None:
        self.listing_skips: Counter[str] = Counter()

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, index: int, rng: random.Random | None = None) -> Sample:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.name}: index {index} out of range for {n} samples")
        return self.sample(index % n)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.sample(i)

    def describe_empty(self) -> str:
        """Why this source has no samples (used in 'yielded 0 samples' errors)."""
        if self.listing_skips:
            found = ", ".join(f"{r}: {n}" for r, n in sorted(self.listing_skips.items()))
            return f"every candidate was rejected while listing ({found})"
        return "nothing to read"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, samples={len(self)})"


class ListSource(Source):
    """Samples already in memory (tests, small datasets)."""

    def __init__(self, samples: Sequence[Sample], name: str = "list", class_names: Sequence[str] | None = None):
        super().__init__()
        self.samples = list(samples)
        self.name = name
        self.class_names = list(class_names) if class_names is not None else None

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, index: int, rng: random.Random | None = None) -> Sample:
        return self.samples[index]


@lru_cache(maxsize=65536)
def format_caption(template: str, class_name: str) -> str:
    """Fill a ``{}`` template with a class name, lowercased, fixing 'a' -> 'an' before a vowel."""
    text = template.format(class_name.lower())
    words = text.split(" ")
    for i in range(len(words) - 1):
        if words[i].lower() == "a" and words[i + 1][:1].lower() in "aeiou" and words[i + 1][:1]:
            words[i] = "An" if words[i] == "A" else "an"
    return " ".join(words)


class ArraySource(Source):
    """Labelled uint8 image arrays ``(N, H, W)`` or ``(N, H, W, 3)`` with captions from templates.

    The caption of item ``i`` is ``templates[k].format(class_name)`` where ``k`` is drawn from the
    pipeline's per-``(seed, epoch, index)`` RNG (template 0 when indexed without one), so every
    epoch pairs each image with a freshly but reproducibly chosen phrasing.

    Besides the generic ``sample()`` path (a PIL image per item), :meth:`pixel_batch` turns a
    batch of indices into normalised tensors with vectorised torch ops; :class:`PairDataset` uses
    it automatically for eval transforms.  At the native size it is bit-identical to
    :class:`tether.preprocess.ImagePreprocessor` on the PIL path.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                 templates: Sequence[str], name: str = "arrays", key_prefix: str | None = None,
                 indices: np.ndarray | None = None):
        super().__init__()
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
            raise ValueError(f"{name}: images must be uint8 (N, H, W) or (N, H, W, 3), got "
                             f"{images.dtype} {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{name}: labels must have shape ({images.shape[0]},), got {labels.shape}")
        if not templates:
            raise ValueError(f"{name}: need at least one caption template")
        self.images, self.labels = images, labels.astype(np.int64)
        self.class_names = list(class_names)
        self.templates = list(templates)
        self.name = name
        self.key_prefix = key_prefix if key_prefix is not None else name
        # original row numbers (keys stay stable when a split is a subset of a bigger array)
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def key(self, index: int) -> str:
        return f"{self.key_prefix}/{int(self.indices[index]):06d}"

    def label(self, index: int) -> int:
        return int(self.labels[index])

    def caption(self, index: int, rng: random.Random | None = None) -> str:
        template = self.templates[0] if rng is None else self.templates[rng.randrange(len(self.templates))]
        return format_caption(template, self.class_names[self.label(index)])

    def sample(self, index: int, rng: random.Random | None = None) -> Sample:
        arr = self.images[index]
        img = Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB")
        label = self.label(index)
        return Sample(self.key(index), img, self.caption(index, rng), label,
                      {"source": self.name, "class_name": self.class_names[label]})

    def pixel_batch(self, indices: Sequence[int], image_size: int, mean: Sequence[float],
                    std: Sequence[float]) -> torch.Tensor:
        """``(n, 3, S, S)`` normalised float32 pixels for ``indices`` (grey is repeated to 3 channels).

        A different ``image_size`` than the arrays' is reached with antialiased bicubic
        interpolation in torch (close to, not identical with, Pillow's resize).
        """
        idx = np.asarray(indices, dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        x = x.to(torch.float32).div(255.0)
        x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        h, w = x.shape[-2:]
        if (h, w) != (image_size, image_size) and len(idx):
            if h != w:
                raise ValueError(f"{self.name}: fast path needs square images, got {h}x{w}")
            x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", antialias=True,
                              align_corners=False).clamp_(0.0, 1.0)
        m = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((x - m) / s).contiguous()


# ----------------------------------------------------------------------------- manifests

_DEFAULT = object()


def _as_label(value: Any) -> int | str | None:
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else str(value)
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        f = float(text)
        return int(f) if f.is_integer() else text
    except ValueError:
        return text


class ManifestSource(Source):
    """Rows of a CSV/TSV or Parquet file: an image (path or bytes), a caption, an optional label.

    * Relative image paths are resolved against the manifest's folder (or ``root``).
    * ``label_column`` is optional: absent -> no labels; if you name one explicitly it must
      exist.  Integer labels are used as is; string labels become indices into ``class_names``
      (given, or the sorted distinct values).
    * Every other column goes to ``sample.extra``; those named in ``path_columns`` hold file paths
      (another modality's inputs: ``depth``, ``imu`` ...), resolved against ``root`` as images are.
    * The key of a row is ``key_column``'s value, else the image value, else ``row<N>``.

    Missing image files are not checked here (that would stat every row up front); they are
    skipped and counted as ``missing_image`` when streamed.  Parquet needs ``pyarrow``, imported
    only when a Parquet file is read.
    """

    def __init__(self, path: str | Path, *, image_column: str = "image", caption_column: str = "caption",
                 label_column: Any = _DEFAULT, key_column: str | None = None, root: str | Path | None = None,
                 class_names: Sequence[str] | None = None, delimiter: str | None = None, name: str | None = None,
                 path_columns: Sequence[str] = ()):
        super().__init__()
        self.path = Path(path)
        self.name = name or f"manifest:{self.path.name}"
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.name}: manifest {self.path} does not exist")
        self.root = Path(root) if root is not None else self.path.parent
        columns, rows = self._read(delimiter)
        explicit_label = label_column is not _DEFAULT
        label_column = "label" if label_column is _DEFAULT else label_column
        required = [image_column, caption_column] + ([label_column] if explicit_label and label_column else [])
        if key_column:
            required.append(key_column)
        missing = [c for c in [*required, *path_columns] if c not in columns]
        if missing:
            raise DataError(f"{self.name}: column(s) {missing} not found in {self.path}; columns are {columns}")
        self.path_columns = tuple(path_columns)
        if label_column not in columns:
            label_column = None
        self.image_column, self.caption_column = image_column, caption_column
        self.label_column, self.key_column = label_column, key_column
        self._images = rows[image_column]
        self._captions = rows[caption_column]
        self._keys = rows[key_column] if key_column else None
        extra_cols = [c for c in columns if c not in (image_column, caption_column, label_column, key_column)]
        self._extra = {c: rows[c] for c in extra_cols}
        self._labels: list[int | None] | None = None
        if label_column:
            raw = [_as_label(v) for v in rows[label_column]]
            names = [v for v in raw if isinstance(v, str)]
            if names:
                if class_names is None:
                    class_names = sorted(set(names))
                lookup = {n: i for i, n in enumerate(class_names)}
                bad = sorted({n for n in names if n not in lookup})
                if bad:
                    raise DataError(f"{self.name}: labels {bad[:5]} are not in class_names {list(class_names)}")
                raw = [lookup[v] if isinstance(v, str) else v for v in raw]
            self._labels = raw  # type: ignore[assignment]
        self.class_names = list(class_names) if class_names is not None else None

    def _read(self, delimiter: str | None) -> tuple[list[str], dict[str, list[Any]]]:
        suffix = self.path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            try:
                import pyarrow.parquet as pq
            except ImportError as exc:
                raise ImportError(f"{self.name}: reading Parquet manifests needs pyarrow; install it with "
                                  "`pip install pyarrow` (or `pip install 'tether[data]'`), or use a CSV manifest"
                                  ) from exc
            table = pq.read_table(self.path)
            return list(table.column_names), table.to_pydict()
        delim = delimiter or ("\t" if suffix == ".tsv" else ",")
        with open(self.path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delim)
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(f"{self.name}: {self.path} is empty (no header row)") from None
            header = [h.strip() for h in header]
            data: dict[str, list[Any]] = {h: [] for h in header}
            for line_no, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(f"{self.name}: {self.path} line {line_no} has {len(row)} fields, "
                                    f"header has {len(header)}")
                for h, v in zip(header, row):
                    data[h].append(v)
        return header, data

    def __len__(self) -> int:
        return len(self._images)

    def describe_empty(self) -> str:
        return f"{self.path} has a header but no rows"

    def sample(self, index: int, rng: random.Random | None = None) -> Sample:
        value = self._images[index]
        if isinstance(value, dict):  # Hugging Face datasets' Image feature: {"bytes": ..., "path": ...}
            value = value.get("bytes") or value.get("path")
        image: Any
        if value is None or (isinstance(value, str) and not value.strip()):
            raise SkipSample("missing_image", "empty image field", f"row{index}")
        if isinstance(value, (bytes, bytearray, memoryview)):
            image, shown = bytes(value), f"row{index}"
        else:
            p = Path(str(value).strip())
            image, shown = (p if p.is_absolute() else self.root / p), str(value)
        if self._keys is not None:
            key = str(self._keys[index])
        else:
            key = shown
        caption = self._captions[index]
        caption = "" if caption is None else str(caption)
        label = self._labels[index] if self._labels is not None else None
        extra: dict[str, Any] = {"source": self.name, "row": index}
        for col, vals in self._extra.items():
            extra[col] = vals[index]
        for col in self.path_columns:
            value = extra[col]
            if isinstance(value, str) and value.strip() and not Path(value.strip()).is_absolute():
                extra[col] = self.root / value.strip()
        return Sample(key, image, caption, label, extra)


# -------------------------------------------------------------------------------- folders


class FolderSource(Source):
    """Images under ``root`` with a same-stem ``.txt`` sidecar holding the caption.

    ``caption="first_line"`` takes the sidecar's first non-empty line, ``"whole"`` the whole file
    (whitespace collapsed).  ``labels="parent"`` labels each image by its parent folder's name,
    ``"top"`` by the first folder under ``root``; class names are the sorted distinct folder names
    (or ``class_names``).  Sidecars are read lazily in the worker: a missing one is skipped as
    ``missing_caption``.
    """

    def __init__(self, root: str | Path, *, caption: str = "first_line", labels: str | None = None,
                 class_names: Sequence[str] | None = None, recursive: bool = True,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, name: str | None = None):
        super().__init__()
        self.root = Path(root)
        self.name = name or f"folder:{self.root.name}"
        if caption not in ("first_line", "whole"):
            raise ConfigError(f"{self.name}: caption must be 'first_line' or 'whole', got {caption!r}")
        if labels not in (None, "parent", "top"):
            raise ConfigError(f"{self.name}: labels must be None, 'parent' or 'top', got {labels!r}")
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.name}: folder {self.root} does not exist")
        exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
        walk = self.root.rglob("*") if recursive else self.root.glob("*")
        self.paths = sorted(p for p in walk if p.suffix.lower() in exts and p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(self.root).parts))
        self.caption_mode, self.label_mode = caption, labels
        self._label_names: list[str | None] = []
        for p in self.paths:
            rel = p.relative_to(self.root)
            if labels == "parent":
                self._label_names.append(rel.parent.name or None)
            elif labels == "top":
                self._label_names.append(rel.parts[0] if len(rel.parts) > 1 else None)
            else:
                self._label_names.append(None)
        if labels:
            found = sorted({n for n in self._label_names if n})
            self.class_names = list(class_names) if class_names is not None else found
            unknown = sorted(set(found) - set(self.class_names))
            if unknown:
                raise DataError(f"{self.name}: folders {unknown[:5]} are not in class_names")
            self._lookup = {n: i for i, n in enumerate(self.class_names)}

    def __len__(self) -> int:
        return len(self.paths)

    def describe_empty(self) -> str:
        return f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {self.root}"

    def sample(self, index: int, rng: random.Random | None = None) -> Sample:
        path = self.paths[index]
        rel = path.relative_to(self.root)
        key = rel.with_suffix("").as_posix()
        sidecar = path.with_suffix(".txt")
        try:
            text = sidecar.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise SkipSample("missing_caption", f"no sidecar {sidecar.name}", key) from None
        if self.caption_mode == "first_line":
            caption = next((line.strip() for line in text.splitlines() if line.strip()), "")
        else:
            caption = " ".join(text.split())
        name = self._label_names[index]
        label = self._lookup[name] if self.label_mode and name is not None else None
        return Sample(key, path, caption, label, {"source": self.name, "path": str(rel)})
