"""What ``tether label`` and ``tether audit`` read: an embedding folder, its labels, classes and images.

Both read the embedding job's folder (``layout.py``, so nothing is embedded twice) or embed a
dataset spec into ``OUT/embeddings`` first (``embed_job``; rerunning resumes). The folder's
``job.json`` names the model and the dataset it was made from, so the model for the text classifier
and the images for the review page are found without being given again.

Classes come from ``--classes``: a comma-separated list, a text file (one class per line,
optionally ``name: prompt one | prompt two`` for class-specific prompts), a JSON list of names or
a JSON mapping ``name -> [prompts]``; without it, from the dataset (its ``class_names``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError, InputError
from .contact_sheet import image_file
from .layout import read_embeddings, read_metadata

__all__ = ["LabelData", "load_folder", "embed_then_load", "parse_classes", "class_names_for", "labels_of",
           "build_text_classifier", "write_thumbnails"]


@dataclass
class LabelData:
    """Image embeddings (float32, rows of the folder), their metadata columns and where they came from."""

    folder: Path
    x: np.ndarray
    columns: dict[str, list]
    job: dict[str, Any]
    source: Any = None

    @cached_property
    def keys(self) -> list[str]:
        return [str(k) for k in self.columns.get("key", range(len(self.x)))]

    def row(self, i: int) -> dict[str, Any]:
        return {c: v[i] for c, v in self.columns.items()}


def load_folder(folder: str | Path, modality: str = "image") -> LabelData:
    """Read an embedding folder; rebuild its dataset from ``job.json`` when that names a dataset spec."""
    folder = Path(folder)
    x = read_embeddings(folder, modality)
    columns = read_metadata(folder).to_pydict()
    job_file = folder / "job.json"
    job = json.loads(job_file.read_text(encoding="utf-8")) if job_file.is_file() else {}
    source = None
    spec = job.get("source")
    if isinstance(spec, dict) and spec.get("type"):
        try:
            from .job_inputs import resolve_source
            source = resolve_source(spec)[0]
        except (OSError, ValueError):       # the dataset moved: images and class names come from elsewhere
            source = None
    return LabelData(folder, x, columns, job, source)


def embed_then_load(model: Any, data: Any, out: str | Path, *, progress: bool = False, **options: Any) -> LabelData:
    """Embed dataset ``data`` (``TYPE:PATH`` or a spec) into ``out`` (images only), then read it."""
    from .embed_job import embed_dataset
    embed_dataset(model, data, out, modalities=("image",), progress=progress, **options)
    return load_folder(out)


def parse_classes(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """-> (class names, class-specific prompts) from a list, a text file or a JSON file (module docstring)."""
    path = Path(text)
    prompts: dict[str, list[str]] = {}
    if path.suffix == ".json" and path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            names = [str(k) for k in data]
            prompts = {str(k): [str(p) for p in v] for k, v in data.items() if v}
        elif isinstance(data, list):
            names = [str(k) for k in data]
        else:
            raise InputError(f"{path}: expected a JSON list of class names or a mapping name -> prompts, "
                             f"found {type(data).__name__}")
    elif path.is_file():
        names = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, rest = line.partition(":")
            names.append(name.strip())
            if sep:
                found = [p.strip() for p in rest.split("|") if p.strip()]
                if not found:
                    raise InputError(f"{path} line {n}: {name.strip()!r} has ':' but no prompts after it")
                prompts[name.strip()] = found
    else:
        names = [c.strip() for c in text.split(",") if c.strip()]
    if len(names) != len(set(names)):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise InputError(f"--classes {text}: class {dup[0]!r} is listed twice")
    if len(names) < 2:
        raise InputError(f"--classes {text}: {len(names)} class(es); at least 2 are needed")
    return names, prompts


def class_names_for(data: LabelData, classes: str | Sequence[str] | None) -> tuple[list[str], dict[str, list[str]]]:
    """Classes from ``classes`` (see :func:`parse_classes`, or a list), else from the folder's dataset."""
    if classes is None:
        names = getattr(data.source, "class_names", None)
        if not names:
            raise InputError(f"{data.folder}: no class list (give --classes NAME,NAME,... or a file; the folder's "
                             "job.json names no dataset with class names)")
        return list(names), {}
    if isinstance(classes, str):
        return parse_classes(classes)
    names = [str(c) for c in classes]
    if len(names) < 2:
        raise InputError(f"{len(names)} class(es) given; at least 2 are needed")
    return names, {}


def labels_of(data: LabelData, class_names: Sequence[str], column: str = "label") -> np.ndarray:
    """Each row's class index from the metadata ``column`` (integers, or names from ``class_names``);
    -1 where the row has no label."""
    if column not in data.columns:
        raise DataError(f"{data.folder}: the metadata has no {column!r} column (found: "
                        f"{', '.join(sorted(data.columns))})")
    lookup = {n: i for i, n in enumerate(class_names)}
    out = np.full(len(data.x), -1, dtype=np.int64)
    for i, v in enumerate(data.columns[column]):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        if isinstance(v, str):
            if v not in lookup:
                raise DataError(f"{data.folder}: row {i} ({data.keys[i]}) has label {v!r}, which is not among "
                                f"the {len(class_names)} classes")
            out[i] = lookup[v]
        else:
            if int(v) != v or not 0 <= int(v) < len(class_names):
                raise DataError(f"{data.folder}: row {i} ({data.keys[i]}) has label {v!r}, outside the "
                                f"{len(class_names)} classes 0..{len(class_names) - 1}")
            out[i] = int(v)
    return out


def build_text_classifier(model: Any, class_names: Sequence[str], prompts: dict[str, list[str]],
                          templates: Any = "general"):
    """tether.metrics' zero-shot classifier; classes with their own prompts use them, the rest the templates."""
    from ..metrics.templates import fill_template, resolve_templates
    from ..metrics.zeroshot import ZeroShotClassifier

    if prompts:
        shared = resolve_templates(templates)
        if isinstance(shared, dict):
            raise InputError("class-specific prompts from --classes and a per-class template mapping: give one")
        templates = {c: prompts.get(c) or [fill_template(t, c) for t in shared] for c in class_names}
    return ZeroShotClassifier.build(model, class_names, templates)


def _source_index(data: LabelData) -> dict[str, int]:
    src = data.source
    if src is None or not hasattr(src, "key"):
        return {}
    return {src.key(i): i for i in range(len(src))}


def write_thumbnails(data: LabelData, rows: Sequence[int], out: Path, size: int = 160) -> dict[int, str]:
    """PNG thumbnails of ``rows`` under ``out/images/`` (from the metadata's image file, else the
    folder's dataset); -> row -> path relative to ``out``. Rows without an image are left out."""
    from PIL import Image

    from ..io import atomic_file
    from ..preprocess import load_image

    index = None
    written: dict[int, str] = {}
    for r in rows:
        img = None
        path = image_file(data.row(r))
        try:
            if path is not None:
                img = load_image(path)
            elif data.source is not None:
                index = _source_index(data) if index is None else index
                if data.keys[r] in index:
                    img = load_image(data.source.sample(index[data.keys[r]]).image)
        except (OSError, ValueError):
            img = None
        if img is None:
            continue
        img = img.convert("RGB")
        if max(img.size) < size:       # small images (28 px Fashion-MNIST) are enlarged, pixels kept sharp
            f = size / max(img.size)
            img = img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.NEAREST)
        img.thumbnail((size, size))
        rel = f"images/{r:07d}.png"
        with atomic_file(out / rel) as tmp:
            img.save(tmp, format="PNG")
        written[r] = rel
    return written
