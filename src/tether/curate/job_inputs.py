"""What an embedding job reads and with what: the source and the model, each with a stable identity.

The identity (a JSON-able value) is what ``OUT/job.json`` records, so a rerun of the same command
resumes and a rerun with another model or dataset is refused: paths are made absolute (a rerun
from another folder is the same job), and a source records its number of inputs (a dataset that
grew or shrank no longer matches its finished parts).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..data.sample import Sample
from ..data.sources import ListSource
from ..errors import InputError


#: Sources of the job's own: a plain image folder (``--images``), a text file (``--texts``) and a
#: folder of any other modality's files (``--audio DIR``: ``{"type": "files", "modality": "audio"}``).
LOCAL_TYPES = ("images", "texts", "files")


class JobError(InputError):
    """A job that cannot run as asked: the message is one line naming what is wrong."""


def parse_data_spec(text: str) -> dict[str, Any]:
    """``TYPE:PATH`` (``webdataset:shards/``, ``manifest:pairs.parquet``, ``folder:photos/``,
    ``tuxpaint:/usr/share/tuxpaint/stamps``) or a built-in ``TYPE`` alone (``tuxpaint``, ``digits``)."""
    from ..data.spec import SOURCE_TYPES

    kind, _, path = text.partition(":")
    if kind not in SOURCE_TYPES and kind not in LOCAL_TYPES:
        raise JobError(f"--data {text!r}: unknown type {kind!r}; expected TYPE:PATH with TYPE one of "
                       f"{', '.join(sorted([*SOURCE_TYPES, *LOCAL_TYPES]))} (e.g. webdataset:shards/, "
                       "manifest:pairs.csv)")
    spec: dict[str, Any] = {"type": kind}
    if path:
        spec["path"] = os.path.abspath(path)
    return spec


def _local(kind: str, path: Any, modality: Any = None) -> ListSource:
    if not path:
        raise JobError(f"--data {kind}: needs a path ({kind}:PATH)")
    if kind == "files":
        return modality_folder_source(str(modality), path)
    return image_folder_source(path) if kind == "images" else text_file_source(path)


def modality_folder_source(modality: str, folder: str | Path) -> ListSource:
    """Every file of ``modality`` under ``folder`` (sorted, recursive; the registered modality's
    ``file_extensions``) as a sample without a caption: ``extra[modality]`` holds the path, which
    the embedding engine hands to the modality's processor and the metadata keeps as a column."""
    from ..modalities import MODALITIES

    if modality not in MODALITIES or modality in ("image", "text"):
        others = sorted(set(MODALITIES) - {"image", "text"})
        raise JobError(f"files of modality {modality!r}: expected one of {', '.join(others) or 'none registered'} "
                       "(images: --images DIR, texts: --texts FILE)")
    root = Path(folder)
    if not root.is_dir():
        raise JobError(f"--{modality} {folder}: not a folder")
    endings = MODALITIES[modality].file_extensions
    paths = sorted(p for p in root.rglob("*") if p.is_file() and (not endings or p.suffix.lower() in endings))
    if not paths:
        raise JobError(f"--{modality} {folder}: no {modality} files found (looked for "
                       f"{', '.join(endings) or 'any file'}, recursively)")
    samples = [Sample(p.relative_to(root).as_posix(), None, "", extra={modality: str(p.resolve())}) for p in paths]
    source = ListSource(samples, name=f"{modality}:{root.resolve()}")
    source.no_captions = True  # type: ignore[attr-defined]
    return source


def image_folder_source(folder: str | Path) -> ListSource:
    """Every image file under ``folder`` (sorted, recursive) as a sample without a caption."""
    from ..embedding.files import find_images

    root = Path(folder)
    if not root.is_dir():
        raise JobError(f"--images {folder}: not a folder")
    paths = find_images([root])
    if not paths:
        raise JobError(f"--images {folder}: no image files found (looked for .jpg, .png, .webp, ... recursively)")
    source = ListSource([Sample(p.relative_to(root).as_posix(), p.resolve(), "") for p in paths],
                        name=f"images:{root.resolve()}")
    source.images_only = True  # type: ignore[attr-defined]
    return source


def text_file_source(path: str | Path) -> ListSource:
    """One sample per line of a UTF-8 text file, keyed ``line<N>`` (1-based); empty lines are skipped later."""
    file = Path(path)
    if not file.is_file():
        raise JobError(f"--texts {path}: no such file")
    lines = file.read_text(encoding="utf-8").splitlines()
    return ListSource([Sample(f"line{i}", None, line) for i, line in enumerate(lines, start=1)],
                      name=f"texts:{file.resolve()}")


def resolve_source(source: Any) -> tuple[Any, Any]:
    """(source object, identity) from a source object, a spec dict or a ``TYPE:PATH`` string."""
    from ..data.spec import build_source

    if isinstance(source, (str, Path)):
        source = parse_data_spec(str(source))
    if isinstance(source, Mapping):
        spec = dict(source)
        if spec.get("path") is not None:
            spec["path"] = os.path.abspath(spec["path"])
        if spec.get("type") == "webdataset":
            spec.setdefault("shuffle", False)
        if spec.get("type") in LOCAL_TYPES:
            return _local(spec["type"], spec.get("path"), spec.get("modality")), spec
        return build_source(spec), spec
    if not hasattr(source, "__len__"):
        raise JobError(f"cannot embed {type(source).__name__}: give a data source, a spec dict or 'TYPE:PATH'")
    return source, {"name": getattr(source, "name", type(source).__name__)}


def resolve_model(model: Any, random_weights: bool = False) -> tuple[Any, Any]:
    """(model, identity) from a loaded model, a checkpoint path or a published name (an architecture
    name only with ``random_weights``, see ``tether.checkpoints.resolve_model``)."""
    from ..checkpoints import resolve_model as load

    if isinstance(model, (str, Path)):
        spec = str(model)
        ident = os.path.abspath(spec) if Path(spec).exists() else spec
        return load(spec, random_weights=random_weights), ident
    config = getattr(model, "config", None)
    name = getattr(config, "name", "") or ""
    return model, f"<{type(model).__name__} {name} embed_dim={getattr(config, 'embed_dim', '?')}>"


__all__ = ["JobError", "image_folder_source", "modality_folder_source", "parse_data_spec", "resolve_model", "resolve_source",
           "text_file_source"]
